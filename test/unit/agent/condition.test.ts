// From the agent's last report to the HostHealthy condition MachineHealthCheck acts on.
import test from 'ava';
import { hostHealthyCondition } from '../../../provider/health/condition.ts';
import type { CheckResult } from '../../../common/agent-protocol.ts';

const ok = (name: string): CheckResult => ({ name, status: 'ok', reason: 'Ok', message: '' });
const t0 = Date.parse('2026-03-01T10:00:00Z');

test('no report yet: Unknown, NoReportYet', (t) => {
  t.like(hostHealthyCondition(undefined, undefined, t0), {
    type: 'HostHealthy',
    status: 'Unknown',
    reason: 'NoReportYet',
  });
});

test('every check ok (or not measurable): True', (t) => {
  const checks = [
    ok('kubelet'),
    { name: 'systemd-units', status: 'unknown', reason: 'NoSystemd', message: '' } as const,
  ];
  t.deepEqual(hostHealthyCondition({ checks }, t0, t0 + 5000, 60_000), {
    type: 'HostHealthy',
    status: 'True',
    reason: 'HostHealthy',
    message: '',
  });
});

test("a failed check: False with the first failure's reason, every failure in the message", (t) => {
  const checks: CheckResult[] = [
    ok('kubelet'),
    {
      name: 'certificates',
      status: 'failed',
      reason: 'CertificatesExpiring',
      message: 'kubelet.crt expires in 2.0 days',
    },
    { name: 'user:nfs', status: 'failed', reason: 'UserCheckFailed', message: 'check nfs exited 1' },
  ];
  t.deepEqual(hostHealthyCondition({ checks }, t0, t0, 60_000), {
    type: 'HostHealthy',
    status: 'False',
    reason: 'CertificatesExpiring',
    message: '* certificates: kubelet.crt expires in 2.0 days\n* user:nfs: check nfs exited 1',
  });
});

test('silence longer than unknownAfterMs: Unknown, ReportsStopped, whatever the last report said', (t) => {
  const failing = { checks: [{ name: 'disk', status: 'failed', reason: 'DiskPressure', message: '' } as const] };
  t.is(hostHealthyCondition(failing, t0, t0 + 60_000, 60_000).status, 'False'); // exactly at the limit: still fresh
  const c = hostHealthyCondition(failing, new Date(t0), new Date(t0 + 5 * 60_000 + 1000), 60_000);
  t.like(c, { status: 'Unknown', reason: 'ReportsStopped' });
  t.is(c.message, 'No report from the node agent for 5m1s (last at 2026-03-01T10:00:00.000Z)');
  t.like(hostHealthyCondition({ checks: [ok('kubelet')] }, t0, t0 + 90_000, 60_000), { reason: 'ReportsStopped' });
  t.regex(hostHealthyCondition({ checks: [] }, t0, t0 + 90_000, 60_000).message ?? '', /for 90s/);
});

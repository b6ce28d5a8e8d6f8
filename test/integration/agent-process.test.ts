// The bundled agent (dist/agent/capbm-agent.mjs) as a real process against the real health
// endpoint on 127.0.0.1: reports arrive every second, the HostHealthy condition follows the
// host (a user check that starts failing), the agent renews its short-lived certificate, and
// silence turns the condition Unknown.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAgentBundle } from '../../agent/build.ts';
import type { Report } from '../../common/agent-protocol.ts';
import { hostHealthyCondition } from '../../provider/health/condition.ts';
import { issueAgentCertificate, issueHealthServerCertificate, loadOrCreateAgentCa } from '../../provider/health/pki.ts';
import { startHealthServer, type HealthServer } from '../../provider/health/server.ts';
import type { ConditionInput } from '../../provider/runtime/conditions.ts';

let srv: HealthServer;
let agent: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), 'capbm-agent-proc-'));
let last: { report: Report; at: number } | undefined;
let count = 0;

test.after.always(async () => {
  agent?.kill('SIGKILL');
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

const condition = (now = Date.now(), unknownAfterMs = 3000): ConditionInput =>
  hostHealthyCondition(last?.report, last?.at, now, unknownAfterMs);

async function until(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; condition: ${JSON.stringify(condition())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the bundled agent reports, the condition follows a failing check, renews, and goes Unknown when stopped', async (t) => {
  const bundle = await buildAgentBundle();
  t.true(bundle.bytes > 1000);
  const { ca } = await loadOrCreateAgentCa(undefined);
  srv = await startHealthServer({
    host: '127.0.0.1',
    port: 0,
    ca,
    serverCert: await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] }),
    onReport: (report) => {
      last = { report, at: Date.now() };
      count++;
    },
  });
  // Not-before is backdated 5 minutes: a certificate valid for 30 more seconds is already past
  // 2/3 of its life, and the agent renews it at once.
  const id = await issueAgentCertificate(ca, { host: 'default/host-1', hostUid: 'u1', machineUid: 'u2' }, 30_000);
  const root = join(dir, 'root');
  mkdirSync(join(root, 'proc'), { recursive: true });
  const pki = join(dir, 'pki');
  mkdirSync(pki);
  writeFileSync(join(pki, 'agent.crt'), id.certPem, { mode: 0o600 });
  writeFileSync(join(pki, 'agent.key'), id.keyPem, { mode: 0o600 });
  writeFileSync(join(pki, 'ca.crt'), ca.certPem, { mode: 0o600 });
  const sick = join(dir, 'sick');
  const config = join(dir, 'agent.json');
  writeFileSync(
    config,
    JSON.stringify({
      host: 'default/host-1',
      machine: { namespace: 'default', name: 'm-1' },
      reportUrl: srv.url,
      intervalSeconds: 1,
      root,
      // The temp root has no kubelet or container runtime: this test is about the report path.
      disabledChecks: ['kubelet', 'container-runtime'],
      checks: [{ name: 'not-sick', command: `test ! -e ${sick}`, intervalSeconds: 1, timeoutSeconds: 5 }],
      pki: { cert: join(pki, 'agent.crt'), key: join(pki, 'agent.key'), ca: join(pki, 'ca.crt') },
    }),
    { mode: 0o600 },
  );
  let stderr = '';
  agent = spawn(process.execPath, [bundle.path, '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  agent.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  t.teardown(() => t.log(stderr.trim().split('\n').slice(-5).join('\n')));

  await until('a healthy report', () => condition().status === 'True');
  t.like(last!.report, { host: 'default/host-1', machine: { namespace: 'default', name: 'm-1' } });
  t.deepEqual(
    last!.report.checks.map((c) => c.name),
    ['disk', 'memory', 'clock', 'certificates', 'systemd-units', 'user:not-sick'],
  );
  await until('the clock check measured', () => last!.report.checks.find((c) => c.name === 'clock')?.status === 'ok');

  writeFileSync(sick, '');
  await until('the failing check', () => condition().status === 'False');
  t.like(condition(), {
    status: 'False',
    reason: 'UserCheckFailed',
    message: '* user:not-sick: check not-sick exited 1',
  });
  rmSync(sick);
  await until('healthy again', () => condition().status === 'True');

  await until('the renewed certificate', () => readFileSync(join(pki, 'agent.crt'), 'utf8') !== id.certPem);
  t.is(statSync(join(pki, 'agent.key')).mode & 0o777, 0o600);
  const n = count;
  await until('reports with the renewed certificate', () => count >= n + 2);

  agent.kill('SIGTERM');
  const code = await new Promise((r) => agent!.once('exit', r));
  t.is(code, 0);
  await until('the silence', () => condition().status === 'Unknown');
  t.like(condition(), { reason: 'ReportsStopped' });
  t.false(stderr.includes('PRIVATE KEY'));
});

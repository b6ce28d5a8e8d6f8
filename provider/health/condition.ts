// The HostHealthy condition from the agent's reports: a pure function of the last accepted
// report, when it came, and now. MachineHealthCheck acts on it (unhealthyNodeConditions in
// manifests/templates/cluster-template.yaml), so False means "replace this host".
import type { ConditionInput } from '../runtime/conditions.ts';
import type { CheckResult } from '../../common/agent-protocol.ts';

export const HostHealthyCondition = 'HostHealthy';
export const HostHealthyReasons = {
  Healthy: 'HostHealthy',
  NoReportYet: 'NoReportYet',
  ReportsStopped: 'ReportsStopped',
} as const;
export const defaultUnknownAfterMs = 3 * 60_000;

const ms = (t: Date | number) => (typeof t === 'number' ? t : t.getTime());

function duration(d: number): string {
  const s = Math.round(d / 1000);
  return s < 120 ? `${s}s` : `${Math.floor(s / 60)}m${s % 60}s`;
}

const line = (c: CheckResult) => `* ${c.name}: ${c.message || c.reason}`;

/**
 * True when every check is ok or unknown; False with the first failed check's reason (the agent
 * orders its checks, e.g. CertificatesExpiring, DiskPressure, UserCheckFailed) and every failure
 * in the message; Unknown with NoReportYet before the first report and ReportsStopped once the
 * agent has been silent for longer than unknownAfterMs.
 */
export function hostHealthyCondition(
  report: { checks: readonly CheckResult[] } | undefined,
  lastSeen: Date | number | undefined,
  now: Date | number,
  unknownAfterMs: number = defaultUnknownAfterMs,
): ConditionInput {
  const type = HostHealthyCondition;
  if (!report || lastSeen === undefined)
    return {
      type,
      status: 'Unknown',
      reason: HostHealthyReasons.NoReportYet,
      message: 'The node agent has not reported yet',
    };
  const silent = ms(now) - ms(lastSeen);
  if (silent > unknownAfterMs)
    return {
      type,
      status: 'Unknown',
      reason: HostHealthyReasons.ReportsStopped,
      message: `No report from the node agent for ${duration(silent)} (last at ${new Date(ms(lastSeen)).toISOString()})`,
    };
  const failed = report.checks.filter((c) => c.status === 'failed');
  if (failed.length) return { type, status: 'False', reason: failed[0]!.reason, message: failed.map(line).join('\n') };
  return { type, status: 'True', reason: HostHealthyReasons.Healthy, message: '' };
}

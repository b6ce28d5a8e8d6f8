// One pass of every check, in a fixed order (the first failure names the condition's reason).
import type { CheckResult } from '../../common/agent-protocol.ts';
import type { AgentConfig } from '../config.ts';
import { CertificateCache, certificatesCheck } from './certificates.ts';
import { clockCheck } from './clock.ts';
import { diskCheck } from './disk.ts';
import type { CheckEnv } from './env.ts';
import { memoryCheck } from './memory.ts';
import { containerRuntimeCheck, kubeletCheck, ProcessTable } from './processes.ts';
import { SystemdCheck } from './systemd.ts';
import { UserChecks } from './user.ts';

export const builtinChecks = [
  'kubelet',
  'container-runtime',
  'disk',
  'memory',
  'clock',
  'certificates',
  'systemd-units',
] as const;

/** The caches that make repeated passes cheap; one per agent. */
export interface CheckState {
  procs: ProcessTable;
  certs: CertificateCache;
  systemd: SystemdCheck;
  user: UserChecks;
  /** Last measured clock skew (ms), from the provider's last answer. */
  skewMs: number | undefined;
}

export function newCheckState(env: Pick<CheckEnv, 'root'>): CheckState {
  return {
    procs: new ProcessTable(env),
    certs: new CertificateCache(),
    systemd: new SystemdCheck(),
    user: new UserChecks(),
    skewMs: undefined,
  };
}

type Cfg = Pick<AgentConfig, 'checks' | 'disabledChecks' | 'kubeletHealthzUrl'>;

export async function runChecks(env: CheckEnv, cfg: Cfg, s: CheckState): Promise<CheckResult[]> {
  s.procs.newPass();
  const on = (n: string) => !cfg.disabledChecks.includes(n);
  const pending: Array<Promise<CheckResult>> = [];
  if (on('kubelet')) pending.push(kubeletCheck(env, s.procs, cfg.kubeletHealthzUrl));
  if (on('container-runtime')) pending.push(Promise.resolve(containerRuntimeCheck(s.procs)));
  if (on('disk')) pending.push(Promise.resolve(diskCheck(env)));
  if (on('memory')) pending.push(Promise.resolve(memoryCheck(env)));
  if (on('clock')) pending.push(Promise.resolve(clockCheck(s.skewMs, env.thresholds)));
  if (on('certificates')) pending.push(Promise.resolve(certificatesCheck(env, s.certs)));
  if (on('systemd-units')) pending.push(s.systemd.run(env));
  for (const c of cfg.checks) pending.push(s.user.run(env, c));
  return Promise.all(pending);
}

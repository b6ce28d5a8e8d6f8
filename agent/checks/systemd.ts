// Failed systemd units (`systemctl --failed`), only where systemd is PID 1 (/run/systemd/system
// exists, as sd_booted() checks). systemctl costs a process and a D-Bus round trip, so its answer
// is reused for a minute.
import { existsSync } from 'node:fs';
import type { CheckResult } from '../../common/agent-protocol.ts';
import { at, result, type CheckEnv } from './env.ts';

export const systemdCommand = 'systemctl --failed --no-legend --plain --no-pager';

export const hasSystemd = (env: Pick<CheckEnv, 'root'>): boolean => existsSync(at(env, 'run/systemd/system'));

/** Unit names from `systemctl --failed --no-legend --plain` output. */
export function failedUnits(stdout: string): string[] {
  return stdout
    .split('\n')
    .map(
      (l) =>
        l
          .trim()
          .replace(/^[●*]\s*/, '')
          .split(/\s+/)[0] ?? '',
    )
    .filter((u) => u.length > 0);
}

export class SystemdCheck {
  readonly #maxAgeMs: number;
  #last: { at: number; result: CheckResult } | undefined;

  constructor(maxAgeMs = 60_000) {
    this.#maxAgeMs = maxAgeMs;
  }

  async run(env: CheckEnv): Promise<CheckResult> {
    const name = 'systemd-units';
    if (!hasSystemd(env)) return result(name, 'unknown', 'NoSystemd', 'systemd is not the init system here');
    const now = env.now();
    if (this.#last && now - this.#last.at < this.#maxAgeMs) return this.#last.result;
    const r = await env.run(systemdCommand, { timeoutMs: 5000 });
    let out: CheckResult;
    if (r.exitCode !== 0) {
      out = result(name, 'unknown', 'SystemctlFailed', `systemctl --failed: ${r.error ?? `exit ${r.exitCode}`}`);
    } else {
      const units = failedUnits(r.stdout);
      out = units.length
        ? result(name, 'failed', 'SystemdUnitsFailed', `failed units: ${units.slice(0, 10).join(', ')}`)
        : result(name, 'ok', 'NoFailedUnits');
    }
    this.#last = { at: now, result: out };
    return out;
  }
}

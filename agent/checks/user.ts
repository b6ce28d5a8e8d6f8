// User-defined checks (BareMetalMachine spec.healthChecks): `sh -c command`, exit 0 is healthy.
// Each runs at most once per its own interval; in between, its last verdict stands.
import type { CheckResult } from '../../common/agent-protocol.ts';
import type { UserCheck } from '../config.ts';
import { result, type CheckEnv } from './env.ts';

const lastLine = (s: string) => s.trim().split('\n').pop()!.slice(0, 200);

export class UserChecks {
  readonly #last = new Map<string, { at: number; result: CheckResult }>();

  async run(env: CheckEnv, c: UserCheck): Promise<CheckResult> {
    const name = `user:${c.name}`;
    const now = env.now();
    const last = this.#last.get(c.name);
    if (last && now - last.at < (c.intervalSeconds ?? 30) * 1000) return last.result;
    const timeoutMs = (c.timeoutSeconds ?? 10) * 1000;
    const r = await env.run(c.command, { timeoutMs });
    let out: CheckResult;
    if (r.error) out = result(name, 'unknown', 'UserCheckNotRun', `cannot run: ${r.error}`);
    else if (r.timedOut) out = result(name, 'failed', 'UserCheckTimedOut', `no answer within ${timeoutMs / 1000} s`);
    else if (r.exitCode === 0) out = result(name, 'ok', 'UserCheckPassed');
    else {
      const tail = lastLine(r.stderr) || lastLine(r.stdout);
      out = result(
        name,
        'failed',
        'UserCheckFailed',
        `check ${c.name} exited ${r.exitCode ?? 'on a signal'}${tail ? `: ${tail}` : ''}`,
      );
    }
    this.#last.set(c.name, { at: now, result: out });
    return out;
  }
}

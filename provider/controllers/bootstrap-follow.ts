// A bootstrap run's work (bootstrap-runs.ts): start the detached bootstrap (or attach to it, and
// check it at once) on one connection, follow it with short read-only checks (each a unit of work
// of the SSH pool: a connection kept from the last one, or a new one; none is held for the run;
// scheduled and bounded by the run registry), and once it is over, on the connection of the check
// that saw it: read the rest of its log, scrub its secrets and install the node agent.
import type { RenderResult } from '../../cloud-init/index.ts';
import { AuthFailed, HostKeyMismatch, type SshSession, type Target } from '../ssh/index.ts';
import { RunLog, type CheckAnswer } from './bootstrap-log.ts';
import type { RunResult, RunWork } from './bootstrap-runs.ts';
import { checkBootstrap, runOver, scrubBootstrap, startBootstrap, type BootstrapInput } from './host-ops.ts';
import type { Step } from './machine-steps.ts';

/**
 * Checks in a row a host may fail (unreachable, timed out; 2 s apart) before the run fails with the
 * error, as a dropped connection did: a host powered off is said within about 45 s.
 */
export const CHECK_FAILURES = 3;
/** Log reads (64 KiB each) on the finishing connection, at most: a log of 16 MiB. */
const READS_AFTER_END = 256;

/** Runs fn on a connection to the host, closed when the run is aborted. */
function onConn<T>(s: Step, target: Target, w: RunWork, fn: (conn: SshSession) => Promise<T>): Promise<T> {
  return s.d.ssh.withHost(target, async (conn) => {
    const close = () => conn.close();
    w.signal.addEventListener('abort', close, { once: true });
    try {
      return await fn(conn);
    } finally {
      w.signal.removeEventListener('abort', close);
    }
  });
}

interface Over {
  log: RunLog;
  started: boolean;
  steps: number;
  /** The last check left log unread: the next one comes soon. */
  soon: boolean;
}

/** The run is over: the rest of its log, then its secrets go and, after a success, the agent comes. */
async function finish(s: Step, conn: SshSession, a: CheckAnswer, o: Over): Promise<RunResult> {
  const instance = s.m.metadata.name;
  const log = o.log;
  for (let i = 0; !runOver(a, log) && i < READS_AFTER_END; i++) a = await checkBootstrap(conn, instance, log);
  const bootstrap = log.outcome(o.started, a);
  if (!bootstrap.sentinel) {
    // Failed for good (an exit code, no sentinel): its secrets go now. Interrupted: it runs again.
    if (bootstrap.exitCode !== undefined) await scrubBootstrap(conn, instance, { failed: true });
    return { bootstrap, steps: o.steps, agent: 'not-configured' };
  }
  await scrubBootstrap(conn, instance);
  const agent = s.d.agent ? await s.d.agent.installResult(conn, s.m, s.host!) : 'not-configured';
  return { bootstrap, steps: o.steps, agent };
}

/** A host that refuses us or shows another key will not answer the next check any better. */
const definitive = (err: unknown) => err instanceof AuthFailed || err instanceof HostKeyMismatch;

type Seen = { soon: boolean } | { result: RunResult };

/** One check on conn: the run goes on (soon: log left unread), or it is over and finished here. */
async function look(s: Step, conn: SshSession, over: Over, giveBack: () => void): Promise<Seen> {
  const a = await checkBootstrap(conn, s.m.metadata.name, over.log);
  if (a.rc === undefined && a.alive) return { soon: a.size > over.log.offset };
  giveBack(); // what follows is not a check: let other runs' checks go
  return { result: await finish(s, conn, a, over) };
}

/** Checks the run when due until it is over; then finishes it on the check's connection. */
async function follow(s: Step, target: Target, w: RunWork, over: Over): Promise<RunResult> {
  let failures = 0;
  let soon = over.soon;
  for (;;) {
    await w.due({ soon });
    try {
      const seen = await w.check((giveBack) => onConn(s, target, w, (conn) => look(s, conn, over, giveBack)));
      if ('result' in seen) return seen.result;
      failures = 0;
      soon = seen.soon;
    } catch (err) {
      if (w.signal.aborted || definitive(err) || ++failures >= CHECK_FAILURES) throw err;
      soon = true; // a host that went away is told within about three connect timeouts
    }
  }
}

/**
 * A string of its own: a step's description may be a slice of the whole bootstrap payload, and V8
 * keeps all of a sliced string's parent alive (measured: 1.3 KiB per run, hack/bench runs).
 */
const own = (x: string) => Buffer.from(x, 'utf8').toString('utf8');

/** The work of a run for the machine of step s: start, follow, finish. */
export function bootstrapWork(s: Step, r: RenderResult, target: Target): (w: RunWork) => Promise<RunResult> {
  const steps = r.steps.length;
  const index = new Map(r.steps.map((x, i) => [own(x.id), { index: i + 1, description: own(x.description) }]));
  // The script holds the cluster's secrets: dropped once started, not kept for the run's minutes.
  let input: BootstrapInput | undefined = { instance: s.m.metadata.name, script: r.script, files: r.files };
  return async (w) => {
    const log = new RunLog((id, event) => {
      const at = index.get(id);
      if (event === 'start' && at) w.progress({ id, index: at.index, total: steps, description: at.description });
    });
    const over: Over = { log, started: false, steps, soon: false };
    // The start is bounded with the checks: a new leader attaching to thousands of runs at once
    // opens no more connections than its checks would. A run found going or ended is checked on
    // the start's connection at once, and one that ended is finished there: one connection each.
    const seen = await w.check((giveBack) =>
      onConn(s, target, w, async (conn): Promise<Seen> => {
        const first = input!;
        input = undefined;
        over.started = (await startBootstrap(conn, first)).started;
        return over.started ? { soon: false } : look(s, conn, over, giveBack);
      }),
    );
    if ('result' in seen) return seen.result;
    over.soon = seen.soon;
    return follow(s, target, w, over);
  };
}

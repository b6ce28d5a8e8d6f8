// A detached bootstrap seen from the provider: the short command that starts it (or finds it going
// or ended), the read-only check that reports its state and the log since a byte offset, and the
// follower that turns checks into progress. Pure: shell text, parsers and state; host-ops.ts runs it.
//
// The run directory holds bootstrap.sh.new (uploaded), bootstrap.sh (running), log, pid, boot (the
// host's boot id at the start: a pid of an earlier boot is not the run), and rc (its exit code,
// written last). No connection stays open while it runs: each check is one short command, and the
// check reads rc before the log, so a log read after rc was seen is whole.
import { parseProgressLine } from '../../cloud-init/index.ts';
import { shQuote } from '../../common/quote.ts';
import { redactLine } from './redact.ts';

/** Written by CABPK's bootstrap (runcmd) when kubeadm succeeded; the contract's success signal. */
export const SENTINEL = '/run/cluster-api/bootstrap-success.complete';
/** Bytes of log one check reads at most; a check that read this many is followed by another soon. */
export const CHECK_MAX_BYTES = 64 * 1024;

/** Whether the run of $D is alive: its pid runs, and was started in this boot (pids are reused). */
const aliveFn = `capbm_alive() {
  [ -f "$D/pid" ] || return 1
  b=$(cat "$D/boot" 2>/dev/null || true)
  [ -z "$b" ] || [ "$b" = "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)" ] || return 1
  kill -0 "$(cat "$D/pid")" 2>/dev/null
}`;

/**
 * Starts the run unless one is going or ended, and returns at once. Prints one of
 * `CAPBM-RUN started|attached|ended|no-script`; no-script: nothing runs and no script was uploaded
 * (upload bootstrap.sh.new, then start again). The rename of the script is the gate: of two
 * managers starting at once, one renames it and starts; the other attaches.
 */
export function startScript(dir: string): string {
  return `set -u
D=${shQuote(dir)}
${aliveFn}
if [ -f "$D/rc" ]; then
  rm -f "$D/bootstrap.sh.new"
  echo "CAPBM-RUN ended"
elif capbm_alive; then
  rm -f "$D/bootstrap.sh.new"
  echo "CAPBM-RUN attached"
elif mv "$D/bootstrap.sh.new" "$D/bootstrap.sh" 2>/dev/null; then
  : > "$D/log"
  rm -f "$D/pid"
  cat /proc/sys/kernel/random/boot_id > "$D/boot" 2>/dev/null || : > "$D/boot"
  cd /
  setsid sh -c 'sh "$1/bootstrap.sh" > "$1/log" 2>&1; echo $? > "$1/rc.tmp"; mv "$1/rc.tmp" "$1/rc"' capbm "$D" </dev/null >/dev/null 2>&1 &
  echo $! > "$D/pid"
  echo "CAPBM-RUN started"
else
  echo "CAPBM-RUN no-script"
fi
`;
}

export type StartAnswer = 'started' | 'attached' | 'ended' | 'no-script';

export function parseStart(stdout: string): StartAnswer {
  const m = /^CAPBM-RUN (started|attached|ended|no-script)$/m.exec(stdout);
  if (!m) throw new Error(`the bootstrap start printed no CAPBM-RUN line: ${stdout.slice(0, 200)}`);
  return m[1] as StartAnswer;
}

/**
 * Read-only: one line `CAPBM-CHECK rc=N|none alive=yes|no sentinel=yes|no size=BYTES`, then at most
 * `max` bytes of the log from byte `offset`, in base64 (exact bytes, whatever the log holds).
 */
export function checkScript(dir: string, offset: number, max = CHECK_MAX_BYTES): string {
  return `D=${shQuote(dir)}
o=${Math.max(0, Math.floor(offset))}
n=${Math.max(1, Math.floor(max))}
${aliveFn}
rc=none; [ -f "$D/rc" ] && rc=$(tr -dc 0-9 < "$D/rc")
alive=no; [ "$rc" = none ] && capbm_alive && alive=yes
sentinel=no; [ -e ${shQuote(SENTINEL)} ] && sentinel=yes
size=$({ wc -c < "$D/log"; } 2>/dev/null | tr -dc 0-9)
echo "CAPBM-CHECK rc=\${rc:-none} alive=$alive sentinel=$sentinel size=\${size:-0}"
tail -c +$((o + 1)) "$D/log" 2>/dev/null | head -c "$n" | base64
true
`;
}

export interface CheckAnswer {
  /** The exit code; undefined while it runs, or when it died without one. */
  rc: number | undefined;
  alive: boolean;
  sentinel: boolean;
  /** The log's size in bytes when checked. */
  size: number;
  /** Log bytes from the offset asked for. */
  chunk: Buffer;
}

export function parseCheck(stdout: string): CheckAnswer {
  const at = stdout.indexOf('CAPBM-CHECK ');
  const nl = stdout.indexOf('\n', at);
  const head = at < 0 ? undefined : stdout.slice(at, nl < 0 ? undefined : nl);
  const m = head && /^CAPBM-CHECK rc=(\d+|none) alive=(yes|no) sentinel=(yes|no) size=(\d+)$/.exec(head);
  if (!m) throw new Error(`the bootstrap check printed no CAPBM-CHECK line: ${stdout.slice(0, 200)}`);
  return {
    rc: m[1] === 'none' ? undefined : Number(m[1]),
    alive: m[2] === 'yes',
    sentinel: m[3] === 'yes',
    size: Number(m[4]),
    chunk: nl < 0 ? Buffer.alloc(0) : Buffer.from(stdout.slice(nl + 1), 'base64'),
  };
}

export interface BootstrapOutcome {
  /** Whether this run started the bootstrap (false: it attached to a run started earlier). */
  started: boolean;
  /** The script's exit code; undefined when the run died without one (host rebooted). */
  exitCode: number | undefined;
  sentinel: boolean;
  /** The first failed step and its exit code, from the progress protocol. */
  failedStep?: { id: string; code: number };
  /** The last lines of output of the failed step (tokens and keys redacted). */
  tail: string[];
}

export type StepEvent = 'start' | 'done' | 'skip' | 'fail';

/**
 * Follows one run's log: the byte offset read up to (whole lines only), the first failed step and
 * the last 5 redacted output lines of each step not yet done (dropped when it is done).
 */
export class RunLog {
  offset = 0;
  failedStep: { id: string; code: number } | undefined;
  readonly #lines = new Map<string, string[]>();
  readonly #onStep: ((id: string, event: StepEvent) => void) | undefined;

  constructor(onStep?: (id: string, event: StepEvent) => void) {
    this.#onStep = onStep;
  }

  /**
   * Takes the bytes a check read from `offset`: every whole line, and the rest of a line longer
   * than `max` (so one long line never stalls the follower). Returns the bytes taken.
   */
  take(chunk: Buffer, max = CHECK_MAX_BYTES): number {
    const end = chunk.lastIndexOf(0x0a);
    const upto = end >= 0 ? end + 1 : chunk.length >= max ? chunk.length : 0;
    if (upto === 0) return 0;
    for (const line of chunk.subarray(0, upto).toString('utf8').split('\n')) if (line) this.#line(line);
    this.offset += upto;
    return upto;
  }

  #line(line: string): void {
    const e = parseProgressLine(line);
    if (e.type === 'step') {
      this.#onStep?.(e.id, e.event);
      if (e.event === 'fail' && !this.failedStep) this.failedStep = { id: e.id, code: e.code };
      if (e.event === 'done' || e.event === 'skip') this.#lines.delete(e.id);
    } else if (e.type === 'output') {
      const l = this.#lines.get(e.step) ?? [];
      l.push(redactLine(e.text));
      if (l.length > 5) l.shift();
      this.#lines.set(e.step, l);
    }
  }

  /** The outcome of a run that ended (rc) or died (no rc, not alive). */
  outcome(started: boolean, a: Pick<CheckAnswer, 'rc' | 'sentinel'>): BootstrapOutcome {
    const f = this.failedStep;
    return {
      started,
      exitCode: a.rc,
      sentinel: a.rc !== undefined && a.sentinel,
      ...(f ? { failedStep: f } : {}),
      tail: f ? (this.#lines.get(f.id) ?? []) : [],
    };
  }
}

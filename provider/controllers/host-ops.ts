// What the provider runs on a host over SSH: preflight, the bootstrap, the reset. Pure shell text
// plus thin functions that run it on a connection; the reconciler decides when.
//
// The bootstrap runs detached on the host (setsid, output to a log file, exit code to a file), and
// the provider checks on it with short commands (bootstrap-log.ts). A provider that dies or loses
// leadership mid-bootstrap leaves the run going; the next leader attaches to the same run instead
// of starting another, so no step of the bootstrap runs twice. Only a run that died with its host (no exit code, no process) is
// started again, and then the rendered script's step markers skip every step that finished.
import { shQuote } from '../../common/quote.ts';
import type { SshSession } from '../ssh/index.ts';
import { nodeCleanupScript } from './node-cleanup.ts';
import { parseMarkers, type RunMarkers } from './moved.ts';
import { judgePreflight, leftoverPaths, preflightScript, type PreflightResult } from './preflight.ts';
import { redactLine } from './redact.ts';
import {
  checkScript,
  parseCheck,
  parseStart,
  RunLog,
  SENTINEL,
  startScript,
  type BootstrapOutcome,
  type CheckAnswer,
  type StepEvent,
} from './bootstrap-log.ts';
import { uninstallScript } from '../preparation/scripts.ts';

/** Where the provider keeps its own files on a host; the reset removes all of it. */
export const STATE_DIR = '/var/lib/capbm';
export { SENTINEL, type BootstrapOutcome };

const runDir = (instance: string) => `${STATE_DIR}/${instance}/run`;

export async function runPreflight(conn: SshSession): Promise<PreflightResult> {
  const [out, sudo] = await Promise.all([
    conn.exec(preflightScript(), { privileged: false, what: 'the preflight script', timeoutMs: 60_000 }),
    conn.exec('id -u', { check: false, what: 'a privilege check (id -u as root)', timeoutMs: 30_000 }),
  ]);
  const result = judgePreflight(out.stdout, Math.round(Date.now() / 1000));
  if (sudo.exitCode !== 0 || sudo.stdout.trim() !== '0') {
    result.problems.push({
      reason: 'PrivilegeFailed',
      message: `Commands as root failed for ${conn.target.user} (${sudo.stderr.trim().slice(0, 200) || `uid ${sudo.stdout.trim()}`}); check the pool's ssh.privilege and the host's sudoers.`,
      quarantine: false,
    });
  }
  return result;
}

/** Prints the bootstrap run's markers of `instance` on one line (moved.ts parseMarkers). Read-only. */
export function markersScript(instance: string): string {
  return `D=${shQuote(runDir(instance))}
rc=none; [ -f "$D/rc" ] && rc=$(tr -dc 0-9 < "$D/rc")
started=no; [ -f "$D/pid" ] && started=yes
sentinel=no; [ -e ${shQuote(SENTINEL)} ] && sentinel=yes
echo "rc=\${rc:-none} started=$started sentinel=$sentinel"
`;
}

/** The bootstrap run markers of `instance` on the host (after a clusterctl move: moved.ts). */
export async function readMarkers(conn: SshSession, instance: string): Promise<RunMarkers> {
  const r = await conn.exec(markersScript(instance), { what: 'reading the bootstrap run markers', timeoutMs: 60_000 });
  return parseMarkers(r.stdout.trim().split('\n').at(-1) ?? '');
}

export interface BootstrapInput {
  instance: string;
  script: string;
  /** Absolute paths the bootstrap writes, kept on the host for the reset. */
  files: string[];
}

/**
 * Starts the bootstrap detached on the host, or attaches to the run going or ended there, and
 * returns at once (the run is then followed with checks: checkBootstrap). The script is uploaded
 * only when nothing is going or ended: a run that died with its host is started again, and its
 * step markers skip every step that finished.
 */
export async function startBootstrap(conn: SshSession, b: BootstrapInput): Promise<{ started: boolean }> {
  const d = runDir(b.instance);
  await conn.exec(`mkdir -p ${shQuote(d)} && chmod 700 ${shQuote(STATE_DIR)} ${shQuote(d)}`, {
    what: 'creating the run directory',
  });
  await conn.upload(`${d}/files`, b.files.join('\n') + '\n', { mode: 0o600 });
  const start = async () =>
    parseStart((await conn.exec(startScript(d), { what: 'starting the bootstrap', timeoutMs: 60_000 })).stdout);
  let a = await start();
  if (a === 'no-script') {
    await conn.upload(`${d}/bootstrap.sh.new`, b.script, { mode: 0o600 });
    a = await start();
  }
  if (a === 'no-script') throw new Error(`the bootstrap script uploaded to ${conn.target.host}:${d} is not there`);
  return { started: a === 'started' };
}

/** One check of the run: its state, and the log since log.offset fed to the follower. Read-only. */
export async function checkBootstrap(conn: SshSession, instance: string, log: RunLog): Promise<CheckAnswer> {
  const r = await conn.exec(checkScript(runDir(instance), log.offset), {
    what: 'checking the bootstrap',
    timeoutMs: 60_000,
  });
  const a = parseCheck(r.stdout);
  log.take(a.chunk);
  return a;
}

/** Whether a checked run is over: ended (rc) or died (not alive), and its whole log read. */
export const runOver = (a: CheckAnswer, log: RunLog): boolean =>
  (a.rc !== undefined || !a.alive) && log.offset >= a.size;

/**
 * Starts or attaches, then follows the run on this one connection until it ends (tests and tools;
 * the manager follows without holding a connection: bootstrap-follow.ts).
 */
export async function runBootstrap(
  conn: SshSession,
  b: BootstrapInput & { onStep?: (id: string, event: StepEvent) => void },
  o: { everyMs?: number; limitMs?: number } = {},
): Promise<BootstrapOutcome> {
  const { started } = await startBootstrap(conn, b);
  const log = new RunLog(b.onStep);
  const limitMs = o.limitMs ?? 30 * 60_000;
  const until = Date.now() + limitMs;
  for (;;) {
    const a = await checkBootstrap(conn, b.instance, log);
    if (runOver(a, log)) return log.outcome(started, a);
    if (a.rc !== undefined || !a.alive) continue; // over: read the rest of the log at once
    if (Date.now() > until) throw new Error(`the bootstrap on ${conn.target.host} did not end within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, o.everyMs ?? 1000));
  }
}

/**
 * After the bootstrap ended, its script and log hold secrets (CA keys, a bootstrap token) that the
 * host no longer needs. After a failure, so do the files it wrote (a join configuration with its
 * token, a control plane's CA keys): the host is not reused in place, and its secrets are not left
 * on it until the machine is deleted. The list of files stays for the reset.
 */
export async function scrubBootstrap(conn: SshSession, instance: string, o: { failed?: boolean } = {}): Promise<void> {
  const d = runDir(instance);
  const written = o.failed
    ? `\n[ -f ${shQuote(`${d}/files`)} ] && while IFS= read -r f; do [ -n "$f" ] && rm -f -- "$f"; done < ${shQuote(`${d}/files`)}`
    : '';
  await conn.exec(`rm -f ${shQuote(`${d}/bootstrap.sh`)} ${shQuote(`${d}/log`)}${written}\ntrue`, {
    what: o.failed ? 'removing the failed bootstrap and its secrets' : 'removing the used bootstrap script',
  });
}

const LEDGER = `${STATE_DIR}/ledger`;

/**
 * Undoes what the bootstrap's users and groups step recorded (cloud-init/users.ts): users and
 * groups it created, sudo rules and authorized keys it added, files it created, passwords of
 * existing users it locked. What cannot be
 * undone is kept in $left (and in the ledger again), so the host counts as not clean.
 */
const undoLedger = `left=
L=${shQuote(LEDGER)}
capbm_without() { # file awk-program: rewrite in place, keeping mode and owner
  [ -f "$1" ] || return 0
  awk -v u="$3" -v k="$4" "$2" "$1" > "$1.capbm-reset" && cat "$1.capbm-reset" > "$1"
  rm -f "$1.capbm-reset"
}
if [ -f "$L" ]; then
  while read -r kind a b; do
    case "$kind" in
      user) userdel -r -f "$a" >/dev/null 2>&1; getent passwd "$a" >/dev/null && left="$left
user $a" ;;
      group) getent group "$a" >/dev/null && { groupdel "$a" >/dev/null 2>&1 || left="$left
group $a"; } ;;
      file) rm -f -- "$a" ;;
      lock) usermod -U "$a" >/dev/null 2>&1 ;;
      sudoers) capbm_without "$a" '$0 != "# User rules for " u && index($0, u " ") != 1' "$b" ;;
      key) h=$(getent passwd "$a" | cut -d: -f6)
        [ -n "$h" ] && capbm_without "$h/.ssh/authorized_keys" '$0 != k' "" "$(printf %s "$b" | base64 -d)" ;;
    esac
  done < "$L"
fi
left=$(printf '%s' "$left" | sed '/^$/d')`;

/**
 * The reset: stop what the bootstrap started (`kubeadm reset -f`), remove every file it wrote,
 * the sentinel, the provider's state (step markers, run logs), then look for leftovers exactly as
 * the preflight does. Prints `leftover=<path>` for anything that survived.
 */
export function resetScript(extra = ''): string {
  const paths = leftoverPaths.join(' ');
  // A bootstrap may still run (its machine was deleted mid-way): stop its whole process group
  // first (setsid made it a group leader), or its kubeadm could finish after the reset.
  return `set -u
for p in ${shQuote(STATE_DIR)}/*/run/pid; do
  [ -f "$p" ] || continue
  [ -f "\${p%/pid}/rc" ] && continue # ended: its pid may belong to another process by now
  pg=$(cat "$p" 2>/dev/null || true)
  case "$pg" in ''|*[!0-9]*) continue ;; esac
  kill -KILL -- "-$pg" 2>/dev/null || true
done
if command -v kubeadm >/dev/null 2>&1; then
  kubeadm reset -f >/tmp/capbm-reset.log 2>&1 || { echo "kubeadm_reset_failed=$(tail -n 1 /tmp/capbm-reset.log)"; }
  rm -f /tmp/capbm-reset.log
fi
${nodeCleanupScript}
${extra}
${uninstallScript}
for d in ${shQuote(STATE_DIR)}/*/run; do
  [ -f "$d/files" ] || continue
  while IFS= read -r f; do [ -n "$f" ] && rm -f -- "$f"; done < "$d/files"
done
${undoLedger}
rm -rf ${shQuote(STATE_DIR)} /run/cluster-api /etc/kubernetes /var/lib/kubelet /var/lib/etcd
if [ -n "$left" ]; then
  mkdir -p ${shQuote(STATE_DIR)} && printf '%s\n' "$left" > ${shQuote(LEDGER)}
  printf '%s\n' "$left" | while read -r kind a _; do echo "leftover=$kind:$a"; done
fi
for p in ${paths}; do [ -e "$p" ] && echo "leftover=$p"; done
# A kubelet counts when configured: an OS image may enable one that waits for kubeadm.
pgrep -x kubelet >/dev/null 2>&1 && [ -e /var/lib/kubelet/config.yaml ] && echo "leftover=process:kubelet"
true
`;
}

export interface ResetReport {
  clean: boolean;
  leftovers: string[];
  notes: string[];
}

export async function runReset(conn: SshSession, extra = ''): Promise<ResetReport> {
  const r = await conn.exec(resetScript(extra), { what: 'the reset', timeoutMs: 10 * 60_000 });
  const lines = r.stdout.split('\n');
  const leftovers = lines.filter((l) => l.startsWith('leftover=')).map((l) => l.slice('leftover='.length));
  const notes = lines.filter((l) => l.startsWith('kubeadm_reset_failed=')).map(redactLine);
  return { clean: leftovers.length === 0, leftovers, notes };
}

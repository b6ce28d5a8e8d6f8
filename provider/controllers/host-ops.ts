// What the provider runs on a host over SSH: preflight, the bootstrap, the reset. Pure shell text
// plus thin functions that run it on a connection; the reconciler decides when.
//
// The bootstrap runs detached on the host (setsid, output to a log file, exit code to a file), and
// the provider follows the log. A provider that dies or loses leadership mid-bootstrap leaves the
// run going; the next leader attaches to the same run instead of starting another, so no step of
// the bootstrap runs twice. Only a run that died with its host (no exit code, no process) is
// started again, and then the rendered script's step markers skip every step that finished.
import { parseProgressLine } from '../../cloud-init/index.ts';
import { shQuote } from '../../common/quote.ts';
import type { SshSession } from '../ssh/index.ts';
import { nodeCleanupScript } from './node-cleanup.ts';
import { parseMarkers, type RunMarkers } from './moved.ts';
import { judgePreflight, leftoverPaths, preflightScript, type PreflightResult } from './preflight.ts';
import { redactLine } from './redact.ts';
import { uninstallScript } from '../preparation/scripts.ts';

/** Where the provider keeps its own files on a host; the reset removes all of it. */
export const STATE_DIR = '/var/lib/capbm';
/** Written by CABPK's bootstrap (runcmd) when kubeadm succeeded; the contract's success signal. */
export const SENTINEL = '/run/cluster-api/bootstrap-success.complete';

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

/** Starts the run unless one is going or finished, then follows its log until it ends. */
function runScript(instance: string): string {
  const d = shQuote(runDir(instance));
  return `set -u
D=${d}
if [ ! -f "$D/rc" ] && ! { [ -f "$D/pid" ] && kill -0 "$(cat "$D/pid")" 2>/dev/null; }; then
  [ -f "$D/bootstrap.sh.new" ] || { echo "CAPBM-RUN no-script"; exit 3; }
  mv "$D/bootstrap.sh.new" "$D/bootstrap.sh"
  : > "$D/log"
  cd /
  setsid sh -c 'sh "$1/bootstrap.sh" > "$1/log" 2>&1; echo $? > "$1/rc.tmp"; mv "$1/rc.tmp" "$1/rc"' capbm "$D" </dev/null >/dev/null 2>&1 &
  echo $! > "$D/pid"
  echo "CAPBM-RUN started"
else
  rm -f "$D/bootstrap.sh.new"
  echo "CAPBM-RUN attached"
fi
tail -n +1 -f --pid="$(cat "$D/pid")" "$D/log"
echo "CAPBM-RUN rc=$(cat "$D/rc" 2>/dev/null || echo none)"
[ -e ${shQuote(SENTINEL)} ] && echo "CAPBM-RUN sentinel"
true
`;
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

export interface BootstrapOutcome {
  /** Whether this call started the run (false: it attached to a run started earlier). */
  started: boolean;
  /** The script's exit code; undefined when the run died without one (host rebooted). */
  exitCode: number | undefined;
  sentinel: boolean;
  /** The first failed step and its exit code, from the progress protocol. */
  failedStep?: { id: string; code: number };
  /** The last lines of output of the failed step (tokens and keys redacted). */
  tail: string[];
}

export interface BootstrapInput {
  instance: string;
  script: string;
  /** Absolute paths the bootstrap writes, kept on the host for the reset. */
  files: string[];
  onStep?: (id: string, event: 'start' | 'done' | 'skip' | 'fail') => void;
}

/** Uploads the rendered bootstrap (unless a run is already going) and runs or attaches to it. */
export async function runBootstrap(conn: SshSession, b: BootstrapInput): Promise<BootstrapOutcome> {
  const d = runDir(b.instance);
  await conn.exec(`mkdir -p ${shQuote(d)} && chmod 700 ${shQuote(STATE_DIR)} ${shQuote(d)}`, {
    what: 'creating the run directory',
  });
  await conn.upload(`${d}/files`, b.files.join('\n') + '\n', { mode: 0o600 });
  const probe = await conn.exec(`test -f ${shQuote(`${d}/pid`)} -o -f ${shQuote(`${d}/rc`)}`, { check: false });
  if (probe.exitCode !== 0) await conn.upload(`${d}/bootstrap.sh.new`, b.script, { mode: 0o600 });
  const out: BootstrapOutcome = { started: false, exitCode: undefined, sentinel: false, tail: [] };
  const lastLines = new Map<string, string[]>();
  const onProgress = (line: string) => {
    const e = parseProgressLine(line);
    if (e.type === 'step') {
      b.onStep?.(e.id, e.event);
      if (e.event === 'fail' && !out.failedStep) out.failedStep = { id: e.id, code: e.code };
    } else if (e.type === 'output') {
      const l = lastLines.get(e.step) ?? [];
      l.push(redactLine(e.text));
      if (l.length > 5) l.shift();
      lastLines.set(e.step, l);
    }
  };
  await conn.exec(runScript(b.instance), {
    what: 'the bootstrap',
    onLine: (line, stream) => {
      if (stream !== 'stdout') return;
      if (line === 'CAPBM-RUN started') out.started = true;
      else if (line === 'CAPBM-RUN sentinel') out.sentinel = true;
      else if (line.startsWith('CAPBM-RUN rc=')) {
        const v = line.slice('CAPBM-RUN rc='.length);
        out.exitCode = v === 'none' ? undefined : Number(v);
      } else onProgress(line);
    },
  });
  if (out.failedStep) out.tail = lastLines.get(out.failedStep.id) ?? [];
  return out;
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

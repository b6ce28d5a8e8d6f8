// Child processes for tests and the lab: started with their output in a log file, recorded in a
// state file, and stopped by PID, also when the test that started them fails or is killed.
// A process left behind by a killed run is found through the state files and stopped by
// cleanupStale() at the next start.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from './paths.ts';

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Where stdout and stderr go. */
  logFile: string;
  /** Keep running after this Node process exits (the lab); stopped later by PID. */
  persistent?: boolean;
}

export interface ManagedProcess {
  readonly name: string;
  /** How it was started: the same spec starts it again (same arguments, ports, data). */
  readonly spec: ProcessSpec;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<number | string>;
  running(): boolean;
  /** SIGTERM, then SIGKILL after graceMs. Resolves when it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once, as a crash would. */
  kill(): Promise<void>;
}

const stateDir = join(repoRoot, '.cache', 'run');
const live = new Set<ManagedProcess>();

/** Whether a process with this PID exists. */
export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function recordFile(owner: number): string {
  return join(stateDir, `${owner}.json`);
}

function record(): void {
  mkdirSync(stateDir, { recursive: true });
  const procs = [...live].filter((p) => p.running()).map((p) => ({ name: p.name, pid: p.pid }));
  if (procs.length === 0) rmSync(recordFile(process.pid), { force: true });
  else writeFileSync(recordFile(process.pid), JSON.stringify(procs));
}

function recordedPids(file: string): number[] {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as Array<{ pid: number }>).map((p) => p.pid);
  } catch {
    return []; // a torn state file: nothing more to learn from it
  }
}

/** Stops processes recorded by owners that no longer run (a test run that was killed). */
export function cleanupStale(): void {
  if (!existsSync(stateDir)) return;
  for (const f of readdirSync(stateDir)) {
    const owner = Number(f.replace(/\.json$/, ''));
    if (!Number.isInteger(owner) || alive(owner)) continue;
    for (const pid of recordedPids(join(stateDir, f))) if (alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(join(stateDir, f), { force: true });
  }
}

let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // Synchronous: 'exit' handlers cannot wait. Persistent (lab) processes are not in `live`.
  process.on('exit', () => {
    for (const p of live) if (p.running()) process.kill(p.pid, 'SIGKILL');
    rmSync(recordFile(process.pid), { force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => process.exit(130));
  }
}

export function startProcess(spec: ProcessSpec): ManagedProcess {
  const fd = openSync(spec.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(spec.command, spec.args, {
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', fd, fd],
      detached: !!spec.persistent,
    });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`could not start ${spec.name} (${spec.command}): see ${spec.logFile}`);
  const pid = child.pid;
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      live.delete(proc);
      if (!spec.persistent) record();
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', () => {
      done = true;
      resolve('spawn-error');
    });
  });
  const stop = async (graceMs = 5000) => {
    if (done) return;
    process.kill(pid, 'SIGTERM');
    const killed = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!killed && !done) process.kill(pid, 'SIGKILL');
    await exited;
  };
  const proc: ManagedProcess = {
    name: spec.name,
    spec,
    pid,
    logFile: spec.logFile,
    exited,
    running: () => !done,
    stop,
    kill: async () => {
      if (!done) process.kill(pid, 'SIGKILL');
      await exited;
    },
  };
  if (spec.persistent) {
    child.unref();
  } else {
    hookExit();
    live.add(proc);
    record();
  }
  return proc;
}

/** Stops a process this Node process did not start (the lab's, from its state file). */
export async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  while (alive(pid)) await sleep(20);
}

/** A TCP port on the address (default 127.0.0.1) that was free a moment ago. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Thrown from a waitFor callback to stop waiting at once (the thing waited for can no longer happen). */
export class GiveUp extends Error {
  override name = 'GiveUp';
}

/** Polls fn until it returns a value other than undefined, or fails with what it last saw. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(everyMs);
  }
}

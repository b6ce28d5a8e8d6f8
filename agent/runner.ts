// Runs a shell command for a check: `sh -c`, in its own process group so a timeout kills the
// whole tree, output capped, every outcome settled once.
import { spawn } from 'node:child_process';

export interface RunResult {
  /** null when killed by a signal or the timeout. */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Set when the command could not be started at all. */
  error?: string;
}

export type CommandRunner = (command: string, o: { timeoutMs: number }) => Promise<RunResult>;

const keep = 4096;

/** The real runner. */
export const runCommand: CommandRunner = (command, { timeoutMs }) =>
  new Promise((resolve) => {
    const out = { stdout: '', stderr: '' };
    let timedOut = false;
    let settled = false;
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const settle = (r: RunResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => (out.stdout = (out.stdout + c.toString('utf8')).slice(-keep)));
    child.stderr.on('data', (c: Buffer) => (out.stderr = (out.stderr + c.toString('utf8')).slice(-keep)));
    child.on('error', (err) => settle({ exitCode: null, ...out, timedOut, error: err.message }));
    child.on('close', (code) => settle({ exitCode: timedOut ? null : code, ...out, timedOut }));
  });

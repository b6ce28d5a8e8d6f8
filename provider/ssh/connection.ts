// One SSH connection to a host, on ssh2: TCP with Nagle off (ssh2 otherwise stalls ~40 ms per
// exchange), host-key verification before authentication completes, key auth, keepalives that
// turn a dead link into an error instead of a hang, an optional jump host, and every failure
// settled exactly once as a typed error (ssh2 can emit `error` twice for one failed attempt).
import { connect as tcpConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import PQueue from 'p-queue';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import {
  AuthFailed,
  CommandFailed,
  HostKeyMismatch,
  HostUnreachable,
  SessionRefused,
  SshError,
  Timeout,
  type SshErrorContext,
} from './errors.ts';
import { verifyHostKey } from './hostkey.ts';
import { SudoGate, sudoWithPassword } from './sudo.ts';
import { upload, type UploadOptions } from './upload.ts';
import type { Endpoint, ExecOptions, ExecResult, Input, Privilege, SshSession, Target } from './target.ts';

export type { Credentials, Endpoint, ExecOptions, ExecResult, Privilege, SshSession, Target } from './target.ts';
import { shQuote } from '../../common/quote.ts';

const keep = 64 * 1024;
/** Tries to open a session before SessionRefused (backoff 100 ms, 200 ms, ... 1.6 s). */
const sessionAttempts = 6;

/** One command on its way: what #open and #attach need to finish it exactly once. */
interface Run {
  command: string;
  o: ExecOptions;
  /** sudo-password: the password, sent only when sudo asks for it (sudo.ts). */
  sudoPassword?: string;
  settle: (err: Error | undefined, r?: ExecResult) => void;
  setTimer: (t: NodeJS.Timeout) => void;
}

function ctxOf(e: Endpoint): SshErrorContext {
  return { host: e.host, port: e.port ?? 22, user: e.user };
}

function tcp(e: Endpoint, timeoutMs: number): Promise<Socket> {
  const ctx = ctxOf(e);
  return new Promise((resolve, reject) => {
    const sock = tcpConnect({ host: e.host, port: ctx.port });
    sock.setNoDelay(true);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Timeout(ctx, 'the TCP connection', timeoutMs));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new HostUnreachable(ctx, err.code ?? err.message));
    });
  });
}

function classify(ctx: SshErrorContext, err: Error & { level?: string }, timeoutMs: number): SshError {
  if (err instanceof SshError) return err;
  if (err.level === 'client-authentication') return new AuthFailed(ctx);
  if (err.level === 'client-timeout') return new Timeout(ctx, 'the SSH handshake', timeoutMs);
  const code = (err as NodeJS.ErrnoException).code;
  return new HostUnreachable(ctx, code ?? err.message);
}

export class SshConnection implements SshSession {
  readonly target: Target;
  /** The host key seen, and whether this was its first use (trust-on-first-use: record it). */
  readonly hostKeyFingerprint: string;
  readonly hostKeyFirstUse: boolean;
  readonly #client: ssh2.Client;
  readonly #jump: SshConnection | undefined;
  #lost: SshError | undefined;
  #opened = 0;
  #closed = false;
  readonly #onLost = new Set<(e: SshError) => void>();
  readonly #sessions: PQueue;

  constructor(target: Target, h: Handshake, jump?: SshConnection) {
    this.target = target;
    this.#client = h.client;
    this.hostKeyFingerprint = h.fingerprint;
    this.hostKeyFirstUse = h.firstUse;
    this.#jump = jump;
    this.#sessions = new PQueue({ concurrency: target.maxSessions ?? 8 });
    const client = h.client;
    const lost = (why: string) => {
      if (this.#lost) return;
      this.#lost = new HostUnreachable(ctxOf(target), why);
      for (const f of this.#onLost) f(this.#lost);
    };
    client.on('error', (err: Error) => lost(`connection lost: ${err.message}`));
    client.on('close', () => lost('connection closed'));
  }

  get jump(): { hostKeyFingerprint: string; hostKeyFirstUse: boolean } | undefined {
    const j = this.#jump;
    return j ? { hostKeyFingerprint: j.hostKeyFingerprint, hostKeyFirstUse: j.hostKeyFirstUse } : undefined;
  }

  /** Whether the connection is gone (closed, reset, or its keepalives unanswered). */
  get lost(): boolean {
    return this.#closed || this.#lost !== undefined;
  }

  /** Sessions opened on this connection so far: none means no command reached the host. */
  get sessionsOpened(): number {
    return this.#opened;
  }

  get privilege(): Privilege {
    return this.target.privilege ?? (this.target.user === 'root' ? 'root' : 'sudo');
  }

  /** Wraps a command for the target's privilege; returns the command and, for sudo-password, the password. */
  #privileged(command: string, privileged: boolean): { command: string; sudoPassword?: string } {
    if (!privileged || this.privilege === 'root') return { command };
    if (this.privilege === 'sudo') return { command: `sudo -n -- sh -c ${shQuote(command)}` };
    const pw = this.target.credentials.sudoPassword;
    if (!pw) throw new AuthFailed(ctxOf(this.target), 'privilege sudo-password needs a sudo password in the Secret');
    return { command: sudoWithPassword(command), sudoPassword: pw };
  }

  /** Runs a command; at most maxSessions run at once on this connection, the rest wait. */
  exec(command: string, o: ExecOptions = {}): Promise<ExecResult> {
    return this.#sessions.add(() => this.#exec(command, o));
  }

  #exec(command: string, o: ExecOptions): Promise<ExecResult> {
    if (this.#lost) return Promise.reject(this.#lost);
    const { command: cmd, sudoPassword } = this.#privileged(command, o.privileged ?? true);
    return new Promise<ExecResult>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (err: Error | undefined, r?: ExecResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#onLost.delete(onLost);
        if (err) reject(err);
        else resolve(r!);
      };
      const onLost = (e: SshError) => settle(e);
      this.#onLost.add(onLost);
      const run: Run = { command, o, ...(sudoPassword ? { sudoPassword } : {}), settle, setTimer: (t) => (timer = t) };
      this.#open(cmd, run, 1);
    });
  }

  /**
   * Opens a session for the command. A refused channel (sshd's MaxSessions, a loaded server) is
   * tried again with backoff: the host is up, and the next try usually gets a session.
   */
  #open(cmd: string, run: Run, attempt: number): void {
    this.#client.exec(cmd, (err, stream: ClientChannel) => {
      if (!err) {
        this.#opened++;
        return this.#attach(stream, run);
      }
      if (this.#lost) return run.settle(this.#lost);
      if (attempt >= sessionAttempts) {
        return run.settle(new SessionRefused(ctxOf(this.target), err.message, attempt, { cause: err }));
      }
      setTimeout(() => this.#open(cmd, run, attempt + 1), 50 * 2 ** attempt).unref();
    });
  }

  #attach(stream: ClientChannel, { command, o, sudoPassword, settle, setTimer }: Run): void {
    const ctx = ctxOf(this.target);
    const what = o.what ?? `command "${command.slice(0, 60)}"`;
    const out = { stdout: '', stderr: '' };
    const partial = { stdout: '', stderr: '' };
    const input = () => {
      const stdin = o.stdin ?? '';
      if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) return stream.end(stdin);
      stdin.once('error', (e: Error) => {
        stream.close();
        settle(new Error(`reading the input of ${what}: ${e.message}`, { cause: e }));
      });
      stdin.pipe(stream);
    };
    const gate = sudoPassword
      ? new SudoGate(sudoPassword, {
          write: (d) => stream.write(d),
          open: input,
          refused: () => {
            stream.close();
            settle(new AuthFailed(ctx, `sudo refused the password in the pool's Secret ("sudo-password") for ${what}`));
          },
        })
      : undefined;
    const take = (which: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = which === 'stderr' && gate ? gate.stderr(chunk.toString('utf8')) : chunk.toString('utf8');
      out[which] = (out[which] + text).slice(-keep);
      if (!o.onLine) return;
      const lines = (partial[which] + text).split('\n');
      partial[which] = lines.pop() ?? '';
      for (const l of lines) o.onLine(l, which);
    };
    stream.on('data', take('stdout'));
    stream.stderr.on('data', take('stderr'));
    if (o.timeoutMs) {
      setTimer(
        setTimeout(() => {
          stream.signal('KILL');
          stream.close();
          settle(new Timeout(ctx, what, o.timeoutMs!));
        }, o.timeoutMs),
      );
    }
    stream.on('close', (code: number | null, signal?: string) => {
      for (const which of ['stdout', 'stderr'] as const)
        if (partial[which] && o.onLine) o.onLine(partial[which], which);
      if (code === undefined || (code === null && !signal)) {
        return settle(this.#lost ?? new HostUnreachable(ctx, `the session of ${what} ended without an exit status`));
      }
      const r: ExecResult = { exitCode: code, signal, stdout: out.stdout, stderr: out.stderr };
      if ((o.check ?? true) && (code !== 0 || signal)) {
        return settle(
          new CommandFailed(ctx, what, {
            exitCode: code,
            signal,
            stderrTail: out.stderr.trim().split('\n').slice(-5).join(' | ').slice(-500),
          }),
        );
      }
      settle(undefined, r);
    });
    if (!gate) input(); // with a gate, the input goes once the command runs
  }

  /** Writes content to path atomically (see upload.ts). */
  upload(path: string, content: Input, o: UploadOptions = {}): Promise<void> {
    return upload(this, path, content, o);
  }

  /** A TCP stream to host:port opened from this host (this host as a jump host). */
  forwardOut(e: Endpoint): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      this.#client.forwardOut('127.0.0.1', 0, e.host, e.port ?? 22, (err, stream) => {
        if (err) reject(new HostUnreachable(ctxOf(e), `through jump host ${this.target.host}: ${err.message}`));
        else resolve(stream);
      });
    });
  }

  close(): void {
    this.#closed = true;
    this.#onLost.clear();
    this.#client.end();
    this.#jump?.close();
  }
}

interface Handshake {
  client: ssh2.Client;
  fingerprint: string;
  firstUse: boolean;
}

function handshake(
  e: Endpoint,
  sock: Duplex,
  o: Pick<Target, 'keepaliveIntervalMs' | 'keepaliveCountMax'>,
  timeoutMs: number,
): Promise<Handshake> {
  const ctx = ctxOf(e);
  const client = new ssh2.Client();
  return new Promise<Handshake>((resolve, reject) => {
    let settled = false;
    let verdict: ReturnType<typeof verifyHostKey> | undefined;
    const fail = (err: Error & { level?: string }) => {
      if (settled) return;
      settled = true;
      client.end();
      sock.destroy();
      if (verdict && !verdict.ok) return reject(new HostKeyMismatch(ctx, verdict.expected, verdict.fingerprint));
      reject(classify(ctx, err, timeoutMs));
    };
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      resolve({ client, fingerprint: verdict!.fingerprint, firstUse: verdict!.ok && verdict!.firstUse });
    });
    client.on('error', fail);
    client.once('close', () => fail(new HostUnreachable(ctx, 'the connection closed before the handshake finished')));
    try {
      client.connect({
        sock,
        username: e.user,
        privateKey: e.credentials.privateKey,
        passphrase: e.credentials.passphrase,
        readyTimeout: timeoutMs,
        keepaliveInterval: o.keepaliveIntervalMs ?? 5000,
        keepaliveCountMax: o.keepaliveCountMax ?? 3,
        hostVerifier: (key: Buffer) => {
          verdict = verifyHostKey(e.hostKey, e.host, ctx.port, key);
          return verdict.ok;
        },
      });
    } catch (err) {
      // ssh2 throws here when the private key cannot be parsed (corrupt, or a wrong passphrase).
      fail(
        new AuthFailed(
          ctx,
          `the private key in the pool's Secret cannot be read (${(err as Error).message.replace(/\s+/g, ' ').slice(0, 80)}); check the key and its passphrase`,
        ),
      );
    }
  });
}

/** Connects (through the jump host when there is one) and verifies the host key before auth. */
export async function connect(t: Target): Promise<SshConnection> {
  const timeoutMs = t.connectTimeoutMs ?? 10_000;
  let jump: SshConnection | undefined;
  let sock: Duplex;
  if (t.jump) {
    jump = await connect({
      ...t.jump,
      connectTimeoutMs: timeoutMs,
      keepaliveIntervalMs: t.keepaliveIntervalMs,
      keepaliveCountMax: t.keepaliveCountMax,
      privilege: 'root',
    });
    sock = await jump.forwardOut(t).catch((err: Error) => {
      jump?.close();
      throw err;
    });
  } else {
    sock = await tcp(t, timeoutMs);
  }
  try {
    const h = await handshake(t, sock, t, timeoutMs);
    return new SshConnection(t, h, jump);
  } catch (err) {
    jump?.close();
    throw err;
  }
}

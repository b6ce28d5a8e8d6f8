// Typed SSH failures a user can act on. Messages name the host and say what to do; they never hold
// a key, a passphrase, a sudo password or command input.

export interface SshErrorContext {
  host: string;
  port: number;
  user?: string;
}

/** Every way SSH work fails, closed: a switch over it is checked by the compiler. */
export type SshReason =
  'AuthFailed' | 'HostKeyMismatch' | 'HostUnreachable' | 'Timeout' | 'SessionRefused' | 'CommandFailed';

export abstract class SshError extends Error {
  override name = 'SshError';
  readonly host: string;
  readonly port: number;
  /** Machine-readable reason for conditions, events and metrics. */
  abstract readonly reason: SshReason;
  constructor(ctx: SshErrorContext, message: string, options?: { cause?: unknown }) {
    super(`${ctx.user ? `${ctx.user}@` : ''}${ctx.host}:${ctx.port}: ${message}`, options);
    this.host = ctx.host;
    this.port = ctx.port;
  }
}

export class AuthFailed extends SshError {
  override name = 'AuthFailed';
  override readonly reason = 'AuthFailed';
  constructor(ctx: SshErrorContext, detail?: string) {
    super(
      ctx,
      detail ??
        `the host refused the SSH key for user ${ctx.user ?? '?'}: put the public key in that user's ~/.ssh/authorized_keys, or fix the key (and passphrase) in the pool's Secret`,
    );
  }
}

export class HostKeyMismatch extends SshError {
  override name = 'HostKeyMismatch';
  override readonly reason = 'HostKeyMismatch';
  readonly expected: string[];
  readonly seen: string;
  constructor(ctx: SshErrorContext, expected: string[], seen: string) {
    super(
      ctx,
      `host key ${seen} is not the expected ${expected.join(' or ') || '(none recorded)'}: the host was reinstalled or someone is in the middle. Verify the host, then update the pool's host-key policy; nothing was run`,
    );
    this.expected = expected;
    this.seen = seen;
  }
}

export class HostUnreachable extends SshError {
  override name = 'HostUnreachable';
  override readonly reason = 'HostUnreachable';
  constructor(ctx: SshErrorContext, why: string, options?: { cause?: unknown }) {
    super(
      ctx,
      `cannot reach the host (${why}): check that it is powered on, its address, and that port ${ctx.port} is open from the management cluster`,
      options,
    );
  }
}

/**
 * The host is up and the connection works, but sshd refused to open another session on it
 * (its MaxSessions, or a server under load). Retried within the connection's session cap before
 * this is thrown; it is neither "unreachable" nor a reason to check the power.
 */
export class SessionRefused extends SshError {
  override name = 'SessionRefused';
  override readonly reason = 'SessionRefused';
  constructor(ctx: SshErrorContext, detail: string, attempts: number, options?: { cause?: unknown }) {
    super(
      ctx,
      `the SSH server refused a new session ${attempts} times (${detail}): it allows fewer sessions per connection than the provider opens (sshd MaxSessions, default 10), or it is overloaded; the provider retries; raise MaxSessions on the host if this persists`,
      options,
    );
  }
}

export class Timeout extends SshError {
  override name = 'Timeout';
  override readonly reason = 'Timeout';
  constructor(ctx: SshErrorContext, what: string, ms: number) {
    super(
      ctx,
      `${what} took longer than ${ms} ms: the host or network is slow or hung; check the host, or raise the timeout`,
    );
  }
}

export class CommandFailed extends SshError {
  override name = 'CommandFailed';
  override readonly reason = 'CommandFailed';
  readonly exitCode: number | null;
  readonly signal: string | undefined;
  readonly stderrTail: string;
  constructor(ctx: SshErrorContext, what: string, r: { exitCode: number | null; signal?: string; stderrTail: string }) {
    const { exitCode, signal, stderrTail } = r;
    const how = signal ? `was killed by ${signal}` : `exited with ${exitCode}`;
    super(ctx, `${what} ${how}${stderrTail ? `: ${stderrTail}` : ''}`);
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderrTail = stderrTail;
  }
}

// What the SSH layer is told and gives back: where a host is and how to get root on it (Target),
// the options and results of a command, and the session interface the provider works through.
import type { Readable } from 'node:stream';
import type { HostKeyPolicy } from './hostkey.ts';

/** How commands get root: the user is root, sudo without a password, or sudo with one. */
export type Privilege = 'root' | 'sudo' | 'sudo-password';

export interface Credentials {
  /** OpenSSH or PEM private key (ed25519, ecdsa, rsa). Secret. */
  privateKey: string | Buffer;
  passphrase?: string;
  /** For privilege sudo-password. Secret: fed to sudo on stdin, never on a command line. */
  sudoPassword?: string;
}

export interface Endpoint {
  host: string;
  /** Default 22. */
  port?: number;
  user: string;
  credentials: Credentials;
  hostKey: HostKeyPolicy;
}

export interface Target extends Endpoint {
  /** Default: root when user is root, else sudo. */
  privilege?: Privilege;
  /** A bastion reached first; its host key is checked too. */
  jump?: Endpoint;
  /** TCP connect plus SSH handshake and auth. Default 10 s. */
  connectTimeoutMs?: number;
  /** Commands running at once on one connection. Default 8 (sshd's MaxSessions default is 10). */
  maxSessions?: number;
  /** Keepalive every N ms; the link is declared dead after keepaliveCountMax misses. Default 5 s x 3. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
}

/** A command's input; a stream is piped (with backpressure), so a large file is never held whole. */
export type Input = string | Buffer | Readable;

export interface ExecOptions {
  stdin?: Input;
  /** Called for every complete output line. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Kill the command after this long. Default: no limit (keepalives still catch a dead host). */
  timeoutMs?: number;
  /** Run with the target's privilege (as root). Default true. */
  privileged?: boolean;
  /** Reject with CommandFailed when the exit code is not 0. Default true. */
  check?: boolean;
  /** Names the command in errors. Default: its first 60 characters (command lines never hold secrets). */
  what?: string;
}

export interface ExecResult {
  exitCode: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

/**
 * What the provider does on a host over one connection. SshConnection is the real one; tests of
 * the reconcilers give a recording fake.
 */
export interface SshSession {
  readonly target: Target;
  /** The host key seen, and whether this was its first use (trust-on-first-use: record it). */
  readonly hostKeyFingerprint: string;
  readonly hostKeyFirstUse: boolean;
  /** The jump host's key, when there is one (trust-on-first-use: record it too). */
  readonly jump?: { readonly hostKeyFingerprint: string; readonly hostKeyFirstUse: boolean };
  exec(command: string, o?: ExecOptions): Promise<ExecResult>;
  upload(path: string, content: Input, o?: { mode?: number; owner?: string }): Promise<void>;
  close(): void;
}

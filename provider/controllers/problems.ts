// A failure to reach or use a host, as a condition reason and a message that says what to do. The
// reasons are a closed union: every SSH and access failure maps to exactly one, checked by the
// compiler, and the same words appear on the machine, on the host and in events.
import type { BareMetalHostPool } from '../api/pool.ts';
import { SshError, type SshReason } from '../ssh/index.ts';
import { AccessError, type AccessReason } from './access.ts';

export type ProblemReason =
  | 'SSHAuthenticationFailed'
  | 'HostKeyMismatch'
  | 'HostUnreachable'
  | 'SSHSessionRefused'
  | 'SSHCommandFailed'
  | AccessReason;

export interface Problem {
  reason: ProblemReason;
  message: string;
}

function sshReason(r: SshReason): ProblemReason {
  switch (r) {
    case 'AuthFailed':
      return 'SSHAuthenticationFailed';
    case 'HostKeyMismatch':
      return 'HostKeyMismatch';
    case 'Timeout':
    case 'HostUnreachable':
      return 'HostUnreachable';
    case 'SessionRefused':
      return 'SSHSessionRefused';
    case 'CommandFailed':
      return 'SSHCommandFailed';
  }
}

/** Where a pool's pins came from (a command that re-pins them, such as hack/vagrant-pool), if it says. */
export const HostKeysFromAnnotation = 'capbm.dev/host-keys-from';

/** What to do when a host serves a key its pool does not accept. */
export function hostKeyAdvice(pool: BareMetalHostPool | undefined): string {
  const from = pool?.metadata.annotations?.[HostKeysFromAnnotation];
  if (from)
    return `The pool's pins were made by \`${from}\`: if the host was re-created (a new VM has new host keys), re-run it to pin the new keys; otherwise treat it as an attack.`;
  return `If the host was reinstalled, update spec.hostKeyPolicy of pool ${pool?.metadata.name ?? ''} (or, for trust-on-first-use, remove status.hostKeyFingerprint from the BareMetalHost); otherwise treat it as an attack.`;
}

function sshAdvice(err: SshError, pool: BareMetalHostPool | undefined): string {
  const secret = pool ? `${pool.metadata.namespace}/${pool.spec.ssh.secretRef.name}` : 'of the pool';
  switch (err.reason) {
    case 'AuthFailed':
      return ` The host refused the key in Secret ${secret}: add its public key to ~${pool?.spec.ssh.user ?? 'root'}/.ssh/authorized_keys on the host, or fix the Secret. Nothing was run on the host.`;
    case 'HostKeyMismatch':
      return ` Nothing was run on the host. ${hostKeyAdvice(pool)}`;
    case 'Timeout':
    case 'HostUnreachable':
      return ' The provider retries with backoff; a machine whose host stays unreachable is replaced (MachineHealthCheck), and the host is quarantined when the machine is deleted.';
    case 'SessionRefused':
    case 'CommandFailed':
      return '';
  }
}

/** The problem an SSH or access error is, or undefined for any other error (a bug, an API error). */
export function problemOf(err: unknown, pool: BareMetalHostPool | undefined): Problem | undefined {
  if (err instanceof AccessError) return { reason: err.reason, message: err.message };
  if (err instanceof SshError)
    return { reason: sshReason(err.reason), message: `${err.message}.${sshAdvice(err, pool)}` };
  return undefined;
}

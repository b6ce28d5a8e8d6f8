// The SSH transport: everything the provider does to a host goes through here.
export {
  connect,
  SshConnection,
  type Credentials,
  type Endpoint,
  type ExecOptions,
  type ExecResult,
  type Privilege,
  type SshSession,
  type Target,
} from './connection.ts';
export {
  fingerprint,
  knownHostsFingerprints,
  verifyHostKey,
  type HostKeyPolicy,
  type HostKeyVerdict,
} from './hostkey.ts';
export { SshPool, type SshPoolOptions, type SshRunner } from './pool.ts';
export {
  AuthFailed,
  CommandFailed,
  HostKeyMismatch,
  HostUnreachable,
  SessionRefused,
  SshError,
  Timeout,
  type SshReason,
} from './errors.ts';

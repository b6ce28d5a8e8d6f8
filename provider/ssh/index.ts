// The SSH transport: everything the provider does to a host goes through here.
export {
  connect,
  SshConnection,
  type Credentials,
  type Endpoint,
  type ExecOptions,
  type ExecResult,
  type Privilege,
  type Target,
} from './connection.ts';
export {
  fingerprint,
  knownHostsFingerprints,
  verifyHostKey,
  type HostKeyPolicy,
  type HostKeyVerdict,
} from './hostkey.ts';
export { SshPool, type SshPoolOptions } from './pool.ts';
export { AuthFailed, CommandFailed, HostKeyMismatch, HostUnreachable, SshError, Timeout } from './errors.ts';

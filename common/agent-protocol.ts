// The wire contract between the node agent and the provider's health endpoint (POST /v1/report,
// POST /v1/renew over mutual TLS). Shared by both sides; only node builtins here, so the agent
// bundle stays small.
import { X509Certificate } from 'node:crypto';

export type CheckStatus = 'ok' | 'failed' | 'unknown';

/** One check's verdict. reason is a CamelCase word (a condition reason); message is for people. */
export interface CheckResult {
  name: string;
  status: CheckStatus;
  reason: string;
  message: string;
}

export interface Report {
  /**
   * The BareMetalHost as <namespace>/<name>; must equal the host named in the client certificate
   * (CN=host:<namespace>/<name>).
   */
  host: string;
  machine?: { namespace: string; name: string };
  /** Strictly increasing per host, also across agent restarts (it starts at the wall clock in ms). */
  seq: number;
  /** Random hex, never reused. */
  nonce: string;
  /** When the report was made, ms since the epoch, on the provider's clock as far as the agent knows it. */
  timestamp: number;
  agentVersion?: string;
  checks: CheckResult[];
}

/** Every response body carries the provider's clock (ms since the epoch): the agent measures skew with it. */
export interface ReportAccepted {
  accepted: true;
  time: number;
}

export interface Rejected {
  accepted: false;
  reason: RejectReason;
  message: string;
  time: number;
}

/**
 * A renewal, like a CSR: the agent keeps its private key and sends the public one, with a proof
 * that it holds the key: an RSA-SHA256 signature (base64) over renewProof(host, serial of the
 * certificate it presents). A proof cannot be replayed with another certificate.
 */
export interface RenewRequest {
  host: string;
  publicKeyPem: string;
  proof: string;
}

export interface Renewed {
  certPem: string;
  time: number;
}

/** What a renewal's proof signs. */
export function renewProof(host: string, presentedSerial: string): string {
  return `capbm-renew\n${host}\n${presentedSerial.toLowerCase()}`;
}

export type RejectReason =
  | 'BadRequest'
  | 'Malformed'
  | 'TooLarge'
  | 'NotFound'
  | 'Forbidden'
  | 'UnknownHost'
  | 'Revoked'
  | 'Superseded'
  | 'CertificateExpired'
  | 'Stale'
  | 'FromFuture'
  | 'Replay'
  | 'TooEarly'
  | 'Internal';

export const reportPath = '/v1/report';
export const renewPath = '/v1/renew';
export const hostCommonNamePrefix = 'host:';
/** The certificate's OU: claim:<host UID>/<machine UID>, the one claim of the host it was issued for. */
export const claimUnitPrefix = 'claim:';

export const limits = {
  /** <namespace>/<name> */
  hostName: 63 + 1 + 253,
  checks: 64,
  checkName: 128,
  reason: 64,
  message: 1024,
  nonce: 64,
} as const;

/** The host named by a client certificate's subject (CN=host:<namespace>/<name>), or undefined. */
export function hostOfSubject(subject: string): string | undefined {
  return field(subject, `CN=${hostCommonNamePrefix}`);
}

/** The claim a client certificate was issued for (OU=claim:<host UID>/<machine UID>), or undefined. */
export function claimOfSubject(subject: string): { hostUid: string; machineUid: string } | undefined {
  const [hostUid, machineUid, ...rest] = (field(subject, `OU=${claimUnitPrefix}`) ?? '').split('/');
  return hostUid && machineUid && rest.length === 0 ? { hostUid, machineUid } : undefined;
}

/** The host and claim a client certificate's subject names, or undefined when it lacks either. */
export function identityOfSubject(subject: string): { host: string; hostUid: string; machineUid: string } | undefined {
  const host = hostOfSubject(subject);
  const claim = claimOfSubject(subject);
  return host && claim ? { host, ...claim } : undefined;
}

function field(subject: string, prefix: string): string | undefined {
  for (const part of subject.split('\n')) if (part.startsWith(prefix)) return part.slice(prefix.length) || undefined;
  return undefined;
}

/**
 * Whether a certificate has used up `fraction` of its lifetime (or is expired or unreadable):
 * then it is time to get a new one. Default 2/3, as kubelet's client certificate rotation does
 * (70-90% jittered; k8s.io/client-go/util/certificate/certificate_manager.go nextRotationDeadline).
 */
export function needsRotation(certPem: string, now: number = Date.now(), fraction = 2 / 3): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return true;
  }
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(to > from)) return true;
  return now >= from + (to - from) * fraction;
}

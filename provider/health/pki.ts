// The agents' own certificate authority and their short-lived client certificates. It is a CA of
// its own, apart from every workload cluster's CA: an agent identity opens nothing but the health
// endpoint. The provider keeps it in a Secret ({ca.crt, ca.key}); this module only turns that
// data into a CA and back (the caller reads and writes the Secret).
import { createPrivateKey, createPublicKey, hkdfSync, X509Certificate } from 'node:crypto';
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAuthority,
  type IssuedCertificate,
} from '../pki/certificate.ts';
import {
  claimUnitPrefix,
  hostCommonNamePrefix,
  identityOfSubject,
  needsRotation,
} from '../../common/agent-protocol.ts';

export { needsRotation };

/** The Secret's data keys (decoded PEM). */
export interface AgentCaData {
  'ca.crt': string;
  /** Secret. */
  'ca.key': string;
}

export const agentCaCommonName = 'capbm-agent-ca';

/**
 * The health endpoint's TLS session ticket keys (48 bytes), derived from the agent CA's key: every
 * replica and every restart of the provider has the same ones, so after a restart or a failover an
 * agent resumes its session (no certificate chain, no signature) instead of a full handshake. One
 * way: the keys reveal nothing of the CA key. They change with the CA (whose change reissues every
 * agent's certificate anyway).
 */
export const sessionTicketKeys = (caKeyPem: string): Buffer =>
  Buffer.from(hkdfSync('sha256', caKeyPem, 'capbm-agent-endpoint', 'tls session ticket keys', 48));
export const defaultAgentCertValidityMs = 24 * 60 * 60 * 1000;

export class AgentCaInvalid extends Error {
  constructor(problem: string) {
    super(
      `the agent CA Secret is unusable: ${problem}; fix or delete the Secret (deleting it makes every agent's certificate invalid: reinstall the agents)`,
    );
    this.name = 'AgentCaInvalid';
  }
}

function validate(data: AgentCaData, now: number): CertificateAuthority {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(data['ca.crt']);
  } catch {
    throw new AgentCaInvalid('ca.crt is not a PEM certificate');
  }
  if (!cert.ca) throw new AgentCaInvalid('ca.crt is not a CA certificate');
  if (Date.parse(cert.validTo) <= now) throw new AgentCaInvalid(`ca.crt expired at ${cert.validTo}`);
  let publicKeyPem: string;
  try {
    const key = createPrivateKey(data['ca.key']);
    publicKeyPem = createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
  } catch {
    throw new AgentCaInvalid('ca.key is not a PEM private key');
  }
  if (!cert.checkPrivateKey(createPrivateKey(data['ca.key'])))
    throw new AgentCaInvalid('ca.key does not belong to ca.crt');
  return { certPem: data['ca.crt'], keyPem: data['ca.key'], publicKeyPem };
}

/**
 * The agent CA from the Secret's data, or a new one when there is no data yet (created: true:
 * the caller stores `data`). Invalid data is an error, never silently replaced: a new CA would
 * cut off every installed agent.
 */
export async function loadOrCreateAgentCa(
  data: Partial<AgentCaData> | undefined,
  now: number = Date.now(),
): Promise<{ ca: CertificateAuthority; data: AgentCaData; created: boolean }> {
  if (data?.['ca.crt'] && data['ca.key']) {
    const full = { 'ca.crt': data['ca.crt'], 'ca.key': data['ca.key'] };
    return { ca: validate(full, now), data: full, created: false };
  }
  if (data?.['ca.crt'] || data?.['ca.key']) throw new AgentCaInvalid('it holds only one of ca.crt and ca.key');
  const ca = await createCertificateAuthority(agentCaCommonName);
  return { ca, data: { 'ca.crt': ca.certPem, 'ca.key': ca.keyPem }, created: true };
}

/**
 * Who an agent is: one host (<namespace>/<name> and its UID) for one claim (the UID of the
 * machine holding it). Host UIDs are unique cluster-wide and a new claim has a new machine UID, so
 * a certificate of a deleted host, of another namespace's host of the same name, or of a former
 * claim of the same host names nothing the provider would accept.
 */
export interface AgentIdentity {
  host: string;
  hostUid: string;
  machineUid: string;
}

const dns1123 = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const uid = /^[-a-zA-Z0-9]{1,64}$/;

/**
 * A client certificate for the agent of one host and claim: CN=host:<namespace>/<name>,
 * OU=claim:<host UID>/<machine UID>, clientAuth only, short-lived. With publicKeyPem (a renewal) the
 * agent's own key is certified and keyPem is empty.
 */
export function issueAgentCertificate(
  ca: CertificateAuthority,
  id: AgentIdentity,
  validityMs: number = defaultAgentCertValidityMs,
  publicKeyPem?: string,
): Promise<IssuedCertificate> {
  const [ns, name, ...rest] = id.host.split('/');
  if (!ns || !name || rest.length || !dns1123.test(ns) || !dns1123.test(name) || name.length > 253)
    throw new Error(`not a host as <namespace>/<name>: ${JSON.stringify(id.host)}`);
  if (!uid.test(id.hostUid) || !uid.test(id.machineUid))
    throw new Error(`not UIDs: ${JSON.stringify([id.hostUid, id.machineUid])}`);
  return issueCertificate({
    subject: {
      commonName: `${hostCommonNamePrefix}${id.host}`,
      organizations: ['capbm:agents'],
      organizationalUnits: [`${claimUnitPrefix}${id.hostUid}/${id.machineUid}`],
    },
    usage: ['client'],
    ca,
    validityMs,
    ...(publicKeyPem ? { publicKeyPem } : {}),
  });
}

/**
 * The health endpoint's serving certificate, signed by the agent CA (the agents trust only it). Its
 * key is ECDSA P-256: the endpoint signs once per full TLS handshake, and an ECDSA signature costs
 * about 30 us where an RSA-2048 one costs about 800 us (openssl speed, this machine).
 */
export function issueHealthServerCertificate(
  ca: CertificateAuthority,
  names: { dnsNames?: string[]; ipAddresses?: string[] },
  validityMs = 365 * 24 * 60 * 60 * 1000,
): Promise<IssuedCertificate> {
  return issueCertificate({
    subject: { commonName: 'capbm-health' },
    usage: ['server'],
    ca,
    validityMs,
    keyType: 'ec',
    ...names,
  });
}

/** The identity an agent certificate names, or undefined. */
export function identityOfCertificate(certPem: string): AgentIdentity | undefined {
  try {
    return identityOfSubject(new X509Certificate(certPem).subject);
  } catch {
    return undefined;
  }
}

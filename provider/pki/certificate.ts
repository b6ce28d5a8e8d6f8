// Certificates with node-forge. Keys come from Node's crypto (native, asynchronous: never a
// synchronous pure-JS RSA generation on a controller's event loop); forge builds and signs the
// X.509 structures. Serials are random, never fixed.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';

const generateKeyPairAsync = promisify(generateKeyPair);

export interface KeyPair {
  /** PKCS#1 or PKCS#8 PEM private key. Secret: never log it. */
  keyPem: string;
  publicKeyPem: string;
}

export interface CertificateAuthority extends KeyPair {
  certPem: string;
}

export interface IssuedCertificate extends KeyPair {
  certPem: string;
}

export interface Subject {
  commonName: string;
  organizations?: string[];
  organizationalUnits?: string[];
}

export interface CertificateOptions {
  subject: Subject;
  /** DNS names and IP addresses for the subjectAltName extension. */
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Validity from now. Default 365 days. Not-before is backdated 5 minutes for clock skew. */
  validityMs?: number;
  usage?: Array<'server' | 'client'>;
  /** Signer; omitted for a self-signed CA. */
  ca?: CertificateAuthority;
  isCA?: boolean;
  /**
   * The subject's public key (RSA, SPKI PEM), when the subject keeps its private key (a CSR): the
   * result's keyPem is then empty. Default: a new key pair is made.
   */
  publicKeyPem?: string;
}

const day = 24 * 60 * 60 * 1000;

/** A new 2048-bit RSA key pair (RSA: node-forge signs only with RSA keys). */
export async function newRsaKeyPair(bits = 2048): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength: bits,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  return { keyPem: privateKey, publicKeyPem: publicKey };
}

function subjectAttrs(s: Subject): forge.pki.CertificateField[] {
  return [
    { name: 'commonName', value: s.commonName },
    ...(s.organizations ?? []).map((o) => ({ name: 'organizationName', value: o })),
    ...(s.organizationalUnits ?? []).map((o) => ({ name: 'organizationalUnitName', value: o })),
  ];
}

/**
 * A random 16-byte serial that DER encodes minimally as a positive INTEGER: the first byte is
 * 0x40-0x7f. (Clearing only the sign bit left a leading 0x00 one time in 256, a non-minimal
 * encoding Go's crypto/x509 refuses as "malformed serial number".)
 */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = 0x40 | (b[0]! & 0x3f);
  return b.toString('hex');
}

/** The subject's keys: the public key it brought (keyPem empty), or a new pair. */
async function subjectKeys(opts: CertificateOptions): Promise<KeyPair> {
  if (!opts.publicKeyPem) return newRsaKeyPair();
  if (!opts.ca) throw new Error('a self-signed certificate needs its own key pair');
  return { keyPem: '', publicKeyPem: opts.publicKeyPem };
}

/** Issues a certificate (self-signed when no CA is given). */
export async function issueCertificate(opts: CertificateOptions): Promise<IssuedCertificate> {
  const keys = await subjectKeys(opts);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = randomSerial();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(now + (opts.validityMs ?? 365 * day));
  cert.setSubject(subjectAttrs(opts.subject));
  const issuer = opts.ca ? forge.pki.certificateFromPem(opts.ca.certPem) : undefined;
  cert.setIssuer(issuer ? issuer.subject.attributes : subjectAttrs(opts.subject));
  const usage = opts.usage ?? [];
  const altNames = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(opts.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: !!opts.isCA, critical: true },
    opts.isCA
      ? { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }
      : { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    ...(usage.length
      ? [{ name: 'extKeyUsage', serverAuth: usage.includes('server'), clientAuth: usage.includes('client') }]
      : []),
    ...(altNames.length ? [{ name: 'subjectAltName', altNames }] : []),
    { name: 'subjectKeyIdentifier' },
    ...(issuer
      ? [{ name: 'authorityKeyIdentifier', keyIdentifier: issuer.generateSubjectKeyIdentifier().getBytes() }]
      : []),
  ]);
  const signer = forge.pki.privateKeyFromPem(opts.ca ? opts.ca.keyPem : keys.keyPem);
  cert.sign(signer, forge.md.sha256.create());
  return { ...keys, certPem: forge.pki.certificateToPem(cert) };
}

/** A self-signed certificate authority. */
export function createCertificateAuthority(
  commonName: string,
  validityMs = 10 * 365 * day,
): Promise<CertificateAuthority> {
  return issueCertificate({ subject: { commonName }, isCA: true, validityMs });
}

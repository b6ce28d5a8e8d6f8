// Certificates with node-forge. Keys come from Node's crypto (native, asynchronous: never a
// synchronous pure-JS RSA generation on a controller's event loop); forge builds and signs the
// X.509 structures. Serials are random, never fixed. Signers (CAs) are RSA; a subject key may be
// ECDSA P-256 (forge cannot hold one: its SubjectPublicKeyInfo goes into the signed structure as is).
import { createHash, createPublicKey, generateKeyPair, randomBytes } from 'node:crypto';
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
  /**
   * The type of a new subject key pair: RSA-2048 (default) or ECDSA P-256 (a TLS server's key: its
   * signature per handshake costs a few percent of an RSA one). Only for CA-signed certificates.
   */
  keyType?: 'rsa' | 'ec';
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

/** A new ECDSA P-256 key pair (PKCS#8 private key). */
export async function newEcKeyPair(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPairAsync('ec', {
    namedCurve: 'prime256v1',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
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
  if (opts.keyType === 'ec' && !opts.ca) throw new Error('an ECDSA key is only for a CA-signed certificate');
  if (!opts.publicKeyPem) return opts.keyType === 'ec' ? newEcKeyPair() : newRsaKeyPair();
  if (!opts.ca) throw new Error('a self-signed certificate needs its own key pair');
  return { keyPem: '', publicKeyPem: opts.publicKeyPem };
}

const A = forge.asn1;

/** The subjectKeyIdentifier extension's value: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2). */
function keyIdentifier(spkiDer: Buffer): forge.asn1.Asn1 {
  const fromDer = A.fromDer as unknown as (b: string, o: { decodeBitStrings: boolean }) => forge.asn1.Asn1;
  const bits = (fromDer(spkiDer.toString('binary'), { decodeBitStrings: false }).value as forge.asn1.Asn1[])[1]!;
  const digest = createHash('sha1')
    .update(Buffer.from((bits.value as string).slice(1), 'binary'))
    .digest('binary');
  return A.create(A.Class.UNIVERSAL, A.Type.OCTETSTRING, false, digest);
}

/** Signs (sha256WithRSAEncryption) with the given SubjectPublicKeyInfo in place of forge's. */
function signWithSpki(cert: forge.pki.Certificate, spkiDer: Buffer, signer: forge.pki.rsa.PrivateKey): void {
  cert.signatureOid = cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!;
  const pki = forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 };
  const tbs = pki.getTBSCertificate(cert);
  // version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, extensions
  (tbs.value as forge.asn1.Asn1[])[6] = A.fromDer(spkiDer.toString('binary'));
  const md = forge.md.sha256.create();
  md.update(A.toDer(tbs).getBytes());
  (cert as unknown as { tbsCertificate: forge.asn1.Asn1 }).tbsCertificate = tbs;
  cert.signature = signer.sign(md);
}

/** The extensions: constraints, key usage (keyEncipherment only for an RSA key), names, key identifiers. */
function extensions(
  opts: CertificateOptions,
  spki: Buffer,
  isRsa: boolean,
  issuer: forge.pki.Certificate | undefined,
): object[] {
  const usage = opts.usage ?? [];
  const altNames = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(opts.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  return [
    { name: 'basicConstraints', cA: !!opts.isCA, critical: true },
    opts.isCA
      ? { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }
      : { name: 'keyUsage', digitalSignature: true, keyEncipherment: isRsa, critical: true },
    ...(usage.length
      ? [{ name: 'extKeyUsage', serverAuth: usage.includes('server'), clientAuth: usage.includes('client') }]
      : []),
    ...(altNames.length ? [{ name: 'subjectAltName', altNames }] : []),
    { name: 'subjectKeyIdentifier', value: keyIdentifier(spki) },
    ...(issuer
      ? [{ name: 'authorityKeyIdentifier', keyIdentifier: issuer.generateSubjectKeyIdentifier().getBytes() }]
      : []),
  ];
}

/** Issues a certificate (self-signed when no CA is given). */
export async function issueCertificate(opts: CertificateOptions): Promise<IssuedCertificate> {
  const keys = await subjectKeys(opts);
  const spki = createPublicKey(keys.publicKeyPem).export({ type: 'spki', format: 'der' });
  const isRsa = createPublicKey(keys.publicKeyPem).asymmetricKeyType === 'rsa';
  const cert = forge.pki.createCertificate();
  // A non-RSA key stands in as the CA's RSA key while forge lays the certificate out; the real
  // SubjectPublicKeyInfo (and its key identifier) replace it before signing.
  cert.publicKey = forge.pki.publicKeyFromPem(isRsa ? keys.publicKeyPem : opts.ca!.publicKeyPem);
  cert.serialNumber = randomSerial();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(now + (opts.validityMs ?? 365 * day));
  cert.setSubject(subjectAttrs(opts.subject));
  const issuer = opts.ca ? forge.pki.certificateFromPem(opts.ca.certPem) : undefined;
  cert.setIssuer(issuer ? issuer.subject.attributes : subjectAttrs(opts.subject));
  cert.setExtensions(extensions(opts, spki, isRsa, issuer));
  signWithSpki(cert, spki, forge.pki.privateKeyFromPem(opts.ca ? opts.ca.keyPem : keys.keyPem));
  return { ...keys, certPem: forge.pki.certificateToPem(cert) };
}

/** A self-signed certificate authority. */
export function createCertificateAuthority(
  commonName: string,
  validityMs = 10 * 365 * day,
): Promise<CertificateAuthority> {
  return issueCertificate({ subject: { commonName }, isCA: true, validityMs });
}

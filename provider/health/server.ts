// The endpoint where node agents report (POST /v1/report) and renew their identity
// (POST /v1/renew), over mutual TLS. The TLS layer already refuses certificates that are expired
// or not from the agent CA; here every request is checked again against the host it names, the
// clock (stale reports) and what this host sent before (replays). Every answer carries the
// provider's time, from which the agent measures its clock skew. Bad input is answered and
// counted, never thrown: one broken agent cannot stop the others.
import { createPublicKey, verify, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import PQueue from 'p-queue';
import type { Logger } from '../../common/log.ts';
import { counter } from '../runtime/metrics.ts';
import type { CertificateAuthority } from '../pki/certificate.ts';
import {
  identityOfSubject,
  renewPath,
  renewProof,
  reportPath,
  type RejectReason,
  type Report,
} from '../../common/agent-protocol.ts';
import { parseReport, Rejection, ReplayGuard } from './report.ts';
import { KeptConnections } from './connections.ts';

export { parseReport, ReplayGuard };
import { issueAgentCertificate, defaultAgentCertValidityMs, sessionTicketKeys, type AgentIdentity } from './pki.ts';

const reports = counter('capbm_agent_reports_total', 'Agent reports by result (accepted, rejected) and reason', [
  'result',
  'reason',
]);
const renewals = counter('capbm_agent_renewals_total', 'Agent certificate renewals by result and reason', [
  'result',
  'reason',
]);
const handshakes = counter('capbm_agent_tls_handshakes_total', 'Agent TLS handshakes by resumed (a ticket)', [
  'resumed',
]);
const tlsRejected = counter('capbm_agent_tls_rejections_total', 'Agent connections refused during the TLS handshake');

/** The identity a client certificate presents, with the certificate's serial and start. */
export interface Presented extends AgentIdentity {
  serial: string;
  notBefore: number;
}

/** Why a presented identity may not report or renew; undefined: it may. */
export type Refusal = { status: number; reason: RejectReason; message: string } | undefined;

export interface ReportContext {
  /** The host named by the client certificate (and by the report). */
  host: string;
  presented: Presented;
  /** performance.now() when the request's headers arrived. */
  receivedAt: number;
  certificate: X509Certificate;
}

export interface HealthServerOptions {
  /** Bind address. Default 0.0.0.0. */
  host?: string;
  /** Default 9443; 0 picks a free port. */
  port?: number;
  /** The agent CA. Its key is needed only to renew agent certificates. */
  ca: Pick<CertificateAuthority, 'certPem'> & Partial<Pick<CertificateAuthority, 'keyPem' | 'publicKeyPem'>>;
  /** The serving certificate, signed by the agent CA (issueHealthServerCertificate). */
  serverCert: { certPem: string; keyPem: string };
  /** Called for every accepted report; the agent gets 200 once it resolves, 500 if it throws. */
  onReport: (report: Report, ctx: ReportContext) => void | Promise<void>;
  /**
   * Whether the identity may report (with the machine the report names) or renew: the host exists
   * with that UID, is provisioned for that claim, and this is its newest certificate. Default: all.
   */
  authorize?: (p: Presented, machine?: { namespace: string; name: string }) => Refusal;
  /** Called with every certificate a renewal issued (the newest of its host from then on). */
  onRenewed?: (p: Presented) => void;
  /** A host renews at most once in this time. Default 10 min. */
  renewMinIntervalMs?: number;
  /** The clock. Default Date.now. */
  now?: () => number;
  /** A report whose timestamp is further than this from now is rejected (Stale, FromFuture). Default 120 s. */
  maxSkewMs?: number;
  /** Larger bodies get 413. Default 64 KiB. */
  maxBodyBytes?: number;
  /** Hosts whose last sequence number is remembered (least recently seen forgotten first). Default 100000. */
  maxHosts?: number;
  /** Lifetime of renewed agent certificates. Default 24 h. */
  renewValidityMs?: number;
  /** A renewal is refused (TooEarly) before this fraction of the presented certificate's life. Default 0.5. */
  renewAfterFraction?: number;
  /** Pending TCP connections the kernel queues (capped by net.core.somaxconn). Default 4096. */
  backlog?: number;
  /**
   * Connections open at once (kept ones and those in a request); more are closed at once, before the
   * TLS handshake, and the agent tries again after a jittered backoff. Default 5000.
   */
  maxConnections?: number;
  /** How long a TLS session ticket is good for (a kept connection's agent resumes with it after a restart). Default 3600. */
  sessionTimeoutSeconds?: number;
  /** Connections kept open between an agent's reports (connections.ts); others close after each answer. Default 2500. */
  keptConnections?: number;
  /** A TLS handshake not done in this time is cut. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Idle kept connections are closed after this (longer than the agents' interval, or none is kept). Default 65 s. */
  keepAliveTimeoutMs?: number;
  log?: Logger;
}

export interface HealthServer {
  server: Server;
  port: number;
  /** https://<host>:<port> */
  url: string;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) return Promise.reject(new Rejection(413, 'TooLarge', `the body is over ${max} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > max) {
        done = true;
        return reject(new Rejection(413, 'TooLarge', `the body is over ${max} bytes`));
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (err) => {
      if (!done) reject(err);
      done = true;
    });
  });
}

/** A renewal request's fields, or a Rejection. */
function parseRenewal(text: string): { host: string; publicKeyPem: string; proof: string } {
  let v: { host?: unknown; publicKeyPem?: unknown; proof?: unknown };
  try {
    v = JSON.parse(text) as typeof v;
  } catch {
    throw new Rejection(400, 'Malformed', 'the body is not JSON');
  }
  if (typeof v?.host !== 'string' || typeof v.publicKeyPem !== 'string' || typeof v.proof !== 'string')
    throw new Rejection(400, 'Malformed', 'a renewal names its host and sends its public key and proof');
  return { host: v.host, publicKeyPem: v.publicKeyPem, proof: v.proof };
}

/** The agent holds the key it wants certified: an RSA key of 2048 bits or more that signed the proof. */
function checkProof(r: { host: string; publicKeyPem: string; proof: string }, serial: string): void {
  let key;
  try {
    key = createPublicKey(r.publicKeyPem);
  } catch {
    throw new Rejection(400, 'Malformed', 'publicKeyPem is not a PEM public key');
  }
  if (key.asymmetricKeyType !== 'rsa' || (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw new Rejection(400, 'Malformed', 'the public key must be RSA of at least 2048 bits');
  const ok = verify('sha256', Buffer.from(renewProof(r.host, serial)), key, Buffer.from(r.proof, 'base64'));
  if (!ok) throw new Rejection(403, 'Forbidden', 'the proof is not signed by the key to be certified');
}

class Handler {
  readonly o: HealthServerOptions;
  readonly now: () => number;
  readonly guard: ReplayGuard;
  readonly issuing = new PQueue({ concurrency: 2 });
  readonly kept: KeptConnections;
  /** When each host last renewed (bounded like the replay guard). */
  readonly renewedAt = new Map<string, number>();

  constructor(o: HealthServerOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
    this.guard = new ReplayGuard(o.maxHosts ?? 100_000);
    this.kept = new KeptConnections(o.keptConnections ?? 2500);
  }

  send(res: ServerResponse, status: number, body: Record<string, unknown>, close = false): void {
    const payload = JSON.stringify({ ...body, time: this.now() });
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(payload),
      ...(close || !this.kept.keep(res.req.socket) ? { Connection: 'close' } : {}),
    });
    res.end(payload);
  }

  /** The identity the client certificate presents, if the certificate is still valid and names one. */
  identify(req: IncomingMessage): { presented: Presented; certificate: X509Certificate } {
    const socket = req.socket as TLSSocket;
    const certificate = socket.authorized ? socket.getPeerX509Certificate() : undefined;
    if (!certificate) throw new Rejection(401, 'Forbidden', 'no verified client certificate');
    // The handshake checked validity, but a resumed TLS session skips it: check again.
    if (Date.parse(certificate.validTo) <= this.now())
      throw new Rejection(401, 'CertificateExpired', 'the client certificate has expired');
    const id = identityOfSubject(certificate.subject);
    if (!id) throw new Rejection(403, 'Forbidden', 'the client certificate names no host and claim');
    const presented = {
      ...id,
      serial: certificate.serialNumber.toLowerCase(),
      notBefore: Date.parse(certificate.validFrom),
    };
    return { presented, certificate };
  }

  authorize(p: Presented, machine?: { namespace: string; name: string }): void {
    const refusal = this.o.authorize?.(p, machine);
    if (refusal) throw new Rejection(refusal.status, refusal.reason, refusal.message);
  }

  async report(req: IncomingMessage, res: ServerResponse, receivedAt: number): Promise<void> {
    const { presented, certificate } = this.identify(req);
    const host = presented.host;
    const report = parseReport(await readBody(req, this.o.maxBodyBytes ?? 64 * 1024));
    if (report.host !== host)
      throw new Rejection(403, 'Forbidden', `the certificate is for host ${host}, the report names another host`);
    this.authorize(presented, report.machine);
    const age = this.now() - report.timestamp;
    const maxSkew = this.o.maxSkewMs ?? 120_000;
    if (age > maxSkew) throw new Rejection(409, 'Stale', `the report is ${Math.round(age / 1000)} s old`);
    if (-age > maxSkew) throw new Rejection(409, 'FromFuture', `the report is ${Math.round(-age / 1000)} s ahead`);
    if (!this.guard.admit(host, report.seq, report.nonce))
      throw new Rejection(409, 'Replay', 'this report (sequence number or nonce) was seen before');
    try {
      await this.o.onReport(report, { host, presented, receivedAt, certificate });
    } catch (err) {
      this.o.log?.error('report handler failed', { host, error: err as Error });
      throw new Rejection(500, 'Internal', 'the provider could not process the report');
    }
    reports.inc({ result: 'accepted', reason: '' });
    this.send(res, 200, { accepted: true });
  }

  /** A renewal is due past a fraction of the certificate's life, and at most once per interval per host. */
  due(host: string, certificate: X509Certificate): void {
    const from = Date.parse(certificate.validFrom);
    const to = Date.parse(certificate.validTo);
    if (this.now() < from + (to - from) * (this.o.renewAfterFraction ?? 0.5))
      throw new Rejection(409, 'TooEarly', 'the certificate is not yet due for renewal');
    const last = this.renewedAt.get(host);
    if (last !== undefined && this.now() - last < (this.o.renewMinIntervalMs ?? 10 * 60_000))
      throw new Rejection(429, 'TooEarly', 'this host renewed a moment ago; try again later');
  }

  async renew(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { presented, certificate } = this.identify(req);
    const host = presented.host;
    const body = parseRenewal(await readBody(req, 8192));
    if (body.host !== host) throw new Rejection(403, 'Forbidden', `the certificate is for host ${host}`);
    this.authorize(presented);
    if (!this.o.ca.keyPem) throw new Rejection(404, 'NotFound', 'this provider does not renew certificates');
    this.due(host, certificate);
    checkProof(body, presented.serial);
    this.renewedAt.set(host, this.now());
    if (this.renewedAt.size > (this.o.maxHosts ?? 100_000)) this.renewedAt.delete(this.renewedAt.keys().next().value!);
    const ca = { certPem: this.o.ca.certPem, keyPem: this.o.ca.keyPem, publicKeyPem: this.o.ca.publicKeyPem ?? '' };
    const validity = this.o.renewValidityMs ?? defaultAgentCertValidityMs;
    const issued = await this.issuing.add(() => issueAgentCertificate(ca, presented, validity, body.publicKeyPem));
    const cert = new X509Certificate(issued.certPem);
    this.o.onRenewed?.({
      ...presented,
      serial: cert.serialNumber.toLowerCase(),
      notBefore: Date.parse(cert.validFrom),
    });
    renewals.inc({ result: 'renewed', reason: '' });
    this.o.log?.info('agent certificate renewed', { host });
    this.send(res, 200, { certPem: issued.certPem });
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const receivedAt = performance.now();
    const path = (req.url ?? '').split('?')[0];
    const isReport = path === reportPath;
    const isRenew = path === renewPath;
    const work =
      req.method !== 'POST' || !(isReport || isRenew)
        ? Promise.reject(new Rejection(404, 'NotFound', 'POST /v1/report or /v1/renew'))
        : isReport
          ? this.report(req, res, receivedAt)
          : this.renew(req, res);
    work.catch((err: unknown) => {
      const r = err instanceof Rejection ? err : new Rejection(500, 'Internal', 'unexpected error');
      if (!(err instanceof Rejection)) this.o.log?.error('health endpoint error', { error: err as Error });
      (isRenew ? renewals : reports).inc({ result: 'rejected', reason: r.reason });
      if (res.headersSent) return;
      this.send(res, r.status, { accepted: false, reason: r.reason, message: r.message }, r.status === 413);
    });
  }
}

/** Starts the health endpoint; resolves once it listens. */
export async function startHealthServer(o: HealthServerOptions): Promise<HealthServer> {
  const h = new Handler(o);
  const server = createServer(
    {
      // Tickets (TLS 1.3 resumption, on by default) make an agent's reconnect cheap: no certificate
      // chain sent or verified again, no signature (the client certificate is kept in the ticket;
      // its expiry is checked per request). CA-derived keys, fixed context: good across restarts.
      ...(o.ca.keyPem ? { ticketKeys: sessionTicketKeys(o.ca.keyPem) } : {}),
      sessionIdContext: 'capbm-agent-endpoint',
      sessionTimeout: o.sessionTimeoutSeconds ?? 3600,
      key: o.serverCert.keyPem,
      cert: o.serverCert.certPem,
      ca: [o.ca.certPem],
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: o.handshakeTimeoutMs ?? 10_000,
      keepAliveTimeout: o.keepAliveTimeoutMs ?? 65_000,
      headersTimeout: 10_000,
      requestTimeout: 15_000,
    },
    (req, res) => h.handle(req, res),
  );
  server.on('tlsClientError', () => tlsRejected.inc());
  server.on('secureConnection', (s: TLSSocket) => handshakes.inc({ resumed: String(s.isSessionReused()) }));
  // A flood of connections (or of half-done handshakes) is bounded: memory and file descriptors stay.
  server.maxConnections = o.maxConnections ?? 5000;
  const host = o.host ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A restarted provider meets every agent at once: a deep accept queue instead of SYN cookies.
    server.listen({ port: o.port ?? 9443, host, backlog: o.backlog ?? 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

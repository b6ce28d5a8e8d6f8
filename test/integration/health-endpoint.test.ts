// The health endpoint as an agent (or an attacker holding some certificate) meets it, on
// 127.0.0.1: mutual TLS with the agent CA, one host per certificate, no stale or replayed
// reports, and bad bodies answered without harm to the next request.
import test from 'ava';
import { createSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import { Agent, request } from 'node:https';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { ProviderClient } from '../../agent/client.ts';
import { createCertificateAuthority, type CertificateAuthority } from '../../provider/pki/certificate.ts';
import {
  identityOfCertificate,
  issueAgentCertificate,
  issueHealthServerCertificate,
  loadOrCreateAgentCa,
  needsRotation,
} from '../../provider/health/pki.ts';
import {
  startHealthServer,
  type HealthServer,
  type HealthServerOptions,
  type ReportContext,
} from '../../provider/health/server.ts';
import { registry } from '../../provider/runtime/metrics.ts';
import { renewProof, type Report } from '../../common/agent-protocol.ts';
import { X509Certificate } from 'node:crypto';

interface Id {
  certPem: string;
  keyPem: string;
}

const ident = (host: string) => ({ host, hostUid: `uid-${host.split('/')[1]}`, machineUid: 'machine-1' });

/** A renewal as the agent makes it: a new key pair, and the proof signed with it. */
function renewal(id: Id, host: string, signer?: string) {
  const keys = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const serial = new X509Certificate(id.certPem).serialNumber;
  const proof = createSign('sha256')
    .update(renewProof(host, serial))
    .sign(signer ?? keys.privateKey, 'base64');
  return { body: JSON.stringify({ host, publicKeyPem: keys.publicKey, proof }), keyPem: keys.privateKey };
}
const renewedHosts: string[] = [];

let ca: CertificateAuthority;
let srv: HealthServer;
let ids: Record<'a' | 'b' | 'expired' | 'foreign' | 'short', Id>;
const received: Array<{ report: Report; ctx: ReportContext }> = [];
let providerClock = 0; // offset of the server's clock, per test

test.before(async () => {
  ({ ca } = await loadOrCreateAgentCa(undefined));
  const foreignCa = await createCertificateAuthority('someone-else');
  const serverCert = await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] });
  ids = {
    a: await issueAgentCertificate(ca, ident('ns/host-a')),
    b: await issueAgentCertificate(ca, ident('ns/host-b')),
    expired: await issueAgentCertificate(ca, ident('ns/host-a'), -60_000),
    foreign: await issueAgentCertificate(foreignCa, ident('ns/host-a')),
    short: await issueAgentCertificate(ca, ident('ns/host-a'), 60_000),
  };
  srv = await startHealthServer({
    host: '127.0.0.1',
    port: 0,
    ca,
    serverCert,
    maxSkewMs: 60_000,
    maxBodyBytes: 16 * 1024,
    now: () => Date.now() + providerClock,
    authorize: (p) =>
      p.host === 'ns/host-gone' ? { status: 403, reason: 'UnknownHost', message: 'not managed' } : undefined,
    onRenewed: (p) => void renewedHosts.push(p.host),
    onReport: (report, ctx) => {
      received.push({ report, ctx });
    },
  });
});
test.after.always(() => srv?.close());

interface Answer {
  status: number;
  body: any;
}

function post(
  id: Id,
  path: string,
  body: string | Buffer,
  agent: Agent | false = false,
  chunked = false,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${srv.url}${path}`,
      {
        method: 'POST',
        ca: ca.certPem,
        cert: id.certPem,
        key: id.keyPem,
        agent,
        headers: { 'Content-Type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    if (chunked) req.write(body);
    req.end(chunked ? undefined : body);
  });
}

let seq = Date.now();
const report = (host: string, o: Partial<Report> = {}): Report => ({
  host,
  seq: ++seq,
  nonce: randomBytes(16).toString('hex'),
  timestamp: Date.now(),
  checks: [{ name: 'kubelet', status: 'ok', reason: 'KubeletHealthy', message: '' }],
  ...o,
});
const send = (id: Id, r: Report | string, agent?: Agent) =>
  post(id, '/v1/report', typeof r === 'string' ? r : JSON.stringify(r), agent);

async function rejected(reason: string): Promise<number> {
  const m = registry.getSingleMetric('capbm_agent_reports_total')!;
  const { values } = await m.get();
  return values
    .filter((v) => v.labels.result === 'rejected' && v.labels.reason === reason)
    .reduce((sum, v) => sum + v.value, 0);
}

test.serial('a good report is accepted, handed to onReport, and answered with the provider time', async (t) => {
  const before = received.length;
  const r = report('ns/host-a');
  const a = await send(ids.a, r);
  t.is(a.status, 200);
  t.true(a.body.accepted);
  t.true(Math.abs(a.body.time - Date.now()) < 5000);
  t.is(received.length, before + 1);
  t.deepEqual(received.at(-1)!.report, r);
  t.is(received.at(-1)!.ctx.host, 'ns/host-a');
});

test.serial("a report signed with another host's certificate is rejected", async (t) => {
  const before = received.length;
  const a = await send(ids.b, report('ns/host-a'));
  t.is(a.status, 403);
  t.like(a.body, { accepted: false, reason: 'Forbidden' });
  t.is(received.length, before);
});

test.serial('an expired certificate and a certificate from an unknown CA fail the TLS handshake', async (t) => {
  await t.throwsAsync(send(ids.expired, report('ns/host-a')));
  await t.throwsAsync(send(ids.foreign, report('ns/host-a')));
  t.is((await send(ids.a, report('ns/host-a'))).status, 200);
});

test.serial('a replayed report is rejected: the same one again, or an older sequence number', async (t) => {
  const r = report('ns/host-a');
  t.is((await send(ids.a, r)).status, 200);
  const again = await send(ids.a, r);
  t.is(again.status, 409);
  t.is(again.body.reason, 'Replay');
  const older = await send(ids.a, { ...r, seq: r.seq - 1, nonce: randomBytes(16).toString('hex') });
  t.is(older.body.reason, 'Replay');
  t.is(await rejected('Replay'), 2);
  // Other hosts keep their own sequence.
  t.is((await send(ids.b, report('ns/host-b', { seq: 1 }))).status, 200);
});

test.serial('a stale report (or one from the future) is rejected, with the provider time to correct by', async (t) => {
  const stale = await send(ids.a, report('ns/host-a', { timestamp: Date.now() - 5 * 60_000 }));
  t.is(stale.status, 409);
  t.is(stale.body.reason, 'Stale');
  t.true(Math.abs(stale.body.time - Date.now()) < 5000);
  providerClock = -5 * 60_000; // the provider is behind: this host looks ahead
  t.is((await send(ids.a, report('ns/host-a'))).body.reason, 'FromFuture');
  providerClock = 0;
});

test.serial('malformed JSON and an oversized body are rejected; the server keeps serving', async (t) => {
  const keep = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => keep.destroy());
  const bad = await send(ids.a, '{"host": "host-a", ', keep);
  t.is(bad.status, 400);
  t.is(bad.body.reason, 'Malformed');
  const notAReport = await send(ids.a, JSON.stringify({ ...report('ns/host-a'), checks: 'all fine' }), keep);
  t.is(notAReport.body.reason, 'Malformed');
  // The same connection still carries the next report.
  t.is((await send(ids.a, report('ns/host-a'), keep)).status, 200);
  const huge = await send(ids.a, JSON.stringify(report('ns/host-a', { agentVersion: 'x'.repeat(64 * 1024) })));
  t.is(huge.status, 413);
  t.is(huge.body.reason, 'TooLarge');
  t.is((await send(ids.a, report('ns/host-a'))).status, 200);
  // Streamed without a length: cut off at the limit (the client may see 413 or the closed socket).
  const streamed = await post(ids.a, '/v1/report', 'x'.repeat(256 * 1024), false, true).catch((e: Error) => e);
  t.true(streamed instanceof Error || streamed.status === 413);
  t.true((await rejected('TooLarge')) >= 1);
  t.is((await send(ids.a, report('ns/host-a'))).status, 200);
  t.is((await post(ids.a, '/v1/nothing', '{}')).status, 404);
});

test.serial('a host the provider no longer manages may not report', async (t) => {
  const gone = await issueAgentCertificate(ca, ident('ns/host-gone'));
  const a = await send(gone, report('ns/host-gone'));
  t.is(a.status, 403);
  t.is(a.body.reason, 'UnknownHost');
});

test.serial(
  'renewal: refused while young, without proof of the key, then the agent key certified; once per interval',
  async (t) => {
    const early = await post(ids.a, '/v1/renew', renewal(ids.a, 'ns/host-a').body);
    t.is(early.status, 409);
    t.is(early.body.reason, 'TooEarly');
    t.is((await post(ids.short, '/v1/renew', renewal(ids.short, 'ns/host-b').body)).status, 403);
    // The short certificate (60 s, not-before backdated 5 min) is past half its life at once, and
    // still valid on a slow, loaded machine.
    t.true(needsRotation(ids.short.certPem, Date.now()));
    const old = await post(ids.short, '/v1/renew', JSON.stringify({ host: 'ns/host-a' }));
    t.is(old.body.reason, 'Malformed', 'a renewal without a public key (an old agent) is refused');
    // The proof signed by a key other than the one to certify: refused.
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    const forged = await post(ids.short, '/v1/renew', renewal(ids.short, 'ns/host-a', other.toString()).body);
    t.is(forged.status, 403);
    const r = renewal(ids.short, 'ns/host-a');
    const renewed = await post(ids.short, '/v1/renew', r.body);
    t.is(renewed.status, 200);
    t.deepEqual(identityOfCertificate(renewed.body.certPem), ident('ns/host-a'), 'the same host and claim');
    t.is(renewed.body.keyPem, undefined, 'the key never travels: the agent keeps it');
    t.deepEqual(renewedHosts, ['ns/host-a']);
    t.false(needsRotation(renewed.body.certPem, Date.now()));
    t.is((await send({ certPem: renewed.body.certPem, keyPem: r.keyPem }, report('ns/host-a'))).status, 200);
    // A second renewal of the host at once is refused (rate limit), whatever certificate asks.
    const again = await post(ids.short, '/v1/renew', renewal(ids.short, 'ns/host-a').body);
    t.is(again.status, 429);
  },
);

test('the agent CA round-trips through its Secret data and refuses broken data', async (t) => {
  const created = await loadOrCreateAgentCa(undefined);
  t.true(created.created);
  const loaded = await loadOrCreateAgentCa(created.data);
  t.false(loaded.created);
  t.is(loaded.ca.certPem, created.ca.certPem);
  const other = await loadOrCreateAgentCa(undefined);
  await t.throwsAsync(loadOrCreateAgentCa({ 'ca.crt': created.data['ca.crt'], 'ca.key': other.data['ca.key'] }), {
    name: 'AgentCaInvalid',
  });
  await t.throwsAsync(loadOrCreateAgentCa({ 'ca.crt': created.data['ca.crt'] }), { name: 'AgentCaInvalid' });
});

/** An endpoint of a test's own on a free port: the suite's CA, a new serving certificate, reports dropped. */
async function ownEndpoint(o: Partial<HealthServerOptions> = {}): Promise<HealthServer> {
  return startHealthServer({
    host: '127.0.0.1',
    port: 0,
    ca,
    serverCert: await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] }),
    onReport: () => {},
    ...o,
  });
}

test('connections are capped, and a handshake that never comes is cut', async (t) => {
  const small = await ownEndpoint({ maxConnections: 2, handshakeTimeoutMs: 300 });
  t.teardown(() => small.close());
  const closed = (s: Socket) => new Promise<number>((r) => s.once('close', () => r(Date.now())));
  const open = () => connect(small.port, '127.0.0.1');
  const [s1, s2] = [open(), open()];
  await Promise.all([s1, s2].map((s) => new Promise((r) => s.once('connect', r))));
  const s3 = open();
  const start = Date.now();
  // The third is over the cap: closed at once. The two silent ones: cut after the handshake timeout.
  const ends = await Promise.all([closed(s3), closed(s1), closed(s2)]);
  t.true(ends.every((e) => e - start < 10_000));
  t.true(ends[0] - start < ends[1] - start || ends[0] - start < 300);
});

test.serial(
  'the endpoint keeps a bounded number of connections; the others close after each answer and resume TLS',
  async (t) => {
    const serverCert = await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] });
    // ECDSA P-256: one cheap signature per full handshake.
    t.is(new X509Certificate(serverCert.certPem).publicKey.asymmetricKeyType, 'ec');
    const small = await startHealthServer({
      host: '127.0.0.1',
      port: 0,
      ca,
      serverCert,
      keptConnections: 1,
      onReport: () => {},
    });
    t.teardown(() => small.close());
    const idB = await issueAgentCertificate(ca, ident('ns/host-b'));
    const exchange = (id: Id, agent: Agent, host: string) =>
      new Promise<{ status: number; connection: string | undefined; socket: unknown; resumed: boolean }>(
        (resolve, reject) => {
          const req = request(
            `${small.url}/v1/report`,
            { method: 'POST', ca: ca.certPem, cert: id.certPem, key: id.keyPem, agent },
            (res) => {
              res.resume();
              const socket = res.socket as import('node:tls').TLSSocket;
              const out = {
                status: res.statusCode ?? 0,
                connection: res.headers.connection,
                socket,
                resumed: socket.isSessionReused(),
              };
              res.on('end', () => resolve(out));
            },
          );
          req.on('error', reject);
          req.end(JSON.stringify(report(host)));
        },
      );
    const agentA = new Agent({ keepAlive: true, maxSockets: 1 });
    const agentB = new Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(() => [agentA, agentB].forEach((a) => a.destroy()));
    const a1 = await exchange(ids.a, agentA, 'ns/host-a');
    const b1 = await exchange(idB, agentB, 'ns/host-b');
    t.like(a1, { status: 200, connection: 'keep-alive', resumed: false });
    t.like(b1, { status: 200, connection: 'close', resumed: false });
    const a2 = await exchange(ids.a, agentA, 'ns/host-a');
    const b2 = await exchange(idB, agentB, 'ns/host-b');
    // The kept connection is used again; the closed one reconnects with its TLS session.
    t.is(a2.socket, a1.socket);
    t.like(b2, { status: 200, connection: 'close', resumed: true });
  },
);

/** A TLS connection as agent a, one request on it; resolves with the ticket it got (if any) and whether it resumed. */
function tlsSession(url: string, session?: Buffer): Promise<{ ticket?: Buffer; resumed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: hostname,
      port: Number(port),
      ca: ca.certPem,
      cert: ids.a.certPem,
      key: ids.a.keyPem,
      ...(session ? { session } : {}),
    });
    // TLS 1.3 tickets come after the handshake, with the server's first write (here the answer to
    // a request), as data the socket must read: the first one is the session to keep.
    let ticket: Buffer | undefined;
    let resumed = false;
    s.on('session', (t: Buffer) => (ticket ??= t));
    s.once('secureConnect', () => {
      resumed = s.isSessionReused();
      s.resume();
      s.write('GET /nothing HTTP/1.1\r\nHost: endpoint\r\nConnection: close\r\n\r\n');
    });
    s.once('close', () => resolve({ ...(ticket ? { ticket } : {}), resumed }));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('no answer within 10 s')));
  });
}

test('a restarted endpoint (same CA) resumes the sessions of the one before; another CA does not', async (t) => {
  // ticketKey: the CA key the endpoint derives its ticket keys from (the CA's own by default).
  const start = (ticketKey = ca.keyPem) => ownEndpoint({ ca: { ...ca, keyPem: ticketKey } });
  const before = await start();
  const first = await tlsSession(before.url);
  t.false(first.resumed);
  await before.close();
  // A new process would load the same CA from its Secret and issue itself a new serving certificate.
  const after = await start();
  t.teardown(() => after.close());
  t.truthy(first.ticket);
  t.true((await tlsSession(after.url, first.ticket)).resumed, 'the ticket of the endpoint before is good');
  const other = await start((await createCertificateAuthority('other')).keyPem);
  t.teardown(() => other.close());
  t.false((await tlsSession(other.url, first.ticket)).resumed, 'keys from another CA key refuse it');
});

test('an agent whose report a restart cut off resumes its TLS session on the next report', async (t) => {
  const endpoint = await ownEndpoint();
  t.teardown(() => endpoint.close());
  const resumed: boolean[] = [];
  endpoint.server.on('secureConnection', (s: TLSSocket) => resumed.push(s.isSessionReused()));
  let cut = false;
  let tcp: Socket | undefined; // one connection at a time here
  endpoint.server.on('connection', (s: Socket) => (tcp = s));
  // A process that exits while a report is in flight: the agent's connection ends in an error.
  endpoint.server.prependListener('request', () => cut && tcp?.resetAndDestroy());
  const client = new ProviderClient(endpoint.url, { ...ids.a, caPem: ca.certPem });
  t.teardown(() => client.close());
  t.is((await client.post('/v1/report', report('ns/host-a'))).status, 200);
  cut = true;
  await t.throwsAsync(client.post('/v1/report', report('ns/host-a')), { code: 'ECONNRESET' });
  cut = false;
  t.is((await client.post('/v1/report', report('ns/host-a'))).status, 200);
  // (Node's own Agent forgets its session when a connection ends in an error: a full handshake.)
  t.deepEqual(resumed, [false, true], 'the new connection resumed the session of the one cut');
});

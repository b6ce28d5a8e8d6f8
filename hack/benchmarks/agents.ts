// hack/bench agents [N] [SECONDS]: N simulated node agents (default 10000) report every 10 s over
// mutual TLS to the real health endpoint on 127.0.0.1 for SECONDS (default 60). The endpoint runs
// in this process, as in the manager; the agents run in two child processes (one per vCPU), each
// agent with its own certificate (CN=host:<namespace>/<name>, OU=claim:<host UID>/<machine UID>) and a keep-alive connection, like the real one.
// Prints this process's CPU seconds and peak RSS, and p50/p99 from a report's arrival to its
// HostHealthy condition computed. Bounded: every agent stops at the deadline; loopback only.
import { fork, type ChildProcess } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { freemem } from 'node:os';
import { fileURLToPath } from 'node:url';
import forge from 'node-forge';
import { builtinChecks } from '../../agent/checks/index.ts';
import { hostHealthyCondition } from '../../provider/health/condition.ts';
import { issueHealthServerCertificate, loadOrCreateAgentCa } from '../../provider/health/pki.ts';
import { startHealthServer } from '../../provider/health/server.ts';
import type { ConditionInput } from '../../provider/runtime/conditions.ts';
import type { CheckResult, Report } from '../../common/agent-protocol.ts';

const intervalMs = 10_000;

interface WorkerInit {
  url: string;
  caCertPem: string;
  caKeyPem: string;
  caPublicKeyPem: string;
  hosts: string[];
  seconds: number;
}

interface WorkerStats {
  sent: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  rttMs: number[];
}

const quantile = (xs: number[], q: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

// ---------- the simulated agents (child process) ----------

/**
 * Agent certificates, fast: forge lays out the certificate, Node's native crypto signs it (forge's
 * pure-JS RSA would take ~15 ms per certificate). The simulated agents share one ECDSA P-256 key
 * (forge cannot hold one, so its SubjectPublicKeyInfo is put into the structure by hand): an RSA
 * client key would make the load generators, not the endpoint, the bottleneck of the handshakes.
 * The endpoint's work per handshake is the same either way: its own RSA signature and a verify.
 */
function agentCertificates(init: WorkerInit, spkiDer: Buffer): string[] {
  const caCert = forge.pki.certificateFromPem(init.caCertPem);
  const caKey = createPrivateKey(init.caKeyPem);
  const placeholder = forge.pki.publicKeyFromPem(init.caPublicKeyPem);
  const spki = forge.asn1.fromDer(spkiDer.toString('binary'));
  const now = Date.now();
  const A = forge.asn1;
  return init.hosts.map((h) => {
    const c = forge.pki.createCertificate();
    c.publicKey = placeholder;
    c.serialNumber = '01' + randomBytes(15).toString('hex');
    c.validity.notBefore = new Date(now - 300_000);
    c.validity.notAfter = new Date(now + 86_400_000);
    c.setSubject([
      { name: 'commonName', value: `host:${h}` },
      { name: 'organizationalUnitName', value: `claim:uid-${h.split('/')[1]}/bench` },
    ]);
    c.setIssuer(caCert.subject.attributes);
    c.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
    ]);
    c.signatureOid = c.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!;
    const tbs = (
      forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }
    ).getTBSCertificate(c);
    (tbs.value as forge.asn1.Asn1[])[6] = spki; // version, serial, signature, issuer, validity, subject, spki
    const tbsDer = A.toDer(tbs).getBytes();
    const sig = sign('sha256', Buffer.from(tbsDer, 'binary'), caKey).toString('binary');
    const cert = A.create(A.Class.UNIVERSAL, A.Type.SEQUENCE, true, [
      tbs,
      A.create(A.Class.UNIVERSAL, A.Type.SEQUENCE, true, [
        A.create(A.Class.UNIVERSAL, A.Type.OID, false, A.oidToDer(forge.pki.oids.sha256WithRSAEncryption!).getBytes()),
        A.create(A.Class.UNIVERSAL, A.Type.NULL, false, ''),
      ]),
      A.create(A.Class.UNIVERSAL, A.Type.BITSTRING, false, String.fromCharCode(0) + sig),
    ]);
    const b64 = Buffer.from(A.toDer(cert).getBytes(), 'binary').toString('base64');
    return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
  });
}

const checks: CheckResult[] = [...builtinChecks, 'user:nfs'].map((name) => ({
  name,
  status: 'ok',
  reason: 'Ok',
  message: `${name} fine`,
}));

function postReport(agent: Agent, url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/report`, {
      method: 'POST',
      agent,
      timeout: 30_000,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function runAgents(init: WorkerInit, certs: string[], keyPem: string, startAt: number): Promise<WorkerStats> {
  const stats: WorkerStats = { sent: 0, ok: 0, failed: 0, errors: {}, rttMs: [] };
  const deadline = startAt + init.seconds * 1000;
  const one = async (i: number) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: init.caCertPem, cert: certs[i]!, key: keyPem });
    let seq = Date.now();
    // Spread over the first interval, as agents installed at different times are.
    let next = startAt + Math.random() * intervalMs;
    while (next < deadline) {
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
      const body: Report = {
        host: init.hosts[i]!,
        seq: ++seq,
        nonce: randomBytes(16).toString('hex'),
        timestamp: Date.now(),
        agentVersion: '0.1.0',
        checks,
      };
      const t0 = performance.now();
      stats.sent++;
      try {
        const status = await postReport(agent, init.url, JSON.stringify(body));
        stats.rttMs.push(performance.now() - t0);
        if (status === 200) stats.ok++;
        else {
          stats.failed++;
          stats.errors[`HTTP ${status}`] = (stats.errors[`HTTP ${status}`] ?? 0) + 1;
        }
      } catch (err) {
        stats.failed++;
        const k = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        stats.errors[k] = (stats.errors[k] ?? 0) + 1;
      }
      next += intervalMs;
    }
    agent.destroy();
  };
  await Promise.all(init.hosts.map((_, i) => one(i)));
  return stats;
}

async function worker(): Promise<void> {
  const init = await new Promise<WorkerInit>((r) => process.once('message', (m) => r(m as WorkerInit)));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certs = agentCertificates(init, publicKey.export({ type: 'spki', format: 'der' }));
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  process.send!({ ready: true });
  const { startAt } = await new Promise<{ startAt: number }>((r) =>
    process.once('message', (m) => r(m as { startAt: number })),
  );
  const stats = await runAgents(init, certs, keyPem, startAt);
  // Disconnect only once the (large) message is out, or it is lost.
  process.send!({ stats }, undefined, {}, () => process.disconnect());
}

// ---------- the provider side (this process) ----------

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function peakRssMiB(): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function rssMiB(): number {
  return process.memoryUsage().rss / 1024 / 1024;
}

async function main(): Promise<void> {
  let n = Number(process.argv[2] ?? 10_000);
  const seconds = Number(process.argv[3] ?? 60);
  // About 250 KiB per agent across both sides (TLS sockets, buffers); leave half the memory free.
  const fit = Math.floor(freemem() / 2 / (250 * 1024));
  if (n > fit) {
    process.stderr.write(`only memory for ${fit} agents: running ${fit} instead of ${n}\n`);
    n = fit;
  }
  const { ca } = await loadOrCreateAgentCa(undefined);
  const serverCert = await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] });
  const latencies: number[] = [];
  const conditions = new Map<string, ConditionInput>();
  let reports = 0;
  const srv = await startHealthServer({
    host: '127.0.0.1',
    port: 0,
    ca,
    serverCert,
    maxHosts: n * 2,
    onReport: (report, ctx) => {
      const now = Date.now();
      conditions.set(ctx.host, hostHealthyCondition(report, now, now, 3 * intervalMs));
      latencies.push(performance.now() - ctx.receivedAt);
      reports++;
    },
  });
  const hosts = Array.from({ length: n }, (_, i) => `bench/host-${i}`);
  const halves = [hosts.slice(0, Math.ceil(n / 2)), hosts.slice(Math.ceil(n / 2))].filter((h) => h.length);
  const self = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = halves.map(() =>
    fork(self, ['worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  const ready = children.map((c) => new Promise((r) => c.once('message', r)));
  children.forEach((c, i) =>
    c.send({
      url: srv.url,
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      caPublicKeyPem: ca.publicKeyPem,
      hosts: halves[i]!,
      seconds,
    } satisfies WorkerInit),
  );
  await Promise.all(ready);
  const rssBefore = rssMiB();
  const cpu0 = cpuSeconds();
  const startAt = Date.now() + 500;
  const done = children.map((c) => new Promise<WorkerStats>((r) => c.once('message', (m: any) => r(m.stats))));
  for (const c of children) c.send({ startAt });
  // Steady state: the second half of the run, after every agent has made its first connection.
  let steady = { cpu: 0, wall: 0, reports: 0 };
  const half = setTimeout(
    () => {
      const c = cpuSeconds();
      const t = Date.now();
      const r = reports;
      steady = { cpu: -c, wall: -t, reports: -r };
    },
    500 + (seconds * 1000) / 2,
  );
  const stats = await Promise.all(done);
  clearTimeout(half);
  steady = {
    cpu: steady.cpu + cpuSeconds(),
    wall: (steady.wall + Date.now()) / 1000,
    reports: steady.reports + reports,
  };
  const cpu = cpuSeconds() - cpu0;
  const wall = (Date.now() - startAt) / 1000;
  await srv.close();
  const sum = (k: 'sent' | 'ok' | 'failed') => stats.reduce((s, x) => s + x[k], 0);
  const errors: Record<string, number> = {};
  for (const s of stats) for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
  const rtts = stats.flatMap((s) => s.rttMs);
  const f = (x: number, d = 2) => x.toFixed(d);
  process.stdout.write(
    [
      `command: ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench agents ${n} ${seconds}`}`,
      `${n} simulated agents (2 processes), one report every ${intervalMs / 1000} s each over mTLS (server RSA-2048, agents ECDSA P-256, keep-alive), ${seconds} s, 127.0.0.1`,
      `reports: sent ${sum('sent')}, accepted ${sum('ok')} (${reports} seen by onReport), failed ${sum('failed')}${Object.keys(errors).length ? ` ${JSON.stringify(errors)}` : ''}`,
      `provider process: ${f(cpu)} CPU s over ${f(wall, 1)} s wall (${f((cpu / wall) * 100, 1)}% of one core), RSS ${f(rssBefore, 0)} MiB before the load, peak ${f(peakRssMiB(), 0)} MiB`,
      `  of which the second half (steady state, connections kept alive): ${f(steady.cpu)} CPU s over ${f(steady.wall, 1)} s (${f((steady.cpu / steady.wall) * 100, 1)}% of one core) for ${steady.reports} reports, ${f((steady.cpu / Math.max(1, steady.reports)) * 1e6, 0)} us CPU per report`,
      `report received -> HostHealthy computed: p50 ${f(quantile(latencies, 0.5) * 1000, 0)} us, p99 ${f(quantile(latencies, 0.99) * 1000, 0)} us (${latencies.length} reports)`,
      `agent-side round trip: p50 ${f(quantile(rtts, 0.5), 1)} ms, p99 ${f(quantile(rtts, 0.99), 1)} ms`,
      `hosts with a condition: ${conditions.size}`,
      '',
    ].join('\n'),
  );
}

if (process.argv[2] === 'worker') await worker();
else await main();

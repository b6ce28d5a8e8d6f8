// hack/bench agents [N] [SECONDS] [--kept K] [--burst] [--no-floor] [--restart-at DUR]: N simulated node agents
// (default 10000) report every 10 s over mutual TLS to the real health endpoint on 127.0.0.1 for
// SECONDS (default 120). The endpoint runs in this process, as in the manager; the agents run in
// two child processes, each agent with its own certificate (CN=host:<namespace>/<name>,
// OU=claim:<host UID>/<machine UID>) and the real agent's client (agent/client.ts: keep-alive while
// the endpoint keeps the connection, TLS session resumption otherwise) and schedule
// (agent/schedule.ts: the first report jittered over the interval, jittered backoff on failure).
// Every agent starts at the same instant: a fleet installed, or restarted, at once. --burst drops
// the first report's jitter (every agent connects in the same instant, as agents without it did);
// --kept sets the endpoint's kept connections (default its own, 2500). --restart-at stops the
// endpoint at DUR and starts it again on its port (same CA, new serving certificate): every agent
// meets the restarted endpoint within one interval, as after a provider restart or failover; three
// intervals later once more, with the ticket keys every provider process had before (random).
// Prints the provider process's peak RSS (and per agent), CPU per report, the agent-side round trip
// (p50/p99/max, the whole run and its first minute), reports failed and lost; then the floor in the
// same run: a bare Node https server (same TLS: the ECDSA key, client certificates; no checks, keeps
// every connection) in a process of its own, answering the same agents. The endpoint's process has
// the manager's heap flags (PROVIDER_NODE_OPTIONS) unless node was given its own. Bounded: every agent stops
// at the deadline; loopback only.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { freemem } from 'node:os';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import forge from 'node-forge';
import { builtinChecks } from '../../agent/checks/index.ts';
import { ProviderClient } from '../../agent/client.ts';
import { firstReportDelayMs, nextReportDelayMs, worthRetrying } from '../../agent/schedule.ts';
import { hostHealthyCondition } from '../../provider/health/condition.ts';
import { issueHealthServerCertificate, loadOrCreateAgentCa } from '../../provider/health/pki.ts';
import { startHealthServer } from '../../provider/health/server.ts';
import { registry } from '../../provider/runtime/metrics.ts';
import { toMs } from '../../test/harness/bench-args.ts';
import { PROVIDER_ENV, PROVIDER_NODE_OPTIONS } from '../../test/harness/env.ts';
import type { ConditionInput } from '../../provider/runtime/conditions.ts';
import type { CheckResult, Report } from '../../common/agent-protocol.ts';

const intervalMs = 10_000;
/** The figures this design is measured against (docs/scale.md, an earlier run of the former design). */
const baseline =
  'earlier run (docs/scale.md, former design: every connection kept, RSA-2048 server key, no jitter), 10000 agents: peak RSS 922 MiB (from 109 MiB), 241 us CPU per report, agent-side round trip p99 13.8 s';

interface WorkerInit {
  caCertPem: string;
  caKeyPem: string;
  caPublicKeyPem: string;
  hosts: string[];
}

interface Phase {
  url: string;
  startAt: number;
  seconds: number;
  burst: boolean;
}

interface WorkerStats {
  attempts: number;
  ok: number;
  failed: number;
  /** Failure streaks still open at the deadline: reports never accepted. */
  lost: number;
  errors: Record<string, number>;
  /** [ms since start, round trip ms] per answered attempt. */
  rtt: Array<[number, number]>;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Every agent's client for a phase, made before it starts (a secure context each: key and certificates parsed). */
function clientsFor(init: WorkerInit, certs: string[], keyPem: string, url: string): ProviderClient[] {
  return certs.map((certPem) => new ProviderClient(url, { caPem: init.caCertPem, certPem, keyPem }, 30_000));
}

async function runAgents(init: WorkerInit, clients: ProviderClient[], p: Phase): Promise<WorkerStats> {
  const stats: WorkerStats = { attempts: 0, ok: 0, failed: 0, lost: 0, errors: {}, rtt: [] };
  const deadline = p.startAt + p.seconds * 1000;
  const fail = (k: string) => {
    stats.failed++;
    stats.errors[k] = (stats.errors[k] ?? 0) + 1;
  };
  const one = async (i: number) => {
    const client = clients[i]!;
    let seq = Date.now();
    let failures = 0;
    await sleep(p.startAt - Date.now() + (p.burst ? 0 : firstReportDelayMs(intervalMs)));
    while (Date.now() < deadline) {
      const started = Date.now();
      const body: Report = {
        host: init.hosts[i]!,
        seq: ++seq,
        nonce: randomBytes(16).toString('hex'),
        timestamp: Date.now(),
        agentVersion: '0.2.0',
        checks,
      };
      const t0 = performance.now();
      stats.attempts++;
      let status: number | undefined;
      try {
        status = (await client.post(`/v1/report`, body)).status;
        stats.rtt.push([started - p.startAt, performance.now() - t0]);
        if (status === 200) stats.ok++;
        else fail(`HTTP ${status}`);
      } catch (err) {
        fail((err as NodeJS.ErrnoException).code ?? (err as Error).message);
      }
      failures = status === 200 || !worthRetrying(status) ? 0 : failures + 1;
      await sleep(
        Math.min(deadline - Date.now(), nextReportDelayMs({ intervalMs, elapsedMs: Date.now() - started, failures })),
      );
    }
    if (failures > 0) stats.lost++;
    client.close();
  };
  await Promise.all(init.hosts.map((_, i) => one(i)));
  return stats;
}

async function worker(): Promise<void> {
  const init = await new Promise<WorkerInit>((r) => process.once('message', (m) => r(m as WorkerInit)));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certs = agentCertificates(init, publicKey.export({ type: 'spki', format: 'der' }));
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  let clients: ProviderClient[] = [];
  process.on('message', (m: { prepare?: string; phase?: Phase; exit?: boolean }) => {
    if (m.exit) return process.disconnect();
    if (m.prepare) {
      clients = clientsFor(init, certs, keyPem, m.prepare);
      process.send!({ prepared: true });
    }
    if (m.phase) void runAgents(init, clients, m.phase).then((stats) => process.send!({ stats }));
  });
  process.send!({ ready: true });
}

// ---------- the floor: a bare https server (child process) ----------

async function floorServer(): Promise<void> {
  const o = await new Promise<{ caPem: string; certPem: string; keyPem: string }>((r) =>
    process.once('message', (m) => r(m as { caPem: string; certPem: string; keyPem: string })),
  );
  let answered = 0;
  const server = createServer(
    {
      key: o.keyPem,
      cert: o.certPem,
      ca: [o.caPem],
      requestCert: true,
      rejectUnauthorized: true,
      keepAliveTimeout: 15_000,
    },
    (req, res) => {
      req.resume();
      req.on('end', () => {
        const payload = JSON.stringify({ accepted: true, time: Date.now() });
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) });
        res.end(payload);
        answered++;
      });
    },
  );
  await new Promise<void>((r) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => r()));
  const rssBefore = rssMiB();
  let cpu0 = 0;
  process.on('message', (m: { start?: boolean; stop?: boolean }) => {
    if (m.start) cpu0 = cpuSeconds();
    if (m.stop) {
      server.closeAllConnections();
      server.close();
      process.send!({ cpu: cpuSeconds() - cpu0, rssBefore, peak: peakRssMiB(), answered }, undefined, {}, () =>
        process.disconnect(),
      );
    }
  });
  process.send!({ port: (server.address() as AddressInfo).port });
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

function argOf(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Listens on the first free port from 20000 (below Linux's ephemeral range, 32768 on). */
async function belowEphemeralPorts<T>(listen: (port: number) => Promise<T>): Promise<T> {
  for (let port = 20_000; ; port++) {
    try {
      return await listen(port);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || port >= 32_000) throw e;
    }
  }
}

const message = <T>(c: ChildProcess, pick: (m: any) => T | undefined) =>
  new Promise<T>((resolve) => {
    const on = (m: unknown) => {
      const v = pick(m);
      if (v === undefined) return;
      c.off('message', on);
      resolve(v);
    };
    c.on('message', on);
  });

/** Runs one phase in the agents' processes; resolves with their merged figures. */
async function runPhase(
  children: ChildProcess[],
  p: Omit<Phase, 'startAt'>,
  onStart: (startAt: number) => void = () => {},
): Promise<WorkerStats> {
  const prepared = children.map((c) => message(c, (m) => m.prepared as boolean | undefined));
  for (const c of children) c.send({ prepare: p.url });
  await Promise.all(prepared);
  const phase: Phase = { ...p, startAt: Date.now() + 500 };
  onStart(phase.startAt);
  const done = children.map((c) => message(c, (m) => m.stats as WorkerStats | undefined));
  for (const c of children) c.send({ phase });
  const all = await Promise.all(done);
  const errors: Record<string, number> = {};
  for (const s of all) for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
  const sum = (k: 'attempts' | 'ok' | 'failed' | 'lost') => all.reduce((n, s) => n + s[k], 0);
  return {
    attempts: sum('attempts'),
    ok: sum('ok'),
    failed: sum('failed'),
    lost: sum('lost'),
    errors,
    rtt: all.flatMap((s) => s.rtt),
  };
}

const f = (x: number, d = 2) => x.toFixed(d);
const ms = (x: number) => (x >= 1000 ? `${f(x / 1000, 2)} s` : `${f(x, 1)} ms`);

/** TLS handshakes the endpoint completed so far: resumed (a ticket) and full. */
async function handshakeCounts(): Promise<{ resumed: number; full: number }> {
  const m = await registry.getSingleMetric('capbm_agent_tls_handshakes_total')?.get();
  const of = (v: string) => m?.values.find((x) => x.labels.resumed === v)?.value ?? 0;
  return { resumed: of('true'), full: of('false') };
}

/** p50, p99 and max of some round trips. */
const spread = (xs: number[]) =>
  `p50 ${ms(quantile(xs, 0.5))}, p99 ${ms(quantile(xs, 0.99))}, max ${ms(Math.max(...xs))} (${xs.length} answers)`;

function roundTrips(s: WorkerStats): string[] {
  const all = s.rtt.map(([, r]) => r);
  const first = s.rtt.filter(([at]) => at < 60_000).map(([, r]) => r);
  return [
    `agent-side round trip, whole run:    ${spread(all)}`,
    `agent-side round trip, first minute: ${spread(first)}`,
  ];
}

function outcome(s: WorkerStats): string {
  const errs = Object.keys(s.errors).length ? ` ${JSON.stringify(s.errors)}` : '';
  return `reports: attempts ${s.attempts}, accepted ${s.ok}, failed attempts ${s.failed}${errs}, lost (never accepted by the end) ${s.lost}`;
}

interface Restart {
  at: number;
  tickets: string;
  before: { resumed: number; full: number };
  /** From the stop to every socket closed. */
  stopMs?: number;
  /** The interval after it: handshakes by then, and the provider's CPU. */
  after?: { resumed: number; full: number };
  cpu?: number;
}

/** What a restart cost in the interval after it: handshakes resumed or full, CPU, round trips. */
function restartFigures(r: Restart, s: WorkerStats): string[] {
  const resumed = (r.after?.resumed ?? NaN) - r.before.resumed;
  const full = (r.after?.full ?? NaN) - r.before.full;
  const next = s.rtt.filter(([at]) => at >= r.at && at < r.at + intervalMs).map(([, x]) => x);
  return [
    `restart at ${f(r.at / 1000, 1)} s (--restart-at), session tickets ${r.tickets}: the endpoint stopped, every connection cut (closed in ${r.stopMs === undefined ? 'n/a' : ms(r.stopMs)}), and started again on its port (same CA, a new serving certificate); in the ${intervalMs / 1000} s after it:`,
    `  TLS handshakes: ${resumed} resumed (session ticket), ${full} full (${f((resumed / Math.max(1, resumed + full)) * 100, 1)}% resumed); provider CPU ${r.cpu === undefined ? 'n/a' : `${f(r.cpu)} s`}`,
    `  agent-side round trip of the reports started then: ${spread(next)}`,
  ];
}

async function main(): Promise<void> {
  const pos = process.argv
    .slice(2)
    .filter((a, i, xs) => !a.startsWith('--') && !['--kept', '--restart-at'].includes(xs[i - 1] ?? ''));
  let n = Number(pos[0] ?? 10_000);
  const seconds = Number(pos[1] ?? 120);
  const kept = argOf('--kept') ? Number(argOf('--kept')) : undefined;
  const burst = process.argv.includes('--burst');
  const floor = !process.argv.includes('--no-floor');
  // About 250 KiB per agent across both sides (TLS sockets, buffers); leave half the memory free.
  const fit = Math.floor(freemem() / 2 / (250 * 1024));
  if (n > fit) {
    process.stderr.write(`only memory for ${fit} agents: running ${fit} instead of ${n}\n`);
    n = fit;
  }
  const restartAt = argOf('--restart-at') ? toMs('restart-at', argOf('--restart-at')!) : undefined;
  const { ca } = await loadOrCreateAgentCa(undefined);
  const serverCert = await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] });
  const latencies: number[] = [];
  const conditions = new Map<string, ConditionInput>();
  let reports = 0;
  const endpoint = async (port: number, cert: typeof serverCert, ticketsFromCa = true) => {
    const started = await startHealthServer({
      host: '127.0.0.1',
      port,
      // Without the CA's key the endpoint cannot derive its ticket keys: Node picks random ones.
      ca: ticketsFromCa ? ca : { certPem: ca.certPem, publicKeyPem: ca.publicKeyPem },
      serverCert: cert,
      maxHosts: n * 2,
      ...(kept ? { keptConnections: kept } : {}),
      onReport: (report, ctx) => {
        const now = Date.now();
        conditions.set(ctx.host, hostHealthyCondition(report, now, now, 3 * intervalMs));
        latencies.push(performance.now() - ctx.receivedAt);
        reports++;
      },
    });
    // A restart cuts every socket at once, as a process that exits does: handshakes in flight too
    // (close() alone waits for them).
    const sockets = new Set<Socket>();
    started.server.on('connection', (c: Socket) => {
      sockets.add(c);
      c.once('close', () => sockets.delete(c));
    });
    const cut = async () => {
      const closed = started.close();
      for (const c of sockets) c.destroy();
      await closed;
    };
    return { ...started, cut };
  };
  // A port below the ephemeral range, as the provider's 9443 is: while the endpoint restarts,
  // thousands of agents reconnecting take local ports from that range and can take its port.
  let srv = await belowEphemeralPorts((port) => endpoint(port, serverCert));
  const hosts = Array.from({ length: n }, (_, i) => `bench/host-${i}`);
  const halves = [hosts.slice(0, Math.ceil(n / 2)), hosts.slice(Math.ceil(n / 2))].filter((h) => h.length);
  const self = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = halves.map(() =>
    fork(self, ['worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] }),
  );
  const ready = children.map((c) => message(c, (m) => m.ready as boolean | undefined));
  children.forEach((c, i) =>
    c.send({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      caPublicKeyPem: ca.publicKeyPem,
      hosts: halves[i]!,
    } satisfies WorkerInit),
  );
  await Promise.all(ready);
  const rssBefore = rssMiB();
  let cpu0 = 0;
  let startAt = 0;
  // Steady state: the second half of the run, every agent past its first report.
  let steady = { cpu: 0, wall: 0, reports: 0 };
  let half: NodeJS.Timeout | undefined;
  srv.server.once('connection', () => {
    cpu0 = cpuSeconds();
    startAt = Date.now();
    const at = () => (steady = { cpu: -cpuSeconds(), wall: -Date.now(), reports: -reports });
    half = setTimeout(at, (seconds * 1000) / 2);
  });
  // Connections open at once, sampled every second (kept ones and those in a request).
  let maxOpen = 0;
  const sampler = setInterval(() => srv.server.getConnections((_e, c) => (maxOpen = Math.max(maxOpen, c ?? 0))), 1000);
  // --restart-at: the endpoint stops (every connection cut) and starts again on its port, as a
  // restarted provider would: the same CA (from its Secret), a new serving certificate. Three
  // intervals later, the same again without the CA's key: Node's own random ticket keys, as every
  // provider process had before the keys were derived from the CA (the peer, in the same run).
  const restarts: Restart[] = [];
  const timers: NodeJS.Timeout[] = [];
  const restartOnce = async (phaseStart: number, tickets: string, fromCa: boolean) => {
    const r: Restart = { at: Date.now() - phaseStart, tickets, before: await handshakeCounts() };
    const cpu0 = cpuSeconds();
    restarts.push(r);
    const port = srv.port;
    const t = performance.now();
    await srv.cut();
    r.stopMs = performance.now() - t;
    srv = await endpoint(port, await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] }), fromCa);
    await sleep(intervalMs);
    r.cpu = cpuSeconds() - cpu0;
    r.after = await handshakeCounts();
  };
  const onStart = (phaseStart: number) => {
    if (restartAt === undefined) return;
    const plan = [
      { at: restartAt, tickets: 'kept: keys from the CA' },
      { at: restartAt + 3 * intervalMs, tickets: "lost: Node's random keys (as before)" },
    ].filter((x) => x.at + intervalMs <= seconds * 1000);
    for (const x of plan)
      timers.push(
        setTimeout(
          () =>
            void restartOnce(phaseStart, x.tickets, x === plan[0]).catch((e: Error) => {
              process.stderr.write(`the restart at ${x.at / 1000} s failed: ${e.message}\n`);
              process.exit(1);
            }),
          phaseStart + x.at - Date.now(),
        ),
      );
  };
  const main = await runPhase(children, { url: srv.url, seconds, burst }, onStart);
  const shakes = await handshakeCounts();
  timers.forEach(clearTimeout);
  clearInterval(sampler);
  clearTimeout(half);
  steady = {
    cpu: steady.cpu + cpuSeconds(),
    wall: (steady.wall + Date.now()) / 1000,
    reports: steady.reports + reports,
  };
  const cpu = cpuSeconds() - cpu0;
  const wall = (Date.now() - startAt) / 1000;
  const peak = peakRssMiB();
  await srv.close();
  const out = [
    `command: ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench agents ${process.argv.slice(2).join(' ')}`}`,
    `${n} simulated agents (2 processes), one report every ${intervalMs / 1000} s each over mTLS (server ECDSA P-256, agents ECDSA P-256), ${seconds} s, 127.0.0.1; all started at once, first report ${burst ? 'at once (--burst)' : 'jittered over the interval'}; kept connections ${kept ?? 'default (2500)'}`,
    `endpoint process: node ${process.execArgv.join(' ')}${process.env.MALLOC_ARENA_MAX ? `, MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX}` : ''} (the manager's heap flags unless given others)`,
    outcome(main),
    `TLS handshakes at the endpoint, whole run: ${shakes.resumed} resumed (session ticket), ${shakes.full} full`,
    `provider process: ${f(cpu)} CPU s over ${f(wall, 1)} s wall (${f((cpu / wall) * 100, 1)}% of one core), ${f((cpu / Math.max(1, reports)) * 1e6, 0)} us CPU per report`,
    `  second half: ${f(steady.cpu)} CPU s over ${f(steady.wall, 1)} s (${f((steady.cpu / steady.wall) * 100, 1)}% of one core) for ${steady.reports} reports, ${f((steady.cpu / Math.max(1, steady.reports)) * 1e6, 0)} us CPU per report`,
    `  connections open at once (sampled each second): at most ${maxOpen}`,
    `  RSS ${f(rssBefore, 0)} MiB before the load, peak ${f(peak, 0)} MiB: ${f(peak - rssBefore, 0)} MiB added, ${f(((peak - rssBefore) * 1024) / n, 1)} KiB per agent`,
    ...roundTrips(main),
    `report received -> HostHealthy computed: p50 ${f(quantile(latencies, 0.5) * 1000, 0)} us, p99 ${f(quantile(latencies, 0.99) * 1000, 0)} us; hosts with a condition: ${conditions.size}`,
    ...restarts.flatMap((r) => restartFigures(r, main)),
  ];
  process.stdout.write(out.join('\n') + '\n');
  if (floor) {
    const fl = fork(self, ['floor'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    const port = message(fl, (m) => m.port as number | undefined);
    fl.send({ caPem: ca.certPem, certPem: serverCert.certPem, keyPem: serverCert.keyPem });
    const url = `https://127.0.0.1:${await port}`;
    fl.send({ start: true });
    const fs = await runPhase(children, { url, seconds, burst });
    const figures = message(fl, (m) =>
      m.peak ? (m as { cpu: number; rssBefore: number; peak: number; answered: number }) : undefined,
    );
    fl.send({ stop: true });
    const x = await figures;
    process.stdout.write(
      [
        `floor, same run: a bare Node https server (same TLS, keeps every connection) in its own process, the same agents and schedule:`,
        `  ${outcome(fs)}`,
        `  CPU ${f(x.cpu)} s, ${f((x.cpu / Math.max(1, x.answered)) * 1e6, 0)} us per report; RSS ${f(x.rssBefore, 0)} MiB before, peak ${f(x.peak, 0)} MiB: ${f(x.peak - x.rssBefore, 0)} MiB added, ${f(((x.peak - x.rssBefore) * 1024) / n, 1)} KiB per agent`,
        ...roundTrips(fs).map((l) => `  ${l}`),
        '',
      ].join('\n'),
    );
  }
  process.stdout.write(`baseline: ${baseline}\n`);
  for (const c of children) c.send({ exit: true });
}

/**
 * The endpoint's process runs with the manager's heap flags (the Deployment's, as the harness gives
 * every provider process: PROVIDER_NODE_OPTIONS) unless it was started with its own: this process
 * starts itself again with them and exits with its code.
 */
async function withShippedHeap(): Promise<boolean> {
  if (process.execArgv.some((a) => a.startsWith('--max-old-space-size'))) return false;
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [...PROVIDER_NODE_OPTIONS, self, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, ...PROVIDER_ENV },
  });
  process.exit(await new Promise<number>((r) => child.on('exit', (code) => r(code ?? 1))));
}

if (process.argv[2] === 'worker') await worker();
else if (process.argv[2] === 'floor') await floorServer();
else if (!(await withShippedHeap())) await main();

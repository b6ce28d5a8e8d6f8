// hack/bench agent-footprint [SECONDS]: what the node agent costs a host.
//  1. Shipping the runtime: bytes of this Node.js binary raw and gzipped, and seconds to send it
//     through CAPBM's SSH transport into `gzip -dc` + sha256 check, against an in-process ssh2
//     server on 127.0.0.1 (the link is loopback: the figure is the SSH and CPU cost, a real
//     network adds bytes / bandwidth); plus the re-install probe (sha256 of the runtime on host).
//  2. One pass of every check, in this process: CPU per pass against this machine's real /.
//  3. The bundled agent as a process, 1 s interval, against the real health endpoint and a temp
//     root with a kubelet and containerd in it, for SECONDS (default 60): CPU and RSS from
//     /proc/<pid>/stat and status, with and without the V8 flags the unit uses.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCb, constants as zlib } from 'node:zlib';
import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import { buildAgentBundle } from '../../agent/build.ts';
import { newCheckState, runChecks } from '../../agent/checks/index.ts';
import { httpGet } from '../../agent/checks/env.ts';
import { defaultThresholds } from '../../agent/config.ts';
import { runCommand } from '../../agent/runner.ts';
import { runtimeFlags } from '../../common/agent-host.ts';
import { issueAgentCertificate, issueHealthServerCertificate, loadOrCreateAgentCa } from '../../provider/health/pki.ts';
import { startHealthServer } from '../../provider/health/server.ts';
import { connect, fingerprint } from '../../provider/ssh/index.ts';

const seconds = Number(process.argv[2] ?? 60);
const dir = mkdtempSync(join(tmpdir(), 'capbm-agent-footprint-'));
const lines: string[] = [`command: ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench agent-footprint ${seconds}`}`];
const out = (s: string) => {
  lines.push(s);
  process.stderr.write(s + '\n');
};
const mib = (b: number) => (b / 1024 / 1024).toFixed(1);

// ---------- 1. shipping the runtime ----------

/** An ssh2 server on 127.0.0.1 that runs every exec with sh in this machine's temp folder. */
async function sshServer(clientPublic: string) {
  const hostKey = ssh2.utils.generateKeyPairSync('ed25519');
  const allowed = ssh2.utils.parseKey(clientPublic) as ssh2.ParsedKey;
  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on('authentication', (ctx) => {
      const ok =
        ctx.method === 'publickey' &&
        ctx.key.algo === allowed.type &&
        Buffer.compare(ctx.key.data, allowed.getPublicSSH()) === 0;
      if (ok) ctx.accept();
      else ctx.reject(['publickey']);
    });
    client.on('ready', () =>
      client.on('session', (accept) =>
        accept().once('exec', (acc, _rej, info) => {
          const stream = acc();
          const child = spawn('/bin/sh', ['-c', info.command], { cwd: dir });
          stream.pipe(child.stdin);
          child.stdout.pipe(stream, { end: false });
          child.stderr.pipe(stream.stderr, { end: false });
          child.on('close', (code) => {
            stream.exit(code ?? 1);
            stream.end();
          });
        }),
      ),
    );
    client.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const pub = ssh2.utils.parseKey(hostKey.public) as ssh2.ParsedKey;
  return { server, port: (server.address() as AddressInfo).port, fp: fingerprint(pub.getPublicSSH()) };
}

async function shipping(): Promise<void> {
  const raw = readFileSync(process.execPath);
  let t = performance.now();
  const gz = await promisify(gzipCb)(raw, { level: zlib.Z_BEST_SPEED });
  const gzipS = (performance.now() - t) / 1000;
  const sha = createHash('sha256').update(raw).digest('hex');
  const key = ssh2.utils.generateKeyPairSync('ed25519');
  const s = await sshServer(key.public);
  const conn = await connect({
    host: '127.0.0.1',
    port: s.port,
    user: 'root',
    credentials: { privateKey: key.private },
    hostKey: { kind: 'pinned', fingerprints: [s.fp] },
  });
  t = performance.now();
  await conn.exec(`gzip -dc > node && echo "${sha}  node" | sha256sum -c --quiet && chmod 0755 node`, { stdin: gz });
  const gzSend = (performance.now() - t) / 1000;
  rmSync(join(dir, 'node'));
  t = performance.now();
  await conn.upload(join(dir, 'node'), raw, { mode: 0o755 });
  const rawSend = (performance.now() - t) / 1000;
  t = performance.now();
  await conn.exec('sha256sum < node >/dev/null');
  const probe = (performance.now() - t) / 1000;
  conn.close();
  s.server.close();
  out(`runtime ${process.version} ${process.execPath}: ${mib(raw.length)} MiB raw, ${mib(gz.length)} MiB gzip -1`);
  out(`  provider, once per process: gzip -1 ${gzipS.toFixed(2)} s`);
  out(
    `  per host, first install over SSH on loopback: gzipped + gunzip + sha256 check ${gzSend.toFixed(2)} s; raw upload ${rawSend.toFixed(2)} s`,
  );
  out(`  per host, every later install: sha256 of the runtime on the host ${probe.toFixed(2)} s, nothing sent`);
}

// ---------- 2. one pass of the checks ----------

async function onePass(): Promise<void> {
  const env = { root: '/', run: runCommand, httpGet, now: Date.now, thresholds: { ...defaultThresholds } };
  const state = newCheckState(env);
  const cfg = { checks: [], disabledChecks: ['kubelet'], kubeletHealthzUrl: '' };
  await runChecks(env, cfg, state);
  const n = 1000;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await runChecks(env, cfg, state);
  const c = process.cpuUsage(c0);
  out(
    `one pass of the built-in checks (no kubelet healthz) on this machine's /, ${n} passes: ${((c.user + c.system) / n / 1000).toFixed(2)} ms CPU, ${((performance.now() - t0) / n).toFixed(2)} ms wall each`,
  );
}

// ---------- 3. the agent as a process ----------

function procStat(pid: number): { cpuS: number; rssMiB: number; hwmMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { cpuS: ticks / 100, rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

async function agentProcess(): Promise<void> {
  const bundle = await buildAgentBundle();
  const { ca } = await loadOrCreateAgentCa(undefined);
  let reports = 0;
  const srv = await startHealthServer({
    host: '127.0.0.1',
    port: 0,
    ca,
    serverCert: await issueHealthServerCertificate(ca, { ipAddresses: ['127.0.0.1'] }),
    onReport: () => void reports++,
  });
  const healthz = createServer((_q, r) => r.end('ok'));
  await new Promise<void>((r) => healthz.listen(0, '127.0.0.1', r));
  const root = join(dir, 'root');
  for (const [pid, comm] of [
    [100, 'kubelet'],
    [200, 'containerd'],
  ] as const) {
    mkdirSync(join(root, `proc/${pid}`), { recursive: true });
    writeFileSync(join(root, `proc/${pid}/comm`), `${comm}\n`);
  }
  writeFileSync(join(root, 'proc/meminfo'), readFileSync('/proc/meminfo'));
  const run = async (label: string, flags: string[], host: string) => {
    const id = await issueAgentCertificate(ca, { host: `bench/${host}`, hostUid: `uid-${host}`, machineUid: 'bench' });
    const pki = join(dir, host);
    mkdirSync(pki);
    writeFileSync(join(pki, 'crt'), id.certPem);
    writeFileSync(join(pki, 'key'), id.keyPem);
    writeFileSync(join(pki, 'ca'), ca.certPem);
    const config = join(pki, 'agent.json');
    writeFileSync(
      config,
      JSON.stringify({
        host: `bench/${host}`,
        reportUrl: srv.url,
        intervalSeconds: 1,
        root,
        kubeletHealthzUrl: `http://127.0.0.1:${(healthz.address() as AddressInfo).port}/healthz`,
        checks: [{ name: 'true', command: 'true', intervalSeconds: 30 }],
        pki: { cert: join(pki, 'crt'), key: join(pki, 'key'), ca: join(pki, 'ca') },
      }),
    );
    const p = spawn(process.execPath, [...flags, bundle.path, '--config', config], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 5000)); // start-up excluded
    const a = procStat(p.pid!);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const b = procStat(p.pid!);
    p.kill('SIGTERM');
    const cpu = b.cpuS - a.cpuS;
    return `${label}: ${(cpu / seconds).toFixed(4)} CPU s per s (${((cpu / seconds) * 100).toFixed(2)}% of a core), RSS ${b.rssMiB.toFixed(1)} MiB (peak ${b.hwmMiB.toFixed(1)} MiB), start-up CPU ${a.cpuS.toFixed(2)} s`;
  };
  const r0 = reports;
  const results = await Promise.all([
    run(`agent with the unit's flags (${runtimeFlags.join(' ')})`, runtimeFlags, 'with-flags'),
    run('agent without flags', [], 'no-flags'),
  ]);
  out(
    `bundled agent (${bundle.bytes} bytes) as a process, 1 s interval, ${seconds} s measured after 5 s, ${reports - r0} reports accepted (two agents)`,
  );
  for (const r of results) out(`  ${r}`);
  await srv.close();
  healthz.close();
}

try {
  await shipping();
  await onePass();
  await agentProcess();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(lines.join('\n') + '\n');

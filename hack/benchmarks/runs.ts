// hack/bench runs [--runs 10000] [--connections 1000] [--seconds 20]
// What a bootstrap in flight costs the manager, in this process (2 cores, shared: figures are
// upper bounds):
//  1. --runs bootstrap runs followed at once by the provider's own code (BootstrapRuns,
//     bootstrapWork, the real rendered bootstrap of CABPK's worker fixture), over an SSH stand-in
//     that answers the start and every check at once ("running", a few log lines), for --seconds:
//     V8 heap and RSS per run in flight (after a full GC, the machines and hosts made before the
//     baseline, as a manager's caches hold them), checks per second and provider CPU per check
//     (no SSH: the check's own cost; a real check adds one SSH connection), and the most checks
//     in flight at once (the bound, --bootstrap-check-concurrency's default 32).
//  2. For comparison, what following a bootstrap cost before: one SSH connection held per run.
//     --connections real connections (provider/ssh connect) to an ssh2 server in a child process
//     on 127.0.0.1, each with a command held open as `tail -f` was: heap and RSS per connection.
import { fork } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import ssh2 from 'ssh2';
import { render } from '../../cloud-init/index.ts';
import { createLogger } from '../../common/log.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { bootstrapWork } from '../../provider/controllers/bootstrap-follow.ts';
import { BootstrapRuns } from '../../provider/controllers/bootstrap-runs.ts';
import type { Step } from '../../provider/controllers/machine-steps.ts';
import { bootstrapMetaData } from '../../provider/controllers/metadata.ts';
import { connect, fingerprint, type SshConnection, type SshRunner, type SshSession } from '../../provider/ssh/index.ts';
import { workerData } from '../../test/harness/machine-world.ts';

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function gc(): void {
  setFlagsFromString('--expose-gc');
  const g = runInNewContext('gc') as () => void;
  g();
  g();
}

const mib = (b: number) => b / 2 ** 20;
const fmt = (x: number, d = 1) => x.toFixed(d);
const memory = () => {
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss, external: m.external };
};
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** The SSH stand-in: a run starts at once; every check says it runs and shows the same log. */
function standIn(stats: { checks: number; now: number; most: number }): SshRunner {
  const log = Buffer.from('CAPBM-STEP write_files.0 start\n[capbm write_files.0] wrote 3 files\n');
  const session = {
    exec(command: string) {
      let stdout = '';
      if (command.includes('CAPBM-CHECK')) {
        stats.checks++;
        const o = Number(/^o=(\d+)$/m.exec(command)?.[1] ?? 0);
        stdout = `CAPBM-CHECK rc=none alive=yes sentinel=no size=${log.length}\n${log.subarray(o).toString('base64')}\n`;
      } else if (command.includes('CAPBM-RUN')) stdout = 'CAPBM-RUN started\n';
      return Promise.resolve({ exitCode: 0, stdout, stderr: '' });
    },
    upload: () => Promise.resolve(),
    close: () => {},
  } as unknown as SshSession;
  return {
    async withHost<T>(_t: unknown, fn: (c: SshSession) => Promise<T>): Promise<T> {
      stats.most = Math.max(stats.most, ++stats.now);
      try {
        await new Promise((r) => setTimeout(r, 1)); // a connection takes a while
        return await fn(session);
      } finally {
        stats.now--;
      }
    },
  };
}

async function runsInFlight(n: number, seconds: number): Promise<string[]> {
  const log = createLogger({ level: 'error' });
  const stats = { checks: 0, now: 0, most: 0 };
  const ssh = standIn(stats);
  const key = ssh2.utils.generateKeyPairSync('ed25519').private;
  // What the manager's caches hold anyway: made before the baseline.
  const objects = Array.from({ length: n }, (_, i) => ({
    m: {
      apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta2',
      kind: 'BareMetalMachine',
      metadata: { name: `c${i % 1000}-m${i}`, namespace: 'fleet', uid: `uid-${i}` },
      spec: {},
    } as unknown as BareMetalMachine,
    host: { metadata: { name: `h${i}`, namespace: 'fleet' }, spec: { address: `10.0.${i >> 8}.${i & 255}` } },
  }));
  const runs = new BootstrapRuns({ wake: () => {}, log, checks: { firstMs: 200, maxMs: 2000 } });
  const before = memory();
  const cpu0 = cpu();
  const stop = new AbortController();
  for (const [i, o] of objects.entries()) {
    const r = render(workerData, {
      metaData: {
        ...bootstrapMetaData({
          namespace: 'fleet',
          machineName: o.m.metadata.name,
          hostName: o.host.metadata.name,
          address: o.host.spec.address,
        }),
      },
      format: 'cloud-config',
    });
    const s = {
      d: { ssh, runs },
      m: o.m,
      host: o.host as unknown as BareMetalHost,
      key: `fleet/${o.m.metadata.name}`,
      log,
      signal: stop.signal,
    } as unknown as Step;
    const target = {
      host: o.host.spec.address,
      user: 'root',
      credentials: { privateKey: key },
      hostKey: { kind: 'pinned' as const, fingerprints: ['SHA256:x'] },
    };
    runs.start(`uid-${i}`, s.key, stop.signal, bootstrapWork(s, r, target));
    if (i % 500 === 499) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 1000)); // the starts' connections
  stats.most = stats.now; // from now on: checks only
  const cpuStarted = cpu();
  const checks0 = stats.checks;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const dt = (performance.now() - t0) / 1000;
  const checks = stats.checks - checks0;
  const cpu1 = cpu();
  const during = memory();
  const running = runs.size;
  stop.abort();
  await new Promise((r) => setTimeout(r, 500));
  return [
    `runs in flight: ${running} (each started, then checked: ${fmt(stats.checks / n, 1)} checks per run in ${seconds} s, first after 0.2 s, at most every 2 s)`,
    `memory per run in flight: V8 heap ${fmt((during.heap - before.heap) / n / 1024, 2)} KiB, external ${fmt((during.external - before.external) / n / 1024, 2)} KiB, RSS ${fmt((during.rss - before.rss) / n / 1024, 2)} KiB (heap ${fmt(mib(before.heap))} -> ${fmt(mib(during.heap))} MiB, RSS ${fmt(mib(before.rss))} -> ${fmt(mib(during.rss))} MiB, after a full GC)`,
    `checks: ${fmt(checks / dt, 0)}/s, ${fmt(((cpu1 - cpuStarted) / Math.max(1, checks)) * 1e6, 0)} us CPU each (the check's own work, no SSH); at most ${stats.most} in flight at once (bound 32); starting ${n} runs (render, start) took ${fmt(cpuStarted - cpu0, 1)} CPU s`,
  ];
}

/** The child: an ssh2 server on 127.0.0.1 that accepts any key; `hold` keeps its channel open. */
function serve(): void {
  const k = ssh2.utils.generateKeyPairSync('ed25519');
  const server = new ssh2.Server({ hostKeys: [k.private] }, (client) => {
    client.on('authentication', (ctx) => ctx.accept());
    client.on('session', (accept) =>
      accept().on('exec', (acc, _rej, info) => {
        const stream = acc();
        if (info.command !== 'hold') {
          stream.exit(0);
          stream.end();
        }
      }),
    );
    client.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => {
    const port = (server.address() as { port: number }).port;
    process.send!({ port, fp: fingerprint(Buffer.from(k.public.split(' ')[1]!, 'base64')) });
  });
}

async function heldConnections(n: number): Promise<string[]> {
  const child = fork(new URL(import.meta.url).pathname, ['--server'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const { port, fp } = await new Promise<{ port: number; fp: string }>((r) => child.once('message', r as never));
    const key = ssh2.utils.generateKeyPairSync('ed25519').private;
    const target = {
      host: '127.0.0.1',
      port,
      user: 'root',
      credentials: { privateKey: key },
      hostKey: { kind: 'pinned' as const, fingerprints: [fp] },
      connectTimeoutMs: 120_000,
    };
    const before = memory();
    const conns: SshConnection[] = [];
    const held: Array<Promise<unknown>> = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i += 32) {
      const batch = await Promise.all(Array.from({ length: Math.min(32, n - i) }, () => connect(target)));
      for (const c of batch) held.push(c.exec('hold', { check: false }).catch(() => undefined));
      conns.push(...batch);
    }
    const dt = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    const during = memory();
    for (const c of conns) c.close();
    await Promise.all(held);
    return [
      `held SSH connections (the previous way of following): ${n}, opened in ${fmt(dt, 1)} s (${fmt(n / dt, 0)}/s, client and server on this machine)`,
      `memory per held connection: V8 heap ${fmt((during.heap - before.heap) / n / 1024, 2)} KiB, RSS ${fmt((during.rss - before.rss) / n / 1024, 2)} KiB (heap ${fmt(mib(before.heap))} -> ${fmt(mib(during.heap))} MiB, RSS ${fmt(mib(before.rss))} -> ${fmt(mib(during.rss))} MiB)`,
    ];
  } finally {
    child.kill();
  }
}

async function main(): Promise<void> {
  const n = flag('runs', 10_000);
  const c = flag('connections', 1000);
  const seconds = flag('seconds', 20);
  const lines = [
    `$ ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench runs --runs ${n} --connections ${c} --seconds ${seconds}`}`,
  ];
  lines.push(...(await runsInFlight(n, seconds)));
  if (c > 0) lines.push(...(await heldConnections(c)));
  process.stdout.write(lines.join('\n') + '\n');
  process.exit(0);
}

if (process.argv[2] === '--server') serve();
else await main();

// hack/bench provision [N]: N workers of a real CAPI cluster (KubeadmControlPlane + MachineDeployment
// from cluster-template.yaml) on N lab hosts, provisioned by the provider process under its own
// ServiceAccount. Prints the time from scale-up to all provisioned, the provider's CPU seconds and
// peak RSS, API requests and SSH connections per machine, and the SSH floor measured in the same run
// (N new connections + one command each, at the provider's own connection cap). Bounded: 15 minutes.
// WHAT IT SIMULATES: the control plane is real (kubeadm init), but on the N worker hosts `kubeadm`
// is a named fake (/usr/local/bin/kubeadm, "bench-fake-kubeadm", exits 0 at once): N real kubelets
// joining would measure kubeadm on 2 cores, not the provider. So worker Machines are provisioned
// (the bootstrap ran, the sentinel is written) but get no Node.
// --stock: the worker hosts are stock (docs/hosts.md), prepared from the bundle of the pinned
// version before their bootstrap; preparation time per host is printed apart from bootstrap time.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_VERSION } from '../../provider/api/common.ts';
import { raw } from '../../provider/kube/raw.ts';
import { connect } from '../../provider/ssh/index.ts';
import { applyClusterTemplate, createPool, startEnv, waitForRunning } from '../../test/harness/env.ts';
import { waitFor } from '../../test/harness/process.ts';

const args = process.argv.slice(2);
const stock = args.includes('--stock');
const n = Number(args.find((a) => !a.startsWith('--')) ?? (stock ? 3 : 50));
const limitMs = 15 * 60_000;
const ns = 'bench';
const say = (m: string) => process.stderr.write(`    ${m}\n`);

const env = await startEnv({ hosts: stock ? 1 : n + 1, stockHosts: stock ? n : 0, log: say });
// `kubeadm version` fails: preparation's probe then sees no kubeadm of an OS image (a stock host).
const fakeKubeadm = `#!/bin/sh
# bench-fake-kubeadm: hack/benchmarks/provision.ts puts this on worker hosts; not kubeadm.
[ "$1" = version ] && exit 1
echo "bench-fake-kubeadm: $* (simulated, nothing done)"
`;
for (const h of env.hosts.slice(1)) {
  mkdirSync(join(h.root, 'usr/local/bin'), { recursive: true });
  writeFileSync(join(h.root, 'usr/local/bin/kubeadm'), fakeKubeadm);
  chmodSync(join(h.root, 'usr/local/bin/kubeadm'), 0o755);
}
try {
  await createPool(env, ns, 'cp', env.hosts.slice(0, 1));
  await createPool(env, ns, 'rack', env.hosts.slice(1));
  const provider = env.startProvider();
  await applyClusterTemplate(env, {
    namespace: ns,
    name: 'bench',
    pool: 'cp',
    workerPool: 'rack',
    workers: 0,
    ...(stock ? { preparation: { bundle: { source: 'Provider' } } } : {}),
  });
  await waitForRunning(env, ns, 'bench', 1, 600_000);
  say('control plane Running; scaling the workers');

  const metricsPort = await waitFor(
    'the provider metrics port',
    () => {
      const line = readFileSync(provider.logFile, 'utf8')
        .split('\n')
        .find((l) => l.includes('"manager started"'));
      return Promise.resolve(line ? (JSON.parse(line) as { metricsPort: number }).metricsPort : undefined);
    },
    30_000,
  );
  // Requests to the management API server only (the workload cluster's Node writes apart).
  const mgmt = `host="${new URL(env.cp.server).host}"`;
  const scrape = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const sum = (name: string, also = '') =>
      text
        .split('\n')
        .filter((l) => l.startsWith(name) && l.includes(also))
        .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
    const byMethod = Object.fromEntries(
      ['GET', 'POST', 'PATCH', 'PUT', 'DELETE', 'WATCH'].map((m) => [
        m,
        sum(`rest_client_requests_total{method="${m}"`, mgmt),
      ]),
    );
    // Requests by resource (kind/subresource) and verb: where the requests per machine go.
    const byResource: Record<string, number> = {};
    for (const l of text.split('\n')) {
      const m = /^rest_client_requests_total\{(.*)\} (\S+)$/.exec(l);
      if (!m || !m[1]!.includes(mgmt)) continue;
      const r = /resource="([^"]*)"/.exec(m[1]!)?.[1] ?? '?';
      const verb = /method="([^"]*)"/.exec(m[1]!)?.[1] ?? '?';
      byResource[`${verb} ${r}`] = (byResource[`${verb} ${r}`] ?? 0) + Number(m[2]);
    }
    return {
      byMethod,
      byResource,
      api: sum('rest_client_requests_total{', mgmt),
      workload: sum('rest_client_requests_total{') - sum('rest_client_requests_total{', mgmt),
      ssh: sum('capbm_ssh_operations_total{'),
      connects: sum('capbm_ssh_connections_total{'),
      eventCreates: sum('capbm_events_written_total{op="create"'),
      eventUpdates: sum('capbm_events_written_total{op="update"'),
      heapMiB: sum('nodejs_heap_size_used_bytes') / 2 ** 20,
    };
  };
  const cpuSeconds = () => {
    const f = readFileSync(`/proc/${provider.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 10 ms
  };
  const peakRssMiB = () =>
    Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${provider.pid}/status`, 'utf8'))![1]) / 1024;

  const before = await scrape();
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  await raw(env.cp.kc, 'PATCH', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/machinedeployments/bench-md-0`, {
    spec: { replicas: n },
  });
  await waitFor(
    `${n} provisioned BareMetalMachines`,
    async () => {
      const l = await raw<{ items: Array<{ status?: { initialization?: { provisioned?: boolean } } }> }>(
        env.cp.kc,
        'GET',
        `/apis/${API_VERSION}/namespaces/${ns}/baremetalmachines`,
      );
      return l.items.filter((m) => m.status?.initialization?.provisioned).length >= n + 1 ? true : undefined;
    },
    limitMs,
    250,
  );
  const tProvisioned = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds();
  const after = await scrape();

  // The SSH floor: what N machines cost at the least, a new connection and one command per host.
  const key = env.key.private;
  const f0 = performance.now();
  const workers = env.hosts.slice(1);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(256, workers.length) }, async () => {
      while (next < workers.length) {
        const h = workers[next++]!;
        const c = await connect({
          host: h.address,
          user: 'root',
          credentials: { privateKey: key },
          hostKey: { kind: 'pinned', fingerprints: [h.hostKeyFingerprint] },
        });
        await c.exec('true');
        c.close();
      }
    }),
  );
  const floor = (performance.now() - f0) / 1000;

  const fmt = (x: number, d = 1) => x.toFixed(d);
  const phases = await perHost();
  const isWrite = (verb: string) => !['GET', 'WATCH'].includes(verb);
  // The leader's Lease renewals (PUT leases; address locks are POSTed and DELETEd) are the
  // manager's, one every few seconds whatever it does: shown apart from the writes per machine.
  const isRenewal = (k: string) => k === 'PUT leases';
  /** Per machine, by "VERB resource", largest first; `keep` picks which. */
  function perMachine(b: typeof before, a: typeof after, keep: (k: string) => boolean): Array<[string, number]> {
    return Object.entries(a.byResource)
      .filter(([k]) => keep(k))
      .map(([k, v]) => [k, (v - (b.byResource[k] ?? 0)) / n] as [string, number])
      .filter(([, v]) => v >= 0.05)
      .sort((x, y) => y[1] - x[1]);
  }
  const list = (xs: Array<[string, number]>) => xs.map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
  const sumOf = (xs: Array<[string, number]>) => xs.reduce((acc, [, v]) => acc + v, 0);
  /** Writes (every verb but GET and WATCH) per machine, the leader's renewals and events apart. */
  function writesLines(b: typeof before, a: typeof after): string[] {
    const writes = perMachine(b, a, (k) => isWrite(k.split(' ')[0]!) && !isRenewal(k));
    const renewals = sumOf(perMachine(b, a, isRenewal));
    const events = (a.eventCreates - b.eventCreates + a.eventUpdates - b.eventUpdates) / n;
    return [
      `writes per machine:               ${fmt(sumOf(writes))} (objects ${fmt(sumOf(writes) - events)}, events ${fmt(events)}); the leader's Lease renewals apart: ${fmt(renewals)}`,
      `  writes by verb and resource: ${list(writes)}`,
    ];
  }
  process.stdout.write(
    [
      `$ ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench provision ${n}`}`,
      `machines: ${n} workers on ${n} lab hosts (+1 real control plane); worker kubeadm simulated (bench-fake-kubeadm)`,
      `scale-up -> all provisioned:      ${fmt(tProvisioned)} s`,
      `provider CPU during scale-up:     ${fmt(cpu1 - cpu0, 2)} s (${fmt((cpu1 - cpu0) / n, 3)} s per machine)`,
      `provider peak RSS:                ${fmt(peakRssMiB())} MiB (V8 heap in use after: ${fmt(after.heapMiB)} MiB)`,
      `API requests per machine:         ${fmt((after.api - before.api) / n)} to the management API server (incl. watch restarts, events, leases); ${fmt((after.workload - before.workload) / n)} to the workload cluster's (HostHealthy on Nodes)`,
      `  by verb: ${Object.keys(after.byMethod)
        .map((m) => `${m} ${fmt((after.byMethod[m]! - before.byMethod[m]!) / n)}`)
        .join(', ')}`,
      `  requests by verb and resource: ${list(perMachine(before, after, () => true))}`,
      ...writesLines(before, after),
      `SSH connections per machine:      ${fmt((after.connects - before.connects) / n)} (units of work ${fmt((after.ssh - before.ssh) / n)}, the others on kept connections)`,
      ...phases,
      `SSH floor, same run:              ${fmt(floor, 2)} s for ${n} new connections + 1 command (${fmt((n / floor) * 1, 0)}/s)`,
      '',
    ].join('\n'),
  );
} finally {
  await env.stop();
}

type Cond = { type: string; status: string; message?: string; lastTransitionTime?: string };

/** Per worker host: preparation (HostPrepared's own timing) and bootstrap (its start to BootstrapSucceeded). */
async function perHost(): Promise<string[]> {
  const l = await raw<{
    items: Array<{ metadata: { name: string }; status?: { hostRef?: { name: string }; conditions?: Cond[] } }>;
  }>(env.cp.kc, 'GET', `/apis/${API_VERSION}/namespaces/${ns}/baremetalmachines`);
  const at = (cs: Cond[], type: string) =>
    Date.parse(cs.find((c) => c.type === type && c.status === 'True')?.lastTransitionTime ?? '');
  const rows = l.items
    .filter((m) => !m.metadata.name.includes('control-plane'))
    .map((m) => {
      const cs = m.status?.conditions ?? [];
      const prep = cs.find((c) => c.type === 'HostPrepared' && c.status === 'True');
      const prepS = Number(/\((\d+) s\)$/.exec(prep?.message ?? '')?.[1] ?? NaN);
      const bootS = (at(cs, 'BootstrapSucceeded') - (prep ? at(cs, 'HostPrepared') : at(cs, 'HostReady'))) / 1000;
      return { host: m.status?.hostRef?.name ?? '?', prepS, bootS };
    });
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const prepared = rows.filter((r) => Number.isFinite(r.prepS));
  return [
    `preparation per host:             ${prepared.length ? `median ${med(prepared.map((r) => r.prepS))} s, max ${Math.max(...prepared.map((r) => r.prepS))} s (${prepared.length} stock hosts)` : 'none (prepared hosts; --stock prepares stock ones)'}`,
    `bootstrap per host:               median ${med(rows.map((r) => r.bootS)).toFixed(0)} s, max ${Math.max(...rows.map((r) => r.bootS)).toFixed(0)} s (after preflight${prepared.length ? ' and preparation' : ''}; lastTransitionTime, 1 s resolution)`,
    ...(stock ? rows.map((r) => `  ${r.host}: preparation ${r.prepS} s, bootstrap ${r.bootS.toFixed(0)} s`) : []),
  ];
}

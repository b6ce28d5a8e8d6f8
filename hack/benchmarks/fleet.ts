// hack/bench fleet --clusters C --machines M [--bootstrap 20s] [--idle 60s] [--ssh-max-connections 256]
//   [--check-interval DUR] [--check-concurrency N] (the provider's --bootstrap-check-* flags)
//   [--hosts H] (hosts in the pools, at least M; the spare ones stay Available) [--machine-workers N] (the provider's --concurrency machine=N) [--ssh-keep-idle DUR] (0: no kept connections)
//   [--failover-at F] (a standby beside the leader; the leader SIGKILLed at F, a fraction of the
//   machines provisioned or a duration after all were created: fleet-failover.ts)
//   [--node-options "..."] (Node.js options for the provider's process: --max-old-space-size=N...)
// One provider process (its own ServiceAccount, leader election on) provisioning M machines of C
// clusters on M simulated hosts (test/harness/host-sim.ts: one SSH process, one address each, in
// its own network namespace; the bootstrap takes --bootstrap instead of running kubeadm), against a
// real kube-apiserver and etcd. Prints, each beside the command: time from all machines created to
// all provisioned (and the ideal: every bootstrap at once), provider CPU per machine,
// API requests and writes per machine, SSH connections and bootstrap checks per machine, the most
// bootstraps in flight at once and the memory then, peak RSS and RSS per cached
// object, idle CPU and requests over --idle, the time a restarted manager and a failed-over one
// (the leader SIGKILLed, its standby taking the Lease) take to reach steady state (and that nothing
// ran again), and the SSH floor measured in the same run.
// WHAT IT SIMULATES: the hosts (docs/scale.md), and the Cluster API controllers: none run (on 2
// cores they, not the provider, would be the limit); the bench creates what CAPI core and CABPK
// would: a Cluster per cluster (infrastructure marked provisioned), and per machine a bootstrap
// data Secret (CABPK's worker fixture), a Machine naming it, and a BareMetalMachine owned by the
// Machine. Bounded: every wait has a limit (--limit, default 20 minutes for the provisioning).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { createLogger } from '../../common/log.ts';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { BareMetalHosts, BareMetalMachines, collectionPath, Machines } from '../../provider/kube/kinds.ts';
import { raw } from '../../provider/kube/raw.ts';
import { defaultFlags } from '../../provider/runtime/flags.ts';
import { createInformer } from '../../provider/runtime/informer.ts';
import { connect } from '../../provider/ssh/index.ts';
import { installCapiCrds, installProviderCrds, startControlPlane } from '../../test/harness/controlplane.ts';
import {
  onboardNamespace,
  PROVIDER_NAMESPACE,
  providerIdentity,
  PROVIDER_NODE_OPTIONS,
  startProviderProcess,
} from '../../test/harness/env.ts';
import { startHostSim, type HostSim } from '../../test/harness/host-sim-net.ts';
import { ensureBridge } from '../../test/harness/lab.ts';
import { clusterLabel, workerData } from '../../test/harness/machine-world.ts';
import { waitFor, type ManagedProcess } from '../../test/harness/process.ts';
import {
  ClaimLog,
  describeFailoverAt,
  failoverLines,
  parseFailoverAt,
  type FailoverFigures,
} from './fleet-failover.ts';
import { duration, flag, passOn, toMs } from '../../test/harness/bench-args.ts';

const C = Number(flag('clusters', '10'));
const M = Number(flag('machines', '100'));
/** --hosts H: hosts in the pools (default M); the H - M spare ones stay Available, cached. */
const H = Number(flag('hosts', String(M)));
const bootstrapMs = duration('bootstrap', '20s');
const idleMs = duration('idle', '60s');
const limitMs = duration('limit', '20m');
const cap = Number(flag('ssh-max-connections', '256'));
const S = Number(flag('shards', '1'));
/** --node-options "...": Node.js options for the provider's process (V8 heap sizes). */
const nodeOptions = flag('node-options', '').split(' ').filter(Boolean);
const failoverAt = parseFailoverAt(flag('failover-at', ''), (v) => toMs('failover-at', v));
/** --check-interval DUR, --check-concurrency N: the provider's --bootstrap-check-* flags. */
const checkArgs = [
  ...passOn('check-interval', 'bootstrap-check-interval'),
  ...passOn('check-concurrency', 'bootstrap-check-concurrency'),
  ...passOn('machine-workers', 'concurrency=machine'),
  ...passOn('ssh-keep-idle'),
];
if (!(C >= 1 && M >= C && Number.isInteger(C) && Number.isInteger(M) && S >= 1 && S <= C))
  throw new Error('give --clusters C --machines M [--shards S] with 1 <= S <= C <= M (whole numbers)');
if (!(Number.isInteger(H) && H >= M)) throw new Error(`--hosts must be a whole number of at least --machines (${M})`);
/** Sharded (--shards S > 1): cluster c and its pool and machines belong to shard c % S. */
const shardLabel = (c: number): Record<string, string> =>
  S > 1 ? { 'cluster.x-k8s.io/watch-filter': `shard-${c % S}` } : {};
const ns = 'fleet';
const say = (m: string) => process.stderr.write(`    ${m}\n`);
const fmt = (x: number, d = 1) => x.toFixed(d);

/** Runs fn for 0..n-1 with at most `width` in flight. */
async function each(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

say('starting etcd and kube-apiserver (no Cluster API controllers: see the note in the output)');
const cp = await startControlPlane({ log: say });
let sim: HostSim | undefined;
const providers: ManagedProcess[] = [];
const claims = new ClaimLog(cp.kc);
try {
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
  const kubeconfig = await providerIdentity(cp);
  await onboardNamespace(cp.kc, ns);
  await ensureBridge();
  const key = ssh2.utils.generateKeyPairSync('ed25519');
  const simStart = performance.now();
  sim = await startHostSim({ count: H, bootstrapMs, authorizedKey: key.public, log: say });
  const simReady = (performance.now() - simStart) / 1000;
  const hosts = sim.hosts;

  const startProvider = (name: string, extra: string[]) => {
    const p = startProviderProcess({
      name,
      kubeconfig,
      logFile: join(cp.dir, `${name}.log`),
      args: [`--ssh-max-connections=${cap}`, ...checkArgs, ...extra],
      ...(nodeOptions.length ? { nodeOptions } : {}),
    });
    providers.push(p);
    return p;
  };
  const metricsPort = (p: ManagedProcess) =>
    waitFor(
      `the metrics port of ${p.name}`,
      () => {
        const line = readFileSync(p.logFile, 'utf8')
          .split('\n')
          .find((l) => l.includes('"manager started"'));
        return Promise.resolve(line ? (JSON.parse(line) as { metricsPort: number }).metricsPort : undefined);
      },
      60_000,
    );
  const scrape = async (port: number) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const rows = text.split('\n').filter((l) => l && !l.startsWith('#'));
    const sum = (name: string, ...also: string[]) =>
      rows
        .filter((l) => l.startsWith(name) && also.every((a) => l.includes(a)))
        .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
    const byVerb: Record<string, number> = {};
    for (const l of rows.filter((x) => x.startsWith('rest_client_requests_total{'))) {
      const verb = /method="([^"]*)"/.exec(l)?.[1] ?? '?';
      const r = /resource="([^"]*)"/.exec(l)?.[1] ?? '?';
      byVerb[`${verb} ${r}`] = (byVerb[`${verb} ${r}`] ?? 0) + Number(l.split(' ').pop());
    }
    return {
      byVerb,
      api: sum('rest_client_requests_total{'),
      ssh: sum('capbm_ssh_operations_total{'),
      connects: sum('capbm_ssh_connections_total{'),
      depth: sum('workqueue_depth{'),
      active: sum('controller_runtime_active_workers{'),
      leader: sum('leader_election_master_status'),
      machineReconciles: sum('controller_runtime_reconcile_total{', 'controller="baremetalmachine"'),
      heapMiB: sum('nodejs_heap_size_used_bytes') / 2 ** 20,
      heapTotalMiB: sum('nodejs_heap_size_total_bytes') / 2 ** 20,
      externalMiB: sum('nodejs_external_memory_bytes') / 2 ** 20,
      running: sum('capbm_bootstrap_runs{', 'state="running"'),
      checks: sum('capbm_bootstrap_checks_total{'),
      checksWaiting: sum('capbm_bootstrap_checks{', 'state="waiting"'),
      // Machines of the informers' initial list not yet reconciled (the first pass's rest).
      firstPassLeft: sum('capbm_workqueue_depth_by_priority{', 'name="baremetalmachine"', 'priority="-100"'),
    };
  };
  type Scrape = Awaited<ReturnType<typeof scrape>>;
  interface Manager {
    proc: ManagedProcess;
    port: number;
  }
  /** S managers (one per shard, each its own watch filter, Lease and caches), generation gen. */
  const startManagers = (gen: number | string): Promise<Manager[]> =>
    Promise.all(
      Array.from({ length: S }, async (_, k) => {
        const proc = startProvider(`capbm-manager-${gen}-${k}`, S > 1 ? [`--watch-filter=shard-${k}`] : []);
        return { proc, port: await metricsPort(proc) };
      }),
    );
  /** The managers' metrics, summed (with the last counters of managers killed: `gone`). */
  const scrapeAll = async (ms: Manager[]): Promise<Scrape> =>
    sumScrapes(await Promise.all(ms.map((m) => scrape(m.port))));
  const sumScrapes = (all: Scrape[]): Scrape => {
    const byVerb: Record<string, number> = {};
    for (const a of all) for (const [k, v] of Object.entries(a.byVerb)) byVerb[k] = (byVerb[k] ?? 0) + v;
    const add = (f: Exclude<keyof Scrape, 'byVerb'>) => all.reduce((x, a) => x + a[f], 0);
    return {
      byVerb,
      api: add('api'),
      ssh: add('ssh'),
      connects: add('connects'),
      depth: add('depth'),
      active: add('active'),
      leader: add('leader'),
      machineReconciles: add('machineReconciles'),
      heapMiB: add('heapMiB'),
      heapTotalMiB: add('heapTotalMiB'),
      externalMiB: add('externalMiB'),
      running: add('running'),
      checks: add('checks'),
      checksWaiting: add('checksWaiting'),
      firstPassLeft: add('firstPassLeft'),
    };
  };
  /** Machines of shard k. */
  const shardMachines = (k: number) => Array.from({ length: M }, (_, i) => i % C).filter((c) => c % S === k).length;
  /**
   * Every manager (one per shard, in shard order) has reconciled each machine of its shard once: no
   * key of its initial list is left, and (the counter) as many reconciles as machines.
   */
  const reconciledAll = (each: Scrape[]) =>
    each.every((s, k) => s.firstPassLeft === 0 && s.machineReconciles >= shardMachines(k));
  const procStat = (p: ManagedProcess) => {
    const f = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  };
  const status1 = (p: ManagedProcess, field: 'VmHWM' | 'VmRSS') =>
    Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))![1]) / 1024;
  /** Summed over the managers (the largest one's apart, in the output). */
  const status = (ms: Manager[], field: 'VmHWM' | 'VmRSS') => ms.reduce((x, m) => x + status1(m.proc, field), 0);
  const cpuOf = (ms: Manager[]) => ms.reduce((x, m) => x + procStat(m.proc), 0);
  const isWrite = (k: string) => !k.startsWith('GET ') && !k.startsWith('WATCH ');
  const delta = (a: Scrape, b: Scrape, keep: (k: string) => boolean) =>
    Object.entries(b.byVerb)
      .filter(([k]) => keep(k))
      .map(([k, v]) => [k, v - (a.byVerb[k] ?? 0)] as [string, number])
      .filter(([, v]) => v > 0)
      .sort((x, y) => y[1] - x[1]);
  const total = (xs: Array<[string, number]>) => xs.reduce((s, [, v]) => s + v, 0);
  const per = (xs: Array<[string, number]>, n: number) => xs.map(([k, v]) => `${k} ${fmt(v / n, 2)}`).join(', ');

  // 1. The manager, started with nothing to manage: its baseline RSS.
  const p1 = await startManagers(0);
  await waitFor('leadership', async () => ((await scrapeAll(p1)).leader === S ? true : undefined), 60_000, 250);
  await new Promise((r) => setTimeout(r, 3000));
  const rssEmpty = status(p1, 'VmRSS');
  const emptyScrape = await scrapeAll(p1);
  // The leader Leases held (one per shard), by name and holder.
  const leaderLeases = async () =>
    (
      await raw<{ items: Array<{ metadata: { name: string }; spec: { holderIdentity?: string } }> }>(
        cp.kc,
        'GET',
        `/apis/coordination.k8s.io/v1/namespaces/${PROVIDER_NAMESPACE}/leases`,
      )
    ).items.filter((l) => l.metadata.name.includes('leader-election'));
  const leases = (await leaderLeases()).map((l) => `${l.metadata.name} (held by ${l.spec.holderIdentity ?? 'nobody'})`);
  const holders = async () => (await leaderLeases()).map((l) => l.spec.holderIdentity ?? 'nobody').join(', ');
  // --failover-at: a standby per shard beside the leader (same Lease, caches warm), as 2 replicas run.
  const standby = failoverAt ? await startManagers('standby') : [];
  /** The managers running now: the leader (and its standby; the standby alone once the leader is killed). */
  let managers = [...p1, ...standby];
  /** Managers killed: their last counters (gauges zeroed), CPU seconds and peak RSS. */
  const gone: Array<{ scrape: Scrape; cpu: number; hwm: number }> = [];
  const scrapeLive = async () =>
    sumScrapes([...(await Promise.all(managers.map((m) => scrape(m.port)))), ...gone.map((g) => g.scrape)]);
  const cpuLive = () => cpuOf(managers) + gone.reduce((x, g) => x + g.cpu, 0);

  say(`manager leader with nothing to manage (RSS ${fmt(rssEmpty)} MiB); creating ${C} pools of ${H} hosts`);
  // 2. Pools (one per cluster, host keys pinned as an operator pins them), expanded into hosts.
  await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/ssh-auth',
    metadata: { name: 'fleet-ssh', namespace: ns },
    stringData: { 'ssh-privatekey': key.private },
  });
  const perCluster = (c: number) => hosts.filter((_, i) => i % C === c);
  await each(C, 8, (c) => {
    const mine = perCluster(c);
    return raw(cp.kc, 'POST', `/apis/${API_VERSION}/namespaces/${ns}/baremetalhostpools`, {
      apiVersion: API_VERSION,
      kind: 'BareMetalHostPool',
      metadata: { name: `pool-${c}`, namespace: ns, labels: shardLabel(c) },
      spec: {
        addresses: mine.map((h) => h.address),
        ssh: { user: 'root', secretRef: { name: 'fleet-ssh' } },
        hostKeyPolicy: { type: 'Pinned', pinned: Object.fromEntries(mine.map((h) => [h.address, [h.fingerprint]])) },
      },
    });
  });
  const tHosts0 = performance.now();
  await waitFor(
    `${H} BareMetalHosts from the pools`,
    async () => {
      const l = await raw<{ items: unknown[]; metadata?: { remainingItemCount?: number } }>(
        cp.kc,
        'GET',
        `${collectionPath(BareMetalHosts, ns)}?limit=1`,
      );
      const left = l.metadata?.remainingItemCount ?? 0;
      return l.items.length + left >= H ? true : undefined;
    },
    limitMs,
    1000,
  );
  const tHosts = (performance.now() - tHosts0) / 1000;
  // The new hosts' own writes (their first status) are the pools', not the machines': wait until
  // the managers are done with them (the leaders' queues empty, no request for 3 s) before counting.
  // A standby's queues fill from its informers and wait for its leadership: not counted.
  let last = -1;
  await waitFor(
    'the managers to settle after the hosts were made',
    async () => {
      const x = await scrapeLive();
      const n = Object.entries(x.byVerb).reduce((a, [k, v]) => (k.includes('leases') ? a : a + v), 0); // Lease renewals go on
      const settled = (await scrapeAll(p1)).depth === 0 && n === last;
      last = n;
      return settled ? true : undefined;
    },
    limitMs,
    3000,
  );

  say(`${H} hosts in ${fmt(tHosts)} s; creating ${C} Clusters and ${M} Machines as CAPI would`);
  // 3. What CAPI core and CABPK would create, then wait for every BareMetalMachine to be provisioned.
  const provisioned = new Set<string>();
  let allProvisioned: (() => void) | undefined;
  const done = new Promise<void>((r) => (allProvisioned = r));
  let fire: (() => void) | undefined;
  const trigger = new Promise<void>((r) => (fire = r));
  const watch = createInformer<BareMetalMachine>(cp.kc, BareMetalMachines, { log: createLogger({ level: 'error' }) });
  /** When each machine was first seen provisioned (performance.now()), in order and by name. */
  const provisionedTimes: number[] = [];
  const provisionedAt = new Map<string, number>();
  const seen = (m: BareMetalMachine) => {
    if (!m.status?.initialization?.provisioned || provisioned.has(m.metadata.name)) return;
    provisioned.add(m.metadata.name);
    provisionedTimes.push(performance.now());
    provisionedAt.set(m.metadata.name, performance.now());
    if (failoverAt && 'fraction' in failoverAt && provisioned.size >= failoverAt.fraction * M) fire?.();
    if (provisioned.size >= M) allProvisioned?.();
  };
  watch.addEventHandler({ add: seen, update: (_o, m) => seen(m) });
  watch.start();
  claims.start();
  const before = await scrapeLive();
  const simBefore = await sim.stats();
  const cpu0 = cpuLive();
  const t0 = performance.now();
  const simulator = sim;
  /** --failover-at: kill the leader at the trigger, then time the standby's takeover and steady state. */
  const failOver = async () => {
    await Promise.race([trigger, done]);
    if (provisioned.size >= M) return undefined; // all provisioned first: nothing was in flight
    const victims = managers.filter((m) => !standby.includes(m));
    const holderBefore = await holders();
    const last = await Promise.all(victims.map((m) => scrape(m.port)));
    const simAtKill = await simulator.stats();
    for (const [i, m] of victims.entries())
      gone.push({
        scrape: {
          ...last[i]!,
          depth: 0,
          active: 0,
          leader: 0,
          heapMiB: 0,
          heapTotalMiB: 0,
          externalMiB: 0,
          running: 0,
          checksWaiting: 0,
          firstPassLeft: 0,
        },
        cpu: procStat(m.proc),
        hwm: status1(m.proc, 'VmHWM'),
      });
    managers = standby;
    const provisionedAtKill = provisioned.size;
    // The dead leader's work in flight, as its objects say at the kill: bootstrapping, not provisioned.
    const bootstrapping = watch
      .list()
      .filter(
        (m) =>
          !m.status?.initialization?.provisioned &&
          m.status?.conditions?.some((c) => c.type === 'BootstrapSucceeded' && c.reason === 'Bootstrapping'),
      )
      .map((m) => m.metadata.name);
    const tKill = performance.now();
    await Promise.all(victims.map((m) => m.proc.kill()));
    say(`leader killed (SIGKILL) with ${provisionedAtKill} of ${M} provisioned; waiting for the standby`);
    const since = () => (performance.now() - tKill) / 1000;
    // What the new leader does, every 5 s for the first 2 minutes after the kill.
    const timeline: FailoverFigures['timeline'] = [];
    const sampler = setInterval(() => {
      if (since() > 121) return clearInterval(sampler);
      void scrapeAll(standby).then(
        (x) =>
          timeline.push({
            t: Math.round(since()),
            provisioned: provisioned.size - provisionedAtKill,
            firstPassLeft: x.firstPassLeft,
            depth: x.depth,
            running: x.running,
            checksWaiting: x.checksWaiting,
          }),
        () => {},
      );
    }, 5000);
    await waitFor(
      'the standby to hold the Lease',
      async () => ((await scrapeAll(standby)).leader === S ? true : undefined),
      limitMs,
      100,
    );
    const toLease = since();
    // Caught up: the new leader has reconciled every machine of its shard once since it took over
    // (it knows each host's state and follows every run going), as a restarted manager's steady
    // state; its queues are not empty while machines the dead leader never started wait for SSH.
    await waitFor(
      'the standby to reconcile every machine',
      async () => {
        return reconciledAll(await Promise.all(standby.map((m) => scrape(m.port)))) ? true : undefined;
      },
      limitMs,
      100,
    );
    const toCaughtUp = since();
    await waitFor(
      'all provisioned after the kill',
      () => Promise.resolve(provisioned.size >= M || undefined),
      limitMs,
      100,
    );
    const toProvisioned = since();
    const inFlightDone = Math.max(tKill, ...bootstrapping.map((n) => provisionedAt.get(n) ?? tKill));
    const inFlight = { machines: bootstrapping.length, recordedS: (inFlightDone - tKill) / 1000 };
    // The pace: machines provisioned per second in the 30 s before the kill and after the Lease.
    const within = (from: number) => provisionedTimes.filter((t) => t >= from && t < from + 30_000).length / 30;
    const pace = { before: within(tKill - 30_000), afterLease: within(tKill + toLease * 1000) };
    const firstAfterKill = (Math.min(...provisionedTimes.filter((t) => t > tKill)) - tKill) / 1000;
    await waitFor(
      'steady state after the kill (queues empty, no run followed)',
      async () => {
        const x = await scrapeAll(standby);
        return x.depth === 0 && x.active === 0 && x.running === 0 ? true : undefined;
      },
      limitMs,
      200,
    );
    const toSteady = since();
    clearInterval(sampler);
    return {
      timeline,
      inFlight,
      tKill,
      provisionedAtKill,
      runningOnHosts: simAtKill.runsStarted - simAtKill.runsCompleted,
      leaderRuns: last.reduce((x, l) => x + l.running, 0),
      toLease,
      toCaughtUp,
      toProvisioned,
      toSteady,
      pace,
      firstAfterKill,
      holders: { before: holderBefore, after: await holders() },
      simAtKill,
      simSteady: await simulator.stats(),
    };
  };
  const failover = failoverAt ? failOver() : undefined;
  failover?.catch(() => {}); // awaited below; no unhandled rejection meanwhile
  await each(C, 8, async (c) => {
    const name = `c${c}`;
    await raw(cp.kc, 'POST', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/clusters`, {
      apiVersion: 'cluster.x-k8s.io/v1beta2',
      kind: 'Cluster',
      metadata: { name, namespace: ns, labels: shardLabel(c) },
      spec: {
        infrastructureRef: { apiGroup: 'infrastructure.cluster.x-k8s.io', kind: 'BareMetalCluster', name },
      },
    });
    await raw(cp.kc, 'PATCH', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/clusters/${name}/status`, {
      status: { initialization: { infrastructureProvisioned: true } },
    });
  });
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  await each(M, 16, async (i) => {
    const cluster = `c${i % C}`;
    const name = `${cluster}-m${Math.floor(i / C)}`;
    const labels = { ...clusterLabel(cluster), ...shardLabel(i % C) };
    await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'cluster.x-k8s.io/secret',
      metadata: { name: `${name}-bootstrap`, namespace: ns, labels },
      data: { value: b64(workerData), format: b64('cloud-config') },
    });
    const m = await raw<{ metadata: { uid: string } }>(cp.kc, 'POST', collectionPath(Machines, ns), {
      apiVersion: 'cluster.x-k8s.io/v1beta2',
      kind: 'Machine',
      metadata: { name, namespace: ns, labels },
      spec: {
        clusterName: cluster,
        bootstrap: { dataSecretName: `${name}-bootstrap` },
        infrastructureRef: { apiGroup: 'infrastructure.cluster.x-k8s.io', kind: 'BareMetalMachine', name },
      },
    });
    await raw(cp.kc, 'POST', collectionPath(BareMetalMachines, ns), {
      apiVersion: API_VERSION,
      kind: 'BareMetalMachine',
      metadata: {
        name,
        namespace: ns,
        labels,
        ownerReferences: [
          { apiVersion: 'cluster.x-k8s.io/v1beta2', kind: 'Machine', name, uid: m.metadata.uid, controller: true },
        ],
      },
      spec: { poolRef: { name: `pool-${i % C}` } },
    });
  });
  const tCreated = performance.now();
  const afterTimer = failoverAt && 'afterMs' in failoverAt ? setTimeout(() => fire?.(), failoverAt.afterMs) : undefined;
  say(
    `objects created in ${fmt((tCreated - t0) / 1000)} s; waiting for ${M} provisioned (at most ${limitMs / 1000} s)`,
  );
  const cpuCreated = cpuLive();
  // Bootstraps in flight, sampled every second: the most at once, and the memory then.
  const peak = { running: 0, rssMiB: 0, heapMiB: 0 };
  // The sample with the most RSS, by part.
  const rssTop = { rss: 0, heapTotal: 0, heap: 0, external: 0, running: 0 };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const x = await scrapeLive().catch(() => undefined);
      if (x && x.running > peak.running)
        Object.assign(peak, { running: x.running, rssMiB: status(managers, 'VmRSS'), heapMiB: x.heapMiB });
      const rss = status(managers, 'VmRSS');
      if (x && rss > rssTop.rss)
        Object.assign(rssTop, {
          rss,
          heapTotal: x.heapTotalMiB,
          heap: x.heapMiB,
          external: x.externalMiB,
          running: x.running,
        });
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    done,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`only ${provisioned.size} of ${M} machines provisioned after ${limitMs / 1000} s`)),
        limitMs,
      );
    }),
  ]).finally(() => {
    clearTimeout(timer);
    sampling = false;
  });
  await sampler;
  const tDone = performance.now();
  const cpu1 = cpuLive();
  const after = await scrapeLive();
  const simAfter = await sim.stats();
  const peakRss = status(managers, 'VmHWM') + gone.reduce((x, g) => x + g.hwm, 0);
  const peakRssLargest = Math.max(...managers.map((m) => status1(m.proc, 'VmHWM')), ...gone.map((g) => g.hwm));
  clearTimeout(afterTimer);
  const fo = await failover;
  await watch.stop();

  say(`all provisioned; idle for ${idleMs / 1000} s`);
  // 4. Idle: nothing to do for idleMs.
  await new Promise((r) => setTimeout(r, 5000));
  const idle0 = await scrapeLive();
  const heapEmpty = emptyScrape.heapMiB;
  const cpuIdle0 = cpuLive();
  await new Promise((r) => setTimeout(r, idleMs));
  const idle1 = await scrapeLive();
  const cpuIdle1 = cpuLive();
  const rssSteady = status(managers, 'VmRSS');
  const simIdle = await sim.stats();

  say('restarting the manager');
  // 5. A restarted manager: from its start to steady state (leader, every machine reconciled once, queues empty).
  await Promise.all(managers.map((m) => m.proc.stop()));
  const r0 = performance.now();
  const p2 = await startManagers(1);
  const steady = await waitFor(
    'the restarted managers to reach steady state',
    async () => {
      const each = await Promise.all(p2.map((m) => scrape(m.port)));
      const ok = reconciledAll(each) && each.every((s) => s.leader === 1 && s.depth === 0 && s.active === 0);
      return ok ? scrapeAll(p2) : undefined;
    },
    limitMs,
    200,
  );
  const tSteady = (performance.now() - r0) / 1000;
  await new Promise((r) => setTimeout(r, 5000));
  const settled = await scrapeAll(p2);
  const simRestart = await sim.stats();

  say('a failover with nothing in flight');
  // 6. A failed-over manager: a standby (caches warm) beside the restarted leader, the leader killed
  // with SIGKILL (its Lease not released); from the kill to the standby's steady state.
  const p3 = await startManagers('standby-idle');
  await waitFor(
    "the standby's caches (every machine's key queued, waiting for the Lease)",
    async () => {
      const each = await Promise.all(p3.map((m) => scrape(m.port)));
      return each.every((s, k) => s.depth >= shardMachines(k)) ? true : undefined;
    },
    limitMs,
    500,
  );
  const idleFo0 = await scrapeAll(p3);
  const tIdleKill = performance.now();
  await Promise.all(p2.map((m) => m.proc.kill()));
  const sinceIdleKill = () => (performance.now() - tIdleKill) / 1000;
  await waitFor(
    'the standby to lead',
    async () => ((await scrapeAll(p3)).leader === S ? true : undefined),
    limitMs,
    100,
  );
  const idleFoLease = sinceIdleKill();
  await waitFor(
    'the new leader to reach steady state',
    async () => {
      const each = await Promise.all(p3.map((m) => scrape(m.port)));
      return reconciledAll(each) && each.every((s) => s.depth === 0 && s.active === 0) ? true : undefined;
    },
    limitMs,
    200,
  );
  const idleFoSteady = sinceIdleKill();
  await new Promise((r) => setTimeout(r, 5000));
  const idleFo1 = await scrapeAll(p3);
  const simIdleFo = await sim.stats();
  const idleFoWrites = delta(idleFo0, idleFo1, isWrite).filter(([k]) => k !== 'PUT leases');

  const writes = delta(before, after, isWrite);
  const renewals = total(writes.filter(([k]) => k === 'PUT leases'));
  const objWrites = writes.filter(([k]) => k !== 'PUT leases');
  const events = total(objWrites.filter(([k]) => k.endsWith(' events')));
  const cached = H + 2 * M + 2 * C; // hosts, BareMetalMachines, Machines; pools, Clusters
  const idleReq = idle1.api - idle0.api;
  const restartWrites = delta(steady, settled, isWrite).filter(([k]) => k !== 'PUT leases');
  const failoverOutput = (): string[] => {
    if (!failoverAt) return [];
    if (!fo)
      return [
        `failover: not measured: all ${M} machines were provisioned before the trigger (${describeFailoverAt(failoverAt)}); give an earlier --failover-at`,
      ];
    const figures: FailoverFigures = {
      ...fo,
      at: failoverAt,
      killAfterCreatedS: (fo.tKill - tCreated) / 1000,
      leaseDurationS: defaultFlags.leaseDurationMs / 1000,
      simBefore,
      claims: claims.counts(),
    };
    return failoverLines(figures, M, fmt);
  };
  // Bootstraps are not bounded by connections any more: ideally every one runs at once.
  const ideal = bootstrapMs / 1000;
  const tAll = (tDone - tCreated) / 1000;
  process.stdout.write(
    [
      `$ ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench fleet --clusters ${C} --machines ${M}`}`,
      S > 1
        ? `shards: ${S} managers, each --watch-filter=shard-K (its own Lease and caches of its shard's clusters, machines, pools and hosts); figures below are summed over them`
        : 'one manager',
      ...(failoverAt
        ? [
            `${S > 1 ? 'each manager' : 'the manager'} with a standby (--failover-at): a second replica, same Lease, caches warm, from the start; the figures below are summed over both replicas (the killed leader's counters as last scraped before the kill)`,
          ]
        : []),
      `leader Leases: ${leases.join(', ')}`,
      `fleet: ${C} clusters, ${M} machines (${M / C} per cluster), ${H} simulated hosts${H > M ? ` (${H - M} spare)` : ''} (host simulator: one process, ${H} addresses in its own network namespace, each its own host key; started in ${fmt(simReady)} s); bootstrap simulated: ${bootstrapMs / 1000} s each`,
      `provider process: node ${(nodeOptions.length ? nodeOptions : PROVIDER_NODE_OPTIONS).join(' ')}${nodeOptions.length ? ' (--node-options)' : " (the shipped Deployment's heap for its 1Gi limit)"}, MALLOC_ARENA_MAX=2`,
      `NOTE: no Cluster API controllers ran; the bench created what they would (Cluster, and per machine a bootstrap data Secret, a Machine, a BareMetalMachine owned by it); the provider ran unchanged, as its own process under its ServiceAccount, against a real kube-apiserver and etcd`,
      `pools expanded into ${H} hosts:       ${fmt(tHosts)} s`,
      `objects created (${M} machines):    ${fmt((tCreated - t0) / 1000)} s`,
      `all created -> all provisioned:    ${fmt(tAll)} s (first created -> all provisioned ${fmt((tDone - t0) / 1000)} s); ideal with every bootstrap in flight at once: ${fmt(ideal)} s (ratio ${fmt(tAll / ideal, 2)})`,
      `provider CPU, create -> provisioned: ${fmt(cpu1 - cpu0, 1)} s (${fmt(((cpu1 - cpu0) / M) * 1000, 1)} ms per machine; ${fmt(cpuCreated - cpu0, 1)} s of it while the objects were created)`,
      `API requests per machine:          ${fmt((after.api - before.api) / M, 2)}; by verb and resource: ${per(
        delta(before, after, () => true),
        M,
      )}`,
      `writes per machine:                ${fmt(total(objWrites) / M, 2)} (objects ${fmt((total(objWrites) - events) / M, 2)}, events ${fmt(events / M, 2)}): ${per(objWrites, M)}; the leader's Lease renewals apart: ${renewals}`,
      `SSH connections per machine:       ${fmt((after.connects - before.connects) / M, 2)} (the provider's count; ${fmt((after.ssh - before.ssh) / M, 2)} units of work, the others on kept connections); the simulator saw ${fmt((simAfter.connections - simBefore.connections) / M, 2)} per machine, at most ${simAfter.peakOpen} open at once; bootstraps started ${simAfter.runsStarted - simBefore.runsStarted}, attached ${simAfter.runsAttached - simBefore.runsAttached}; commands not simulated: ${simAfter.unknown}`,
      `bootstraps in flight:              at most ${peak.running} at once (sampled every second); checks ${fmt((after.checks - before.checks) / M, 2)} per machine`,
      // The difference against the idle sample is not per-run memory at this size (GC timing and
      // the caches filling meanwhile move it by more): `hack/bench runs` measures that.
      `memory with the most in flight:    RSS ${fmt(peak.rssMiB)} MiB, V8 heap ${fmt(peak.heapMiB)} MiB with ${peak.running} bootstraps in flight; idle after, same objects cached: RSS ${fmt(rssSteady)} MiB, heap ${fmt(idle1.heapMiB)} MiB (per bootstrap in flight: hack/bench runs)`,
      `  commands by kind: ${Object.entries(simAfter.execs)
        .map(([k, v]) => `${k} ${fmt((v - (simBefore.execs[k] ?? 0)) / M, 2)}`)
        .join(', ')} per machine`,
      `provider RSS:                      peak ${fmt(peakRss)} MiB${S > 1 || failoverAt ? ` (summed; largest manager ${fmt(peakRssLargest)} MiB)` : ''}; ${fmt(rssEmpty)} MiB leader with nothing cached, ${fmt(rssSteady)} MiB after, idle, with ${cached} objects cached (${fmt(((rssSteady - rssEmpty) * 1024) / cached, 1)} KiB per cached object); V8 heap in use ${fmt(heapEmpty)} MiB empty, ${fmt(idle1.heapMiB)} MiB after (${fmt(((idle1.heapMiB - heapEmpty) * 1024) / cached, 1)} KiB per cached object)`,
      `  RSS at its highest sample, by part: ${fmt(rssTop.rss)} MiB with ${rssTop.running} bootstraps in flight: V8 heap reserved ${fmt(rssTop.heapTotal)} MiB (${fmt(rssTop.heap)} in use), external ${fmt(rssTop.external)} MiB, the rest ${fmt(rssTop.rss - rssTop.heapTotal - rssTop.external)} MiB`,
      `  RSS after, idle, by part:        V8 heap reserved ${fmt(idle1.heapTotalMiB)} MiB (${fmt(idle1.heapMiB)} in use), external (Buffers, native objects V8 knows of) ${fmt(idle1.externalMiB)} MiB, the rest (code, stacks, OpenSSL, malloc's arenas and free lists) ${fmt(rssSteady - idle1.heapTotalMiB - idle1.externalMiB)} MiB`,
      `idle over ${idleMs / 1000} s (nothing to do):     CPU ${fmt(cpuIdle1 - cpuIdle0, 2)} s (${fmt(((cpuIdle1 - cpuIdle0) / (idleMs / 1000)) * 100, 2)}% of a core); API requests ${idleReq} (${per(
        delta(idle0, idle1, () => true),
        1,
      )}); SSH connections ${idle1.ssh - idle0.ssh} (simulator: ${simIdle.connections - simAfter.connections})`,
      ...failoverOutput(),
      `restarted manager -> steady state: ${fmt(tSteady)} s (stop, start, leadership, caches, every machine reconciled once, queues empty); then: bootstraps started ${simRestart.runsStarted - simIdle.runsStarted}, resets ${simRestart.resets - simIdle.resets}, SSH connections ${simRestart.connections - simIdle.connections}, object writes ${total(restartWrites)}${restartWrites.length ? ` (${per(restartWrites, 1)})` : ''}`,
      `failed-over manager -> steady state: ${fmt(idleFoSteady)} s from the leader's SIGKILL with nothing in flight (its standby, caches warm, held the Lease ${fmt(idleFoLease)} s after the kill: the Lease's ${defaultFlags.leaseDurationMs / 1000} s; then every machine reconciled once, queues empty); then: bootstraps started ${simIdleFo.runsStarted - simRestart.runsStarted}, resets ${simIdleFo.resets - simRestart.resets}, SSH connections ${simIdleFo.connections - simRestart.connections}, object writes ${total(idleFoWrites)}${idleFoWrites.length ? ` (${per(idleFoWrites, 1)})` : ''}`,
      '',
    ].join('\n'),
  );
  say('the SSH floor on the same hosts');
  // 7. The SSH floor on the same hosts, at the provider's connection cap: a new connection and one
  // command per host; and the bootstrap's own duration as one command each (the provisioning floor).
  const target = (h: (typeof hosts)[number]) => ({
    host: h.address,
    user: 'root',
    credentials: { privateKey: key.private },
    hostKey: { kind: 'pinned' as const, fingerprints: [h.fingerprint] },
  });
  // A handshake that times out (60 s, the machine is loaded) is counted and tried again, up to 3 times.
  let failed = 0;
  const once = async (i: number, command: string) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const c = await connect({ ...target(hosts[i]!), connectTimeoutMs: 60_000 });
        await c.exec(command).finally(() => c.close());
        return;
      } catch (err) {
        failed++;
        if (attempt >= 3) throw err;
      }
    }
  };
  const f0 = performance.now();
  await each(M, cap, (i) => once(i, 'true'));
  const floorTrue = (performance.now() - f0) / 1000;
  const g0 = performance.now();
  await each(M, cap, (i) => once(i, `capbm-sim-sleep ${bootstrapMs}`));
  const floorRun = (performance.now() - g0) / 1000;
  process.stdout.write(
    `SSH floor, same run, ${cap} at once: ${fmt(floorTrue, 2)} s for ${M} new connections + \`true\` (${fmt(M / floorTrue, 0)}/s); ${fmt(floorRun, 2)} s for ${M} connections each running one ${bootstrapMs / 1000} s command (provisioning / floor: ${fmt(tAll / floorRun, 2)}); attempts that failed and were tried again: ${failed}\n`,
  );
} finally {
  for (const p of providers) await p.stop();
  await claims.stop();
  await sim?.stop();
  await cp.stop();
}

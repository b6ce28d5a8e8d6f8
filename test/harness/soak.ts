// The fault soak (hack/soak; a short one in test/e2e/soak.test.ts): a workload of cluster creates,
// scales and deletes on lab hosts while a fault injector, driven by a seed, kills and restarts the
// provider's leader and standby, the Cluster API managers, kube-apiserver and etcd, powers hosts
// off and on (also in the middle of a reset, and with a file of the provider's state truncated as
// a power loss leaves it), freezes them, cuts their links, blackholes their route to the manager
// and fills the disk under the provider's state. Invariants are checked every few seconds and at
// the end; each violation is kept with the evidence of its first sighting.
// Everything is real (see test/e2e/provision.test.ts); only the schedule is made up, by the seed.
import { execa } from 'execa';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { stepsRunAgain } from '../../cloud-init/index.ts';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import type { CapiComponent } from './controlplane.ts';
import {
  createPool,
  installCniAddon,
  labClusterObjects,
  machines,
  PROVIDER_NAMESPACE,
  plurals,
  startEnv,
  type Env,
} from './env.ts';
import {
  blackhole,
  freeze,
  hostExec,
  hostPid,
  linkDown,
  linkUp,
  powerOff,
  powerOn,
  unblackhole,
  type LabHost,
} from './lab.ts';
import { residentMiB } from './flux.ts';
import { describeLives, MemoryTrack, type MemoryLife } from './soak-memory.ts';
import { startLoadBalancer, type LoadBalancer } from './loadbalancer.ts';
import { waitFor, type ManagedProcess } from './process.ts';

export interface SoakOptions {
  minutes: number;
  seed: number;
  /** Independent cells: a pool, its load balancer, at most one cluster at a time. Default 2. */
  cells?: number;
  /** Hosts per cell. Default 3 (a control plane and up to two workers, or a spare). */
  hostsPerCell?: number;
  /** The fault kinds to inject (default all; host-rebooted-mid-reset is armed by deletes). */
  faults?: FaultKind[];
  /**
   * Whether the workload also rolls clusters (every worker, or the control plane, replaced by
   * `spec.rollout.after`, when the cell has a spare host). Default true.
   */
  rollouts?: boolean;
  /** The report (soak-<seed>.json and .md) goes here. */
  reportDir: string;
  /** The command line, for the report. */
  command?: string;
  log?: (m: string) => void;
}

export type FaultKind =
  | 'provider-leader-killed'
  | 'provider-standby-killed'
  | 'capi-manager-killed'
  | 'etcd-killed'
  | 'apiserver-killed'
  | 'host-powered-off'
  | 'host-rebooted-mid-reset'
  | 'host-state-corrupted'
  | 'host-disk-full'
  | 'host-frozen'
  | 'host-link-down'
  | 'host-blackholed';

/** The faults the injector picks from (host-rebooted-mid-reset is armed by a delete instead). */
export const FAULTS: readonly FaultKind[] = [
  'provider-leader-killed',
  'provider-standby-killed',
  'capi-manager-killed',
  'etcd-killed',
  'apiserver-killed',
  'host-powered-off',
  'host-state-corrupted',
  'host-disk-full',
  'host-frozen',
  'host-link-down',
  'host-blackholed',
];

export interface Violation {
  invariant: string;
  at: number;
  evidence: string;
}

export interface SoakReport {
  command: string;
  seed: number;
  minutes: number;
  hosts: number;
  faults: Record<string, number>;
  /** Seconds from a fault's end until every cluster was whole again, per kind. */
  convergence: Record<string, { count: number; p50: number; p99: number; max: number }>;
  operations: Record<string, number>;
  checks: number;
  violations: Violation[];
  /** Hosts quarantined during the run (released by the soak's operator once their fault ended). */
  quarantined: string[];
  providerMemoryMiB: { start: number; end: number };
  /** Each provider replica's life (started to killed, or to the end) with its memory. */
  memory: MemoryLife[];
  seconds: number;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same schedule of choices. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Cell {
  index: number;
  pool: string;
  hosts: LabHost[];
  lb: LoadBalancer;
  /** The cluster of this cell and its wanted workers, while it exists. */
  cluster?: { name: string; workers: number };
  /** A cluster of this cell being deleted. */
  deleting?: string;
  serial: number;
}

interface ActiveFault {
  kind: FaultKind;
  what: string;
  endsAt: number;
  restore: () => Promise<void>;
}

const NS = 'soak';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const base = `/apis/${API_VERSION}/namespaces/${NS}`;
const pct = (xs: number[], p: number) =>
  xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? 0;

function rssMiB(ps: ManagedProcess[]): number {
  return ps.filter((p) => p.running()).reduce((sum, p) => sum + residentMiB(p.pid), 0);
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? (() => {});
  const rnd = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const between = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const cells = o.cells ?? 2;
  const perCell = o.hostsPerCell ?? 3;
  const t0 = Date.now();
  const at = () => Math.round((Date.now() - t0) / 1000);
  const report: SoakReport = {
    command: o.command ?? `hack/soak --minutes ${o.minutes} --seed ${o.seed}`,
    seed: o.seed,
    minutes: o.minutes,
    hosts: cells * perCell,
    faults: {},
    convergence: {},
    operations: {},
    checks: 0,
    violations: [],
    quarantined: [],
    providerMemoryMiB: { start: 0, end: 0 },
    memory: [],
    seconds: 0,
  };
  const seen = new Set<string>();
  const violate = (invariant: string, evidence: string) => {
    if (seen.has(invariant)) return; // the first sighting of each is the evidence
    seen.add(invariant);
    report.violations.push({ invariant, at: at(), evidence });
    log(`VIOLATION ${invariant}: ${evidence}`);
  };

  const env: Env = await startEnv({ hosts: cells * perCell, log });
  const providers: ManagedProcess[] = [];
  const cellList: Cell[] = [];
  const convergence: Record<string, number[]> = {};
  try {
    for (let i = 0; i < cells; i++) {
      const hosts = env.hosts.slice(i * perCell, (i + 1) * perCell);
      const pool = `cell${i}`;
      await createPool(env, NS, pool, hosts);
      const lb = await startLoadBalancer({ backends: hosts.map((h) => h.address) });
      cellList.push({ index: i, pool, hosts, lb, serial: 0 });
    }
    await installCniAddon(env, NS);
    for (const name of ['capbm-a', 'capbm-b']) providers.push(env.startProvider({ name }));
    await sleep(5000);
    report.providerMemoryMiB.start = rssMiB(providers);

    const api = <T>(method: string, path: string, body?: unknown) => raw<T>(env.cp.kc, method, path, body);
    const hostsNow = async () => (await api<{ items: BareMetalHost[] }>('GET', `${base}/baremetalhosts`)).items;
    const bmmsNow = async () => (await api<{ items: BareMetalMachine[] }>('GET', `${base}/baremetalmachines`)).items;

    /**
     * The claim is written alone and the phase with the host's next write (lifecycle.ts): a host
     * shown Available while claimed is fine for a moment, not for a minute. When each claim
     * (host/consumer uid) was first seen so:
     */
    const claimSeen = new Map<string, number>();
    const claimShown = (h: BareMetalHost) => {
      if (h.status?.phase !== 'Available' || !h.spec.consumerRef) return;
      const claim = `${h.metadata.name}/${h.spec.consumerRef.uid}`;
      const since = claimSeen.get(claim) ?? Date.now();
      claimSeen.set(claim, since);
      if (Date.now() - since > 60_000)
        violate(
          'a claimed host shows it within a minute',
          `host ${h.metadata.name} still Available with consumerRef ${h.spec.consumerRef.name} after 60 s`,
        );
    };
    /** Invariants that hold at every moment, faults or not. */
    const check = async () => {
      report.checks++;
      const [hosts, bmms] = await Promise.all([hostsNow(), bmmsNow()]);
      const byHost = new Map<string, string[]>();
      for (const b of bmms) {
        const h = b.status?.hostRef?.name;
        if (h) byHost.set(h, [...(byHost.get(h) ?? []), b.metadata.name]);
      }
      for (const [h, ms] of byHost)
        if (ms.length > 1) violate('no host held by two machines', `host ${h} is the hostRef of ${ms.join(' and ')}`);
      for (const h of hosts) {
        claimShown(h);
        const clean = h.status?.conditions?.find((c) => c.type === 'Clean');
        if (h.status?.phase === 'Available' && clean?.status === 'False')
          violate('no Available host is dirty', `host ${h.metadata.name} Available with Clean=False: ${clean.message}`);
        if (h.spec.quarantine && !h.spec.quarantine.reason)
          violate('every quarantine has a reason', `host ${h.metadata.name} quarantined without a reason`);
        if (h.spec.quarantine && !report.quarantined.includes(h.metadata.name)) {
          report.quarantined.push(h.metadata.name);
          log(`host ${h.metadata.name} quarantined: ${h.spec.quarantine.reason} ${h.spec.quarantine.message ?? ''}`);
        }
      }
    };

    /** Whether every cell's cluster has its machines Running and no host is between states. */
    const settled = async () => {
      for (const c of cellList) {
        if (c.deleting && !(await gone(`/apis/cluster.x-k8s.io/v1beta2/namespaces/${NS}/clusters/${c.deleting}`)))
          return false;
        if (!c.cluster) continue;
        const ms = await machines(env, NS, c.cluster.name);
        if (ms.length !== 1 + c.cluster.workers || ms.some((m) => m.phase !== 'Running')) return false;
      }
      const hosts = await hostsNow();
      return hosts.every((h) => h.status?.phase !== 'Deprovisioning' && !(h.spec.quarantine && !faulty(h)));
    };
    const faulty = (h: BareMetalHost) => active.some((f) => f.what === h.spec.address);

    /**
     * The soak's operator: a provider replica that exited on its own (it exits non-zero when it
     * loses its Lease, e.g. while the API server is down) is started again, as its Deployment's
     * kubelet would; a quarantined host whose fault is over is released (spec.quarantine removed).
     */
    const operator = async () => {
      for (const p of [...providers]) {
        if (p.running() || active.some((f) => f.what === p.name)) continue;
        log(`${at()} s: provider ${p.name} exited (${String(await p.exited)}); started again`);
        await restartProvider(p)();
        count(report.operations, 'provider-restarted-after-exit');
      }
      for (const h of await hostsNow()) {
        if (!h.spec.quarantine || faulty(h)) continue;
        await api('PATCH', `${base}/baremetalhosts/${h.metadata.name}`, { spec: { quarantine: null } }).catch(() => {});
        count(report.operations, 'quarantine-released');
      }
    };

    const count = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);

    const rollouts = o.rollouts ?? true;
    /**
     * Replaces machines, as an upgrade does (the lab's prepared hosts carry one Kubernetes version,
     * so the rollout is asked by time: `spec.rollout.after`; version upgrades are in
     * test/e2e/upgrade.test.ts): every worker, or the control plane when there is none.
     */
    const roll = async (c: Cell & { cluster: { name: string; workers: number } }) => {
      const after = { spec: { rollout: { after: new Date().toISOString() } } };
      const [what, path] =
        c.cluster.workers > 0
          ? ['workers', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${NS}/machinedeployments/${c.cluster.name}-md-0`]
          : [
              'control plane',
              `/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/${NS}/kubeadmcontrolplanes/${c.cluster.name}-control-plane`,
            ];
      await api('PATCH', path, after);
      log(`${at()} s: roll ${c.cluster.name} (${what} replaced)`);
      count(report.operations, `rollout-${what.replace(' ', '-')}`);
    };

    // The workload: one cluster per cell at most; create, scale, roll, delete.
    const operate = async () => {
      const c = pick(cellList);
      if (c.deleting) {
        if (await gone(`/apis/cluster.x-k8s.io/v1beta2/namespaces/${NS}/clusters/${c.deleting}`))
          c.deleting = undefined;
      } else if (!c.cluster) {
        const workers = between(0, perCell - 1);
        const name = `c${c.index}-${++c.serial}`;
        for (const d of labClusterObjects(
          { lb: c.lb },
          { namespace: NS, name, pool: c.pool, controlPlane: 1, workers },
        ))
          await api('POST', `/apis/${d.apiVersion}/namespaces/${NS}/${plurals[d.kind]}`, d);
        c.cluster = { name, workers };
        count(report.operations, 'create');
        log(`${at()} s: create ${name} (1 control plane, ${workers} workers) on ${c.pool}`);
      } else if (rnd() < 0.25) {
        await api('DELETE', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${NS}/clusters/${c.cluster.name}`);
        log(`${at()} s: delete ${c.cluster.name}`);
        c.deleting = c.cluster.name;
        c.cluster = undefined;
        count(report.operations, 'delete');
        if ((o.faults ?? ['host-rebooted-mid-reset']).includes('host-rebooted-mid-reset') && rnd() < 0.5)
          rebootArmedUntil = Date.now() + 180_000;
      } else if (rollouts && rnd() < 0.3 && c.cluster.workers + 2 <= perCell) {
        await roll({ ...c, cluster: c.cluster });
      } else {
        const workers = between(0, perCell - 1);
        await api(
          'PATCH',
          `/apis/cluster.x-k8s.io/v1beta2/namespaces/${NS}/machinedeployments/${c.cluster.name}-md-0`,
          {
            spec: { replicas: workers },
          },
        );
        log(`${at()} s: scale ${c.cluster.name} to ${workers} workers`);
        c.cluster.workers = workers;
        count(report.operations, 'scale');
      }
    };
    const gone = async (path: string) => {
      const r = await api('GET', path).catch((e: unknown) => e);
      return r instanceof ApiError && r.code === 404;
    };

    // The faults.
    const active: ActiveFault[] = [];
    /** Until when a reboot in the middle of a reset waits for a host to start one (armed by deletes). */
    let rebootArmedUntil = 0;
    const lease = `/apis/coordination.k8s.io/v1/namespaces/${PROVIDER_NAMESPACE}/leases/capbm-controller-leader-election`;
    const leader = async () => {
      const id = (await api<{ spec: { holderIdentity?: string } }>('GET', lease).catch(() => undefined))?.spec
        .holderIdentity;
      const running = providers.filter((p) => p.running());
      // Each replica logs its lease identity (a random one per start) with every leader-election line.
      return running.find((p) => id && readFileSync(p.logFile, 'utf8').includes(id)) ?? running[0];
    };
    const restartProvider = (p: ManagedProcess) => () => {
      providers.splice(providers.indexOf(p), 1);
      providers.push(env.startProvider({ name: p.name }));
      return Promise.resolve();
    };
    const capiNames: Record<CapiComponent, string> = {
      core: 'capi-manager',
      bootstrap: 'capi-bootstrap-kubeadm',
      controlplane: 'capi-controlplane-kubeadm',
    };
    const fault = (kind: FaultKind, what: string, seconds: number, restore: () => Promise<void>): ActiveFault => ({
      kind,
      what,
      endsAt: Date.now() + seconds * 1000,
      restore,
    });
    const killProvider = async (kind: FaultKind, seconds: number) => {
      const l = await leader();
      const p = kind === 'provider-leader-killed' ? l : providers.find((x) => x !== l && x.running());
      if (!p) return undefined;
      await p.kill();
      return fault(kind, p.name, seconds, restartProvider(p));
    };
    const killControlPlane = async (kind: FaultKind, name: 'etcd' | 'kube-apiserver', seconds: number) => {
      await env.cp.processes.find((x) => x.name === name)!.kill();
      return fault(kind, name, seconds, async () => {
        await env.cp.restart(name);
      });
    };
    /** Hosts a cluster holds (consumerRef set): their state is the provider's to reset. */
    const claimedHost = async () => {
      const claimed = new Set((await hostsNow()).filter((h) => h.spec.consumerRef).map((h) => h.spec.address));
      const hs = env.hosts.filter((h) => claimed.has(h.address));
      return hs.length ? pick(hs) : undefined;
    };
    const idleHost = async () => {
      const idle = new Set(
        (await hostsNow())
          .filter((h) => h.status?.phase === 'Available' && !h.spec.consumerRef)
          .map((h) => h.spec.address),
      );
      const hs = env.hosts.filter((h) => idle.has(h.address));
      return hs.length ? pick(hs) : undefined;
    };
    const injectors: Record<FaultKind, (seconds: number, host: LabHost) => Promise<ActiveFault | undefined>> = {
      'provider-leader-killed': (n) => killProvider('provider-leader-killed', n),
      'provider-standby-killed': (n) => killProvider('provider-standby-killed', n),
      'capi-manager-killed': async (n) => {
        const c = pick(['core', 'bootstrap', 'controlplane'] as const);
        const p = env.cp.processes.find((x) => x.name.includes(capiNames[c]) && x.running());
        if (!p) return undefined;
        await p.kill();
        return fault('capi-manager-killed', c, n, async () => {
          await env.cp.startCapi(c);
        });
      },
      'etcd-killed': (n) => killControlPlane('etcd-killed', 'etcd', Math.min(n, 20)),
      'apiserver-killed': (n) => killControlPlane('apiserver-killed', 'kube-apiserver', Math.min(n, 20)),
      'host-powered-off': async (n, host) => {
        await powerOff(host);
        return fault('host-powered-off', host.address, n, () => powerOn(host));
      },
      // Only the middle of a reset: armed by a delete, fired by the loop when a host is Deprovisioning.
      'host-rebooted-mid-reset': () => Promise.resolve(undefined),
      'host-state-corrupted': async (n) => {
        const host = await claimedHost();
        if (!host) return undefined;
        await powerOff(host);
        const file = truncateStateFile(host, rnd);
        return fault('host-state-corrupted', `${host.address} (${file ?? 'no state file yet'})`, n, () =>
          powerOn(host),
        );
      },
      'host-disk-full': async (n) => {
        const host = await idleHost();
        if (!host) return undefined;
        await fillStateDisk(host, true);
        return fault('host-disk-full', host.address, n, () => fillStateDisk(host, false));
      },
      'host-frozen': (n, host) => {
        freeze(host, true);
        return Promise.resolve(fault('host-frozen', host.address, n, () => Promise.resolve(freeze(host, false))));
      },
      'host-link-down': async (n, host) => {
        await linkDown(host);
        return fault('host-link-down', host.address, n, () => linkUp(host));
      },
      'host-blackholed': async (n, host) => {
        await blackhole(host);
        return fault('host-blackholed', host.address, n, () => unblackhole(host));
      },
    };
    const kinds = (o.faults ?? FAULTS).filter((k) => k !== 'host-rebooted-mid-reset');
    const inject = async (): Promise<ActiveFault | undefined> =>
      kinds.length ? injectors[pick(kinds)](between(5, 45), pick(env.hosts)) : undefined;
    /** A host in the middle of its reset, powered off for a few seconds, if one is there now. */
    const rebootMidReset = async (): Promise<ActiveFault | undefined> => {
      const resetting = new Set(
        (await hostsNow()).filter((h) => h.status?.phase === 'Deprovisioning').map((h) => h.spec.address),
      );
      const host = env.hosts.find((h) => resetting.has(h.address));
      if (!host) return undefined;
      await powerOff(host);
      return fault('host-rebooted-mid-reset', host.address, between(3, 10), () => powerOn(host));
    };

    const startFault = async (how: () => Promise<ActiveFault | undefined>) => {
      const nf = await how();
      if (!nf) return false;
      active.push(nf);
      count(report.faults, nf.kind);
      log(`${at()} s: ${nf.kind} ${nf.what} for ${Math.round((nf.endsAt - Date.now()) / 1000)} s`);
      return true;
    };

    // The run: every few seconds a check; a workload step every 20-60 s; a fault every 20-60 s
    // (one at a time, so each convergence is measured on its own).
    const deadline = t0 + o.minutes * 60_000;
    let nextOp = Date.now() + 5000;
    let nextFault = Date.now() + 20_000;
    let recovering: { kind: FaultKind; since: number } | undefined;
    let nextJournals = Date.now() + 15_000;
    const memory = new MemoryTrack();
    let nextMemory = Date.now();
    /** One fault at a time: a reboot mid-reset while one is armed, else the next random fault when due. */
    const faultStep = async () => {
      if (Date.now() < rebootArmedUntil) {
        if (await startFault(rebootMidReset).catch(() => false)) rebootArmedUntil = 0;
      } else if (Date.now() >= nextFault) {
        await startFault(inject).catch((e: Error) => log(`fault not injected: ${e.message}`));
        nextFault = Date.now() + between(20, 60) * 1000;
      }
    };
    while (Date.now() < deadline) {
      await check().catch((e: Error) => log(`check failed (API): ${e.message}`));
      if (Date.now() >= nextJournals) {
        await checkJournals(env.hosts, violate);
        nextJournals = Date.now() + 15_000;
      }
      if (Date.now() >= nextMemory) {
        memory.sample(at(), providers);
        nextMemory = Date.now() + 60_000;
      }
      const f = active[0];
      if (f && Date.now() >= f.endsAt) {
        await f.restore();
        active.shift();
        recovering = { kind: f.kind, since: Date.now() };
        log(`${at()} s: ${f.kind} ${f.what} ended`);
      }
      if (recovering && (await settled().catch(() => false))) {
        (convergence[recovering.kind] ??= []).push((Date.now() - recovering.since) / 1000);
        recovering = undefined;
      }
      await operator().catch((e: Error) => log(`operator failed (API): ${e.message}`));
      if (Date.now() >= nextOp) {
        await operate().catch((e: Error) => log(`operation failed: ${e.message}`));
        nextOp = Date.now() + between(20, 60) * 1000;
      }
      if (!active.length && !recovering) await faultStep();
      await sleep(3000);
    }

    // The end: every fault undone, every cluster whole within 10 minutes, then every cluster
    // deleted and every host back (Available and clean, or quarantined with a reason).
    for (const f of active.splice(0)) await f.restore();
    await waitFor(
      'every cluster whole again after the last fault',
      async () => {
        await operator();
        return (await settled()) ? true : undefined;
      },
      10 * 60_000,
      3000,
    ).catch((e: Error) => violate('every Machine reaches Running or is replaced', e.message));
    report.providerMemoryMiB.end = rssMiB(providers);
    memory.sample(at(), providers);
    report.memory = memory.lives();
    const grew = memory.verdict();
    if (grew) violate("the provider's memory stays flat", grew);
    for (const c of cellList)
      if (c.cluster) await api('DELETE', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${NS}/clusters/${c.cluster.name}`);
    await waitFor(
      'every cluster deleted and every host released',
      async () => {
        await operator();
        const [hosts, bmms] = await Promise.all([hostsNow(), bmmsNow()]);
        return bmms.length === 0 && hosts.every((h) => h.status?.phase === 'Available' || h.spec.quarantine)
          ? true
          : undefined;
      },
      10 * 60_000,
      3000,
    ).catch((e: Error) => violate("every deleted cluster's hosts end Available or quarantined", e.message));
    await check();
    await checkJournals(env.hosts, violate);
    // No secret or state left on a host that is Available: the provider's state, kubeadm's PKI,
    // the bootstrap sentinel, a configured kubelet (the reset's own rule, host-ops.ts: the image's
    // kubelet unit restarts every 10 s and exits at once while kubeadm has not configured it).
    for (const h of await hostsNow()) {
      if (h.status?.phase !== 'Available') continue;
      const lab = env.hosts.find((x) => x.address === h.spec.address)!;
      const { stdout: left } = await hostExec(
        lab,
        'for p in /var/lib/capbm /etc/kubernetes/pki /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf /run/cluster-api/bootstrap-success.complete; do [ -e "$p" ] && echo "$p"; done; pgrep -x kubelet >/dev/null && [ -e /var/lib/kubelet/config.yaml ] && echo kubelet; true',
      );
      if (left.trim())
        violate(
          'no secret or state left on an Available host',
          `${h.spec.address}: ${left.trim().split('\n').join(', ')}`,
        );
    }
    for (const [k, xs] of Object.entries(convergence))
      report.convergence[k] = { count: xs.length, p50: pct(xs, 0.5), p99: pct(xs, 0.99), max: Math.max(...xs) };
    report.seconds = at();
    return report;
  } finally {
    for (const c of cellList) await c.lb.stop();
    if (report.violations.length) logsAsEvidence(env.cp.dir, join(o.reportDir, `soak-${o.seed}-logs`));
    await env.stop();
    writeReport(o, report);
  }
}

/**
 * Reads every host's steps journals (out of band, bounded) and reports a once-step that started
 * again after it was done. A host that is off or frozen is skipped this round.
 */
async function checkJournals(hosts: LabHost[], violate: (invariant: string, evidence: string) => void) {
  for (const h of hosts) {
    let pid: number;
    try {
      pid = hostPid(h.slot);
    } catch {
      continue;
    }
    const r = await execa(
      'nsenter',
      [
        '-t',
        String(pid),
        '-m',
        'sh',
        '-c',
        'for f in /var/lib/capbm/*/steps/journal; do [ -f "$f" ] && echo "== $f" && cat "$f"; done; true',
      ],
      { reject: false, timeout: 10_000 },
    );
    for (const part of r.stdout.split(/^== /m).filter(Boolean)) {
      const [file, ...lines] = part.split('\n');
      for (const again of stepsRunAgain(lines.join('\n')))
        violate(
          'no step that must run once ran twice on a host',
          `${h.address} ${file}: step ${again.step} started again after it was done (journal line ${again.line})`,
        );
    }
  }
}

/** A file of the provider's state (not empty) on a powered-off host cut to zero bytes, as a power loss leaves it. */
function truncateStateFile(h: LabHost, rnd: () => number): string | undefined {
  const dir = join(h.root, 'var/lib/capbm');
  // The journal is the evidence and the ledger what the reset undoes: a corrupted ledger is a
  // different fault (the reset would miss what the bootstrap changed in accounts).
  const files = existsSync(dir)
    ? (readdirSync(dir, { recursive: true }) as string[])
        .map((f) => join(dir, f))
        .filter((p) => statSync(p).isFile() && statSync(p).size > 0 && !/(^|\/)(journal|ledger)$/.test(p))
    : [];
  const file = files[Math.floor(rnd() * files.length)];
  if (!file) return undefined;
  truncateSync(file, 0);
  return file.slice(dir.length + 1);
}

/**
 * Fills the disk under the provider's state on an idle host (a full 256 KiB filesystem mounted on
 * /var/lib/capbm), or frees it again (and removes the folder it made, if empty). The lab hosts' own disks are this machine's, so the fault
 * is made where the provider writes, never by filling the machine.
 */
async function fillStateDisk(h: LabHost, full: boolean): Promise<void> {
  const script = full
    ? 'mkdir -p /var/lib/capbm && mount -t tmpfs -o size=256k capbm-full /var/lib/capbm && { dd if=/dev/zero of=/var/lib/capbm/.fill bs=4k 2>/dev/null; true; }'
    : 'umount -l /var/lib/capbm 2>/dev/null; rmdir /var/lib/capbm 2>/dev/null; true';
  await hostExec(h, script).catch(() => undefined);
}

/** The management plane's logs (provider replicas, CAPI managers, API server), kept as evidence. */
function logsAsEvidence(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from)) if (f.endsWith('.log')) copyFileSync(join(from, f), join(to, f));
}

function writeReport(o: SoakOptions, r: SoakReport): void {
  mkdirSync(o.reportDir, { recursive: true });
  writeFileSync(join(o.reportDir, `soak-${o.seed}.json`), JSON.stringify(r, null, 2));
  const lines = [
    `# Soak, seed ${r.seed}: ${r.minutes} minutes on ${r.hosts} lab hosts`,
    '',
    `Command: \`${r.command}\`; ran ${r.seconds} s.`,
    '',
    `Invariant checks: ${r.checks}; violations: ${r.violations.length}.`,
    ...r.violations.map((v) => `- **${v.invariant}** (at ${v.at} s): ${v.evidence}`),
    '',
    '| fault | injected | converged after it (p50 / p99 / max, s) |',
    '| --- | --- | --- |',
    ...Object.entries(r.faults).map(([k, n]) => {
      const c = r.convergence[k];
      return `| ${k} | ${n} | ${c ? `${c.p50.toFixed(0)} / ${c.p99.toFixed(0)} / ${c.max.toFixed(0)} (${c.count})` : 'not measured'} |`;
    }),
    '',
    `Workload: ${Object.entries(r.operations)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}.`,
    `Hosts quarantined during the run: ${r.quarantined.join(', ') || 'none'}.`,
    ...(r.violations.length ? [`Logs of the management plane: soak-${r.seed}-logs/.`] : []),
    `Provider resident memory (both replicas): ${r.providerMemoryMiB.start} MiB at the start, ${r.providerMemoryMiB.end} MiB at the end.`,
    'Each replica life of five minutes or more (sampled every minute; a replica killed by a fault starts a new life):',
    ...describeLives(r.memory),
    '',
  ];
  writeFileSync(join(o.reportDir, `soak-${o.seed}.md`), lines.join('\n'));
}

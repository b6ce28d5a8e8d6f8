// Wires the controllers: one set of shared informers, the event mappings between kinds, and the
// metrics of hosts and SSH. main.ts builds this from the flags; tests build it with their own kc.
import type { Bundles } from '../preparation/bundles.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import { Gauge } from 'prom-client';
import type { BareMetalHost } from '../api/host.ts';
import { HOST_PHASES } from '../api/host.ts';
import type { BareMetalCluster, BareMetalMachine } from '../api/machine.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import { AgentService, type AgentOptions } from '../health/service.ts';
import { phaseOf } from '../hosts/lifecycle.ts';
import { AddressBook } from '../hosts/address-book.ts';
import { reconcilePool } from '../hosts/pool.ts';
import { createLogger, type Logger } from '../../common/log.ts';
import { controller, mapInfrastructureRef, specOrMetadataChanged, type Controller } from '../runtime/controller.ts';
import { EventRecorder } from '../runtime/events.ts';
import { createInformer, type Informer, type InformerOptions } from '../runtime/informer.ts';
import {
  BareMetalClusters,
  BareMetalHostPools,
  BareMetalHosts,
  BareMetalMachines,
  Clusters,
  Machines,
  type KubeObject,
  type ResourceKind,
} from '../kube/kinds.ts';
import { counter, histogram, registry } from '../runtime/metrics.ts';
import { Channel } from '../runtime/source.ts';
import { HighPriority } from '../runtime/workqueue.ts';
import { SshPool } from '../ssh/index.ts';
import { BootstrapRuns } from './bootstrap-runs.ts';
import { ClusterNameLabel, type CapiCluster, type CapiMachine } from './capi.ts';
import { machineToCluster, reconcileCluster } from './cluster.ts';
import { reconcileHost } from './host.ts';
import { Fresher } from '../runtime/writer.ts';
import { AddressIndex, byPool, byWaiting, hostIndexers, PoolIndex, WaitingIndex } from './indexes.ts';
import { hostToMachines, reconcileMachine, type MachineDeps } from './machine.ts';
import { templateGcControllers } from './template-gc.ts';

export interface ProviderOptions {
  kc: KubeConfig;
  namespace?: string;
  /** Label selector for the watch filter (sharding), applied to clusters, machines and pools. */
  labelSelector?: string;
  concurrency?: Record<string, number>;
  sshMaxConnections?: number;
  /** Kept connections' idle time (SshPoolOptions.keepIdleMs). */
  sshKeepIdleMs?: number;
  sshMaxPerHost?: number;
  /** Namespace of the per-address claim locks: the manager's own. Without it, no locks. */
  addressLocks?: string;
  /** A running bootstrap's step is written at most this often. Default 30 s. */
  bootstrapProgressIntervalMs?: number;
  /** Checks of running bootstraps: the longest wait between two, and how many at once (bootstrap-runs.ts). */
  bootstrapChecks?: { maxMs?: number; concurrency?: number };
  /** The node agent endpoint; without it no agent is installed. */
  agent?: AgentOptions;
  /** Host preparation bundles (--bundle-dir); without them spec.preparation is refused. */
  bundles?: Bundles;
  /** Delete labelled machine templates no rollout needs (template-gc.ts); undefined: off. */
  templateGc?: { graceMs: number };
  log?: Logger;
}

export interface Provider {
  controllers: Controller[];
  recorder: EventRecorder;
  ssh: SshPool;
  /** Started before and stopped after the controllers (main.ts). */
  agent?: AgentService;
}

/** The machine controller's optional parts: claim locks, preparation bundles. */
const machineOptions = (o: ProviderOptions): Pick<MachineDeps, 'addressLocks' | 'bundles'> => ({
  ...(o.addressLocks ? { addressLocks: o.addressLocks } : {}),
  ...(o.bundles ? { bundles: o.bundles } : {}),
});

const sshOps = counter('capbm_ssh_operations_total', 'SSH units of work (commands on one connection) by result', [
  'result',
  'reason',
]);
const sshConnects = counter(
  'capbm_ssh_connections_total',
  'SSH connections opened (handshakes; units of work on a kept connection open none)',
  ['result'],
);
const sshSeconds = histogram(
  'capbm_ssh_operation_duration_seconds',
  'Duration of SSH units of work',
  ['result'],
  [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
);

/** Keeps only what the provider reads of a CAPI object: caches of 100k Machines stay small. */
function slim<T extends KubeObject>(keepSpec: string[], keepStatus: string[]) {
  return (o: T): T => {
    const m = o.metadata ?? {};
    const pick = (src: unknown, keys: string[]) =>
      Object.fromEntries(
        keys
          .filter((k) => (src as Record<string, unknown>)?.[k] !== undefined)
          .map((k) => [k, (src as Record<string, unknown>)[k]]),
      );
    return {
      apiVersion: o.apiVersion,
      kind: o.kind,
      metadata: {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resourceVersion: m.resourceVersion,
        generation: m.generation,
        labels: m.labels,
        annotations: m.annotations,
        ownerReferences: m.ownerReferences,
        deletionTimestamp: m.deletionTimestamp,
      },
      spec: pick(o.spec, keepSpec),
      status: pick(o.status, keepStatus),
    } as T;
  };
}

/** Host changes that move a pool's status: claim, phase, quarantine, retirement, a host key refused. */
const countsKey = (h: BareMetalHost) =>
  JSON.stringify([
    h.spec?.consumerRef?.uid,
    h.status?.phase,
    Boolean(h.spec?.quarantine),
    h.spec?.retire,
    h.status?.conditions?.find((c) => c.type === 'Reachable')?.reason === 'HostKeyMismatch',
  ]);
const hostCountsChanged = (a: BareMetalHost, b: BareMetalHost) => countsKey(a) !== countsKey(b);

/** updatePredicate: anything but the resourceVersion changed. */
const changedBeyondVersion = (a: KubeObject, b: KubeObject) =>
  JSON.stringify({ ...a, metadata: { ...a.metadata, resourceVersion: '' } }) !==
  JSON.stringify({ ...b, metadata: { ...b.metadata, resourceVersion: '' } });

export function buildProvider(o: ProviderOptions): Provider {
  const log = o.log ?? createLogger();
  const kc = o.kc;
  const base = { ...(o.namespace ? { namespace: o.namespace } : {}), log };
  const filtered = { ...base, ...(o.labelSelector ? { labelSelector: o.labelSelector } : {}) };
  const inf = <T extends KubeObject>(kind: ResourceKind, opts: InformerOptions<T>): Informer<T> =>
    createInformer<T>(kc, kind, opts);
  const clusterKey = (ns: string | undefined, name: string | undefined) => (name ? [`${ns}/${name}`] : []);

  const machines = inf<BareMetalMachine>(BareMetalMachines, {
    ...filtered,
    indexers: {
      cluster: (m) => clusterKey(m.metadata.namespace, m.metadata.labels?.[ClusterNameLabel]),
      [WaitingIndex]: byWaiting,
    },
  });
  const bmClusters = inf<BareMetalCluster>(BareMetalClusters, filtered);
  const capiMachines = inf<CapiMachine>(Machines, {
    ...filtered,
    transform: slim(['clusterName', 'version', 'bootstrap', 'infrastructureRef'], ['nodeRef']),
  });
  const clusters = inf<CapiCluster>(Clusters, {
    ...filtered,
    transform: slim(['paused', 'controlPlaneRef', 'infrastructureRef'], ['initialization']),
  });
  const hosts = inf<BareMetalHost>(BareMetalHosts, {
    // Sharded (--watch-filter): only this shard's hosts (pools label their hosts with their shard).
    ...filtered,
    indexers: hostIndexers,
  });
  const pools = inf<BareMetalHostPool>(BareMetalHostPools, filtered);
  const recorder = new EventRecorder(kc, { log });
  const ssh = new SshPool({
    maxConnections: o.sshMaxConnections ?? 256,
    maxPerHost: o.sshMaxPerHost ?? 4,
    ...(o.sshKeepIdleMs !== undefined ? { keepIdleMs: o.sshKeepIdleMs } : {}),
    observe: (x) => {
      sshOps.inc({ result: x.ok ? 'ok' : 'error', reason: x.reason ?? '' });
      if (x.connected) sshConnects.inc({ result: x.ok ? 'ok' : 'error' });
      sshSeconds.observe({ result: x.ok ? 'ok' : 'error' }, x.seconds);
    },
  });
  hostsByPhase(hosts);
  const workers = (name: string, d: number) => o.concurrency?.[name] ?? d;
  const byCluster = (c: KubeObject) =>
    machines
      .byIndex('cluster', `${c.metadata?.namespace}/${c.metadata?.name}`)
      .map((m) => `${m.metadata.namespace}/${m.metadata.name}`);

  // Keys of machines to reconcile that no informer sees change: a bootstrap run progressed or
  // ended, an agent report changed a host's health.
  const wake = new Channel();
  const agent = o.agent ? new AgentService({ kc, log, hosts, machines, wake }, o.agent) : undefined;
  const deps: MachineDeps = {
    kc,
    recorder,
    ssh,
    machines,
    capiMachines,
    clusters,
    hosts,
    pools,
    ...(agent ? { agent } : {}),
    ...machineOptions(o),
    runs: new BootstrapRuns({
      // An ended run's result is recorded before the rest: after a failover, ahead of the first pass.
      wake: (key, ended) => wake.send(key, ended ? HighPriority : 0),
      log,
      progressEveryMs: o.bootstrapProgressIntervalMs ?? 30_000,
      checks: o.bootstrapChecks,
    }),
    fresh: {
      machines: new Fresher<BareMetalMachine>().follow(machines),
      hosts: new Fresher<BareMetalHost>().follow(hosts),
    },
    claiming: new Set<string>(),
  };
  const machineCtl = controller({
    name: 'baremetalmachine',
    workers: workers('machine', 32),
    log,
    channels: [wake],
    watches: [
      { informer: machines },
      {
        informer: capiMachines,
        mapToKeys: mapInfrastructureRef('BareMetalMachine'),
        updatePredicate: changedBeyondVersion,
      },
      { informer: clusters, mapToKeys: byCluster, updatePredicate: changedBeyondVersion },
      { informer: hosts, mapToKeys: hostToMachines({ machines }), updatePredicate: changedBeyondVersion },
    ],
    reconcile: reconcileMachine(deps),
  });
  const clusterCtl = controller({
    name: 'baremetalcluster',
    workers: workers('cluster', 8),
    log,
    watches: [
      { informer: bmClusters },
      {
        informer: clusters,
        mapToKeys: mapInfrastructureRef('BareMetalCluster'),
        updatePredicate: changedBeyondVersion,
      },
      { informer: machines, mapToKeys: machineToCluster({ clusters }), updatePredicate: specOrMetadataChanged },
      {
        informer: hosts,
        mapToKeys: (h: BareMetalHost) => {
          const c = h.spec?.consumerRef;
          const m = c ? machines.get(c.namespace, c.name) : undefined;
          return m ? machineToCluster({ clusters })(m) : [];
        },
        updatePredicate: (a: BareMetalHost, b: BareMetalHost) => a.spec?.consumerRef?.uid !== b.spec?.consumerRef?.uid,
      },
    ],
    reconcile: reconcileCluster({ kc, recorder, bmClusters, clusters, machines, hosts }),
  });
  const book = new AddressBook();
  const poolCtl = controller({
    name: 'baremetalhostpool',
    workers: workers('pool', 4),
    log,
    watches: [
      { informer: pools, updatePredicate: specOrMetadataChanged },
      {
        informer: hosts,
        mapToKeys: byPool,
        updatePredicate: hostCountsChanged,
        // The counts are a summary: a burst of claims or provisions becomes one status write.
        delayMs: 5_000,
      },
    ],
    reconcile: async (req) => {
      const pool = pools.get(req.namespace, req.name);
      if (!pool) return;
      const ns = req.namespace ?? '';
      const r = await reconcilePool(kc, ns, req.name, {
        recorder,
        cache: {
          pool,
          hosts: hosts.byIndex(PoolIndex, `${ns}/${req.name}`),
          pools: pools.list(),
          book,
          hostsAt: (a) => hosts.byIndex(AddressIndex, a),
        },
      });
      // Another pool may let the shared addresses go, a missing Secret may appear (neither is
      // watched from here): look again.
      return r?.overlapping || r?.credentialsMissing ? { requeueAfter: 60_000 } : undefined;
    },
  });
  const hostCtl = controller({
    name: 'baremetalhost',
    workers: workers('host', 8),
    log,
    watches: [{ informer: hosts, updatePredicate: changedBeyondVersion }],
    reconcile: reconcileHost({
      kc,
      recorder,
      ssh,
      hosts,
      pools,
      ...(agent ? { agentRemoval: agent.removeScript() } : {}),
    }),
  });
  const gc = gcControllers(o, { kc, recorder, log, clusters });
  const controllers = [machineCtl, clusterCtl, poolCtl, hostCtl, ...gc];
  return { controllers, recorder, ssh, ...(agent ? { agent } : {}) };
}

/** The template garbage collector's controllers, when it is on. */
function gcControllers(
  o: ProviderOptions,
  d: { kc: KubeConfig; recorder: EventRecorder; log: Logger; clusters: Informer<CapiCluster> },
): Controller[] {
  if (!o.templateGc) return [];
  const { clusters, ...rest } = d;
  return templateGcControllers({
    ...rest,
    ...(o.namespace ? { namespace: o.namespace } : {}),
    // A sharded manager's Cluster cache misses other shards' Clusters: the collector keeps its own.
    ...(o.labelSelector ? { labelSelector: o.labelSelector } : { clusters }),
    graceMs: o.templateGc.graceMs,
  });
}

/** capbm_hosts{phase}: hosts by phase, computed from the cache when scraped. */
function hostsByPhase(hosts: Informer<BareMetalHost>): void {
  registry.removeSingleMetric('capbm_hosts');
  new Gauge({
    name: 'capbm_hosts',
    help: 'BareMetalHosts by phase',
    labelNames: ['phase'],
    registers: [registry],
    collect() {
      const n = Object.fromEntries(HOST_PHASES.map((p) => [p, 0])) as Record<string, number>;
      for (const h of hosts.list()) {
        const p = phaseOf(h);
        n[p] = (n[p] ?? 0) + 1;
      }
      for (const [phase, v] of Object.entries(n)) this.set({ phase }, v);
    },
  });
}

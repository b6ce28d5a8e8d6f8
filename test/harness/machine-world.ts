// The BareMetalMachine reconciler run by a test as a leader would run it, against the real API
// server, with a recording stand-in for SSH (fake-ssh.ts) and for the node agent: the objects CAPI
// would make for a machine, and small helpers to drive and read it. Used by the reconcile and the
// tenancy integration tests; the real SSH transport and hosts are tested in test/e2e.
import type { ExecutionContext } from 'ava';
import type { KubeConfig } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { createLogger } from '../../common/log.ts';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import type { BareMetalHostPool } from '../../provider/api/pool.ts';
import { BootstrapRuns } from '../../provider/controllers/bootstrap-runs.ts';
import type { CapiCluster, CapiMachine } from '../../provider/controllers/capi.ts';
import { hostIndexers } from '../../provider/controllers/indexes.ts';
import { reconcileMachine, type MachineDeps } from '../../provider/controllers/machine.ts';
import type { NodeAgent } from '../../provider/health/node-agent.ts';
import {
  BareMetalHostPools,
  BareMetalHosts,
  BareMetalMachines,
  Clusters,
  collectionPath,
  Events,
  Machines,
  objectPath,
  Secrets,
  type KubeObject,
  type ResourceKind,
} from '../../provider/kube/kinds.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import { EventRecorder } from '../../provider/runtime/events.ts';
import { createInformer, type Informer } from '../../provider/runtime/informer.ts';
import { Fresher } from '../../provider/runtime/writer.ts';
import type { ControlPlane } from './controlplane.ts';
import { FakeSsh } from './fake-ssh.ts';
import { repoRoot } from './paths.ts';
import { waitFor } from './process.ts';

export const workerData = readFileSync(join(repoRoot, 'test/fixtures/cabpk/worker.yaml'), 'utf8');
export const clusterLabel = (cluster: string) => ({ 'cluster.x-k8s.io/cluster-name': cluster });
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Objects in one namespace of the test's control plane. */
export class Team {
  readonly cp: ControlPlane;
  readonly ns: string;
  constructor(cp: ControlPlane, ns: string) {
    this.cp = cp;
    this.ns = ns;
  }

  async namespace(): Promise<void> {
    if (this.ns === 'default') return;
    await raw(this.cp.kc, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: this.ns },
    }).catch((err: unknown) => {
      if (!(err instanceof ApiError && err.code === 409)) throw err;
    });
  }

  async secret(name: string, data: Record<string, string>, labels: Record<string, string> = {}): Promise<void> {
    await raw(this.cp.kc, 'POST', collectionPath(Secrets, this.ns), {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: this.ns, labels },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
    });
  }

  /** A pool with its SSH Secret (a fresh key): addresses of the stand-in only, no packet is sent. */
  async pool(
    name: string,
    addresses: string[],
    secret = `${name}-ssh`,
    extra: Record<string, unknown> = {},
  ): Promise<void> {
    await this.secret(secret, { 'ssh-privatekey': ssh2.utils.generateKeyPairSync('ed25519').private });
    await raw(this.cp.kc, 'POST', collectionPath(BareMetalHostPools, this.ns), {
      apiVersion: API_VERSION,
      kind: 'BareMetalHostPool',
      metadata: { name, namespace: this.ns },
      spec: { addresses, ssh: { secretRef: { name: secret } }, hostKeyPolicy: { type: 'TrustOnFirstUse' }, ...extra },
    });
  }

  /** A CAPI Cluster, Machine, bootstrap Secret and the BareMetalMachine the Machine owns. */
  async machine(m: MachineSetup): Promise<void> {
    const { kc } = this.cp;
    const ns = this.ns;
    const cluster = m.cluster ?? `c-${m.name}`;
    await raw(kc, 'POST', collectionPath(Clusters, ns), {
      apiVersion: 'cluster.x-k8s.io/v1beta2',
      kind: 'Cluster',
      metadata: { name: cluster, namespace: ns },
      spec: {
        infrastructureRef: { apiGroup: 'infrastructure.cluster.x-k8s.io', kind: 'BareMetalCluster', name: cluster },
      },
    }).catch((err: unknown) => {
      if (!(err instanceof ApiError && err.code === 409)) throw err;
    });
    if (m.infraReady !== false) {
      await raw(kc, 'PATCH', objectPath(Clusters, ns, cluster, 'status'), {
        status: { initialization: { infrastructureProvisioned: true } },
      });
    }
    // As CABPK writes it: labelled with the cluster it belongs to.
    if (m.data !== 'none' && !m.dataSecretName)
      await this.secret(
        `${m.name}-bootstrap`,
        m.data ?? { value: workerData, format: 'cloud-config' },
        clusterLabel(cluster),
      );
    const labels = { ...clusterLabel(cluster), ...(m.controlPlane ? { 'cluster.x-k8s.io/control-plane': '' } : {}) };
    const cm = await raw<CapiMachine>(kc, 'POST', collectionPath(Machines, ns), {
      apiVersion: 'cluster.x-k8s.io/v1beta2',
      kind: 'Machine',
      metadata: { name: m.name, namespace: ns, labels },
      spec: {
        clusterName: cluster,
        bootstrap:
          m.data === 'none'
            ? { configRef: { apiGroup: 'bootstrap.cluster.x-k8s.io', kind: 'KubeadmConfig', name: m.name } }
            : { dataSecretName: m.dataSecretName ?? `${m.name}-bootstrap` },
        infrastructureRef: { apiGroup: 'infrastructure.cluster.x-k8s.io', kind: 'BareMetalMachine', name: m.name },
      },
    });
    await raw(kc, 'POST', collectionPath(BareMetalMachines, ns), {
      apiVersion: API_VERSION,
      kind: 'BareMetalMachine',
      metadata: {
        name: m.name,
        namespace: ns,
        labels,
        ownerReferences: [
          {
            apiVersion: 'cluster.x-k8s.io/v1beta2',
            kind: 'Machine',
            name: m.name,
            uid: cm.metadata!.uid!,
            controller: true,
          },
        ],
      },
      spec: { poolRef: { name: m.pool ?? 'rack' } },
    });
  }

  bmm(name: string): Promise<BareMetalMachine> {
    return raw<BareMetalMachine>(this.cp.kc, 'GET', objectPath(BareMetalMachines, this.ns, name));
  }

  host(name: string): Promise<BareMetalHost> {
    return raw<BareMetalHost>(this.cp.kc, 'GET', objectPath(BareMetalHosts, this.ns, name));
  }

  async hosts(): Promise<BareMetalHost[]> {
    return (await raw<{ items: BareMetalHost[] }>(this.cp.kc, 'GET', collectionPath(BareMetalHosts, this.ns))).items;
  }

  async events(name: string): Promise<Array<{ reason: string; message: string }>> {
    const sel = encodeURIComponent(`involvedObject.name=${name}`);
    return (
      await raw<{ items: Array<{ reason: string; message: string }> }>(
        this.cp.kc,
        'GET',
        `${collectionPath(Events, this.ns)}?fieldSelector=${sel}`,
      )
    ).items;
  }
}

export interface MachineSetup {
  name: string;
  /** Default c-<name>. */
  cluster?: string;
  /** Default rack. */
  pool?: string;
  controlPlane?: boolean;
  infraReady?: boolean;
  data?: Record<string, string> | 'none';
  /** Name another Secret as the bootstrap data (nothing is created for it). */
  dataSecretName?: string;
}

export const cond = (
  o: { status?: { conditions?: Array<{ type: string; status: string; reason: string; message?: string }> } },
  type: string,
) => o.status?.conditions?.find((c) => c.type === type);

export interface World {
  deps: MachineDeps;
  ssh: FakeSsh;
  agent: NodeAgent & { installs: string[] };
  steps: string[];
  reconcile(ns: string, name: string): Promise<unknown>;
  stop(): Promise<void>;
}

function informer<T extends KubeObject>(kc: KubeConfig, kind: ResourceKind, extra = {}): Informer<T> {
  const i = createInformer<T>(kc, kind, { log: createLogger({ level: 'error' }), ...extra });
  i.start();
  return i;
}

function fakeAgent(): NodeAgent & { installs: string[] } {
  const installs: string[] = [];
  return {
    installs,
    installResult: (_c: unknown, _m: BareMetalMachine, h: BareMetalHost) => {
      installs.push(h.metadata.name);
      return Promise.resolve({
        installed: true as const,
        certificate: { serial: '01', notBefore: new Date().toISOString() },
      });
    },
    sync: () =>
      Promise.resolve({
        condition: { type: 'HostHealthy', status: true as const, reason: 'HostHealthy', message: '' },
        changed: true,
      }),
    unrecorded: () => undefined,
    removeScript: () => 'echo agent-removed',
    forget: () => {},
  };
}

/** A provider's machine reconciler (its own caches of every namespace, runs and fake SSH). */
export async function world(
  cp: ControlPlane,
  o: { kc?: KubeConfig; ssh?: FakeSsh; locks?: string; quietWaitMs?: number } = {},
): Promise<World> {
  const steps: string[] = [];
  const ssh = o.ssh ?? new FakeSsh();
  const agent = fakeAgent();
  const inf = {
    machines: informer<BareMetalMachine>(cp.kc, BareMetalMachines),
    capiMachines: informer<CapiMachine>(cp.kc, Machines),
    clusters: informer<CapiCluster>(cp.kc, Clusters),
    hosts: informer<BareMetalHost>(cp.kc, BareMetalHosts, { indexers: hostIndexers }),
    pools: informer<BareMetalHostPool>(cp.kc, BareMetalHostPools),
  };
  await Promise.all(Object.values(inf).map((i) => i.waitForSync()));
  const kc = o.kc ?? cp.kc;
  const deps: MachineDeps = {
    kc,
    recorder: new EventRecorder(kc, { minIntervalMs: 0 }),
    ssh,
    ...inf,
    agent,
    ...(o.locks ? { addressLocks: o.locks } : {}),
    runs: new BootstrapRuns({
      wake: () => {},
      log: createLogger({ level: 'error' }),
      progressEveryMs: 0,
      // Checks at once: the tests reconcile in short passes (the schedule has its own unit test).
      checks: { firstMs: 10, maxMs: 50 },
    }),
    fresh: { machines: new Fresher(), hosts: new Fresher() },
    claiming: new Set<string>(),
    // Tests read every wait at once; the quiet window (machine-plan.ts) has its own unit test.
    quietWaitMs: o.quietWaitMs ?? 0,
  };
  const abort = new AbortController();
  const log = {
    ...createLogger({ level: 'error' }),
    debug: (m: string, f?: Record<string, unknown>) => void (m === 'step' && steps.push(String(f?.step))),
  };
  const fn = reconcileMachine(deps);
  return {
    deps,
    ssh,
    agent,
    steps,
    reconcile: async (ns: string, name: string) => {
      // The caches see the test's own objects before a reconcile reads them.
      await waitFor(
        'the machine cache',
        () => Promise.resolve(inf.machines.get(ns, name) ? true : undefined),
        10_000,
        20,
      );
      return fn(
        { key: `${ns}/${name}`, namespace: ns, name },
        { log: { ...log, with: () => log }, signal: abort.signal },
      );
    },
    stop: async () => {
      abort.abort();
      await Promise.all(Object.values(inf).map((i) => i.stop()));
    },
  };
}

/** Deletes the machine and reconciles it once its cache has seen the deletion. */
export async function deleteAndReconcile(w: World, team: Team, name: string): Promise<void> {
  await raw(team.cp.kc, 'DELETE', objectPath(BareMetalMachines, team.ns, name));
  await waitFor(
    'the delete in the cache',
    () => Promise.resolve(w.deps.machines.get(team.ns, name)?.metadata.deletionTimestamp ? true : undefined),
    10_000,
    20,
  );
  await w.reconcile(team.ns, name);
}

/** Reconciles until `done` holds or `max` passes went by; a running bootstrap is given time to move. */
export async function until(
  t: ExecutionContext,
  w: World,
  team: Team,
  name: string,
  done: (m: BareMetalMachine) => boolean,
  max = 20,
): Promise<BareMetalMachine> {
  for (let i = 0; i < max; i++) {
    await w.reconcile(team.ns, name);
    const m = await team.bmm(name);
    if (done(m)) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.fail(`machine ${team.ns}/${name} did not get there; steps: ${w.steps.join(', ')}`);
  return team.bmm(name);
}

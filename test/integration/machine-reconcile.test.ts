// The BareMetalMachine reconciler against the real API server, with a recording stand-in for SSH
// (test/harness/fake-ssh.ts): every step of the plan, what each leaves on the machine and the host,
// that a bootstrap is followed off the worker, that only a genuinely invalid payload is called
// BootstrapDataInvalid (a missing Secret or a broken connection is retried), and that a new leader
// attaches to a running bootstrap. The real SSH transport, hosts and CAPI controllers: test/e2e.
import test, { type ExecutionContext } from 'ava';
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
import { byConsumer, ConsumerIndex, reconcileMachine, type MachineDeps } from '../../provider/controllers/machine.ts';
import type { NodeAgent } from '../../provider/health/node-agent.ts';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import {
  BareMetalHostPools,
  BareMetalHosts,
  BareMetalMachines,
  Clusters,
  collectionPath,
  Machines,
  objectPath,
  Secrets,
  type KubeObject,
  type ResourceKind,
} from '../../provider/kube/kinds.ts';
import { raw } from '../../provider/kube/raw.ts';
import { EventRecorder } from '../../provider/runtime/events.ts';
import { createInformer, type Informer } from '../../provider/runtime/informer.ts';
import { Fresher } from '../../provider/runtime/writer.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { FakeSsh, fakeHost } from '../harness/fake-ssh.ts';
import { repoRoot } from '../harness/paths.ts';
import { waitFor } from '../harness/process.ts';
import { startCutProxy, type CutProxy } from '../harness/proxy.ts';

let cp: ControlPlane;
let proxy: CutProxy;
const ns = 'default';
const workerData = readFileSync(join(repoRoot, 'test/fixtures/cabpk/worker.yaml'), 'utf8');

test.before(async () => {
  cp = await startControlPlane();
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
  proxy = await startCutProxy(new URL(cp.server));
  const key = ssh2.utils.generateKeyPairSync('ed25519');
  await secret('ssh', { 'ssh-privatekey': key.private });
  await raw(cp.kc, 'POST', collectionPath(BareMetalHostPools, ns), {
    apiVersion: API_VERSION,
    kind: 'BareMetalHostPool',
    metadata: { name: 'rack', namespace: ns },
    // Addresses of the stand-in only: no packet is sent to them.
    spec: {
      addresses: ['192.0.2.1-192.0.2.20'],
      ssh: { secretRef: { name: 'ssh' } },
      hostKeyPolicy: { type: 'TrustOnFirstUse' },
    },
  });
  await reconcilePool(cp.kc, ns, 'rack');
});
test.after.always(async () => {
  await proxy?.close();
  await cp?.stop();
});

const b64 = (s: string) => Buffer.from(s).toString('base64');
async function secret(name: string, data: Record<string, string>, labels: Record<string, string> = {}) {
  await raw(cp.kc, 'POST', collectionPath(Secrets, ns), {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: ns, labels },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
  });
}

const clusterLabel = (cluster: string) => ({ 'cluster.x-k8s.io/cluster-name': cluster });

interface World {
  deps: MachineDeps;
  ssh: FakeSsh;
  agent: NodeAgent & { installs: string[] };
  steps: string[];
  reconcile(name: string): Promise<unknown>;
  stop(): Promise<void>;
}

function informer<T extends KubeObject>(kind: ResourceKind, extra = {}): Informer<T> {
  const i = createInformer<T>(cp.kc, kind, { namespace: ns, log: createLogger({ level: 'error' }), ...extra });
  i.start();
  return i;
}

/** A provider's machine reconciler (its own caches, runs and fake SSH), as a leader would run it. */
async function world(o: { kc?: typeof cp.kc; ssh?: FakeSsh } = {}): Promise<World> {
  const steps: string[] = [];
  const ssh = o.ssh ?? new FakeSsh();
  const installs: string[] = [];
  const agent = {
    installs,
    installResult: (_c: unknown, _m: BareMetalMachine, h: BareMetalHost) => {
      installs.push(h.metadata.name);
      return Promise.resolve({ installed: true as const });
    },
    sync: () =>
      Promise.resolve({
        condition: { type: 'HostHealthy', status: true as const, reason: 'HostHealthy', message: '' },
        changed: true,
      }),
    removeScript: () => 'echo agent-removed',
    forget: () => {},
  };
  const inf = {
    machines: informer<BareMetalMachine>(BareMetalMachines),
    capiMachines: informer<CapiMachine>(Machines),
    clusters: informer<CapiCluster>(Clusters),
    hosts: informer<BareMetalHost>(BareMetalHosts, { indexers: { [ConsumerIndex]: byConsumer } }),
    pools: informer<BareMetalHostPool>(BareMetalHostPools),
  };
  await Promise.all(Object.values(inf).map((i) => i.waitForSync()));
  const kc = o.kc ?? cp.kc;
  const wakes: string[] = [];
  const deps: MachineDeps = {
    kc,
    recorder: new EventRecorder(kc, { minIntervalMs: 0 }),
    ssh,
    ...inf,
    agent,
    runs: new BootstrapRuns({ wake: (k) => wakes.push(k), log: createLogger({ level: 'error' }), progressEveryMs: 0 }),
    fresh: { machines: new Fresher(), hosts: new Fresher() },
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
    reconcile: async (name: string) => {
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

interface MachineSetup {
  name: string;
  controlPlane?: boolean;
  infraReady?: boolean;
  data?: Record<string, string> | 'none';
}

/** A CAPI Cluster, Machine, bootstrap Secret and the BareMetalMachine the Machine owns. */
async function machine(m: MachineSetup): Promise<void> {
  const cluster = `c-${m.name}`;
  await raw(cp.kc, 'POST', collectionPath(Clusters, ns), {
    apiVersion: 'cluster.x-k8s.io/v1beta2',
    kind: 'Cluster',
    metadata: { name: cluster, namespace: ns },
    spec: {
      infrastructureRef: { apiGroup: 'infrastructure.cluster.x-k8s.io', kind: 'BareMetalCluster', name: cluster },
    },
  });
  if (m.infraReady !== false) {
    await raw(cp.kc, 'PATCH', objectPath(Clusters, ns, cluster, 'status'), {
      status: { initialization: { infrastructureProvisioned: true } },
    });
  }
  // As CABPK writes it: labelled with the cluster it belongs to.
  if (m.data !== 'none')
    await secret(`${m.name}-bootstrap`, m.data ?? { value: workerData, format: 'cloud-config' }, clusterLabel(cluster));
  const labels = { ...clusterLabel(cluster), ...(m.controlPlane ? { 'cluster.x-k8s.io/control-plane': '' } : {}) };
  const cm = await raw<CapiMachine>(cp.kc, 'POST', collectionPath(Machines, ns), {
    apiVersion: 'cluster.x-k8s.io/v1beta2',
    kind: 'Machine',
    metadata: { name: m.name, namespace: ns, labels },
    spec: {
      clusterName: cluster,
      bootstrap:
        m.data === 'none'
          ? { configRef: { apiGroup: 'bootstrap.cluster.x-k8s.io', kind: 'KubeadmConfig', name: m.name } }
          : { dataSecretName: `${m.name}-bootstrap` },
      infrastructureRef: { apiGroup: 'infrastructure.cluster.x-k8s.io', kind: 'BareMetalMachine', name: m.name },
    },
  });
  await raw(cp.kc, 'POST', collectionPath(BareMetalMachines, ns), {
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
    spec: { poolRef: { name: 'rack' } },
  });
}

const getBmm = (name: string) => raw<BareMetalMachine>(cp.kc, 'GET', objectPath(BareMetalMachines, ns, name));
const getHost = (name: string) => raw<BareMetalHost>(cp.kc, 'GET', objectPath(BareMetalHosts, ns, name));
const cond = (
  o: { status?: { conditions?: Array<{ type: string; status: string; reason: string; message?: string }> } },
  type: string,
) => o.status?.conditions?.find((c) => c.type === type);
const events = async (name: string) =>
  (
    await raw<{ items: Array<{ reason: string; message: string }> }>(
      cp.kc,
      'GET',
      `${collectionPath({ group: '', version: 'v1', kind: 'Event', plural: 'events', namespaced: true }, ns)}?fieldSelector=${encodeURIComponent(`involvedObject.name=${name}`)}`,
    )
  ).items;

/** Deletes the machine and reconciles it once its cache has seen the deletion. */
async function deleteAndReconcile(w: World, name: string) {
  await raw(cp.kc, 'DELETE', objectPath(BareMetalMachines, ns, name));
  await waitFor(
    'the delete in the cache',
    () => Promise.resolve(w.deps.machines.get(ns, name)?.metadata.deletionTimestamp ? true : undefined),
    10_000,
    20,
  );
  await w.reconcile(name);
}

/** Reconciles until `done` holds or `max` passes went by; a running bootstrap is given time to move. */
async function until(t: ExecutionContext, w: World, name: string, done: (m: BareMetalMachine) => boolean, max = 20) {
  for (let i = 0; i < max; i++) {
    await w.reconcile(name);
    const m = await getBmm(name);
    if (done(m)) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.fail(`machine ${name} did not get there; steps: ${w.steps.join(', ')}`);
  return getBmm(name);
}

test.serial(
  'a machine walks every step to provisioned: claim, preflight, bootstrap followed off the worker, agent, provisioned, health',
  async (t) => {
    const w = await world();
    t.teardown(() => w.stop());
    await machine({ name: 'walk' });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // Every host of the pool holds its bootstrap until released.
    for (let i = 1; i <= 20; i++) w.ssh.hosts.set(`192.0.2.${i}`, fakeHost({ gate }));
    const claimed = await until(t, w, 'walk', (m) => cond(m, 'HostReady')?.status === 'True');
    const hostName = claimed.status!.hostRef!.name;
    const host = await getHost(hostName);
    t.is(host.spec.consumerRef?.name, 'walk');
    t.is(host.status?.phase, 'Provisioning');
    t.like(host.status?.facts, { os: 'debian 12', cpus: 2 });
    t.is(cond(host, 'PreflightPassed')?.status, 'True');

    // The bootstrap starts and the reconcile returns while it runs: the worker is not held.
    const running = await until(t, w, 'walk', (m) =>
      /^Step 1\/\d+: write_files\.0/.test(cond(m, 'BootstrapSucceeded')?.message ?? ''),
    );
    t.is(cond(running, 'BootstrapSucceeded')?.reason, 'Bootstrapping');
    t.is(w.deps.runs.get(running.metadata.uid!)?.state, 'running');
    release();
    const done = await until(t, w, 'walk', (m) => m.status?.initialization?.provisioned === true);
    t.is(done.spec.providerID, `capbm://${ns}/${hostName}`);
    t.deepEqual(done.status?.addresses, [
      { type: 'InternalIP', address: host.spec.address },
      { type: 'Hostname', address: 'walk' },
    ]);
    t.is(cond(done, 'Ready')?.status, 'True');
    t.is(cond(done, 'AgentInstalled')?.status, 'True');
    t.is((await getHost(hostName)).status?.phase, 'Provisioned');
    const fh = w.ssh.host(host.spec.address);
    t.is(fh.started, 1);
    t.true(
      fh.commands.some((c) => c.includes('bootstrap.sh') && c.startsWith('rm -f')),
      'the used script is scrubbed',
    );
    t.deepEqual(w.agent.installs, [hostName]);
    const healthy = await until(t, w, 'walk', (m) => cond(m, 'HostHealthy')?.status === 'True');
    t.truthy(healthy);
    for (const s of [
      'add-finalizer',
      'claim-host',
      'preflight',
      'start-bootstrap',
      'follow-bootstrap',
      'finish-bootstrap',
      'done',
    ])
      t.true(w.steps.includes(s), `step ${s} in ${w.steps.join(', ')}`);
    const reasons = (await events('walk')).map((e) => e.reason);
    t.true(reasons.includes('HostClaimed') && reasons.includes('Provisioned'), reasons.join(','));
  },
);

test.serial('waits say what they wait for, and nothing runs on the host before the data is there', async (t) => {
  const w = await world();
  t.teardown(() => w.stop());
  // A worker holds nothing before it can go on; a control-plane machine holds its host early.
  await machine({ name: 'worker-early', infraReady: false, data: 'none' });
  const wm = await until(
    t,
    w,
    'worker-early',
    (x) => cond(x, 'HostClaimed')?.reason === 'WaitingForClusterInfrastructure',
  );
  t.is(wm.status?.hostRef, undefined);
  await machine({ name: 'early', infraReady: false, data: 'none', controlPlane: true });
  const m = await until(
    t,
    w,
    'early',
    (x) => cond(x, 'BootstrapSucceeded')?.reason === 'WaitingForClusterInfrastructure',
  );
  t.is(cond(m, 'HostClaimed')?.status, 'True', 'the host is held early (the endpoint rule needs it)');
  t.is(w.ssh.connections, 0);
  await raw(cp.kc, 'PATCH', objectPath(Clusters, ns, 'c-early', 'status'), {
    status: { initialization: { infrastructureProvisioned: true } },
  });
  await waitFor(
    'cluster cache',
    () =>
      Promise.resolve(
        w.deps.clusters.get(ns, 'c-early')?.status?.initialization?.infrastructureProvisioned ? true : undefined,
      ),
    10_000,
    20,
  );
  await until(t, w, 'early', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'WaitingForBootstrapData');
  t.is(w.ssh.connections, 0);
});

test.serial(
  'only a genuinely invalid payload is BootstrapDataInvalid; a missing Secret and a cut connection are retried',
  async (t) => {
    const cutKc = proxy.kubeconfig(cp.kubeconfigPath);
    const w = await world({ kc: cutKc });
    t.teardown(() => w.stop());
    // A Secret named but not there yet: a wait, retried.
    await machine({ name: 'nodata', data: { value: workerData } });
    await raw(cp.kc, 'DELETE', objectPath(Secrets, ns, 'nodata-bootstrap'));
    const m = await until(
      t,
      w,
      'nodata',
      (x) =>
        cond(x, 'BootstrapSucceeded')?.reason === 'WaitingForBootstrapData' && cond(x, 'HostReady')?.status === 'True',
    );
    t.regex(cond(m, 'BootstrapSucceeded')?.message ?? '', /does not exist yet; retrying/);
    // The connection to the API server breaks while the data is read: the reconcile fails and is retried.
    await secret('nodata-bootstrap', { value: workerData, format: 'cloud-config' }, clusterLabel('c-nodata'));
    proxy.refuse(true);
    proxy.cut();
    await t.throwsAsync(w.reconcile('nodata'));
    proxy.refuse(false);
    t.not(cond(await getBmm('nodata'), 'BootstrapSucceeded')?.reason, 'BootstrapDataInvalid');
    await until(t, w, 'nodata', (x) => x.status?.initialization?.provisioned === true);

    // A payload that cannot be carried out: said once, nothing run.
    await machine({
      name: 'bad',
      data: { value: '#cloud-config\ndisk_setup:\n  /dev/sdb: {}\n', format: 'cloud-config' },
    });
    const bad = await until(t, w, 'bad', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'BootstrapDataInvalid');
    t.regex(cond(bad, 'BootstrapSucceeded')?.message ?? '', /Fix the KubeadmConfig/);
    t.is(w.ssh.host(bad.status?.hostRef ? (await getHost(bad.status.hostRef.name)).spec.address : '').started, 0);
  },
);

test.serial(
  'a failed bootstrap is final, an interrupted one runs again; delete resets and releases, or quarantines a dirty host',
  async (t) => {
    const w = await world();
    t.teardown(() => w.stop());
    await machine({ name: 'fails' });
    // The next free host fails its bootstrap.
    for (const [, h] of w.ssh.hosts) if (h.runState === 'none') h.bootstrap = 'fail';
    for (let i = 1; i <= 20; i++)
      if (!w.ssh.hosts.has(`192.0.2.${i}`)) w.ssh.hosts.set(`192.0.2.${i}`, fakeHost({ bootstrap: 'fail' }));
    const failed = await until(t, w, 'fails', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'BootstrapFailed');
    t.regex(
      cond(failed, 'BootstrapSucceeded')?.message ?? '',
      /step runcmd\.0 exited 1: kubeadm: error execution phase preflight/,
    );
    t.is(failed.status?.phase, 'Failed');
    const host = await getHost(failed.status!.hostRef!.name);
    const fh = w.ssh.host(host.spec.address);
    for (let i = 0; i < 3; i++) await w.reconcile('fails');
    t.is(fh.started, 1, 'not run again in place');

    // Deleted: the host is reset; it left something behind, so it is quarantined and the machine goes.
    fh.leftovers = ['/etc/kubernetes/kubelet.conf'];
    await deleteAndReconcile(w, 'fails');
    const q = await getHost(host.metadata.name);
    t.is(q.status?.phase, 'Quarantined');
    t.is(q.spec.quarantine?.reason, 'HostDirty');
    t.is(q.spec.consumerRef, undefined);
    t.true(fh.commands.some((c) => c.includes('kubeadm reset') && c.includes('echo agent-removed')));
    await waitFor(
      'the machine to go',
      async () =>
        await getBmm('fails').then(
          () => undefined,
          () => true,
        ),
      10_000,
      50,
    );

    // An interrupted bootstrap (the host lost power) is run again; step markers skip what finished.
    await machine({ name: 'blip' });
    for (const [, h] of w.ssh.hosts) if (h.runState === 'none' && !h.leftovers.length) h.bootstrap = 'interrupted';
    const hit = await until(t, w, 'blip', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'HostUnreachable');
    const bh = w.ssh.host((await getHost(hit.status!.hostRef!.name)).spec.address);
    bh.bootstrap = 'ok';
    const ok = await until(t, w, 'blip', (x) => x.status?.initialization?.provisioned === true);
    t.is(bh.started, 2);
    // Deleted cleanly: reset, Available, released.
    await deleteAndReconcile(w, 'blip');
    const freed = await getHost(ok.status!.hostRef!.name);
    t.is(freed.status?.phase, 'Available');
    t.is(freed.spec.consumerRef, undefined);
    t.is(cond(freed, 'Clean')?.status, 'True');
    t.true((await events('blip')).some((e) => e.reason === 'HostReleased'));
  },
);

test.serial('a host that refuses the key: said on the machine and the host, nothing run', async (t) => {
  const ssh = new FakeSsh();
  for (let i = 1; i <= 20; i++) ssh.hosts.set(`192.0.2.${i}`, fakeHost({ refuse: 'auth' }));
  const w = await world({ ssh });
  t.teardown(() => w.stop());
  await machine({ name: 'nokey' });
  const m = await until(t, w, 'nokey', (x) => cond(x, 'HostReady')?.reason === 'SSHAuthenticationFailed');
  t.regex(cond(m, 'HostReady')?.message ?? '', /Secret default\/ssh/);
  const h = await getHost(m.status!.hostRef!.name);
  t.is(cond(h, 'Reachable')?.reason, 'SSHAuthenticationFailed');
  t.true([...ssh.hosts.values()].every((x) => x.commands.length === 0));
  await raw(cp.kc, 'DELETE', objectPath(BareMetalMachines, ns, 'nokey'));
});

test.serial('a new leader attaches to the bootstrap the old one started: it runs once', async (t) => {
  const ssh = new FakeSsh();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  for (let i = 1; i <= 20; i++) ssh.hosts.set(`192.0.2.${i}`, fakeHost({ gate }));
  const first = await world({ ssh });
  await machine({ name: 'handover' });
  await until(
    t,
    first,
    'handover',
    (x) =>
      cond(x, 'BootstrapSucceeded')?.reason === 'Bootstrapping' &&
      /Step/.test(cond(x, 'BootstrapSucceeded')?.message ?? ''),
  );
  await first.stop(); // the old leader is gone; its run's connection with it
  const second = await world({ ssh });
  t.teardown(() => second.stop());
  const attach = second.reconcile('handover');
  release();
  await attach;
  const m = await until(t, second, 'handover', (x) => x.status?.initialization?.provisioned === true);
  const fh = ssh.host((await getHost(m.status!.hostRef!.name)).spec.address);
  t.is(fh.started, 1);
  t.true((await events('handover')).some((e) => e.reason === 'BootstrapAttached'));
});

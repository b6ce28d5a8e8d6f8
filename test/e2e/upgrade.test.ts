// A Kubernetes upgrade the way Cluster API does it on immutable hosts, with every real part (see
// provision.test.ts), on stock hosts (Debian with systemd and sshd only, nothing of Kubernetes
// installed), of a topology-managed cluster: the `clusterclass` flavor (the ClusterClass capbm and a
// Cluster with spec.topology, docs/clusterctl.md) on a management plane whose CAPI core runs with
// ClusterTopology=true. The ClusterClass variable hostPreparation asks for host preparation
// (docs/hosts.md): each machine's host is prepared with the bundle of the machine's version: the old
// version's uploaded by the provider over SSH (bundle.source Provider), the new version's downloaded
// by the host from a web server this test starts on the lab bridge (bundle.source HTTP, pinned by
// its manifest's sha256). One pool of three stock hosts: the cluster starts on the version before the
// pinned one (two hosts prepared with it); the upgrade is one change of spec.topology: the version,
// and hostPreparation to the new version's bundle. Cluster API rolls the control plane first: the
// new control-plane machine takes the third host (prepared with the new version); the old
// control-plane host is reset (what preparation installed removed: stock again); then the workers:
// the new worker takes that host (prepared afresh, with the new version), and the last old host is
// reset to stock. A client keeps asking the workload API server (through the control-plane
// endpoint) during the control-plane rollout; the failed requests are counted and reported. Then the
// workers scale through spec.topology onto that last host, and deleting the Cluster resets all three
// hosts to stock.
import test, { type ExecutionContext } from 'ava';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Server } from 'node:http';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { raw } from '../../provider/kube/raw.ts';
import { Bundles } from '../../provider/preparation/bundles.ts';
import {
  applyTopologyTemplate,
  createPool,
  startEnv,
  waitForClusterAvailable,
  workloadKubeconfig,
  type Env,
} from '../harness/env.ts';
import { bundleDir, hostExec, kubernetesVersions } from '../harness/lab.ts';
import { waitFor } from '../harness/process.ts';
import { closeServer, listenOnBridge, staticServer } from '../harness/web.ts';
import { deployHello, nodes, pods, probeApi, waitForNodesReady } from '../harness/workload.ts';

const ns = 'upgrade';
const cluster = 'delta';
const { current, previous } = kubernetesVersions();
let env: Env;
let wl: KubeConfig;
const base = `/apis/${API_VERSION}/namespaces/${ns}`;
const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;

const pool = 'stock';
/** The old version's hosts: the bundle of the Machine's version from the provider's --bundle-dir. */
const preparation = { bundle: { source: 'Provider' } };
/** The new version's hosts: the bundle downloaded by each host from `web` (set in before). */
let httpPreparation: { bundle: { source: 'HTTP'; url: string; sha256: string } };
let web: Server | undefined;

test.before(async () => {
  env = await startEnv({ hosts: 0, stockHosts: 3, capiFeatureGates: 'ClusterTopology=true' });
  await createPool(env, ns, pool, env.hosts);
  // After the hosts: the bridge exists once a host is on it.
  const b = await new Bundles(bundleDir()).find(current);
  web = staticServer(b.dir);
  httpPreparation = { bundle: { source: 'HTTP', url: await listenOnBridge(web), sha256: b.digest } };
  env.startProvider();
});
test.after.always(async () => {
  if (web) await closeServer(web);
  await env?.stop();
});

const hosts = async () =>
  (
    await raw<{ items: BareMetalHost[] }>(
      env.cp.kc,
      'GET',
      `${base}/baremetalhosts?labelSelector=${encodeURIComponent(`infrastructure.cluster.x-k8s.io/pool=${pool}`)}`,
    )
  ).items;

interface Topology {
  version: string;
  variables: Array<{ name: string; value: unknown }>;
  workers: { machineDeployments: Array<{ name: string; replicas?: number }> };
}
const topology = async () =>
  (await raw<{ spec: { topology: Topology } }>(env.cp.kc, 'GET', `${capi}/clusters/${cluster}`)).spec.topology;

/** The KubeadmControlPlane the topology made (a generated name: the Cluster's controlPlaneRef). */
async function kcpPath(): Promise<string> {
  const c = await raw<{ spec: { controlPlaneRef: { name: string } } }>(env.cp.kc, 'GET', `${capi}/clusters/${cluster}`);
  return `/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/${ns}/kubeadmcontrolplanes/${c.spec.controlPlaneRef.name}`;
}

interface PreparedView {
  machine: string;
  controlPlane: boolean;
  host: string;
  prepared?: { status: string; reason: string; message?: string };
}

/** Each BareMetalMachine's host and HostPrepared condition. */
async function preparedHosts(): Promise<PreparedView[]> {
  const list = await raw<{
    items: Array<{
      metadata: { name: string; labels?: Record<string, string> };
      status?: {
        hostRef?: { name: string };
        conditions?: Array<{ type: string; status: string; reason: string; message?: string }>;
      };
    }>;
  }>(env.cp.kc, 'GET', `${base}/baremetalmachines`);
  return list.items.map((m) => ({
    machine: m.metadata.name,
    // KubeadmControlPlane labels the infrastructure machines it makes as it labels its Machines.
    controlPlane: m.metadata.labels?.['cluster.x-k8s.io/control-plane'] !== undefined,
    host: m.status?.hostRef?.name ?? '',
    prepared: m.status?.conditions?.find((c) => c.type === 'HostPrepared'),
  }));
}

/** What the host says it has: the kubeadm version and the preparation record's bundle, or ''. */
async function onHost(name: string): Promise<{ kubeadm: string; bundle: string }> {
  const h = (await hosts()).find((x) => x.metadata.name === name)!;
  const lab = env.hosts.find((x) => x.address === h.spec.address)!;
  const r = await hostExec(
    lab,
    'echo "$(kubeadm version -o short 2>/dev/null)|$(sed -n s/^bundle=//p /etc/capbm/prepared 2>/dev/null)"',
  );
  const [kubeadm = '', bundle = ''] = r.stdout.trim().split('|');
  return { kubeadm, bundle };
}

/** A host of the pool reset, Available, and stock again: nothing preparation or kubeadm left. */
async function assertStock(t: ExecutionContext, h: BareMetalHost): Promise<void> {
  const lab = env.hosts.find((x) => x.address === h.spec.address)!;
  for (const p of [
    '/etc/kubernetes/kubelet.conf',
    '/var/lib/etcd/member',
    '/var/lib/kubelet/config.yaml',
    '/run/cluster-api',
    '/etc/capbm/prepared',
    '/usr/bin/kubeadm',
    '/usr/bin/containerd',
    '/opt/cni/bin/bridge',
  ])
    t.not((await hostExec(lab, `test -e ${p}`)).exitCode, 0, `${p} left on ${h.metadata.name}`);
  t.is(
    (await hostExec(lab, 'pgrep -x containerd-shim-runc-v2 | wc -l; pgrep -x kubelet | wc -l')).stdout.trim(),
    '0\n0',
    h.metadata.name,
  );
}

/** Every machine's host prepared with the new version's bundle, downloaded by the host (source HTTP). */
async function assertPreparedOverHttp(t: ExecutionContext, ps: PreparedView[]): Promise<void> {
  for (const p of ps) {
    t.like(p.prepared, { status: 'True', reason: 'HostPrepared' }, p.machine);
    t.regex(p.prepared?.message ?? '', new RegExp(`^Prepared with kubernetes-${current}-b\\d+: `));
    // bundle.source HTTP: every file came from the web server, none from the provider.
    t.regex(p.prepared?.message ?? '', /[1-9]\d* MiB downloaded by the host\) sha256-verified on the host/, p.machine);
    const has = await onHost(p.host);
    t.is(has.kubeadm, current, p.host);
    t.regex(has.bundle, new RegExp(`^kubernetes-${current}-b\\d+$`), p.host);
    t.log(`${p.machine} on ${p.host}: ${p.prepared?.message ?? ''}`);
  }
}

const t0 = Date.now();
const at = () => `${Math.round((Date.now() - t0) / 1000)} s`;

test.serial(
  `on stock hosts, a topology cluster on ${previous} is upgraded to ${current} by one change of spec.topology: every machine replaced onto a host prepared with the new version (a reused one prepared again), the last old host reset to stock`,
  async (t) => {
    t.timeout(40 * 60_000);
    for (const h of env.hosts)
      t.is((await hostExec(h, 'command -v kubeadm kubelet containerd runc; true')).stdout.trim(), '', 'a stock host');
    await applyTopologyTemplate(env, {
      namespace: ns,
      name: cluster,
      pool,
      controlPlane: 1,
      workers: 1,
      kubernetesVersion: previous,
      preparation,
    });
    const before = await waitForClusterAvailable(env, ns, cluster, 2, 15 * 60_000);
    wl = (await workloadKubeconfig(env, ns, cluster)).kc;
    t.deepEqual(
      (await waitForNodesReady(wl, 2)).map((n) => n.kubeletVersion),
      [previous, previous],
    );
    t.log(`${at()}: cluster Available on ${previous}: ${before.machines.map((m) => m.name).join(', ')}`);
    await deployHello(wl);
    const first = await preparedHosts();
    t.is(first.length, 2);
    for (const p of first) {
      t.like(p.prepared, { status: 'True', reason: 'HostPrepared' }, p.machine);
      t.regex(p.prepared?.message ?? '', new RegExp(`^Prepared with kubernetes-${previous}-b\\d+: .* \\(\\d+ s\\)$`));
      t.regex(p.prepared?.message ?? '', /\d+ MiB uploaded\) sha256-verified on the host/, 'bundle.source Provider');
      t.is((await onHost(p.host)).kubeadm, previous);
      t.log(`${p.machine} on ${p.host}: ${p.prepared?.message ?? ''}`);
    }
    const oldCpHost = first.find((p) => p.controlPlane)!.host;

    // One change: the version, and the new version's bundle. Cluster API rolls the control plane
    // first, one machine at a time (maxSurge 1: the new machine joins, then the old one leaves); the
    // workers wait for it (their templates are not touched meanwhile), then roll the same way.
    const kcp = await kcpPath();
    const variables = (await topology()).variables.map((v) =>
      v.name === 'hostPreparation' ? { ...v, value: httpPreparation } : v,
    );
    const probe = probeApi(wl, { intervalMs: 250, maxRequests: 8000 });
    const cpStart = Date.now();
    await raw(env.cp.kc, 'PATCH', `${capi}/clusters/${cluster}`, {
      spec: { topology: { version: current, variables } },
    });
    await waitFor(
      'the control plane rolled out',
      async () => {
        const k = await raw<{
          status?: { version?: string; replicas?: number; upToDateReplicas?: number; readyReplicas?: number };
        }>(env.cp.kc, 'GET', kcp);
        const cps = (await waitForClusterAvailable(env, ns, cluster, 2, 5000).catch(() => undefined))?.machines.filter(
          (m) => m.controlPlane,
        );
        return k.status?.version === current &&
          k.status.replicas === 1 &&
          k.status.upToDateReplicas === 1 &&
          cps?.length === 1
          ? true
          : undefined;
      },
      15 * 60_000,
      2000,
    );
    const count = await probe.stop();
    t.log(
      `control plane rolled to ${current} in ${Math.round((Date.now() - cpStart) / 1000)} s; workload API during the rollout: ${count.ok} answered, ${count.failed} failed${count.errors.length ? ` (${[...new Set(count.errors)].slice(0, 3).join('; ')})` : ''}`,
    );
    t.true(count.ok > 0, 'the workload API answered during the rollout');

    const after = await waitFor(
      'every machine on the new version',
      async () => {
        const h = await waitForClusterAvailable(env, ns, cluster, 2, 5000).catch(() => undefined);
        return h && h.machines.every((m) => m.version === current) ? h : undefined;
      },
      15 * 60_000,
      2000,
    );
    t.log(`${at()}: every machine on ${current}: ${after.machines.map((m) => m.name).join(', ')}`);
    const oldNames = new Set(before.machines.map((m) => m.name));
    t.false(
      after.machines.some((m) => oldNames.has(m.name)),
      'every Machine was replaced',
    );
    // Every machine's host prepared with the new version's bundle; the new worker on the host the old
    // control plane left: reset to stock, then prepared afresh.
    const now = (await preparedHosts()).filter((p) => !oldNames.has(p.machine));
    t.is(now.length, 2);
    await assertPreparedOverHttp(t, now);
    t.is(now.find((p) => !p.controlPlane)?.host, oldCpHost, 'the new worker reused the old control-plane host');
    const ready = await waitForNodesReady(wl, 2);
    t.deepEqual(
      ready.map((n) => n.kubeletVersion),
      [current, current],
    );
    const hello = await waitFor(
      'the sample app Ready on the new nodes',
      async () => {
        const ps = await pods(wl, 'default', 'app=hello');
        return ps.length === 2 && ps.every((p) => p.ready) ? ps : undefined;
      },
      180_000,
      2000,
    );
    t.true(hello.every((p) => ready.some((n) => n.name === p.node)));
    // The host left over: reset, clean, Available, and stock again (what preparation installed removed).
    const inUse = new Set(now.map((p) => p.host));
    const left = await waitFor(
      'the last old host reset and Available',
      async () => {
        const hs = (await hosts()).filter((h) => !inUse.has(h.metadata.name));
        return hs.length === 1 &&
          hs.every((h) => h.status?.phase === 'Available' && !h.spec.consumerRef && h.status.lastResetTime)
          ? hs
          : undefined;
      },
      180_000,
      1000,
    );
    for (const h of left) await assertStock(t, h);
    t.is((await nodes(wl)).length, 2, 'the old Nodes are gone from the cluster');
  },
);

test.serial(
  'scaled through spec.topology: a second worker on the host left over, prepared with the new version',
  async (t) => {
    t.timeout(10 * 60_000);
    const started = Date.now();
    const mds = (await topology()).workers.machineDeployments.map((md) => ({ ...md, replicas: 2 }));
    await raw(env.cp.kc, 'PATCH', `${capi}/clusters/${cluster}`, {
      spec: { topology: { workers: { machineDeployments: mds } } },
    });
    const h = await waitForClusterAvailable(env, ns, cluster, 3, 8 * 60_000);
    t.true(
      h.machines.every((m) => m.version === current),
      'the new worker on the new version',
    );
    t.log(`${at()}: scaled to 2 workers (${Math.round((Date.now() - started) / 1000)} s)`);
    const ps = await preparedHosts();
    t.is(new Set(ps.map((p) => p.host)).size, 3, 'three machines on three hosts');
    await assertPreparedOverHttp(t, ps);
    t.deepEqual(
      (await waitForNodesReady(wl, 3)).map((n) => n.kubeletVersion),
      [current, current, current],
    );
  },
);

test.serial('the Cluster deleted: every host reset, Available and stock again', async (t) => {
  t.timeout(10 * 60_000);
  const started = Date.now();
  await raw(env.cp.kc, 'DELETE', `${capi}/clusters/${cluster}`);
  const all = await waitFor(
    'every host reset and Available',
    async () => {
      const hs = await hosts();
      return hs.every((h) => !h.spec.consumerRef && h.status?.phase === 'Available' && h.status.lastResetTime)
        ? hs
        : undefined;
    },
    8 * 60_000,
    1000,
  );
  t.is(all.length, 3);
  t.log(`${at()}: deleted, ${all.length} hosts reset and Available (${Math.round((Date.now() - started) / 1000)} s)`);
  for (const h of all) await assertStock(t, h);
});

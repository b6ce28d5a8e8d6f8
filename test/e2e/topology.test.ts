// A ClusterClass topology on lab hosts, end to end: the `clusterclass` flavor (the ClusterClass
// capbm and a Cluster with spec.topology) applied to a management plane whose CAPI core runs with
// ClusterTopology=true, provisioned by the real kubeadm on lab hosts of the previous Kubernetes
// version; then one change of spec.topology (the version, and the pool of hosts that carry it)
// rolls the control plane and the workers onto fresh hosts, and the old hosts come back reset; the
// workers scale through spec.topology, and deleting the Cluster resets every host.
// Runs when CAPBM_E2E_TOPOLOGY=1 (it adds minutes to the suite; `hack/test test/e2e/topology.test.ts`
// with the variable set).
import test from 'ava';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { API_VERSION } from '../../provider/api/common.ts';
import { raw } from '../../provider/kube/raw.ts';
import { createPool, installCniAddon, labTopologyObjects, machines, startEnv, type Env } from '../harness/env.ts';
import { kubernetesVersions } from '../harness/lab.ts';
import { waitFor } from '../harness/process.ts';

const enabled = process.env.CAPBM_E2E_TOPOLOGY === '1';
const serial = enabled ? test.serial : test.serial.skip;
const ns = 'e2e-topology';
const cluster = 'topo';
let env: Env;
const t0 = Date.now();
const at = () => `${Math.round((Date.now() - t0) / 1000)} s`;
const { current, previous } = kubernetesVersions();
const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;

const plurals: Record<string, string> = {
  ClusterClass: 'clusterclasses',
  Cluster: 'clusters',
  BareMetalClusterTemplate: 'baremetalclustertemplates',
  BareMetalMachineTemplate: 'baremetalmachinetemplates',
  KubeadmControlPlaneTemplate: 'kubeadmcontrolplanetemplates',
  KubeadmConfigTemplate: 'kubeadmconfigtemplates',
};

if (enabled) {
  test.before(async () => {
    // Hosts 0-2 carry the current version (pool "cur"), 3-4 the previous one (pool "prev").
    env = await startEnv({ hosts: 3, previousVersionHosts: 2, capiFeatureGates: 'ClusterTopology=true' });
    await createPool(env, ns, 'cur', env.hosts.slice(0, 3));
    await createPool(env, ns, 'prev', env.hosts.slice(3, 5));
    env.startProvider();
  });
  test.after.always(async () => {
    await env?.stop();
  });
}

type Cond = { type: string; status: string };
type CapiMachine = {
  metadata: { name: string };
  spec: { version?: string };
  status?: { phase?: string; conditions?: Cond[] };
};
const isTrue = (o: { status?: { conditions?: Cond[] } }, type: string) =>
  o.status?.conditions?.some((c) => c.type === type && c.status === 'True') === true;

/**
 * The topology's objects carry generated names: the Cluster Available, and `count` Machines of the
 * cluster, each Running, Ready and at `version`.
 */
async function waitForTopology(count: number, version: string, timeoutMs: number): Promise<CapiMachine[]> {
  return waitFor(
    `${count} Ready machines at ${version} in topology cluster ${cluster}`,
    async () => {
      const c = await raw<{ status?: { conditions?: Cond[] } }>(env.cp.kc, 'GET', `${capi}/clusters/${cluster}`);
      const ms = (
        await raw<{ items: CapiMachine[] }>(
          env.cp.kc,
          'GET',
          `${capi}/machines?labelSelector=${encodeURIComponent(`cluster.x-k8s.io/cluster-name=${cluster}`)}`,
        )
      ).items;
      const ok =
        isTrue(c, 'Available') &&
        ms.length === count &&
        ms.every((m) => m.status?.phase === 'Running' && isTrue(m, 'Ready') && m.spec.version === version);
      return ok ? ms : undefined;
    },
    timeoutMs,
    2000,
  );
}

const hostsOf = async () =>
  (await raw<{ items: BareMetalHost[] }>(env.cp.kc, 'GET', `/apis/${API_VERSION}/namespaces/${ns}/baremetalhosts`))
    .items;

serial('1. the clusterclass flavor provisions on lab hosts (1 control plane, 1 worker)', async (t) => {
  t.timeout(15 * 60_000);
  await installCniAddon(env, ns);
  const docs = labTopologyObjects(env, {
    namespace: ns,
    name: cluster,
    pool: 'prev',
    controlPlane: 1,
    workers: 1,
    kubernetesVersion: previous,
  });
  for (const d of docs) {
    const path = `/apis/${d.apiVersion}/namespaces/${ns}/${plurals[d.kind]!}`;
    // The Cluster is admitted once the ClusterClass's variables are reconciled (CAPI's webhook).
    await waitFor(
      `${d.kind} ${d.metadata.name} created`,
      () => raw(env.cp.kc, 'POST', path, d).then(() => true),
      60_000,
      1000,
    );
  }
  const started = Date.now();
  const ms = await waitForTopology(2, previous, 12 * 60_000);
  t.log(
    `${at()}: topology cluster at ${previous}: ${ms.length} Machines Ready (${Math.round((Date.now() - started) / 1000)} s)`,
  );
  const held = (await hostsOf()).filter((x) => x.spec.consumerRef).map((x) => x.spec.poolRef.name);
  t.deepEqual(held, ['prev', 'prev']);
});

serial('2. a topology version bump rolls the control plane and the workers onto fresh hosts', async (t) => {
  t.timeout(20 * 60_000);
  const c = await raw<{ spec: { topology: { variables: Array<{ name: string; value: unknown }> } } }>(
    env.cp.kc,
    'GET',
    `${capi}/clusters/${cluster}`,
  );
  const variables = c.spec.topology.variables.map((v) => (v.name === 'pool' ? { ...v, value: 'cur' } : v));
  const started = Date.now();
  await raw(env.cp.kc, 'PATCH', `${capi}/clusters/${cluster}`, { spec: { topology: { version: current, variables } } });
  const ms = await waitForTopology(2, current, 18 * 60_000);
  t.log(
    `${at()}: rolled to ${current}: ${ms.map((m) => m.metadata.name).join(', ')} (${Math.round((Date.now() - started) / 1000)} s)`,
  );
  const hosts = await waitFor(
    'the old hosts reset and Available',
    async () => {
      const all = await hostsOf();
      const old = all.filter((x) => x.spec.poolRef.name === 'prev');
      return old.every((x) => !x.spec.consumerRef && x.status?.phase === 'Available' && x.status.lastResetTime)
        ? all
        : undefined;
    },
    300_000,
    1000,
  );
  t.deepEqual(
    hosts.filter((x) => x.spec.consumerRef).map((x) => x.spec.poolRef.name),
    ['cur', 'cur'],
  );
  t.is((await machines(env, ns, cluster)).length, 2);
});

serial('3. scaled through the topology: a second worker on the last free host', async (t) => {
  t.timeout(10 * 60_000);
  const c = await raw<{ spec: { topology: { workers: { machineDeployments: Array<{ replicas: number }> } } } }>(
    env.cp.kc,
    'GET',
    `${capi}/clusters/${cluster}`,
  );
  const mds = c.spec.topology.workers.machineDeployments.map((md) => ({ ...md, replicas: 2 }));
  const started = Date.now();
  await raw(env.cp.kc, 'PATCH', `${capi}/clusters/${cluster}`, {
    spec: { topology: { workers: { machineDeployments: mds } } },
  });
  await waitForTopology(3, current, 8 * 60_000);
  t.log(`${at()}: scaled to 2 workers (${Math.round((Date.now() - started) / 1000)} s)`);
  t.is((await hostsOf()).filter((x) => x.spec.consumerRef && x.spec.poolRef.name === 'cur').length, 3);
});

serial('4. the Cluster deleted: every host reset and Available', async (t) => {
  t.timeout(8 * 60_000);
  const started = Date.now();
  await raw(env.cp.kc, 'DELETE', `${capi}/clusters/${cluster}`);
  const hosts = await waitFor(
    'every host reset and Available',
    async () => {
      const all = await hostsOf();
      return all.every((x) => !x.spec.consumerRef && x.status?.phase === 'Available' && x.status.lastResetTime)
        ? all
        : undefined;
    },
    6 * 60_000,
    1000,
  );
  t.is(hosts.length, 5);
  t.log(`${at()}: deleted, ${hosts.length} hosts reset and Available (${Math.round((Date.now() - started) / 1000)} s)`);
});

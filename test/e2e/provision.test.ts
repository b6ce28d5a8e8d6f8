// End to end, with every real part: kube-apiserver + etcd, Cluster API core, CABPK and
// KubeadmControlPlane, the provider as its own process under its own ServiceAccount (RBAC from
// manifests/rbac), and lab hosts running OpenSSH. The cluster comes from the shipped
// cluster-template.yaml. The only stand-in is kubeadm on the hosts (hack/standin/kubeadm).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { raw } from '../../provider/kube/raw.ts';
import { applyClusterTemplate, createPool, machines, startEnv, waitForRunning, type Env } from '../harness/env.ts';
import { hostExec } from '../harness/lab.ts';
import { waitFor } from '../harness/process.ts';

const ns = 'e2e';
const cluster = 'alpha';
let env: Env;

test.before(async () => {
  env = await startEnv({ hosts: 6 });
  await createPool(env, ns, 'rack', env.hosts);
  env.startProvider();
});
test.after.always(async () => {
  await env?.stop();
});

const hostsPath = `/apis/${API_VERSION}/namespaces/${ns}/baremetalhosts`;
const hosts = async () => (await raw<{ items: BareMetalHost[] }>(env.cp.kc, 'GET', hostsPath)).items;
const labHost = (address: string) => env.hosts.find((h) => h.address === address)!;
/** Whether a path exists inside the host (its /run is a tmpfs of its own, not in the overlay). */
const existsOn = async (address: string, path: string) =>
  (await hostExec(labHost(address), `test -e ${path}`)).exitCode === 0;

async function workloadNodes(): Promise<Array<{ name: string; providerID?: string }>> {
  const r = await raw<{ items: Array<{ metadata: { name: string }; spec: { providerID?: string } }> }>(
    env.workload.kc,
    'GET',
    '/api/v1/nodes',
  );
  return r.items.map((n) => ({
    name: n.metadata.name,
    ...(n.spec.providerID ? { providerID: n.spec.providerID } : {}),
  }));
}

test.serial('a cluster from cluster-template.yaml: every Machine Running, providerIDs match the Nodes', async (t) => {
  await applyClusterTemplate(env, { namespace: ns, name: cluster, pool: 'rack', controlPlane: 1, workers: 2 });
  const ms = await waitForRunning(env, ns, cluster, 3);
  const nodes = await workloadNodes();
  for (const m of ms) {
    const node = nodes.find((n) => n.name === m.nodeRef);
    t.truthy(node, `Node of ${m.name}`);
    t.is(node!.providerID, m.providerID);
    t.regex(m.providerID!, /^capbm:\/\/e2e\/rack-/);
  }
  // The bootstrap's files are on the hosts: the CAPI sentinel and the kubeadm configuration.
  const claimed = (await hosts()).filter((h) => h.spec.consumerRef);
  t.is(claimed.length, 3);
  for (const h of claimed) {
    t.is(h.status?.phase, 'Provisioned');
    t.true(
      await existsOn(h.spec.address, '/run/cluster-api/bootstrap-success.complete'),
      `sentinel on ${h.metadata.name}`,
    );
    t.true(
      (await existsOn(h.spec.address, '/run/kubeadm/kubeadm.yaml')) ||
        (await existsOn(h.spec.address, '/run/kubeadm/kubeadm-join-config.yaml')),
    );
    t.regex(
      readFileSync(join(labHost(h.spec.address).root, 'var/log/kubeadm-standin.log'), 'utf8'),
      /(init|join) --config/,
    );
    // The used bootstrap script holds secrets (CA keys, a token): it is gone once the host is up.
    t.not((await hostExec(labHost(h.spec.address), 'ls /var/lib/capbm/*/run/bootstrap.sh')).exitCode, 0);
  }
});

test.serial('scale the workers 2 -> 4 -> 1: hosts claimed, then reset and returned Available and clean', async (t) => {
  const md = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/machinedeployments/${cluster}-md-0`;
  await raw(env.cp.kc, 'PATCH', md, { spec: { replicas: 4 } });
  await waitForRunning(env, ns, cluster, 5);
  t.is((await hosts()).filter((h) => h.spec.consumerRef).length, 5);
  await raw(env.cp.kc, 'PATCH', md, { spec: { replicas: 1 } });
  await waitForRunning(env, ns, cluster, 2);
  const after = await waitFor(
    'released hosts to be Available',
    async () => {
      const hs = await hosts();
      const free = hs.filter((h) => !h.spec.consumerRef);
      return free.length === 4 && free.every((h) => h.status?.phase === 'Available') ? hs : undefined;
    },
    60_000,
    500,
  );
  for (const h of after.filter((x) => !x.spec.consumerRef && x.status?.lastResetTime)) {
    for (const p of [
      '/run/cluster-api',
      '/etc/kubernetes',
      '/var/lib/kubelet',
      '/var/lib/capbm',
      '/var/lib/kubeadm-standin',
    ]) {
      t.false(await existsOn(h.spec.address, p), `${p} left on ${h.metadata.name}`);
    }
  }
  t.is((await workloadNodes()).length, 2);
});

test.serial('delete the cluster: every host Available and clean', async (t) => {
  await raw(env.cp.kc, 'DELETE', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/clusters/${cluster}`);
  await waitFor(
    'the cluster to be gone',
    async () => ((await machines(env, ns, cluster)).length === 0 ? true : undefined),
    180_000,
    1000,
  );
  const hs = await waitFor(
    'every host Available',
    async () => {
      const all = await hosts();
      return all.every((h) => !h.spec.consumerRef && h.status?.phase === 'Available') ? all : undefined;
    },
    60_000,
    500,
  );
  for (const h of hs) {
    t.false(await existsOn(h.spec.address, '/run/cluster-api/bootstrap-success.complete'));
    t.false(await existsOn(h.spec.address, '/etc/kubernetes'));
  }
});

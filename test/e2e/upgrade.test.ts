// A Kubernetes upgrade the way Cluster API does it on immutable hosts, with every real part (see
// provision.test.ts). Hosts carry one Kubernetes version each, as OS images built per version do:
// pool "old" has hosts of the version before the pinned one, pool "new" hosts of the pinned one.
// The cluster starts on the old version and pool; the upgrade gives the KubeadmControlPlane, then
// the MachineDeployment, the new version and a machine template on the new pool. Every Machine is
// replaced by a new one on a new host; the old hosts are reset, clean and Available. A client keeps
// asking the workload API server (through the control-plane endpoint) during the control-plane
// rollout; the failed requests are counted and reported.
import test from 'ava';
import type { KubeConfig } from '@kubernetes/client-node';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { raw } from '../../provider/kube/raw.ts';
import {
  applyClusterTemplate,
  createPool,
  startEnv,
  waitForClusterAvailable,
  workloadKubeconfig,
  type Env,
} from '../harness/env.ts';
import { hostExec, kubernetesVersions } from '../harness/lab.ts';
import { waitFor } from '../harness/process.ts';
import { deployHello, nodes, pods, probeApi, waitForNodesReady } from '../harness/workload.ts';

const ns = 'upgrade';
const cluster = 'delta';
const { current, previous } = kubernetesVersions();
let env: Env;
let wl: KubeConfig;
const base = `/apis/${API_VERSION}/namespaces/${ns}`;
const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;
const kcp = `/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/${ns}/kubeadmcontrolplanes/${cluster}-control-plane`;
const md = `${capi}/machinedeployments/${cluster}-md-0`;

test.before(async () => {
  env = await startEnv({ hosts: 2, previousVersionHosts: 2 });
  const neu = env.hosts.filter((h) => h.kubernetesVersion === current);
  const old = env.hosts.filter((h) => h.kubernetesVersion === previous);
  await createPool(env, ns, 'old', old);
  await createPool(env, ns, 'new', neu);
  env.startProvider();
});
test.after.always(async () => {
  await env?.stop();
});

const hosts = async (pool: string) =>
  (
    await raw<{ items: BareMetalHost[] }>(
      env.cp.kc,
      'GET',
      `${base}/baremetalhosts?labelSelector=${encodeURIComponent(`infrastructure.cluster.x-k8s.io/pool=${pool}`)}`,
    )
  ).items;

/** A copy of a BareMetalMachineTemplate on another pool: templates are immutable, a new one is made. */
async function templateOnPool(from: string, to: string, pool: string): Promise<void> {
  await raw(env.cp.kc, 'POST', `${base}/baremetalmachinetemplates`, {
    apiVersion: API_VERSION,
    kind: 'BareMetalMachineTemplate',
    metadata: { name: to, namespace: ns },
    spec: { template: { spec: { poolRef: { name: pool } } } },
  });
  t0Log(`template ${to} (from ${from}) on pool ${pool}`);
}

const t0 = Date.now();
const t0Log = (m: string) => process.stderr.write(`    ${Math.round((Date.now() - t0) / 1000)} s: ${m}\n`);

test.serial(
  `a cluster on ${previous} is upgraded to ${current}: every machine replaced on the new pool, old hosts reset`,
  async (t) => {
    t.timeout(40 * 60_000);
    await applyClusterTemplate(env, {
      namespace: ns,
      name: cluster,
      pool: 'old',
      controlPlane: 1,
      workers: 1,
      kubernetesVersion: previous,
    });
    const before = await waitForClusterAvailable(env, ns, cluster, 2, 15 * 60_000);
    wl = (await workloadKubeconfig(env, ns, cluster)).kc;
    t.deepEqual(
      (await waitForNodesReady(wl, 2)).map((n) => n.kubeletVersion),
      [previous, previous],
    );
    t.log(
      `${Math.round((Date.now() - t0) / 1000)} s: cluster Available on ${previous}: ${before.machines.map((m) => m.name).join(', ')}`,
    );
    await deployHello(wl);

    // The control plane: new version, a machine template on the new pool. KCP rolls one at a time
    // (maxSurge 1): the new machine joins, then the old one leaves.
    await templateOnPool(`${cluster}-control-plane`, `${cluster}-control-plane-${current.replaceAll('.', '-')}`, 'new');
    const probe = probeApi(wl, { intervalMs: 250, maxRequests: 8000 });
    const cpStart = Date.now();
    await raw(env.cp.kc, 'PATCH', kcp, {
      spec: {
        version: current,
        machineTemplate: {
          spec: { infrastructureRef: { name: `${cluster}-control-plane-${current.replaceAll('.', '-')}` } },
        },
      },
    });
    await waitFor(
      'the control plane rolled out',
      async () => {
        const k = await raw<{
          status?: { version?: string; replicas?: number; upToDateReplicas?: number; readyReplicas?: number };
        }>(env.cp.kc, 'GET', kcp);
        const cps = (await waitForClusterAvailable(env, ns, cluster, 2, 5000).catch(() => undefined))?.machines.filter(
          (m) => m.name.includes('control-plane'),
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

    // The workers: same, through the MachineDeployment (maxSurge 1, maxUnavailable 0).
    await templateOnPool(`${cluster}-md-0`, `${cluster}-md-0-${current.replaceAll('.', '-')}`, 'new');
    await raw(env.cp.kc, 'PATCH', md, {
      spec: {
        template: {
          spec: { version: current, infrastructureRef: { name: `${cluster}-md-0-${current.replaceAll('.', '-')}` } },
        },
      },
    });
    const after = await waitFor(
      'every machine on the new version',
      async () => {
        const h = await waitForClusterAvailable(env, ns, cluster, 2, 5000).catch(() => undefined);
        return h && h.machines.every((m) => m.version === current) ? h : undefined;
      },
      15 * 60_000,
      2000,
    );
    t.log(
      `${Math.round((Date.now() - t0) / 1000)} s: every machine on ${current}: ${after.machines.map((m) => m.name).join(', ')}`,
    );
    const oldNames = new Set(before.machines.map((m) => m.name));
    t.false(
      after.machines.some((m) => oldNames.has(m.name)),
      'every Machine was replaced',
    );
    const newPool = await hosts('new');
    for (const m of after.machines)
      t.true(
        newPool.some((h) => m.providerID === `capbm://${ns}/${h.metadata.name}`),
        `${m.name} on a new-pool host`,
      );
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
    // The old hosts: reset, clean, Available for the next cluster.
    const old = await waitFor(
      'the old hosts reset and Available',
      async () => {
        const hs = await hosts('old');
        return hs.every((h) => h.status?.phase === 'Available' && !h.spec.consumerRef && h.status.lastResetTime)
          ? hs
          : undefined;
      },
      180_000,
      1000,
    );
    for (const h of old) {
      const lab = env.hosts.find((x) => x.address === h.spec.address)!;
      for (const p of [
        '/etc/kubernetes/kubelet.conf',
        '/var/lib/etcd/member',
        '/var/lib/kubelet/config.yaml',
        '/run/cluster-api',
      ])
        t.not((await hostExec(lab, `test -e ${p}`)).exitCode, 0, `${p} left on ${h.metadata.name}`);
      t.is((await hostExec(lab, 'ctr -n k8s.io containers ls -q | wc -l')).stdout.trim(), '0');
    }
    t.is((await nodes(wl)).length, 2, 'the old Nodes are gone from the cluster');
  },
);

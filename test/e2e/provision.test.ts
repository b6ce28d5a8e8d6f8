// End to end, with every real part: kube-apiserver + etcd + kube-controller-manager, Cluster API
// core, CABPK and KubeadmControlPlane, the provider as its own process under its own
// ServiceAccount, lab hosts that are whole servers (systemd, OpenSSH, containerd, the kubelet and
// the real kubeadm), the lab registry and load balancer, and the node agent with every check on.
// One cluster from the shipped cluster-template.yaml is driven through the life of a cluster, in
// order (each step starts from what the one before left):
//   1. created: Cluster API says Available, every Machine Ready, every Node Ready, CoreDNS runs, the
//      sample application answers across nodes;
//   2. a worker deleted: drained first (its pods rescheduled), then its host reset, clean, Available;
//   3. scaled back: the reset host (the only free one) passes preflight and is a working node again;
//   4. the kubelet stopped on a worker: HostHealthy=False, the MachineHealthCheck replaces the
//      machine on another host, the old host is reset;
//   5. a worker whose agent freezes: HostHealthy=Unknown, replaced the same way;
//   6. the cluster deleted: every host Available and clean; the pool deleted: its hosts are
//      collected (owner references, kube-controller-manager); the namespace finishes deleting.
import test from 'ava';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import {
  applyClusterTemplate,
  clusterHealth,
  createPool,
  machines,
  startEnv,
  waitForClusterAvailable,
  workloadKubeconfig,
  type Env,
} from '../harness/env.ts';
import { hostExec, kubernetesVersions, type LabHost } from '../harness/lab.ts';
import { waitFor } from '../harness/process.ts';
import { crossNodeHttp, deployHello, nodes, pods, waitForCoreDns, waitForNodesReady } from '../harness/workload.ts';
import type { KubeConfig } from '@kubernetes/client-node';

const ns = 'e2e';
const cluster = 'alpha';
let env: Env;
let wl: KubeConfig;
const base = `/apis/${API_VERSION}/namespaces/${ns}`;
const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;
const md = `${capi}/machinedeployments/${cluster}-md-0`;

test.before(async () => {
  // cp: one host; workers: two hosts, a third (spare) joins the pool in step 4.
  env = await startEnv({ hosts: 4, agent: { interval: '2s', unknownAfter: '10s' } });
  await createPool(env, ns, 'cp', env.hosts.slice(0, 1));
  await createPool(env, ns, 'workers', env.hosts.slice(1, 3));
  env.startProvider();
});
test.after.always(async () => {
  await env?.stop();
});

type Cond = { type: string; status: string; reason?: string; message?: string };
const cond = (o: { status?: { conditions?: Cond[] } }, type: string) =>
  o.status?.conditions?.find((c) => c.type === type);
const hosts = async () => (await raw<{ items: BareMetalHost[] }>(env.cp.kc, 'GET', `${base}/baremetalhosts`)).items;
const getHost = (name: string) => raw<BareMetalHost>(env.cp.kc, 'GET', `${base}/baremetalhosts/${name}`);
const bmms = async () =>
  (await raw<{ items: BareMetalMachine[] }>(env.cp.kc, 'GET', `${base}/baremetalmachines`)).items;
const labHost = (address: string): LabHost => env.hosts.find((h) => h.address === address)!;
const sh = async (h: LabHost, script: string) => (await hostExec(h, script)).stdout.trim();
const t0 = Date.now();
const at = () => `${Math.round((Date.now() - t0) / 1000)} s`;

/** What a clean host must not have: node files, containers, Kubernetes or CNI iptables rules, CNI links. */
async function assertClean(
  t: { false(v: boolean, m?: string): void; is(a: unknown, b: unknown, m?: string): void },
  h: BareMetalHost,
) {
  const lab = labHost(h.spec.address);
  for (const p of [
    '/run/cluster-api',
    '/etc/kubernetes/kubelet.conf',
    '/var/lib/kubelet/config.yaml',
    '/var/lib/capbm',
    '/var/lib/etcd/member',
    '/etc/cni/net.d/10-kuberouter.conflist',
  ])
    t.false((await hostExec(lab, `test -e ${p}`)).exitCode === 0, `${p} left on ${h.metadata.name}`);
  t.is(await sh(lab, 'ctr -n k8s.io containers ls -q | wc -l'), '0', `containers left on ${h.metadata.name}`);
  t.is(
    await sh(lab, "iptables-save | grep -c -E 'KUBE-|kube-router' || true"),
    '0',
    `iptables rules left on ${h.metadata.name}`,
  );
  t.is(await sh(lab, 'ip -o link show kube-bridge 2>/dev/null | wc -l'), '0', `kube-bridge left on ${h.metadata.name}`);
}

/** The worker Machine (and its BareMetalMachine and host) whose Node is `node`. */
async function workerOn(node: string) {
  const m = (await machines(env, ns, cluster)).find((x) => x.nodeRef === node)!;
  const bmm = (await bmms()).find((b) => b.metadata.name === node)!;
  const host = await getHost(bmm.status!.hostRef!.name);
  return { machine: m, bmm, host, lab: labHost(host.spec.address) };
}

test.serial(
  '1. a cluster from cluster-template.yaml: Available, Nodes Ready, CoreDNS, the sample app across nodes',
  async (t) => {
    t.timeout(20 * 60_000);
    await applyClusterTemplate(env, {
      namespace: ns,
      name: cluster,
      pool: 'cp',
      workerPool: 'workers',
      controlPlane: 1,
      workers: 2,
    });
    const created = Date.now();
    const health = await waitForClusterAvailable(env, ns, cluster, 3, 15 * 60_000);
    t.log(
      `${at()}: Cluster, KubeadmControlPlane and MachineDeployment Available, 3 Machines Ready (${Math.round((Date.now() - created) / 1000)} s)`,
    );
    wl = (await workloadKubeconfig(env, ns, cluster)).kc;
    const ns_ = await waitForNodesReady(wl, 3);
    for (const m of health.machines) {
      const node = ns_.find((n) => n.name === m.nodeRef);
      t.truthy(node, `Node of ${m.name}`);
      t.is(node!.providerID, m.providerID);
      t.regex(m.providerID!, /^capbm:\/\/e2e\//);
      t.is(node!.kubeletVersion, kubernetesVersions().current);
    }
    // Machine created -> Node Ready, per machine, from the objects' own timestamps.
    const machineList = await raw<{
      items: Array<{ metadata: { name: string; creationTimestamp: string }; status?: { nodeRef?: { name: string } } }>;
    }>(env.cp.kc, 'GET', `${capi}/machines`);
    for (const m of machineList.items) {
      const n = ns_.find((x) => x.name === m.status?.nodeRef?.name)!;
      const ready = n.conditions.find((c) => c.type === 'Ready') as Cond & { lastTransitionTime?: string };
      t.log(
        `${m.metadata.name}: Machine created -> Node Ready in ${Math.round((Date.parse(ready.lastTransitionTime!) - Date.parse(m.metadata.creationTimestamp)) / 1000)} s`,
      );
    }
    const dns = await waitForCoreDns(wl);
    t.true(dns.length >= 1);
    const hello = await deployHello(wl);
    t.is(new Set(hello.map((p) => p.node)).size, 2, 'the two replicas run on the two workers');
    const answer = await crossNodeHttp(wl);
    t.not(answer.clientNode, answer.targetNode);
    t.true(
      hello.some((p) => p.name === answer.direct),
      `answer by pod IP: ${answer.direct}`,
    );
    t.true(
      hello.some((p) => p.name === answer.viaService),
      `answer through the Service: ${answer.viaService}`,
    );
    t.log(`${at()}: a pod on ${answer.clientNode} reached ${answer.direct} on ${answer.targetNode}`);
    // The agent's checks (kubelet and container runtime included) report healthy, on both objects.
    await waitFor(
      'HostHealthy=True on every machine and Node',
      async () => {
        const all = await bmms();
        const nodeList = await nodes(wl);
        return all.length === 3 &&
          all.every((b) => cond(b, 'HostHealthy')?.status === 'True') &&
          nodeList.every((n) => n.conditions.some((c) => c.type === 'HostHealthy' && c.status === 'True'))
          ? true
          : undefined;
      },
      120_000,
      1000,
    );
    // The used bootstrap script holds secrets (CA keys, a token): it is gone once the host is up.
    for (const h of (await hosts()).filter((x) => x.spec.consumerRef)) {
      t.is(h.status?.phase, 'Provisioned');
      t.not((await hostExec(labHost(h.spec.address), 'ls /var/lib/capbm/*/run/bootstrap.sh')).exitCode, 0);
    }
  },
);

test.serial(
  '2. a worker deleted: drained first (its pods rescheduled), then its host reset, clean and Available',
  async (t) => {
    t.timeout(10 * 60_000);
    const hello = await pods(wl, 'default', 'app=hello');
    const victim = await workerOn(hello[0]!.node);
    const survivor = (await machines(env, ns, cluster)).find(
      (m) => m.nodeRef && m.nodeRef !== victim.machine.nodeRef && m.name.includes('md-0'),
    )!;
    await raw(env.cp.kc, 'PATCH', `${capi}/machines/${victim.machine.name}`, {
      metadata: { annotations: { 'cluster.x-k8s.io/delete-machine': 'yes' } },
    });
    await raw(env.cp.kc, 'PATCH', md, { spec: { replicas: 1 } });
    // Watch the order of events: the Node cordoned, the pods running elsewhere, then the reset.
    let cordoned = 0;
    let rescheduled = 0;
    let reset = 0;
    await waitFor(
      'the drain, the rescheduled pods and the host reset',
      async () => {
        const now = Date.now();
        if (!cordoned) {
          const n = await raw<{ spec: { unschedulable?: boolean } }>(
            wl,
            'GET',
            `/api/v1/nodes/${victim.machine.nodeRef}`,
          ).catch(() => undefined);
          if (n?.spec.unschedulable || !n) cordoned = now;
        }
        if (!rescheduled) {
          const ps = await pods(wl, 'default', 'app=hello');
          if (ps.length === 2 && ps.every((p) => p.ready && p.node === survivor.nodeRef)) rescheduled = now;
        }
        if (!reset && (await getHost(victim.host.metadata.name)).status?.lastResetTime) reset = now;
        return cordoned && rescheduled && reset ? true : undefined;
      },
      6 * 60_000,
      250,
    );
    t.log(
      `${at()}: cordoned, then pods Ready on ${survivor.nodeRef} after ${Math.round((rescheduled - cordoned) / 1000)} s, host reset after ${Math.round((reset - cordoned) / 1000)} s`,
    );
    t.true(rescheduled <= reset, 'the pods ran elsewhere before the host was reset');
    const h = await waitFor(
      'the host Available',
      async () => {
        const x = await getHost(victim.host.metadata.name);
        return x.status?.phase === 'Available' && !x.spec.consumerRef ? x : undefined;
      },
      120_000,
      500,
    );
    await assertClean(t, h);
    await waitForClusterAvailable(env, ns, cluster, 2, 120_000);
    t.is((await nodes(wl)).length, 2);
  },
);

test.serial('3. scaled back: the reset host passes preflight and is a working node again', async (t) => {
  t.timeout(10 * 60_000);
  const free = (await hosts()).filter(
    (h) => !h.spec.consumerRef && h.metadata.labels?.['infrastructure.cluster.x-k8s.io/pool'] === 'workers',
  );
  t.is(free.length, 1);
  const reused = free[0]!;
  t.truthy(reused.status?.lastResetTime, 'the only free worker host is the one reset in step 2');
  await raw(env.cp.kc, 'PATCH', md, { spec: { replicas: 2 } });
  await waitForClusterAvailable(env, ns, cluster, 3, 8 * 60_000);
  const h = await getHost(reused.metadata.name);
  t.truthy(h.spec.consumerRef, 'the reset host was claimed again');
  t.is(cond(h, 'PreflightPassed')?.status, 'True');
  const bmm = (await bmms()).find((b) => b.status?.hostRef?.name === reused.metadata.name)!;
  const node = (await waitForNodesReady(wl, 3)).find((n) => n.name === bmm.metadata.name);
  t.truthy(node?.ready, `Node ${bmm.metadata.name} Ready on the reset host`);
  t.log(`${at()}: ${reused.metadata.name} serves ${bmm.metadata.name} again, Node Ready`);
});

/** Shorter MachineHealthCheck timeouts than the template's production values, for the test. */
async function fastHealthCheck(): Promise<void> {
  await raw(env.cp.kc, 'PATCH', `${capi}/machinehealthchecks/${cluster}-md-0`, {
    spec: {
      checks: {
        unhealthyNodeConditions: [
          { type: 'HostHealthy', status: 'False', timeoutSeconds: 5 },
          { type: 'HostHealthy', status: 'Unknown', timeoutSeconds: 5 },
        ],
      },
    },
  });
}

/** Waits until the worker machine `old` is replaced by a Ready one, and its host is reset and Available. */
async function replaced(t: { log(m: string): void }, old: Awaited<ReturnType<typeof workerOn>>) {
  await waitFor(
    `machine ${old.bmm.metadata.name} to be deleted`,
    async () => (!(await bmms()).some((b) => b.metadata.name === old.bmm.metadata.name) ? true : undefined),
    8 * 60_000,
    1000,
  );
  await waitForClusterAvailable(env, ns, cluster, 3, 8 * 60_000);
  const workers = (await bmms()).filter((b) => b.metadata.name.includes('md-0'));
  t.log(
    `${at()}: replaced; workers now ${workers.map((b) => `${b.metadata.name} on ${b.status?.hostRef?.name}`).join(', ')}`,
  );
  await waitFor(
    'the old host reset and Available',
    async () => {
      const x = await getHost(old.host.metadata.name);
      return x.status?.phase === 'Available' && !x.spec.consumerRef ? true : undefined;
    },
    180_000,
    500,
  );
}

test.serial(
  '4. the kubelet stopped on a worker: HostHealthy=False, the MachineHealthCheck replaces it on another host',
  async (t) => {
    t.timeout(12 * 60_000);
    await fastHealthCheck();
    // The operator adds a spare host to the pool (address and pinned host key).
    const spare = env.hosts[3]!;
    const pool = await raw<{ spec: { addresses: string[]; hostKeyPolicy: { pinned: Record<string, string[]> } } }>(
      env.cp.kc,
      'GET',
      `${base}/baremetalhostpools/workers`,
    );
    await raw(env.cp.kc, 'PATCH', `${base}/baremetalhostpools/workers`, {
      spec: {
        addresses: [...pool.spec.addresses, spare.address],
        hostKeyPolicy: { pinned: { ...pool.spec.hostKeyPolicy.pinned, [spare.address]: [spare.hostKeyFingerprint] } },
      },
    });
    const workerNodes = (await machines(env, ns, cluster))
      .filter((m) => m.name.includes('md-0'))
      .map((m) => m.nodeRef!);
    const victim = await workerOn(workerNodes[0]!);
    t.is(await sh(victim.lab, 'systemctl stop kubelet; systemctl is-active kubelet || true'), 'inactive');
    const unhealthy = await waitFor(
      'HostHealthy=False on the machine',
      async () => {
        const b = (await bmms()).find((x) => x.metadata.name === victim.bmm.metadata.name);
        const c = b && cond(b, 'HostHealthy');
        return c?.status === 'False' ? c : undefined;
      },
      120_000,
      500,
    );
    // A kubelet being stopped may be seen first with its process still there and healthz refusing
    // (KubeletUnhealthy, seen in CI under load), then gone (KubeletNotRunning): either is the stop.
    t.regex(unhealthy.reason ?? '', /^Kubelet(NotRunning|Unhealthy)$/, unhealthy.message);
    t.log(`${at()}: kubelet stopped on ${victim.host.metadata.name}: HostHealthy=False (${unhealthy.reason})`);
    await replaced(t, victim);
    const worker = (await bmms()).filter((b) => b.metadata.name.includes('md-0'));
    t.false(worker.some((b) => b.metadata.name === victim.bmm.metadata.name));
    t.false(
      worker.some((b) => b.status?.hostRef?.name === victim.host.metadata.name),
      'the replacement runs on another host',
    );
    await assertClean(t, await getHost(victim.host.metadata.name));
  },
);

test.serial('5. a worker whose agent freezes: HostHealthy=Unknown, replaced on another host', async (t) => {
  t.timeout(12 * 60_000);
  const workerNodes = (await machines(env, ns, cluster)).filter((m) => m.name.includes('md-0')).map((m) => m.nodeRef!);
  const victim = await workerOn(workerNodes[0]!);
  t.is(
    await sh(victim.lab, "pkill -STOP -f '/opt/capbm/[c]apbm-agent.mjs'; echo $?"),
    '0',
    'the agent process was found and frozen',
  );
  await waitFor(
    'HostHealthy=Unknown on the machine',
    async () => {
      const b = (await bmms()).find((x) => x.metadata.name === victim.bmm.metadata.name);
      return b && cond(b, 'HostHealthy')?.status === 'Unknown' ? true : undefined;
    },
    120_000,
    500,
  );
  await replaced(t, victim);
  t.false((await bmms()).some((b) => b.status?.hostRef?.name === victim.host.metadata.name));
  t.not(await sh(victim.lab, "pgrep -f '/opt/capbm/[c]apbm-agent.mjs' >/dev/null; echo $?"), '0', 'no agent left');
  const events = await raw<{ items: Array<{ reason: string; involvedObject: { name: string } }> }>(
    env.cp.kc,
    'GET',
    `/api/v1/namespaces/${ns}/events`,
  );
  const reasons = events.items.filter((e) => e.involvedObject.name === victim.bmm.metadata.name).map((e) => e.reason);
  t.true(reasons.includes('HostUnhealthy'), reasons.join(','));
  t.true(reasons.includes('HostReleased'), reasons.join(','));
});

test.serial('6. the cluster deleted: every host Available and clean; pool and namespace deleted', async (t) => {
  t.timeout(10 * 60_000);
  await raw(env.cp.kc, 'DELETE', `${capi}/clusters/${cluster}`);
  await waitFor(
    'the cluster to be gone',
    async () => ((await machines(env, ns, cluster)).length === 0 ? true : undefined),
    300_000,
    1000,
  );
  const hs = await waitFor(
    'every host Available',
    async () => {
      const all = await hosts();
      return all.every((h) => !h.spec.consumerRef && h.status?.phase === 'Available') ? all : undefined;
    },
    180_000,
    500,
  );
  for (const h of hs) await assertClean(t, h);
  t.is((await clusterHealth(env, ns, cluster).catch(() => undefined))?.machines.length ?? 0, 0);

  // The management plane's kube-controller-manager collects what a deleted pool owned (its hosts),
  // and a team's namespace finishes deleting.
  await raw(env.cp.kc, 'DELETE', `${base}/baremetalhostpools/workers`);
  await waitFor(
    "the deleted pool's hosts to be collected",
    async () => ((await hosts()).every((h) => h.spec.poolRef?.name !== 'workers') ? true : undefined),
    120_000,
    500,
  );
  await raw(env.cp.kc, 'DELETE', `/api/v1/namespaces/${ns}`);
  await waitFor(
    `namespace ${ns} to finish deleting`,
    async () => {
      const r = await raw(env.cp.kc, 'GET', `/api/v1/namespaces/${ns}`).catch((e: unknown) => e);
      return r instanceof ApiError && r.code === 404 ? true : undefined;
    },
    180_000,
    1000,
  );
});

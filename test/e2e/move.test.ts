// `clusterctl move` of a running cluster from one management plane to another, end to end: two
// management planes (each a real kube-apiserver, etcd, kube-controller-manager, CAPI core, CABPK
// and KubeadmControlPlane, and a CAPBM provider under its own ServiceAccount), a cluster made by
// the real kubeadm on lab hosts from plane A, then the real `clusterctl move --kubeconfig A
// --to-kubeconfig B`. Plane B carries on: its provider finds the moved machines' hosts again (the
// hosts' consumerRef and the machines' providerID; status does not move), reads the hosts' run
// markers and attaches to the bootstraps that ran instead of running them again; a worker added on
// B provisions a fresh host; deleting the cluster on B resets every host and returns it Available.
// Both providers run throughout: A's, whose cluster is paused and then gone, touches nothing.
// The node agent is on: each provider has its own report endpoint and agent CA, so B installs the
// agent again on the moved hosts (its endpoint, a certificate of its CA; still one agent a host) and
// HostHealthy on B's machines and on the Nodes comes from the reports B receives.
//
// The planes run Cluster API as processes, not installed by `clusterctl init` (docs/clusterctl.md
// says why), so the test labels the CRDs `clusterctl.cluster.x-k8s.io` as init does: clusterctl
// move discovers the kinds it moves from that label.
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { raw } from '../../provider/kube/raw.ts';
import { clusterctl, labelCrdsAsClusterctlInit } from '../harness/clusterctl.ts';
import { installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import {
  agentEndpointArgs,
  applyClusterTemplate,
  createPool,
  keepLogs,
  machines,
  onboardNamespace,
  providerIdentity,
  startEnv,
  startProviderProcess,
  waitForClusterAvailable,
  workloadKubeconfig,
  type Env,
} from '../harness/env.ts';
import { hostExec, type LabHost } from '../harness/lab.ts';
import { waitFor, type ManagedProcess } from '../harness/process.ts';
import { nodes } from '../harness/workload.ts';
import type { KubeConfig } from '@kubernetes/client-node';

const ns = 'e2e-move';
const cluster = 'moved';
let env: Env;
let b: { cp: ControlPlane; provider: ManagedProcess } | undefined;
/** Plane B seen through the Env functions (they read env.cp only). */
let envB: Env;
const t0 = Date.now();
const at = () => `${Math.round((Date.now() - t0) / 1000)} s`;
const agent = { interval: '2s', unknownAfter: '10s' };
/** Where plane B's provider takes the agents' reports (its --agent-report-url). */
let reportUrlB = '';

/** Plane B: the same management plane as A's, without lab hosts of its own, and its provider. */
async function startPlaneB(): Promise<{ cp: ControlPlane; provider: ManagedProcess }> {
  const cp = await startControlPlane({ capi: ['core', 'bootstrap', 'controlplane'], controllerManager: true });
  try {
    await installProviderCrds(cp.kc);
    const kubeconfig = await providerIdentity(cp);
    await onboardNamespace(cp.kc, ns);
    const args = await agentEndpointArgs(agent);
    reportUrlB = args.find((a) => a.startsWith('--agent-report-url='))!.split('=')[1]!;
    const provider = startProviderProcess({
      name: 'capbm-manager-b',
      kubeconfig,
      logFile: join(cp.dir, 'capbm-manager-b.log'),
      args,
    });
    return { cp, provider };
  } catch (err) {
    await cp.stop();
    throw err;
  }
}

test.before(async () => {
  env = await startEnv({ hosts: 3, agent });
  await createPool(env, ns, 'cp', env.hosts.slice(0, 1));
  await createPool(env, ns, 'workers', env.hosts.slice(1, 3));
  env.startProvider();
  b = await startPlaneB();
  envB = { ...env, cp: b.cp };
  await labelCrdsAsClusterctlInit(env.cp.kc);
  await labelCrdsAsClusterctlInit(b.cp.kc);
});
test.after.always(async () => {
  await b?.provider.stop();
  if (b) keepLogs(b.cp.dir); // with CAPBM_KEEP_LOGS or CI, as plane A's
  await b?.cp.stop();
  await env?.stop();
});

const base = `/apis/${API_VERSION}/namespaces/${ns}`;
const list = async <T>(kc: KubeConfig, plural: string) =>
  (await raw<{ items: T[] }>(kc, 'GET', `${base}/${plural}`)).items;
const labHost = (address: string): LabHost => env.hosts.find((h) => h.address === address)!;

/**
 * What on a host says whether its bootstrap ran again: the run's pid and exit-code files (a new
 * run rewrites both), the kubelet's kubeconfig kubeadm wrote, and the running kubelet's pid.
 */
async function runTrace(h: LabHost, machine: string): Promise<string> {
  const d = `/var/lib/capbm/${machine}/run`;
  const r = await hostExec(
    h,
    `stat -c '%n %Y' ${d}/pid ${d}/rc /etc/kubernetes/kubelet.conf && echo "pid $(cat ${d}/pid) rc $(cat ${d}/rc)" && echo "kubelet $(pgrep -x kubelet)"`,
  );
  if (r.exitCode !== 0) throw new Error(`no bootstrap run trace of ${machine} on ${h.name}: ${r.stderr}`);
  return r.stdout.trim();
}

type Cond = { type: string; status: string; reason?: string; message?: string };
const cond = (m: { status?: { conditions?: Cond[] } }, type: string) =>
  m.status?.conditions?.find((c) => c.type === type);

/** The agent on a host: the endpoint it reports to, its CA's sha256, and how many agents run. */
async function agentOn(h: LabHost): Promise<{ reportUrl: string; ca: string; running: number }> {
  const r = await hostExec(
    h,
    `sed -n 's/.*"reportUrl": *"\\([^"]*\\)".*/\\1/p' /etc/capbm/agent.json; sha256sum /etc/capbm/pki/ca.crt | cut -c1-64; pgrep -fc '/opt/capbm/[c]apbm-agent.mjs'`,
  );
  const [reportUrl = '', ca = '', running = '0'] = r.stdout.trim().split('\n');
  return { reportUrl, ca, running: Number(running) };
}

/** Every BareMetalMachine of a plane with AgentInstalled and HostHealthy True (the latter from that plane's reports). */
const waitForHealthy = (kc: KubeConfig, count: number, what: string) =>
  waitFor(
    what,
    async () => {
      const all = await list<BareMetalMachine>(kc, 'baremetalmachines');
      return all.length === count &&
        all.every((m) => cond(m, 'AgentInstalled')?.status === 'True' && cond(m, 'HostHealthy')?.status === 'True')
        ? all
        : undefined;
    },
    180_000,
    1000,
  );

/** machine -> { host, trace } for every BareMetalMachine on plane A. */
const before = new Map<
  string,
  { host: string; address: string; providerID: string; trace: string; agent: { reportUrl: string; ca: string } }
>();

test.serial('1. a cluster on plane A: 1 control plane and 1 worker, real kubeadm on lab hosts', async (t) => {
  t.timeout(15 * 60_000);
  await applyClusterTemplate(env, { namespace: ns, name: cluster, pool: 'cp', workerPool: 'workers', workers: 1 });
  await waitForClusterAvailable(env, ns, cluster, 2, 12 * 60_000);
  t.log(`${at()}: cluster Available on plane A, 2 Machines Ready`);
  await waitForHealthy(env.cp.kc, 2, "HostHealthy=True on plane A's machines");
  const hosts = await list<BareMetalHost>(env.cp.kc, 'baremetalhosts');
  for (const m of await list<BareMetalMachine>(env.cp.kc, 'baremetalmachines')) {
    const h = hosts.find((x) => x.metadata.name === m.status?.hostRef?.name)!;
    t.is(h.status?.phase, 'Provisioned');
    const trace = await runTrace(labHost(h.spec.address), m.metadata.name);
    t.regex(trace, /rc 0/);
    const a = await agentOn(labHost(h.spec.address));
    t.is(a.running, 1, `one agent on ${h.metadata.name}`);
    t.not(a.reportUrl, reportUrlB, "the agent reports to plane A's provider");
    before.set(m.metadata.name, {
      host: h.metadata.name,
      address: h.spec.address,
      providerID: m.spec.providerID!,
      trace,
      agent: { reportUrl: a.reportUrl, ca: a.ca },
    });
  }
  t.is(before.size, 2);
});

test.serial('2. clusterctl move to plane B: pools, hosts, claims and SSH Secrets go along', async (t) => {
  t.timeout(8 * 60_000);
  const dir = join(env.cp.dir, 'clusterctl-move');
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'clusterctl.yaml');
  writeFileSync(config, 'providers: []\n');
  const started = Date.now();
  const r = await clusterctl(
    [
      'move',
      '--kubeconfig',
      env.cp.kubeconfigPath,
      '--to-kubeconfig',
      b!.cp.kubeconfigPath,
      '--namespace',
      ns,
      '-v',
      '1',
    ],
    { config },
  );
  t.is(r.exitCode, 0, `clusterctl move failed:\n${r.stdout}\n${r.stderr}`);
  t.log(`${at()}: clusterctl move took ${Math.round((Date.now() - started) / 1000)} s`);
  // Plane A is empty of the namespace's cluster objects; plane B has them, with the claims intact.
  t.deepEqual(await list(env.cp.kc, 'baremetalmachines'), []);
  await waitFor(
    "plane A's hosts and pools gone",
    async () =>
      (await list(env.cp.kc, 'baremetalhosts')).length + (await list(env.cp.kc, 'baremetalhostpools')).length === 0
        ? true
        : undefined,
    120_000,
    1000,
  );
  const pools = await list<{ metadata: { name: string } }>(b!.cp.kc, 'baremetalhostpools');
  t.deepEqual(pools.map((p) => p.metadata.name).sort(), ['cp', 'workers']);
  for (const p of ['cp', 'workers'])
    await raw(b!.cp.kc, 'GET', `/api/v1/namespaces/${ns}/secrets/${p}-ssh`).catch((e: unknown) =>
      t.fail(`SSH Secret ${p}-ssh not on plane B: ${String(e)}`),
    );
  const hostsB = await list<BareMetalHost>(b!.cp.kc, 'baremetalhosts');
  t.is(hostsB.length, 3);
  for (const [m, was] of before) {
    const h = hostsB.find((x) => x.metadata.name === was.host);
    t.is(h?.spec.consumerRef?.name, m, `host ${was.host} still names ${m}`);
  }
});

test.serial('3. plane B carries on: the moved machines adopt their hosts, no bootstrap runs again', async (t) => {
  t.timeout(8 * 60_000);
  const started = Date.now();
  await waitForClusterAvailable(envB, ns, cluster, 2, 6 * 60_000);
  t.log(`${at()}: cluster Available on plane B (${Math.round((Date.now() - started) / 1000)} s after the move)`);
  const bmms = await waitFor(
    'the moved machines provisioned again on plane B',
    async () => {
      const all = await list<BareMetalMachine>(b!.cp.kc, 'baremetalmachines');
      return all.length === 2 && all.every((m) => m.status?.initialization?.provisioned) ? all : undefined;
    },
    180_000,
    1000,
  );
  const hostsB = await list<BareMetalHost>(b!.cp.kc, 'baremetalhosts');
  for (const m of bmms) {
    const was = before.get(m.metadata.name)!;
    t.is(m.status?.hostRef?.name, was.host, `${m.metadata.name} holds the same host`);
    t.is(m.spec.providerID, was.providerID);
    const h = hostsB.find((x) => x.metadata.name === was.host)!;
    t.is(h.spec.consumerRef?.uid, m.metadata.uid, 'the claim names the machine as it is on plane B');
    t.is(h.status?.phase, 'Provisioned');
    t.is(await runTrace(labHost(was.address), m.metadata.name), was.trace, `nothing ran again on ${was.host}`);
  }
  // The agent: installed again by B (its endpoint, a certificate of its CA), still one a host, and
  // B's machines healthy from the reports B receives (status does not move: B starts with none).
  await waitForHealthy(b!.cp.kc, 2, "HostHealthy=True on plane B's machines, from B's reports");
  t.log(`${at()}: HostHealthy=True on plane B (${Math.round((Date.now() - started) / 1000)} s after the move)`);
  for (const [m, was] of before) {
    const a = await agentOn(labHost(was.address));
    t.is(a.reportUrl, reportUrlB, `the agent of ${m} reports to plane B`);
    t.not(a.ca, was.agent.ca, `the agent of ${m} trusts plane B's CA`);
    t.is(a.running, 1, `one agent on ${was.host}`);
  }
  const events = await raw<{ items: Array<{ reason: string; involvedObject: { kind: string; name: string } }> }>(
    b!.cp.kc,
    'GET',
    `/api/v1/namespaces/${ns}/events`,
  );
  const adopted = events.items.filter(
    (e) => e.reason === 'HostAdopted' && e.involvedObject.kind === 'BareMetalMachine',
  );
  t.deepEqual([...new Set(adopted.map((e) => e.involvedObject.name))].sort(), [...before.keys()].sort());
  // What an operator runs next: `clusterctl describe cluster` on plane B shows the cluster healthy.
  const config = join(env.cp.dir, 'clusterctl-move', 'clusterctl.yaml');
  const d = await clusterctl(['describe', 'cluster', cluster, '-n', ns, '--kubeconfig', b!.cp.kubeconfigPath], {
    config,
  });
  t.is(d.exitCode, 0, d.stderr);
  const rows = d.stdout.split('\n');
  t.regex(rows.find((l) => l.startsWith(`Cluster ${ns}/${cluster} `)) ?? '', /\bTrue\s+Available\b/, d.stdout);
  t.regex(rows.find((l) => l.includes(`BareMetalCluster ${ns}/${cluster} `)) ?? '', /\bTrue\b/, d.stdout);
  const machineRows = rows.filter((l) => /\bMachine \S+/.test(l));
  t.is(machineRows.length, 2, d.stdout);
  for (const l of machineRows) t.regex(l, /\bTrue\s+Ready\b/, d.stdout);
});

test.serial('4. scaled on plane B: a new worker provisions on the free host', async (t) => {
  t.timeout(10 * 60_000);
  const started = Date.now();
  await raw(b!.cp.kc, 'PATCH', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/machinedeployments/${cluster}-md-0`, {
    spec: { replicas: 2 },
  });
  await waitForClusterAvailable(envB, ns, cluster, 3, 8 * 60_000);
  t.log(`${at()}: 3 Machines Ready on plane B (${Math.round((Date.now() - started) / 1000)} s)`);
  const bmms = await list<BareMetalMachine>(b!.cp.kc, 'baremetalmachines');
  const fresh = bmms.filter((m) => !before.has(m.metadata.name));
  t.is(fresh.length, 1);
  t.false([...before.values()].some((w) => w.host === fresh[0]!.status?.hostRef?.name));
  for (const m of bmms.filter((x) => before.has(x.metadata.name))) {
    const was = before.get(m.metadata.name)!;
    t.is(await runTrace(labHost(was.address), m.metadata.name), was.trace, `nothing ran again on ${was.host}`);
  }
  // The new worker's agent reports to B too, and B writes HostHealthy on the Nodes (the new
  // worker's Node too: only B ever knew that machine). B writes a Node's condition when it changes,
  // so the moved Nodes keep the True A wrote, with A's heartbeat, while they stay healthy.
  await waitForHealthy(b!.cp.kc, 3, "HostHealthy=True on plane B's three machines");
  const wl = (await workloadKubeconfig(envB, ns, cluster)).kc;
  const freshNode = (await machines(envB, ns, cluster)).find(
    (m) =>
      m.name ===
      (fresh[0]!.metadata.ownerReferences?.find((o) => o.kind === 'Machine')?.name ?? fresh[0]!.metadata.name),
  )?.nodeRef;
  t.truthy(freshNode, 'the new Machine has a Node');
  await waitFor(
    "HostHealthy=True on every Node, the new worker's written by B",
    async () => {
      const nodeList = await nodes(wl);
      return nodeList.length === 3 &&
        nodeList.some((n) => n.name === freshNode) &&
        nodeList.every((n) => n.conditions.some((c) => c.type === 'HostHealthy' && c.status === 'True'))
        ? true
        : undefined;
    },
    150_000,
    2000,
  );
});

test.serial('5. deleted on plane B: every host reset and Available', async (t) => {
  t.timeout(8 * 60_000);
  const started = Date.now();
  await raw(b!.cp.kc, 'DELETE', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/clusters/${cluster}`);
  await waitFor(
    'the cluster gone on plane B',
    async () => ((await machines(envB, ns, cluster)).length === 0 ? true : undefined),
    300_000,
    1000,
  );
  const hs = await waitFor(
    'every host Available on plane B',
    async () => {
      const all = await list<BareMetalHost>(b!.cp.kc, 'baremetalhosts');
      return all.every((h) => !h.spec.consumerRef && h.status?.phase === 'Available') ? all : undefined;
    },
    180_000,
    1000,
  );
  t.log(`${at()}: deleted, ${hs.length} hosts Available (${Math.round((Date.now() - started) / 1000)} s)`);
  for (const h of hs) {
    t.truthy(h.status?.lastResetTime, `${h.metadata.name} was reset`);
    const lab = labHost(h.spec.address);
    for (const p of ['/var/lib/capbm', '/etc/kubernetes/kubelet.conf', '/run/cluster-api', '/etc/capbm/agent.json'])
      t.not((await hostExec(lab, `test -e ${p}`)).exitCode, 0, `${p} left on ${h.metadata.name}`);
    t.is(
      (await hostExec(lab, "pgrep -fc '/opt/capbm/[c]apbm-agent.mjs'")).stdout.trim(),
      '0',
      `no agent left on ${h.metadata.name}`,
    );
  }
  t.is(hs.length, env.hosts.length);
});

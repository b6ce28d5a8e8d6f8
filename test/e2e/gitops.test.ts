// GitOps end to end, every part real: the management plane (kube-apiserver, etcd,
// kube-controller-manager, Cluster API core, CABPK, KubeadmControlPlane), Flux's source-, kustomize-
// and helm-controller, a Git server, the provider under its own ServiceAccount, lab hosts made into
// clusters by the real kubeadm. The clusters repository is examples/clusters-repo/ as the lab serves
// it (its URLs, hosts, host keys and endpoints set; comments kept) and the chart comes from a second
// repository made from this checkout's charts/. Flux runs locked down (--no-cross-namespace-refs):
// each team's HelmReleases and add-ons come from sources in the team's namespace. Every change
// below is a commit pushed to the clusters repository:
//   1. two teams' HelmReleases -> each cluster made on its own team's pool only, its pod network
//      applied from Git (the add-on Kustomization on the cluster's kubeconfig); alpha Available;
//   2. team-b's file removed while beta's API server cannot be reached -> its cluster deleted, its
//      host reset and Available, nothing left, nothing stuck;
//   3. replicas 1 -> 2 adds a worker; 4. 2 -> 1 removes one, its host reset and Available;
//   5. a node label of the node group -> the worker replaced (new Machine, never changed in place),
//      the old templates deleted after the rollout;
//   6. a Kubernetes upgrade in two commits (control plane, then the node group), onto the team's
//      pool of hosts of the new version -> every machine replaced, the old templates and hosts freed;
//   7. invalid values -> the HelmRelease says the schema's words, the cluster is untouched; fixed;
//      a file granting team-a cluster-wide rights -> refused (the team's files are applied with
//      the team's rights only), nothing applied; removed;
//   8. alpha's file removed -> deleted, hosts reset and Available, no CAPI object, no HelmRelease.
// One cluster of one control plane and one worker goes through steps 3-8.
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse, parseDocument } from 'yaml';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { TemplateGcLabel } from '../../provider/controllers/template-gc.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import {
  bootstrapFlux,
  CLUSTERS_REPO_RELEASE_ACCOUNT,
  createPoolSecrets,
  labImages,
  publishCharts,
  siteFiles,
  type ClustersRepoSite,
} from '../harness/clusters-repo.ts';
import {
  clusterHealth,
  machines,
  startEnv,
  waitForClusterAvailable,
  waitForRunning,
  workloadKubeconfig,
  type Env,
} from '../harness/env.ts';
import {
  describeFlux,
  fluxPath,
  requestReconcile,
  startFlux,
  waitForFluxReady,
  type Flux,
  type FluxRef,
} from '../harness/flux.ts';
import { cloneRepo, startGitServerProcess, type GitServer, type WorkTree } from '../harness/git-server.ts';
import { chartDir } from '../harness/helm.ts';
import { kubernetesVersions, type LabHost } from '../harness/lab.ts';
import { startLoadBalancer, type LoadBalancer } from '../harness/loadbalancer.ts';
import { waitFor } from '../harness/process.ts';

const { current, previous } = kubernetesVersions();
const A = 'team-a';
const B = 'team-b';
const ALPHA = `clusters/${A}/alpha.yaml`;
const BETA = `clusters/${B}/beta.yaml`;
const source: FluxRef = { kind: 'GitRepository', namespace: 'flux-system', name: 'clusters' };
const ks = (name: string): FluxRef => ({ kind: 'Kustomization', namespace: 'flux-system', name });
const release = (ns: string, name: string): FluxRef => ({ kind: 'HelmRelease', namespace: ns, name });
/** Everything Flux says of this repository, quoted when a wait times out. */
const fluxObjects: FluxRef[] = [
  source,
  ks('flux'),
  ks('teams'),
  ks(`clusters-${A}`),
  ks(`clusters-${B}`),
  { kind: 'GitRepository', namespace: A, name: 'capbm-charts' },
  { kind: 'GitRepository', namespace: A, name: 'platform-addons' },
  release(A, 'alpha'),
  { kind: 'HelmChart', namespace: A, name: `${A}-alpha` },
  { kind: 'Kustomization', namespace: A, name: 'alpha-addon-cni' },
  release(B, 'beta'),
  { kind: 'Kustomization', namespace: B, name: 'beta-addon-cni' },
];

let env: Env;
let flux: Flux;
let git: GitServer;
let repo: WorkTree;
let files: Map<string, string>;
/** team-a's second pool: hosts of the new Kubernetes version, for the upgrade (step 6). */
const NEXT_POOL = 'rack-1-next';
let nextHosts: LabHost[] = [];
const lbs: LoadBalancer[] = [];
const hostsOf: Record<string, LabHost[]> = {};
const t0 = Date.now();
const at = () => `${Math.round((Date.now() - t0) / 1000)} s`;

/** What Flux reports of every object of the repository, for a failure message. */
async function fluxReports(): Promise<string> {
  const reports = await Promise.all(fluxObjects.map((r) => describeFlux(env.cp.kc, r)));
  return `  Flux reports:\n    ${reports.join('\n    ')}`;
}

/** Awaits p; a failure (a timeout with its own words, such as the machines' conditions) adds Flux's. */
async function withFlux<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${await fluxReports()}`);
  }
}

/** Waits for `until`; a timeout adds what Flux reports. */
const explained = <T>(what: string, until: () => Promise<T | undefined>, timeoutMs: number): Promise<T> =>
  withFlux(waitFor(what, until, timeoutMs, 1000));

/** Commits and pushes the work tree, has Flux fetch it now, and waits until `kustomizations` applied it. */
async function push(message: string, kustomizations: string[]): Promise<string> {
  const sha = await repo.commitAndPush(message);
  await requestReconcile(env.cp.kc, source);
  for (const ref of [source, ...kustomizations.map(ks)])
    await withFlux(waitForFluxReady(env.cp.kc, ref, { revision: sha, timeoutMs: 180_000 }));
  return sha;
}

/** Edits a cluster file's HelmRelease values in the work tree, comments kept. */
function editValues(file: string, path: Array<string | number>, value: unknown, write = true): void {
  const doc = parseDocument(files.get(file)!);
  if (value === undefined) doc.deleteIn(['spec', 'values', ...path]);
  else doc.setIn(['spec', 'values', ...path], value);
  files.set(file, doc.toString());
  if (write) repo.write(file, files.get(file)!);
}

const ns = (n: string) => `/apis/${API_VERSION}/namespaces/${n}`;
const hostsIn = async (n: string) =>
  (await raw<{ items: BareMetalHost[] }>(env.cp.kc, 'GET', `${ns(n)}/baremetalhosts`)).items;
const bmmsIn = async (n: string) =>
  (await raw<{ items: BareMetalMachine[] }>(env.cp.kc, 'GET', `${ns(n)}/baremetalmachines`)).items;
const gone = async (path: string) => {
  const r = await raw(env.cp.kc, 'GET', path).catch((e: unknown) => e);
  return r instanceof ApiError && r.code === 404;
};

/** What Cluster API and the chart make in a namespace, as "kind/name", of every kind a cluster has. */
const capiKinds: Array<[string, string]> = [
  ['cluster.x-k8s.io/v1beta2', 'clusters'],
  ['cluster.x-k8s.io/v1beta2', 'machinedeployments'],
  ['cluster.x-k8s.io/v1beta2', 'machinesets'],
  ['cluster.x-k8s.io/v1beta2', 'machines'],
  ['cluster.x-k8s.io/v1beta2', 'machinehealthchecks'],
  ['controlplane.cluster.x-k8s.io/v1beta2', 'kubeadmcontrolplanes'],
  ['bootstrap.cluster.x-k8s.io/v1beta2', 'kubeadmconfigs'],
  ['bootstrap.cluster.x-k8s.io/v1beta2', 'kubeadmconfigtemplates'],
  [API_VERSION, 'baremetalclusters'],
  [API_VERSION, 'baremetalmachines'],
  [API_VERSION, 'baremetalmachinetemplates'],
  ['kustomize.toolkit.fluxcd.io/v1', 'kustomizations'],
];
async function capiObjects(n: string): Promise<string[]> {
  const lists = await Promise.all(
    capiKinds.map(async ([gv, plural]) => {
      const l = await raw<{ items: Array<{ metadata: { name: string } }> }>(
        env.cp.kc,
        'GET',
        `/apis/${gv}/namespaces/${n}/${plural}`,
      );
      return l.items.map((i) => `${plural}/${i.metadata.name}`);
    }),
  );
  const secrets = await raw<{ items: Array<{ metadata: { name: string } }> }>(
    env.cp.kc,
    'GET',
    `/api/v1/namespaces/${n}/secrets?labelSelector=${encodeURIComponent('owner=helm')}`,
  );
  return [...lists.flat(), ...secrets.items.map((s) => `helm-release-secret/${s.metadata.name}`)];
}

/** Where each machine of a namespace runs: BareMetalMachine name -> host address. */
async function placement(n: string): Promise<Map<string, string>> {
  const hosts = new Map((await hostsIn(n)).map((h) => [h.metadata.name, h.spec.address]));
  return new Map(
    (await bmmsIn(n))
      .filter((b) => b.status?.hostRef)
      .map((b) => [b.metadata.name, hosts.get(b.status!.hostRef!.name) ?? '?']),
  );
}

/** Waits until every host of the namespace is unclaimed and Available (reset after its machine went). */
function allHostsAvailable(n: string, timeoutMs = 300_000): Promise<BareMetalHost[]> {
  return explained(
    `every host of ${n} Available`,
    async () => {
      const hs = await hostsIn(n);
      return hs.length > 0 && hs.every((h) => !h.spec.consumerRef && h.status?.phase === 'Available') ? hs : undefined;
    },
    timeoutMs,
  );
}

/** After a cluster's file left Git: its HelmRelease, Helm release and every CAPI object gone, its hosts back. */
async function assertClusterRemoved(t: ExecutionContext, n: string, name: string): Promise<void> {
  await explained(
    `HelmRelease ${n}/${name} deleted (uninstalled)`,
    async () => ((await gone(fluxPath('HelmRelease', n, name))) ? true : undefined),
    600_000,
  );
  const left = await explained(
    `every CAPI object and Helm release Secret of ${n} deleted (templates by the provider's collector)`,
    async () => {
      const objs = await capiObjects(n);
      return objs.length === 0 ? objs : undefined;
    },
    300_000,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n  still there: ${(await capiObjects(n)).join(', ')}`);
  });
  t.deepEqual(left, []);
  const hs = await allHostsAvailable(n);
  t.true(
    hs.every((h) => h.status?.lastResetTime),
    `every host of ${n} was reset`,
  );
}

test.before(async () => {
  // team-a: three hosts of the previous Kubernetes version (control plane, worker, one free for a
  // scale-up or a rollout) and two of the current one (its upgrade); team-b: one.
  env = await startEnv({ hosts: 3, previousVersionHosts: 3 });
  nextHosts = env.hosts.filter((h) => h.kubernetesVersion === current).slice(0, 2);
  hostsOf[A] = env.hosts.filter((h) => h.kubernetesVersion === previous);
  hostsOf[B] = env.hosts.filter((h) => h.kubernetesVersion === current).slice(2, 3);
  // Each cluster's API endpoint: a load balancer in front of its own team's hosts only.
  for (const backends of [[...hostsOf[A], ...nextHosts], hostsOf[B]])
    lbs.push(await startLoadBalancer({ backends: backends.map((h) => h.address) }));
  // The template collector's grace is 5 minutes in production; the test has no time to spare.
  env.startProvider({ args: ['--template-gc-grace=10s'] });
  flux = await startFlux(env.cp, { defaultServiceAccount: CLUSTERS_REPO_RELEASE_ACCOUNT });
  git = await startGitServerProcess({ root: join(env.cp.dir, 'git'), logFile: join(env.cp.dir, 'git-server.log') });

  // The chart's repository: this checkout's charts/ folder.
  await publishCharts(git, join(env.cp.dir, 'work'));
  const lab = parse(readFileSync(join(chartDir, 'ci', 'lab.yaml'), 'utf8')) as Record<string, unknown>;
  const site: ClustersRepoSite = {
    clustersUrl: git.repoUrl('clusters'),
    chartsUrl: git.repoUrl('capbm-charts'),
    teams: { [A]: hostsOf[A], [B]: hostsOf[B] },
    clusters: { [`${A}/alpha`]: lbs[0]!.address, [`${B}/beta`]: lbs[1]!.address },
    defaults: { kubeadm: lab.kubeadm },
    images: labImages(),
  };
  files = siteFiles(site);
  // team-a's pool of the new version's hosts, as the platform team adds one by a commit.
  const next = parseDocument(files.get(`teams/${A}/pool.yaml`)!);
  next.setIn(['metadata', 'name'], NEXT_POOL);
  next.setIn(['spec', 'ssh', 'secretRef', 'name'], `${NEXT_POOL}-ssh`);
  next.setIn(['spec', 'addresses'], next.createNode(nextHosts.map((h) => h.address)));
  next.setIn(
    ['spec', 'hostKeyPolicy', 'pinned'],
    next.createNode(Object.fromEntries(nextHosts.map((h) => [h.address, [h.hostKeyFingerprint]]))),
  );
  files.set(`teams/${A}/pool-next.yaml`, next.toString());
  // alpha starts on the previous version (its upgrade is step 6).
  editValues(ALPHA, ['kubernetesVersion'], previous, false);
  // The repository without clusters yet: step 1 adds them by a commit.
  await git.createRepo('clusters');
  repo = await cloneRepo(git.repoUrl('clusters'), join(env.cp.dir, 'work', 'clusters'));
  for (const [p, content] of files) if (p !== ALPHA && p !== BETA) repo.write(p, content);
  const sha = await repo.commitAndPush('the platform: Flux, teams a and b');
  // What the platform team does out of band (examples/clusters-repo/README.md, bootstrap step 2):
  // each pool's SSH key. The pod network comes from Git (addons/kube-router, the add-on "cni").
  await createPoolSecrets(env.cp.kc, files, env.key.private);
  // Bootstrap step 3: kubectl apply --server-side -f flux/; Flux keeps it from then on.
  await withFlux(bootstrapFlux(env.cp.kc, files, sha));
});

test.after.always(async (t) => {
  if (flux) t.log(`Flux resident memory (MiB): ${JSON.stringify(flux.memory())}`);
  await flux?.stop();
  await git?.stop();
  for (const lb of lbs) await lb.stop();
  await env?.stop();
});

test.serial(
  "1. a commit adds two teams' clusters: each on its own team's pool, its pod network from Git",
  async (t) => {
    t.timeout(20 * 60_000);
    repo.write(ALPHA, files.get(ALPHA)!);
    repo.write(BETA, files.get(BETA)!);
    const started = Date.now();
    await push('team-a: alpha; team-b: beta', [`clusters-${A}`, `clusters-${B}`]);
    await withFlux(
      Promise.all([
        waitForClusterAvailable(env, A, 'alpha', 2, 15 * 60_000),
        waitForRunning(env, B, 'beta', 1, 15 * 60_000),
      ]),
    );
    t.log(
      `${at()}: alpha Available (1 control plane, 1 worker), beta Running, ${Math.round((Date.now() - started) / 1000)} s after the push`,
    );
    for (const hr of [release(A, 'alpha'), release(B, 'beta')]) await waitForFluxReady(env.cp.kc, hr);
    // alpha's Nodes are Ready: the pod network is there. It came from Git, through the cluster's kubeconfig.
    const addon = await withFlux(
      waitForFluxReady(
        env.cp.kc,
        { kind: 'Kustomization', namespace: A, name: 'alpha-addon-cni' },
        { timeoutMs: 300_000 },
      ),
    );
    t.log(`Kustomization ${A}/alpha-addon-cni applied ${addon.status?.lastAppliedRevision ?? '?'}`);
    const wl = (await workloadKubeconfig(env, A, 'alpha')).kc;
    const ds = await raw<{
      metadata: { labels?: Record<string, string> };
      spec: { template: { spec: { containers: Array<{ image: string }> } } };
    }>(wl, 'GET', '/apis/apps/v1/namespaces/kube-system/daemonsets/kube-router');
    t.is(
      ds.metadata.labels?.['kustomize.toolkit.fluxcd.io/name'],
      'alpha-addon-cni',
      'kube-router applied by the add-on',
    );
    t.regex(
      ds.spec.template.spec.containers[0]!.image,
      /^registry\.capbm\.lab\/kube-router:/,
      "the site's image mirror",
    );
    for (const team of [A, B]) {
      const where = await placement(team);
      const own = hostsOf[team]!.map((h) => h.address);
      t.is(where.size, team === A ? 2 : 1, `${team}'s machines`);
      for (const [m, address] of where)
        t.true(own.includes(address), `${team}'s ${m} runs on ${address}, one of ${team}'s hosts`);
    }
  },
);

test.serial(
  "2. team-b's file removed while beta's API is unreachable: deleted, host reset, nothing stuck",
  async (t) => {
    t.timeout(15 * 60_000);
    // beta's endpoint goes away first: nothing of the deletion (its add-on's Kustomization, Cluster
    // API's Machines, the HelmRelease's uninstall) may wait on the cluster answering.
    await lbs[1]!.stop();
    repo.remove(BETA);
    const started = Date.now();
    await push('team-b: retire beta', [`clusters-${B}`]);
    await assertClusterRemoved(t, B, 'beta');
    t.log(
      `${at()}: beta deleted and its host Available, ${Math.round((Date.now() - started) / 1000)} s after the push`,
    );
    t.is((await machines(env, A, 'alpha')).length, 2, "team-a's cluster is untouched");
  },
);

test.serial('3. replicas 1 -> 2 adds a worker', async (t) => {
  t.timeout(15 * 60_000);
  const before = await placement(A);
  editValues(ALPHA, ['nodeGroups', 0, 'replicas'], 2);
  await push('alpha: two workers', [`clusters-${A}`]);
  await waitForClusterAvailable(env, A, 'alpha', 3, 10 * 60_000);
  const after = await placement(A);
  t.is(after.size, 3);
  for (const [m, h] of before) t.is(after.get(m), h, `${m} stays where it was`);
  t.log(`${at()}: a third machine Running`);
});

test.serial('4. replicas 2 -> 1 removes a worker; its host is reset and Available', async (t) => {
  t.timeout(15 * 60_000);
  const before = await placement(A);
  editValues(ALPHA, ['nodeGroups', 0, 'replicas'], 1);
  await push('alpha: one worker', [`clusters-${A}`]);
  await waitForClusterAvailable(env, A, 'alpha', 2, 10 * 60_000);
  const after = await placement(A);
  const removed = [...before].filter(([m]) => !after.has(m));
  t.is(removed.length, 1, 'one machine removed');
  t.regex(removed[0]?.[0] ?? '', /^alpha-md-0-/, 'a worker');
  const free = await explained(
    "the removed worker's host reset and Available",
    async () => {
      const h = (await hostsIn(A)).find((x) => x.spec.address === removed[0]?.[1]);
      return h && !h.spec.consumerRef && h.status?.phase === 'Available' && h.status.lastResetTime ? h : undefined;
    },
    300_000,
  );
  t.is(free.status?.phase, 'Available');
  t.log(`${at()}: ${removed[0]?.[0]} removed; its host ${free.spec.address} reset and Available`);
});

interface MachineRefs {
  bootstrap: string;
  infrastructure: string;
}

/** Every Machine of the cluster with what it was made from. */
async function machineRefs(): Promise<Map<string, MachineRefs>> {
  const l = await raw<{
    items: Array<{
      metadata: { name: string };
      spec: { bootstrap: { configRef?: { name: string } }; infrastructureRef: { name: string } };
    }>;
  }>(env.cp.kc, 'GET', `/apis/cluster.x-k8s.io/v1beta2/namespaces/${A}/machines`);
  return new Map(
    l.items.map((m) => [
      m.metadata.name,
      { bootstrap: m.spec.bootstrap.configRef?.name ?? '', infrastructure: m.spec.infrastructureRef.name },
    ]),
  );
}

/** The labelled templates of team-a, and those its MachineDeployment and KubeadmControlPlane use now. */
async function templates(): Promise<{ labelled: string[]; used: string[] }> {
  const sel = encodeURIComponent(`${TemplateGcLabel}=true`);
  const list = async (kind: string, path: string) =>
    (
      await raw<{ items: Array<{ metadata: { name: string } }> }>(env.cp.kc, 'GET', `${path}?labelSelector=${sel}`)
    ).items.map((i) => `${kind}/${i.metadata.name}`);
  const [bmt, kct] = await Promise.all([
    list('BareMetalMachineTemplate', `${ns(A)}/baremetalmachinetemplates`),
    list('KubeadmConfigTemplate', `/apis/bootstrap.cluster.x-k8s.io/v1beta2/namespaces/${A}/kubeadmconfigtemplates`),
  ]);
  type Md = {
    spec: { template: { spec: { bootstrap: { configRef: { name: string } }; infrastructureRef: { name: string } } } };
  };
  type Kcp = { spec: { machineTemplate: { spec: { infrastructureRef: { name: string } } } } };
  const md = await raw<Md>(
    env.cp.kc,
    'GET',
    `/apis/cluster.x-k8s.io/v1beta2/namespaces/${A}/machinedeployments/alpha-md-0`,
  );
  const kcp = await raw<Kcp>(
    env.cp.kc,
    'GET',
    `/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/${A}/kubeadmcontrolplanes/alpha-control-plane`,
  );
  return {
    labelled: [...bmt, ...kct].sort(),
    used: [
      `KubeadmConfigTemplate/${md.spec.template.spec.bootstrap.configRef.name}`,
      `BareMetalMachineTemplate/${md.spec.template.spec.infrastructureRef.name}`,
      `BareMetalMachineTemplate/${kcp.spec.machineTemplate.spec.infrastructureRef.name}`,
    ].sort(),
  };
}

test.serial(
  '5. a node label of the node group: the worker replaced, never changed in place; old templates deleted',
  async (t) => {
    t.timeout(20 * 60_000);
    const before = await machineRefs();
    const oldWorker = [...before.keys()].find((m) => m.startsWith('alpha-md-0'))!;
    const oldTemplates = await templates();
    editValues(ALPHA, ['nodeGroups', 0, 'nodeLabels', 'tier'], 'api');
    await push('alpha: workers labelled tier=api', [`clusters-${A}`]);
    // Every Machine seen during the rollout keeps what it was made from: replaced, never changed.
    const seen = new Map(before);
    const changed: string[] = [];
    await explained(
      'the worker replaced',
      async () => {
        const now = await machineRefs();
        for (const [m, refs] of now) {
          if (seen.has(m) && !isDeepStrictEqual(seen.get(m), refs)) changed.push(m);
          seen.set(m, refs);
        }
        return !now.has(oldWorker) && now.size === 2 ? true : undefined;
      },
      10 * 60_000,
    );
    t.deepEqual(changed, [], 'no Machine changed in place');
    const health = await waitForClusterAvailable(env, A, 'alpha', 2, 10 * 60_000);
    const worker = health.machines.find((m) => m.name.startsWith('alpha-md-0'))!;
    t.not(worker.name, oldWorker, 'a new Machine');
    const wl = (await workloadKubeconfig(env, A, 'alpha')).kc;
    const node = await raw<{ metadata: { labels: Record<string, string> } }>(
      wl,
      'GET',
      `/api/v1/nodes/${worker.nodeRef}`,
    );
    t.is(node.metadata.labels.tier, 'api', 'the new Node carries the label');
    const done = await explained(
      'the templates the rollout left behind deleted by the collector',
      async () => {
        const tm = await templates();
        return isDeepStrictEqual(tm.labelled, tm.used) ? tm : undefined;
      },
      5 * 60_000,
    );
    const replaced = oldTemplates.used.filter((n) => !done.used.includes(n));
    t.is(replaced.length, 1, `one template replaced: ${replaced.join(', ')}`);
    t.regex(
      replaced[0] ?? '',
      /^KubeadmConfigTemplate\/alpha-md-0-/,
      "the node group's kubeadm template (node labels)",
    );
    for (const n of replaced) t.false(done.labelled.includes(n), `${n} deleted`);
    await allHostsAvailableExceptClaimed();
    t.log(`${at()}: ${oldWorker} replaced by ${worker.name}; templates now ${done.used.join(', ')}`);
  },
);

/** The host the replaced worker left is reset and Available again: one free host in team-a's first pool. */
async function allHostsAvailableExceptClaimed(): Promise<void> {
  const first = hostsOf[A]!.map((h) => h.address);
  await explained(
    "the free host of team-a's first pool reset and Available",
    async () => {
      const hs = (await hostsIn(A)).filter((h) => first.includes(h.spec.address) && !h.spec.consumerRef);
      return hs.length === 1 && hs[0]!.status?.phase === 'Available' ? true : undefined;
    },
    300_000,
  );
}

test.serial(
  `6. Kubernetes ${previous} -> ${current} in two commits: control plane, then the node group; every machine replaced`,
  async (t) => {
    t.timeout(30 * 60_000);
    const before = await machineRefs();
    const oldTemplates = await templates();
    const seen = new Map(before);
    const changed: string[] = [];
    /** Records every Machine seen; a Machine whose templates change was changed in place. */
    const track = async () => {
      const now = await machineRefs();
      for (const [m, refs] of now) {
        if (seen.has(m) && !isDeepStrictEqual(seen.get(m), refs)) changed.push(m);
        seen.set(m, refs);
      }
      return now;
    };
    const worker = [...before.keys()].find((m) => m.startsWith('alpha-md-0'))!;
    // Commit 1: the control plane onto the new version's hosts; the node group pinned to the old version.
    editValues(ALPHA, ['kubernetesVersion'], current);
    editValues(ALPHA, ['controlPlane', 'hosts', 'pool'], NEXT_POOL);
    editValues(ALPHA, ['nodeGroupDefaults', 'kubernetesVersion'], previous);
    await push(`alpha: control plane to ${current} (node group stays on ${previous})`, [`clusters-${A}`]);
    const cp = await explained(
      `the control plane replaced on ${current}`,
      async () => {
        await track();
        const h = await clusterHealth(env, A, 'alpha');
        const cps = h.machines.filter((m) => !m.name.startsWith('alpha-md-0'));
        return cps.length === 1 && cps[0]!.version === current && cps[0]!.ready && h.machines.length === 2
          ? cps[0]!
          : undefined;
      },
      15 * 60_000,
    );
    t.true((await machineRefs()).has(worker), 'the worker is not touched by the first commit');
    t.log(`${at()}: control plane ${cp.name} on ${current}`);
    // Commit 2: the node group follows, onto the new version's hosts.
    editValues(ALPHA, ['nodeGroupDefaults', 'kubernetesVersion'], undefined);
    editValues(ALPHA, ['nodeGroupDefaults', 'hosts', 'pool'], NEXT_POOL);
    await push(`alpha: node group md-0 to ${current}`, [`clusters-${A}`]);
    await explained(
      `the worker replaced on ${current}`,
      async () => {
        const now = await track();
        return !now.has(worker) && now.size === 2 ? true : undefined;
      },
      15 * 60_000,
    );
    const health = await waitForClusterAvailable(env, A, 'alpha', 2, 10 * 60_000);
    t.deepEqual(changed, [], 'no Machine changed in place');
    t.true(
      health.machines.every((m) => m.version === current),
      `every machine on ${current}: ${health.machines.map((m) => `${m.name} ${m.version}`).join(', ')}`,
    );
    const next = nextHosts.map((h) => h.address);
    for (const [m, address] of await placement(A))
      t.true(next.includes(address), `${m} runs on ${address}, a host of ${current}`);
    const done = await explained(
      'the templates the upgrade left behind deleted by the collector',
      async () => {
        const tm = await templates();
        return isDeepStrictEqual(tm.labelled, tm.used) ? tm : undefined;
      },
      5 * 60_000,
    );
    for (const n of oldTemplates.used.filter((x) => !done.used.includes(x)))
      t.false(done.labelled.includes(n), `${n} deleted`);
    const old = hostsOf[A]!.map((h) => h.address);
    await explained(
      `every host of ${previous} reset and Available`,
      async () => {
        const hs = (await hostsIn(A)).filter((h) => old.includes(h.spec.address));
        return hs.every((h) => !h.spec.consumerRef && h.status?.phase === 'Available') ? true : undefined;
      },
      300_000,
    );
    t.log(`${at()}: alpha on ${current}: ${health.machines.map((m) => m.name).join(', ')}; old hosts Available`);
  },
);

test.serial(
  '7. invalid values: the HelmRelease shows the schema error and the cluster is untouched; fixed by a commit',
  async (t) => {
    t.timeout(10 * 60_000);
    const hr = release(A, 'alpha');
    const before = { machines: await machineRefs(), templates: await templates() };
    const good = files.get(ALPHA)!;
    editValues(ALPHA, ['controlPlane', 'replicas'], 2);
    await push('alpha: two control-plane machines (refused: etcd wants an odd number)', [`clusters-${A}`]);
    const message = await explained(
      'the HelmRelease to fail',
      async () => {
        const o = await raw<{
          metadata: { generation: number };
          status?: {
            conditions?: Array<{ type: string; status: string; message?: string; observedGeneration?: number }>;
          };
        }>(env.cp.kc, 'GET', fluxPath('HelmRelease', A, 'alpha'));
        // A failed release keeps status.observedGeneration at the last success; its condition says which it tried.
        const ready = o.status?.conditions?.find((c) => c.type === 'Ready');
        return ready?.observedGeneration === o.metadata.generation && ready.status === 'False'
          ? ready.message
          : undefined;
      },
      180_000,
    );
    t.log(`HelmRelease ${A}/alpha: ${message}`);
    t.regex(message ?? '', /schema/);
    t.regex(message ?? '', /controlPlane\/replicas/);
    const kcp = await raw<{ spec: { replicas: number } }>(
      env.cp.kc,
      'GET',
      `/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/${A}/kubeadmcontrolplanes/alpha-control-plane`,
    );
    t.is(kcp.spec.replicas, 1, 'nothing applied');
    t.deepEqual(await machineRefs(), before.machines, 'the same machines');
    t.deepEqual(await templates(), before.templates, 'the same templates');
    files.set(ALPHA, good);
    repo.write(ALPHA, good);
    await push('alpha: back to one control-plane machine', [`clusters-${A}`]);
    await waitForFluxReady(env.cp.kc, hr, { timeoutMs: 180_000 });
    t.deepEqual(await machineRefs(), before.machines, 'the fix changes nothing either');
  },
);

test.serial(
  '7b. a file granting itself cluster-wide rights under clusters/team-a/: refused, nothing applied; removed',
  async (t) => {
    t.timeout(10 * 60_000);
    const file = `clusters/${A}/escalate.yaml`;
    const crb = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'team-a-admin' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ kind: 'Group', name: 'team-a', apiGroup: 'rbac.authorization.k8s.io' }],
    };
    repo.write(file, JSON.stringify(crb, null, 2));
    const sha = await repo.commitAndPush('team-a: make us cluster admins');
    await requestReconcile(env.cp.kc, source);
    const message = await explained(
      `Kustomization clusters-${A} to refuse the commit`,
      async () => {
        const k = await raw<{
          status?: {
            lastAttemptedRevision?: string;
            conditions?: Array<{ type: string; status: string; message?: string }>;
          };
        }>(env.cp.kc, 'GET', fluxPath('Kustomization', 'flux-system', `clusters-${A}`));
        const ready = k.status?.conditions?.find((c) => c.type === 'Ready');
        return k.status?.lastAttemptedRevision?.includes(sha.slice(0, 12)) && ready?.status === 'False'
          ? ready.message
          : undefined;
      },
      180_000,
    );
    t.log(`Kustomization clusters-${A}: ${message}`);
    t.regex(message ?? '', /forbidden/i);
    t.true(await gone('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/team-a-admin'), 'nothing applied');
    repo.remove(file);
    await push('team-a: revert', [`clusters-${A}`]);
    await waitForFluxReady(env.cp.kc, release(A, 'alpha'));
  },
);

test.serial(
  "8. alpha's file removed: the cluster deleted, hosts reset and Available, no CAPI object, no HelmRelease",
  async (t) => {
    t.timeout(15 * 60_000);
    repo.remove(ALPHA);
    const started = Date.now();
    await push('team-a: retire alpha', [`clusters-${A}`]);
    await assertClusterRemoved(t, A, 'alpha');
    t.log(
      `${at()}: alpha deleted and every host Available, ${Math.round((Date.now() - started) / 1000)} s after the push`,
    );
  },
);

// examples/clusters-repo/ is a repository a platform team can start from, so it must stay valid:
// every object of every file is accepted by a real kube-apiserver serving the genuine Flux, Cluster
// API and CAPBM CRDs (server-side apply, dry run, unknown fields refused); the Flux objects point at
// what exists (folders, sources, Kustomizations, the chart); each cluster's values, merged over its
// team's defaults as helm-controller merges them, render with the real helm into objects the API
// server accepts, on pools of the cluster's own team. And the site adjustments the lab and the e2e
// test make keep all of that true.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { apply, raw } from '../../provider/kube/raw.ts';
import {
  exampleObjects,
  exampleRepoDir,
  filesOf,
  CLUSTERS_REPO_RELEASE_ACCOUNT,
  KUBE_ROUTER_IMAGE,
  labImages,
  siteFiles,
  type RepoObject,
} from '../harness/clusters-repo.ts';
import { versions } from '../harness/paths.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { chartPlurals } from '../harness/env.ts';
import { installFluxCrds } from '../harness/flux.ts';
import { chartDir, helm, type Rendered } from '../harness/helm.ts';

/** URL plural of each kind the repository holds (every kind must be listed here to be checked). */
const repoPlurals: Record<string, string> = {
  Namespace: 'namespaces',
  RoleBinding: 'rolebindings',
  ServiceAccount: 'serviceaccounts',
  ClusterRole: 'clusterroles',
  ConfigMap: 'configmaps',
  BareMetalHostPool: 'baremetalhostpools',
  GitRepository: 'gitrepositories',
  Kustomization: 'kustomizations',
  HelmRelease: 'helmreleases',
};

let cp: ControlPlane;
const objects = exampleObjects();
const ofKind = (kind: string) => objects.filter((o) => o.obj.kind === kind).map((o) => o.obj);

test.before(async () => {
  cp = await startControlPlane();
  await Promise.all([installCapiCrds(cp.kc), installProviderCrds(cp.kc), installFluxCrds(cp.kc)]);
  // Dry runs of namespaced objects need their namespace: these are made for real.
  for (const ns of ['flux-system', ...ofKind('Namespace').map((n) => n.metadata.name)])
    await raw(cp.kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
});
test.after.always(async () => {
  await cp?.stop();
});

/** The collection path of an object (its namespace's, unless cluster-scoped). */
function pathOf(o: RepoObject, plural: string): string {
  const group = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  return `${group}${o.metadata.namespace ? `/namespaces/${o.metadata.namespace}` : ''}/${plural}`;
}

/** Server-side apply, dry run, unknown or duplicate fields refused. */
const dryRunApply = (o: RepoObject, plural: string) =>
  apply(cp.kc, `${pathOf(o, plural)}/${o.metadata.name}?dryRun=All&fieldValidation=Strict`, o, 'clusters-repo-test');

test('every object of every file is accepted by the API server (server-side apply, dry run, strict)', async (t) => {
  t.true(objects.length >= 10, `${objects.length} objects`);
  for (const { file, obj } of objects) {
    const plural = repoPlurals[obj.kind];
    t.truthy(plural, `${file}: kind ${obj.kind} is not known to this test; add its plural to repoPlurals`);
    if (!['Namespace', 'ClusterRole'].includes(obj.kind))
      t.truthy(obj.metadata.namespace, `${file}: ${obj.kind} ${obj.metadata.name} names its namespace`);
    await t.notThrowsAsync(dryRunApply(obj, plural!), `${file}: ${obj.kind} ${obj.metadata.name}`);
  }
});

test('the Flux objects point at what exists: folders, sources, dependencies, the chart, the defaults', (t) => {
  const files = filesOf(exampleRepoDir);
  const folders = new Set([...files.keys()].flatMap((f) => f.split('/').map((_, i, a) => a.slice(0, i).join('/'))));
  const gitRepos = new Set(ofKind('GitRepository').map((g) => `${g.metadata.namespace}/${g.metadata.name}`));
  const kustomizations = ofKind('Kustomization');
  const names = new Set(kustomizations.map((k) => k.metadata.name));
  for (const k of kustomizations) {
    const where = `Kustomization ${k.metadata.name}`;
    t.true(folders.has(k.spec!.path.replace(/^\.\//, '')), `${where}: folder ${k.spec!.path} exists`);
    t.true(gitRepos.has(`${k.metadata.namespace}/${k.spec!.sourceRef.name}`), `${where}: its source exists`);
    t.true(k.spec!.prune, `${where}: prune is on (a file removed from Git is deleted)`);
    for (const d of k.spec!.dependsOn ?? []) t.true(names.has(d.name), `${where}: depends on ${d.name}, which exists`);
  }
  // Every team folder under clusters/ is applied into the team's namespace, after the teams.
  const teams = ofKind('Namespace').map((n) => n.metadata.name);
  for (const team of teams) {
    const k = kustomizations.find((x) => x.spec!.path === `./clusters/${team}`);
    t.truthy(k, `a Kustomization applies clusters/${team}`);
    t.is(k?.spec!.targetNamespace, team, `clusters/${team} lands in namespace ${team} whatever its files say`);
    t.deepEqual(k?.spec!.dependsOn, [{ name: 'teams' }], `clusters/${team} waits for the teams`);
    t.is(k?.spec!.serviceAccountName, `clusters-${team}`, `clusters/${team} is applied with the team's rights only`);
  }
  for (const { file, obj: hr } of objects.filter((o) => o.obj.kind === 'HelmRelease')) {
    const team = file.split('/')[1]!;
    t.is(hr.metadata.namespace, team, `${file}: in its team's namespace`);
    const src = hr.spec!.chart.spec.sourceRef;
    t.true(gitRepos.has(`${hr.metadata.namespace}/${src.name}`), `${file}: the chart's source exists in its namespace`);
    t.is(hr.spec!.chart.spec.chart, './charts/capbm-cluster');
    t.true(existsSync(join(chartDir, 'Chart.yaml')), 'the chart is in this repository at charts/capbm-cluster');
    for (const v of hr.spec!.valuesFrom ?? [])
      t.true(
        objects.some(
          (o) => o.obj.kind === v.kind && o.obj.metadata.name === v.name && o.file.startsWith(`teams/${team}/`),
        ),
        `${file}: ${v.kind} ${v.name} is in teams/${team}/`,
      );
  }
});

test('no object names another namespace: Flux runs with --no-cross-namespace-refs', (t) => {
  const refs = (o: RepoObject): Array<{ namespace?: string }> => [
    o.spec?.sourceRef,
    o.spec?.chart?.spec?.sourceRef,
    o.spec?.kubeConfig?.secretRef,
    ...((o.spec?.dependsOn ?? []) as Array<{ namespace?: string }>),
    ...((o.spec?.valuesFrom ?? []) as Array<{ namespace?: string }>),
  ];
  for (const { file, obj } of objects)
    for (const r of refs(obj).filter(Boolean))
      t.true(
        r.namespace === undefined || r.namespace === obj.metadata.namespace,
        `${file}: ${obj.kind} ${obj.metadata.name} names namespace ${r.namespace}`,
      );
});

/** Whether `user` may `verb` `resource` (in `namespace`), as the API server's authorizer answers. */
async function may(user: string, verb: string, group: string, resource: string, namespace?: string) {
  const r = await raw<{ status: { allowed: boolean } }>(
    cp.kc,
    'POST',
    '/apis/authorization.k8s.io/v1/subjectaccessreviews',
    {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: {
        user,
        groups: ['system:serviceaccounts', 'system:authenticated'],
        resourceAttributes: { verb, group, resource, ...(namespace ? { namespace } : {}) },
      },
    },
  );
  return r.status.allowed;
}

test("a team's files and releases reach its own namespace only (the RBAC of teams/ and flux/, real authorizer)", async (t) => {
  // The platform's objects made for real: roles, bindings, ServiceAccounts.
  for (const { obj } of objects.filter((o) => ['ClusterRole', 'RoleBinding', 'ServiceAccount'].includes(o.obj.kind)))
    await apply(cp.kc, `${pathOf(obj, repoPlurals[obj.kind]!)}/${obj.metadata.name}`, obj, 'clusters-repo-test');
  const files = (team: string) => `system:serviceaccount:flux-system:clusters-${team}`;
  const helm = (team: string) => `system:serviceaccount:${team}:${CLUSTERS_REPO_RELEASE_ACCOUNT}`;
  const flux = 'helm.toolkit.fluxcd.io';
  // What Flux applies from clusters/team-a/: HelmReleases and ConfigMaps of team-a, nothing else.
  t.true(await may(files('team-a'), 'create', flux, 'helmreleases', 'team-a'));
  t.true(await may(files('team-a'), 'delete', flux, 'helmreleases', 'team-a'), 'prune');
  t.true(await may(files('team-a'), 'create', '', 'configmaps', 'team-a'));
  t.false(await may(files('team-a'), 'create', flux, 'helmreleases', 'team-b'), "not in team-b's namespace");
  t.false(await may(files('team-a'), 'create', 'kustomize.toolkit.fluxcd.io', 'kustomizations', 'team-a'));
  t.false(await may(files('team-a'), 'create', 'source.toolkit.fluxcd.io', 'gitrepositories', 'team-a'));
  t.false(await may(files('team-a'), 'get', '', 'secrets', 'team-a'), "not the pools' SSH keys");
  t.false(
    await may(files('team-a'), 'create', 'rbac.authorization.k8s.io', 'clusterrolebindings'),
    'nothing cluster-wide',
  );
  t.false(await may(files('team-a'), 'create', 'rbac.authorization.k8s.io', 'rolebindings', 'team-a'));
  // What Helm does for a HelmRelease of team-a: the chart's objects in team-a only.
  for (const [group, resource] of [
    ['cluster.x-k8s.io', 'clusters'],
    ['cluster.x-k8s.io', 'machinedeployments'],
    ['controlplane.cluster.x-k8s.io', 'kubeadmcontrolplanes'],
    ['infrastructure.cluster.x-k8s.io', 'baremetalmachinetemplates'],
    ['kustomize.toolkit.fluxcd.io', 'kustomizations'],
  ] as const) {
    t.true(await may(helm('team-a'), 'create', group, resource, 'team-a'), `${resource} in team-a`);
    t.false(await may(helm('team-a'), 'create', group, resource, 'team-b'), `no ${resource} in team-b`);
  }
  t.false(
    await may(helm('team-a'), 'create', 'infrastructure.cluster.x-k8s.io', 'baremetalhostpools', 'team-a'),
    'no pools',
  );
  t.false(
    await may(helm('team-a'), 'create', 'rbac.authorization.k8s.io', 'clusterrolebindings'),
    'nothing cluster-wide',
  );
});

/** URL plural of each kind the add-ons hold (what Flux applies to the workload clusters). */
const addonPlurals: Record<string, string> = {
  ServiceAccount: 'serviceaccounts',
  ClusterRole: 'clusterroles',
  ClusterRoleBinding: 'clusterrolebindings',
  ConfigMap: 'configmaps',
  DaemonSet: 'daemonsets',
};

test("every add-on the teams' defaults name is a folder of the repository whose objects a Kubernetes API server accepts", async (t) => {
  const files = filesOf(exampleRepoDir);
  const named = ofKind('ConfigMap')
    .filter((c) => c.metadata.name === 'cluster-defaults')
    .flatMap((c) => (parse(c.data!['values.yaml']!).addons?.kustomizations ?? []) as Array<{ path: string }>);
  t.true(named.length > 0, 'the teams get add-ons from Git');
  for (const { path } of named) {
    const dir = path.replace(/^\.\//, '');
    const k = files.get(`${dir}/kustomization.yaml`);
    t.truthy(k, `${dir}/kustomization.yaml exists`);
    const kustomization = parse(k!) as { resources: string[]; images?: Array<{ name: string; newTag?: string }> };
    for (const r of kustomization.resources) {
      const text = files.get(`${dir}/${r}`);
      t.truthy(text, `${dir}: resource ${r} exists`);
      for (const d of parseAllDocuments(text!)) {
        const o = d.toJS() as RepoObject;
        const plural = addonPlurals[o.kind];
        t.truthy(plural, `${dir}/${r}: kind ${o.kind} is not known to this test; add its plural to addonPlurals`);
        await t.notThrowsAsync(dryRunApply(o, plural!), `${dir}/${r}: ${o.kind} ${o.metadata.name}`);
      }
    }
    for (const i of kustomization.images ?? [])
      if (i.name === KUBE_ROUTER_IMAGE)
        t.is(i.newTag, versions().KUBE_ROUTER_VERSION, `${dir}: the kube-router the lab builds (hack/versions.env)`);
  }
});

/** The values helm-controller gives a release: its valuesFrom ConfigMaps' keys, then spec.values over them. */
function valuesFiles(hr: RepoObject, files: Map<string, string>, dir: string): string[] {
  const all = [...files].flatMap(([f, text]) =>
    f.endsWith('.yaml') ? parseAllDocuments(text).map((d) => d.toJS() as RepoObject) : [],
  );
  const out: string[] = [];
  for (const [i, v] of (
    (hr.spec!.valuesFrom ?? []) as Array<{ kind: string; name: string; valuesKey?: string }>
  ).entries()) {
    const cm = all.find(
      (o) => o.kind === v.kind && o.metadata.name === v.name && o.metadata.namespace === hr.metadata.namespace,
    );
    if (!cm) throw new Error(`${hr.metadata.name}: ${v.kind} ${v.name} not found`);
    out.push(join(dir, `from-${i}.yaml`));
    writeFileSync(out.at(-1)!, cm.data![v.valuesKey ?? 'values.yaml']!);
  }
  out.push(join(dir, 'values.yaml'));
  writeFileSync(out.at(-1)!, stringify(hr.spec!.values ?? {}));
  return out;
}

/** Renders every cluster of a set of repository files with the real helm and dry-runs what it makes. */
async function renderClusters(t: import('ava').ExecutionContext, files: Map<string, string>): Promise<number> {
  const releases = [...files]
    .filter(([f]) => f.startsWith('clusters/') && f.endsWith('.yaml'))
    .map(([f, text]) => ({ file: f, hr: parse(text) as RepoObject }));
  const pools = [...files]
    .filter(([f]) => f.endsWith('pool.yaml'))
    .map(([, text]) => parse(text) as RepoObject)
    .map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
  let count = 0;
  for (const { file, hr } of releases) {
    const ns = hr.metadata.namespace!;
    const dir = mkdtempSync(join(cp.dir, 'values-'));
    const args = valuesFiles(hr, files, dir).flatMap((f) => ['-f', f]);
    const r = await helm(['template', hr.metadata.name, chartDir, '--namespace', ns, ...args]);
    t.is(r.exitCode, 0, `${file}: helm template: ${r.stderr}`);
    const rendered = parseAllDocuments(r.stdout)
      .map((d) => d.toJS() as Rendered | null)
      .filter((d): d is Rendered => d !== null);
    t.true(
      rendered.some((o) => o.kind === 'Cluster'),
      `${file}: a Cluster is rendered`,
    );
    for (const o of rendered) {
      const pool = o.kind === 'BareMetalMachineTemplate' ? o.spec.template?.spec?.poolRef?.name : undefined;
      if (pool)
        t.true(pools.includes(`${ns}/${pool}`), `${file}: ${o.metadata.name} takes hosts of ${ns}'s pool ${pool}`);
      const path = `/apis/${o.apiVersion}/namespaces/${ns}/${chartPlurals[o.kind]}?dryRun=All&fieldValidation=Strict`;
      await t.notThrowsAsync(raw(cp.kc, 'POST', path, o), `${file}: ${o.kind} ${o.metadata.name}`);
      count++;
    }
  }
  return count;
}

test("each cluster's values over its team's defaults render with the real helm into objects the API server accepts", async (t) => {
  t.timeout(10 * 60_000); // helm may be installed from its Go module first
  const n = await renderClusters(t, filesOf(exampleRepoDir));
  t.log(`${n} objects rendered and accepted`);
});

test('the lab adjustments (URLs, hosts and keys, endpoints, the lab defaults) keep every file valid', async (t) => {
  t.timeout(10 * 60_000);
  const labValues = parse(readFileSync(join(chartDir, 'ci', 'lab.yaml'), 'utf8')) as Record<string, unknown>;
  const fp = (i: number) => `SHA256:${Buffer.alloc(32, i).toString('base64').replace(/=+$/, '')}`;
  const files = siteFiles({
    clustersUrl: 'http://10.250.0.1:8080/clusters.git',
    chartsUrl: 'http://10.250.0.1:8080/capbm-charts.git',
    teams: {
      'team-a': [1, 2, 3].map((i) => ({ address: `10.250.9.${i}`, hostKeyFingerprint: fp(i) })),
    },
    clusters: { 'team-a/alpha': '10.250.9.100' },
    defaults: { kubeadm: labValues.kubeadm },
    images: labImages(),
  });
  t.false(
    [...files.keys()].some((f) => f.includes('team-b')),
    'a team the site does not have is left out',
  );
  t.regex(files.get('teams/team-a/pool.yaml')!, /# The hosts team-a's clusters run on/, 'comments are kept');
  const pool = parse(files.get('teams/team-a/pool.yaml')!) as RepoObject;
  t.deepEqual(pool.spec!.addresses, ['10.250.9.1', '10.250.9.2', '10.250.9.3']);
  t.deepEqual(pool.spec!.hostKeyPolicy.pinned['10.250.9.2'], [fp(2)]);
  const defaults = parse((parse(files.get('teams/team-a/cluster-defaults.yaml')!) as RepoObject).data!['values.yaml']!);
  t.is(defaults.kubeadm.imageRepository, 'registry.capbm.lab');
  t.is(defaults.kubeadm.kubelet.cgroupDriver, 'cgroupfs');
  const flux = parseAllDocuments(files.get('flux/clusters.yaml')!).map((d) => d.toJS() as RepoObject);
  t.is(flux[0]!.spec!.url, 'http://10.250.0.1:8080/clusters.git');
  const sources = parseAllDocuments(files.get('teams/team-a/sources.yaml')!).map((d) => d.toJS() as RepoObject);
  t.deepEqual(
    sources.map((s) => [s.metadata.name, s.spec!.url]),
    [
      ['capbm-charts', 'http://10.250.0.1:8080/capbm-charts.git'],
      ['platform-addons', 'http://10.250.0.1:8080/clusters.git'],
    ],
  );
  const images = (parse(files.get('addons/kube-router/kustomization.yaml')!) as { images: Array<{ newName: string }> })
    .images;
  t.is(images[0]!.newName, 'registry.capbm.lab/kube-router', "the add-on's image from the lab registry");
  for (const [file, text] of files) {
    if (!file.endsWith('.yaml') || file.startsWith('addons/')) continue;
    for (const d of parseAllDocuments(text)) {
      const o = d.toJS() as RepoObject;
      await t.notThrowsAsync(dryRunApply(o, repoPlurals[o.kind]!), `${file}: ${o.kind} ${o.metadata.name}`);
    }
  }
  t.true((await renderClusters(t, files)) > 0);
});

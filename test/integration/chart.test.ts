// charts/capbm-cluster with the real helm: every values file under ci/ renders objects the real
// kube-apiserver accepts (genuine CAPI CRDs and ours, server-side dry run, unknown fields refused);
// every file under ci/bad/ is refused with the message its first lines expect; each values file
// followed by the next is a valid rollout (a template's name changes exactly when its spec does,
// and what references it follows); the lab's values make what the lab's clusterctl template makes;
// and a real install and upgrade through the numbered files keeps every template (Helm), after which
// the template garbage collector leaves exactly those of the last release, and none after uninstall.
import test from 'ava';
import { isDeepStrictEqual } from 'node:util';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { raw } from '../../provider/kube/raw.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { chartPlurals, labClusterObjects, type LabClusterObject } from '../harness/env.ts';
import { chartDir, helm, helmBinary, renderChart, type Rendered } from '../harness/helm.ts';
import { installFluxCrds } from '../harness/flux.ts';
import { createLogger } from '../../common/log.ts';
import { TemplateGcLabel, templateGcControllers } from '../../provider/controllers/template-gc.ts';
import { EventRecorder } from '../../provider/runtime/events.ts';
import { startManager } from '../../provider/runtime/manager.ts';
import { waitFor } from '../harness/process.ts';

const ci = join(chartDir, 'ci');
const goodFiles = readdirSync(ci)
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const badFiles = readdirSync(join(ci, 'bad'))
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const NS = 'team-a';

let cp: ControlPlane;
test.before(async () => {
  cp = await startControlPlane();
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
  await installFluxCrds(cp.kc);
  await raw(cp.kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
});
test.after.always(async () => {
  await cp?.stop();
});

const render = async (file: string) => {
  const r = await renderChart(join(ci, file), { namespace: NS });
  if (r.error) throw new Error(`helm template with ci/${file} failed: ${r.error}`);
  return r.objects;
};

const TEMPLATE_KINDS = ['BareMetalMachineTemplate', 'KubeadmConfigTemplate'];
const HASH = /-[0-9a-f]{8}$/;
/** A template's family: its kind and name without the hash ("BareMetalMachineTemplate/demo-md-0"). */
const family = (o: Rendered) => `${o.kind}/${o.metadata.name.replace(HASH, '')}`;
const key = (kind: string, name: string) => `${kind}/${name}`;

/** Every reference between the rendered objects, as "Kind/name" of the referrer and the target. */
function references(objects: Rendered[]): Array<{ from: string; to: string }> {
  const out: Array<{ from: string; to: string }> = [];
  const add = (o: Rendered, ref: { kind: string; name: string } | undefined) => {
    if (ref) out.push({ from: key(o.kind, o.metadata.name), to: key(ref.kind, ref.name) });
  };
  for (const o of objects) {
    add(o, o.spec.controlPlaneRef);
    if (o.kind === 'Cluster') add(o, o.spec.infrastructureRef);
    add(o, o.spec.machineTemplate?.spec?.infrastructureRef);
    add(o, o.spec.template?.spec?.infrastructureRef);
    add(o, o.spec.template?.spec?.bootstrap?.configRef);
  }
  return out;
}

// Serial tests run first: which helm the tests use is said once.
test.serial('the tests use the real helm CLI', async (t) => {
  const bin = await helmBinary();
  t.log(`helm: ${bin}`);
  const v = await helm(['version', '--short']);
  t.is(v.exitCode, 0, v.stderr);
});

for (const file of goodFiles) {
  test(`ci/${file}: lints, renders, every reference resolves, the API server accepts every object (dry run)`, async (t) => {
    const lint = await helm(['lint', '--strict', chartDir, '--values', join(ci, file)]);
    t.is(lint.exitCode, 0, `helm lint --strict: ${lint.stdout}${lint.stderr}`);
    const objects = await render(file);
    const names = new Set(objects.map((o) => key(o.kind, o.metadata.name)));
    for (const r of references(objects)) t.true(names.has(r.to), `${r.from} references ${r.to}, which is not rendered`);
    for (const kind of ['Cluster', 'BareMetalCluster', 'KubeadmControlPlane', 'BareMetalMachineTemplate'])
      t.true(
        objects.some((o) => o.kind === kind),
        `a ${kind} is rendered`,
      );
    for (const mhc of objects.filter((o) => o.kind === 'MachineHealthCheck')) {
      const sel = mhc.spec.selector.matchLabels as Record<string, string>;
      const target =
        sel['cluster.x-k8s.io/control-plane'] !== undefined ||
        objects.some((o) => o.kind === 'MachineDeployment' && isDeepStrictEqual(o.spec.template.metadata.labels, sel));
      t.true(target, `MachineHealthCheck ${mhc.metadata.name} selects machines the chart makes`);
    }
    for (const t2 of objects.filter((o) => TEMPLATE_KINDS.includes(o.kind))) {
      t.is(
        t2.metadata.annotations?.['helm.sh/resource-policy'],
        'keep',
        `${t2.kind} ${t2.metadata.name} is kept by Helm`,
      );
    }
    for (const k of objects.filter((o) => o.kind === 'Kustomization')) {
      const cluster = objects.find((o) => o.kind === 'Cluster')!.metadata.name;
      t.is(k.spec.kubeConfig.secretRef.name, `${cluster}-kubeconfig`, `${k.metadata.name} applies to the new cluster`);
      t.is(k.spec.deletionPolicy, 'Orphan', `${k.metadata.name}: deleting the cluster never waits on it`);
      t.is(k.spec.sourceRef.namespace, undefined, `${k.metadata.name}: its source is in the release's namespace`);
    }
    for (const o of objects) {
      t.is(o.metadata.namespace, NS);
      const path = `/apis/${o.apiVersion}/namespaces/${NS}/${chartPlurals[o.kind]}?dryRun=All&fieldValidation=Strict`;
      await t.notThrowsAsync(raw(cp.kc, 'POST', path, o), `${o.kind} ${o.metadata.name}`);
    }
  });
}

/** The "# expect: ..." lines at the top of a bad values file. */
const expectations = (file: string) =>
  readFileSync(join(ci, 'bad', file), 'utf8')
    .split('\n')
    .map((l) => /^# expect: (.*)$/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined);

for (const file of badFiles) {
  test(`ci/bad/${file}: refused, with the message a team can act on`, async (t) => {
    const want = expectations(file);
    t.true(want.length > 0, 'the file says what message it expects (# expect: ...)');
    const r = await renderChart(join(ci, 'bad', file), { namespace: NS });
    t.is(r.objects.length, 0, 'nothing is rendered');
    for (const w of want) t.true(r.error?.includes(w), `helm says "${w}"; it said:\n${r.error}`);
  });
}

interface Rollout {
  /** Template families whose name changed (a new template: the machines are replaced). */
  replaced: string[];
  /** Template families in both renders with the same name. */
  kept: string[];
}

/** Checks B as an upgrade of A and says which templates it replaces. */
function rollout(a: Rendered[], b: Rendered[]): { rollout: Rollout; problems: string[] } {
  const problems: string[] = [];
  const templatesOf = (objs: Rendered[]) =>
    new Map(objs.filter((o) => TEMPLATE_KINDS.includes(o.kind)).map((o) => [family(o), o]));
  const [ta, tb] = [templatesOf(a), templatesOf(b)];
  const out: Rollout = { replaced: [], kept: [] };
  for (const [fam, nb] of tb) {
    const na = ta.get(fam);
    if (!na) continue;
    const sameSpec = isDeepStrictEqual(na.spec, nb.spec);
    const sameName = na.metadata.name === nb.metadata.name;
    if (sameSpec !== sameName)
      problems.push(`${fam}: spec ${sameSpec ? 'same' : 'changed'} but name ${sameName ? 'same' : 'changed'}`);
    (sameName ? out.kept : out.replaced).push(fam);
  }
  const names = new Set(b.map((o) => key(o.kind, o.metadata.name)));
  for (const r of references(b)) if (!names.has(r.to)) problems.push(`${r.from} references ${r.to}, not rendered`);
  return { rollout: out, problems };
}

test('each values file followed by the next is a valid rollout: a template is new exactly when its spec changed', async (t) => {
  const renders = await Promise.all(goodFiles.map(render));
  for (let i = 1; i < goodFiles.length; i++) {
    const { problems } = rollout(renders[i - 1]!, renders[i]!);
    t.deepEqual(problems, [], `ci/${goodFiles[i - 1]} -> ci/${goodFiles[i]}`);
  }
  // The story the numbered files tell, as a team would see it roll.
  const step = (from: string, to: string) => {
    const [a, b] = [renders[goodFiles.indexOf(from)]!, renders[goodFiles.indexOf(to)]!];
    return { ...rollout(a, b).rollout, a, b };
  };
  const scale = step('01-minimal.yaml', '02-scale-workers.yaml');
  t.deepEqual(scale.replaced, [], 'scaling replaces no template');
  const upgrade = step('03-two-node-groups.yaml', '04-kubernetes-upgrade.yaml');
  t.deepEqual(
    upgrade.replaced,
    [],
    'a version bump keeps the templates (the version is on the KCP and MachineDeployments)',
  );
  t.true(
    upgrade.b
      .filter((o) => ['KubeadmControlPlane', 'MachineDeployment'].includes(o.kind))
      .every((o) => [o.spec.version, o.spec.template?.spec?.version].includes('v1.37.0')),
  );
  const kubelet = step('04-kubernetes-upgrade.yaml', '05-kubelet-change.yaml');
  t.deepEqual(kubelet.replaced.sort(), ['KubeadmConfigTemplate/demo-gpu', 'KubeadmConfigTemplate/demo-md-0']);
  const ha = step('05-kubelet-change.yaml', '06-ha-control-plane.yaml');
  t.deepEqual(ha.replaced, ['BareMetalMachineTemplate/demo-control-plane']);
  const kcp = ha.b.find((o) => o.kind === 'KubeadmControlPlane')!;
  t.is(
    kcp.spec.machineTemplate.spec.infrastructureRef.name,
    ha.b.find((o) => family(o) === 'BareMetalMachineTemplate/demo-control-plane')!.metadata.name,
    'the KubeadmControlPlane points at the new template',
  );
});

/** The lab template's kube-proxy command, as the document it appends to kubeadm's init configuration. */
function appendedByPrintf(cmd: string): unknown {
  const m = /printf -- '(.*)' >> \/run\/kubeadm\/kubeadm\.yaml/.exec(cmd);
  return m ? parse(m[1]!.replace(/\\n/g, '\n').replace(/^\s*---/, '')) : undefined;
}

/** The spec with what differs only in form made equal: template names, file content as YAML, kube-proxy. */
function normalized(o: { kind: string; spec: Record<string, any> }): { spec: unknown; kubeProxy?: unknown } {
  const spec = structuredClone(o.spec);
  let kubeProxy: unknown;
  const kcs = o.kind === 'KubeadmControlPlane' ? spec.kubeadmConfigSpec : spec.template?.spec;
  for (const ref of [
    spec.machineTemplate?.spec?.infrastructureRef,
    spec.template?.spec?.infrastructureRef,
    spec.template?.spec?.bootstrap?.configRef,
  ])
    if (ref) ref.name = ref.name.replace(HASH, '');
  if (kcs?.files) {
    const proxy = kcs.files.find((f: { path: string }) => f.path === '/run/kubeadm/kube-proxy-configuration.yaml');
    if (proxy) kubeProxy = parse(proxy.content.replace(/^\s*---/, ''));
    kcs.files = kcs.files
      .filter((f: unknown) => f !== proxy)
      .map((f: { content: string }) => ({ ...f, content: parse(f.content) }));
  }
  if (kcs?.preKubeadmCommands) {
    const cmds = kcs.preKubeadmCommands as string[];
    kubeProxy ??= cmds.map(appendedByPrintf).find((x) => x !== undefined);
    kcs.preKubeadmCommands = cmds.filter((c) => !c.includes('kubeadm.yaml'));
    if (kcs.preKubeadmCommands.length === 0) delete kcs.preKubeadmCommands;
  }
  return { spec, ...(kubeProxy ? { kubeProxy } : {}) };
}

test('ci/lab.yaml makes the cluster the lab makes from cluster-template.yaml (same specs, kube-proxy as a value)', async (t) => {
  const chart = await render('lab.yaml');
  const lb = { address: '10.250.0.100' } as Parameters<typeof labClusterObjects>[0]['lb'];
  const lab = labClusterObjects({ lb }, { namespace: NS, name: 'demo', pool: 'rack', controlPlane: 1, workers: 2 });
  const byKind = (objs: Array<LabClusterObject | Rendered>) =>
    Object.fromEntries(objs.map((o) => [`${o.kind}/${o.metadata.name.replace(HASH, '')}`, normalized(o)]));
  const [mine, theirs] = [byKind(chart), byKind(lab)];
  t.deepEqual(Object.keys(mine).sort(), Object.keys(theirs).sort());
  for (const k of Object.keys(theirs)) {
    if (k === 'Cluster/demo') {
      // The chart also says the service CIDR, which the template leaves to kubeadm's default.
      const spec = structuredClone((mine[k] as { spec: any }).spec);
      t.deepEqual(spec.clusterNetwork.services, { cidrBlocks: ['10.96.0.0/12'] });
      delete spec.clusterNetwork.services;
      t.deepEqual(spec, theirs[k]!.spec, k);
    } else t.deepEqual(mine[k], theirs[k], k);
  }
  const cluster = chart.find((o) => o.kind === 'Cluster')!;
  t.is(cluster.metadata.labels?.cni, 'kube-router', "the lab's ClusterResourceSet selects it");
});

/** The labelled templates in a namespace, as "Kind/name". */
async function templatesOnServer(ns: string): Promise<string[]> {
  const sel = encodeURIComponent(`${TemplateGcLabel}=true`);
  const lists = await Promise.all(
    [
      [
        'BareMetalMachineTemplate',
        `/apis/infrastructure.cluster.x-k8s.io/v1alpha1/namespaces/${ns}/baremetalmachinetemplates`,
      ],
      ['KubeadmConfigTemplate', `/apis/bootstrap.cluster.x-k8s.io/v1beta2/namespaces/${ns}/kubeadmconfigtemplates`],
    ].map(async ([kind, path]) => {
      const l = await raw<{ items: Array<{ metadata: { name: string } }> }>(
        cp.kc,
        'GET',
        `${path}?labelSelector=${sel}`,
      );
      return l.items.map((i) => key(kind!, i.metadata.name));
    }),
  );
  return lists.flat().sort();
}

test('helm install, then upgrade through every numbered values file on the API server: Helm keeps the old templates, the collector removes them, and the rest after uninstall', async (t) => {
  const ns = 'team-b';
  await raw(cp.kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const files = goodFiles.filter((f) => /^\d/.test(f));
  const every = new Set<string>();
  let last: Rendered[] = [];
  for (const f of files) {
    const r = await helm([
      'upgrade',
      '--install',
      'demo',
      chartDir,
      '-n',
      ns,
      '-f',
      join(ci, f),
      '--kubeconfig',
      cp.kubeconfigPath,
    ]);
    t.is(r.exitCode, 0, `helm upgrade --install with ci/${f}: ${r.stderr}`);
    if (f === files[0]) {
      t.regex(r.stdout, /kubectl get secret demo-kubeconfig -n team-b/, 'NOTES say where the kubeconfig is');
      t.regex(r.stdout, /clusterctl describe cluster demo -n team-b/);
    }
    last = (await renderChart(join(ci, f), { namespace: ns })).objects;
    for (const o of last.filter((x) => TEMPLATE_KINDS.includes(x.kind))) every.add(key(o.kind, o.metadata.name));
  }
  t.deepEqual(
    await templatesOnServer(ns),
    [...every].sort(),
    'Helm deleted no template (helm.sh/resource-policy: keep)',
  );
  const wanted = last
    .filter((o) => TEMPLATE_KINDS.includes(o.kind))
    .map((o) => key(o.kind, o.metadata.name))
    .sort();
  t.true(wanted.length < every.size, 'the upgrades replaced templates');
  const log = createLogger();
  const gc = await startManager(
    { kc: cp.kc, signals: [], metricsBindAddress: '0', healthProbeBindAddress: '0', leaderElect: false, log },
    templateGcControllers({
      kc: cp.kc,
      log,
      recorder: new EventRecorder(cp.kc, { log }),
      namespace: ns,
      graceMs: 1000,
    }),
  );
  t.teardown(() => gc.stop());
  const final = await waitFor(
    'the collector to leave only the templates of the last release',
    async () => {
      const have = await templatesOnServer(ns);
      return isDeepStrictEqual(have, wanted) ? have : undefined;
    },
    60_000,
    500,
  );
  t.deepEqual(final, wanted);
  // helm uninstall leaves the kept templates; once the Cluster is gone the collector takes them.
  const un = await helm(['uninstall', 'demo', '-n', ns, '--kubeconfig', cp.kubeconfigPath]);
  t.is(un.exitCode, 0, un.stderr);
  await waitFor(
    'the collector to remove the templates of the uninstalled cluster',
    async () => ((await templatesOnServer(ns)).length === 0 ? true : undefined),
    60_000,
    500,
  );
  t.pass();
});

// CAPBM as a clusterctl provider, with the real clusterctl and the real kube-apiserver: hack/release
// builds the local repository; `clusterctl generate cluster` makes each flavor from it (and refuses,
// in clusterctl's words, when a variable is missing); the manifests pass a server-side dry run
// against the genuine CAPI CRDs and ours; the real CAPI core manager (ClusterTopology on) turns the
// clusterclass flavor's Cluster into objects whose templates carry the patched variables;
// `clusterctl init --infrastructure capbm` installs CAPBM
// (with CAPI core, CABPK and KCP from their local repositories) on a bare API server, and
// `clusterctl upgrade plan` reads every installed provider's repository.
import test from 'ava';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { raw } from '../../provider/kube/raw.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { waitFor } from '../harness/process.ts';
import {
  clusterctl,
  installCertManagerCrds,
  kubectl,
  release,
  writeClusterctlConfig,
  type RunResult,
} from '../harness/clusterctl.ts';
import { repoRoot, versions } from '../harness/paths.ts';

const VERSION = versions().KUBERNETES_VERSION!;
const VARIABLES = { CONTROL_PLANE_ENDPOINT_HOST: '10.250.0.100', BAREMETAL_POOL: 'rack1' };
const HTTP_BUNDLE = { source: 'HTTP', url: 'http://10.250.0.1:8080/bundle', sha256: 'a'.repeat(64) };

let dir: string;
let config: string;
let capbmVersion: string;
test.before(async () => {
  dir = mkdtempSync(join(mkdirp(join(repoRoot, '.cache', 'tmp')), 'clusterctl-'));
  const url = await release(join(dir, 'repository'));
  capbmVersion = /\/infrastructure-capbm\/(v[^/]+)\//.exec(url)![1]!;
  config = writeClusterctlConfig(join(dir, 'config'), url);
});
test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function mkdirp(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}

const show = (r: RunResult) => `exit ${r.exitCode}\n${r.stderr}\n${r.stdout}`.slice(0, 4000);
const kinds = (yaml: string) =>
  parseAllDocuments(yaml)
    .map((d) => (d.toJS() as { kind?: string } | null)?.kind)
    .filter((k): k is string => !!k)
    .sort();

function generate(kubeconfig: string, flavor: string | undefined, env: Record<string, string>) {
  return clusterctl(
    [
      'generate',
      'cluster',
      'demo',
      '--infrastructure',
      `capbm:${capbmVersion}`,
      ...(flavor ? ['--flavor', flavor] : []),
      '--kubernetes-version',
      VERSION,
      '--worker-machine-count',
      '2',
      '--target-namespace',
      'default',
      '--kubeconfig',
      kubeconfig,
    ],
    { config, env },
  );
}

test.serial(
  'generate cluster: each flavor passes a server-side dry run; a missing variable is named by clusterctl',
  async (t) => {
    const cp = await startControlPlane();
    try {
      await installCapiCrds(cp.kc);
      await installProviderCrds(cp.kc);
      const expected: Record<string, string[]> = {
        default: [
          'BareMetalCluster',
          'BareMetalMachineTemplate',
          'BareMetalMachineTemplate',
          'Cluster',
          'KubeadmConfigTemplate',
          'KubeadmControlPlane',
          'MachineDeployment',
          'MachineHealthCheck',
        ],
        clusterclass: [
          'BareMetalClusterTemplate',
          'BareMetalMachineTemplate',
          'BareMetalMachineTemplate',
          'Cluster',
          'ClusterClass',
          'KubeadmConfigTemplate',
          'KubeadmControlPlaneTemplate',
        ],
      };
      for (const flavor of ['default', 'clusterclass']) {
        const r = await generate(cp.kubeconfigPath, flavor === 'default' ? undefined : flavor, VARIABLES);
        t.is(r.exitCode, 0, `${flavor}: ${show(r)}`);
        t.deepEqual(kinds(r.stdout), expected[flavor], flavor);
        t.notRegex(r.stdout, /\$\{/, `${flavor}: every variable substituted`);
        t.regex(r.stdout, /\n\s+replicas: 2(\n|$)/, `${flavor}: two workers`);
        const dry = await kubectl(cp.kubeconfigPath, ['apply', '--dry-run=server', '-f', '-'], r.stdout);
        t.is(dry.exitCode, 0, `${flavor}: kubectl apply --dry-run=server: ${show(dry)}`);
        t.log(`${flavor}: ${dry.stdout.trim().split('\n').length} objects pass a server-side dry run`);
        for (const missing of Object.keys(VARIABLES)) {
          const env: Record<string, string> = { ...VARIABLES };
          delete env[missing];
          const r = await generate(cp.kubeconfigPath, flavor === 'default' ? undefined : flavor, env);
          t.not(r.exitCode, 0, `${flavor} without ${missing}`);
          t.regex(r.stderr, new RegExp(`value for variables \\[${missing}\\] is not set`), show(r));
        }
      }
    } finally {
      await cp.stop();
    }
  },
);

interface Obj {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, any>;
}

/** The one object of a plural the topology made for cluster demo (they carry generated names). */
function topologyObject(cp: ControlPlane, path: string, match: (o: Obj) => boolean = () => true) {
  return waitFor(
    `${path} of cluster demo`,
    async () => {
      const list = await raw<{ items: Obj[] }>(
        cp.kc,
        'GET',
        `${path}?labelSelector=${encodeURIComponent('cluster.x-k8s.io/cluster-name=demo')}`,
      );
      return list.items.find(match);
    },
    60_000,
    500,
  );
}

test.serial('clusterclass flavor: Cluster API topologies patch the variables into the templates', async (t) => {
  const cp = await startControlPlane({ capi: ['core'], capiFeatureGates: 'ClusterTopology=true' });
  try {
    await installProviderCrds(cp.kc);
    const r = await generate(cp.kubeconfigPath, 'clusterclass', { ...VARIABLES, KUBELET_CGROUP_DRIVER: 'cgroupfs' });
    t.is(r.exitCode, 0, show(r));
    // Host labels for the whole cluster, and other ones for the workers (a class variable override).
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    const topology = docs.find((d) => d.kind === 'Cluster')!.spec.topology;
    // Stock hosts: the bundle from the provider for the whole cluster, over HTTP for the workers.
    topology.variables.push(
      { name: 'hostLabels', value: { rack: 'r1' } },
      { name: 'hostPreparation', value: { bundle: { source: 'Provider' } } },
    );
    topology.workers.machineDeployments[0].variables = {
      overrides: [
        { name: 'hostLabels', value: { rack: 'r2', disk: 'ssd' } },
        { name: 'hostPreparation', value: { bundle: HTTP_BUNDLE, onVersionMismatch: 'Replace' } },
      ],
    };
    const applied = await kubectl(cp.kubeconfigPath, ['apply', '-f', '-'], docs.map((d) => stringify(d)).join('---\n'));
    t.is(applied.exitCode, 0, show(applied));

    const infra = '/apis/infrastructure.cluster.x-k8s.io/v1alpha1/namespaces/default';
    const bmc = await topologyObject(cp, `${infra}/baremetalclusters`);
    t.deepEqual(bmc.spec.controlPlaneEndpoint, { host: VARIABLES.CONTROL_PLANE_ENDPOINT_HOST, port: 6443 });
    // The control plane's template and the worker class's (labelled with its topology name).
    const isWorker = (o: Obj) => o.metadata.labels?.['topology.cluster.x-k8s.io/deployment-name'] === 'md-0';
    const cpTemplate = await topologyObject(cp, `${infra}/baremetalmachinetemplates`, (o) => !isWorker(o));
    const mdTemplate = await topologyObject(cp, `${infra}/baremetalmachinetemplates`, isWorker);
    // The preparation's defaults are the CRD's (the variable's schema is the same: hack/generate.ts).
    t.deepEqual(cpTemplate.spec.template.spec, {
      poolRef: { name: VARIABLES.BAREMETAL_POOL },
      hostSelector: { matchLabels: { rack: 'r1' } },
      preparation: { bundle: { source: 'Provider' }, onVersionMismatch: 'Refuse', minFreeDiskMiB: 2048 },
    });
    t.deepEqual(mdTemplate.spec.template.spec, {
      poolRef: { name: VARIABLES.BAREMETAL_POOL },
      hostSelector: { matchLabels: { rack: 'r2', disk: 'ssd' } },
      preparation: { bundle: HTTP_BUNDLE, onVersionMismatch: 'Replace', minFreeDiskMiB: 2048 },
    });
    const kubelet =
      'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\nfailCgroupV1: true\n';
    const kcp = await topologyObject(
      cp,
      '/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/default/kubeadmcontrolplanes',
    );
    t.is(kcp.spec.version, VERSION);
    t.is(kcp.spec.kubeadmConfigSpec.clusterConfiguration.imageRepository, 'registry.k8s.io');
    t.is(kcp.spec.kubeadmConfigSpec.files[0].content, kubelet);
    const kct = await topologyObject(
      cp,
      '/apis/bootstrap.cluster.x-k8s.io/v1beta2/namespaces/default/kubeadmconfigtemplates',
    );
    t.is(kct.spec.template.spec.files[0].content, kubelet);
    const md = await topologyObject(cp, '/apis/cluster.x-k8s.io/v1beta2/namespaces/default/machinedeployments');
    t.is(md.spec.replicas, 2);
    t.is(md.spec.template.spec.version, VERSION);

    // A second cluster of the same class: clusterctl leaves out the ClusterClass the namespace has.
    const second = await clusterctl(
      [
        'generate',
        'cluster',
        'demo2',
        '--infrastructure',
        `capbm:${capbmVersion}`,
        '--flavor',
        'clusterclass',
        '--kubernetes-version',
        VERSION,
        '--target-namespace',
        'default',
        '--kubeconfig',
        cp.kubeconfigPath,
      ],
      { config, env: VARIABLES },
    );
    t.is(second.exitCode, 0, show(second));
    t.deepEqual(kinds(second.stdout), ['Cluster']);

    // A preparation the machine templates' rules refuse (an HTTP bundle not pinned by a sha256) is
    // named on the Cluster: Cluster API's webhook refuses it with the same rules (the variable's
    // schema carries them); without webhooks, as here, the template is refused and the topology
    // reports why.
    const bad = parseAllDocuments(second.stdout).map((d) => d.toJS() as Obj);
    bad[0]!.spec.topology.variables.push({
      name: 'hostPreparation',
      value: { bundle: { source: 'HTTP', url: HTTP_BUNDLE.url } },
    });
    const applyBad = await kubectl(cp.kubeconfigPath, ['apply', '-f', '-'], stringify(bad[0]));
    t.is(applyBad.exitCode, 0, show(applyBad));
    const refused = await waitFor(
      'cluster demo2 TopologyReconciled=False',
      async () => {
        const c = await raw<{ status?: { conditions?: Array<{ type: string; status: string; message?: string }> } }>(
          cp.kc,
          'GET',
          '/apis/cluster.x-k8s.io/v1beta2/namespaces/default/clusters/demo2',
        );
        return c.status?.conditions?.find(
          (x) => x.type === 'TopologyReconciled' && x.status === 'False' && x.message?.includes('bundle'),
        );
      },
      60_000,
      500,
    );
    t.regex(refused.message ?? '', /bundle\.source HTTP needs bundle\.url and bundle\.sha256/);
  } finally {
    await cp.stop();
  }
});

test.serial('clusterctl init --infrastructure capbm installs it; upgrade plan reads it', async (t) => {
  const cp = await startControlPlane();
  try {
    await installCertManagerCrds(cp.kc);
    const init = await clusterctl(['init', '--infrastructure', 'capbm', '--kubeconfig', cp.kubeconfigPath], {
      config,
    });
    t.is(init.exitCode, 0, show(init));
    t.regex(init.stderr + init.stdout, /Skipping installing cert-manager as it is already installed/);
    t.regex(
      init.stderr + init.stdout,
      new RegExp(`Installing provider="infrastructure-capbm" version="${capbmVersion}"`),
    );

    const inventory = await kubectl(cp.kubeconfigPath, [
      'get',
      'providers.clusterctl.cluster.x-k8s.io',
      '-A',
      '-o',
      'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.type} {.version}{"\\n"}{end}',
    ]);
    t.is(inventory.exitCode, 0, show(inventory));
    const capi = versions().CAPI_VERSION!;
    t.deepEqual(inventory.stdout.trim().split('\n').sort(), [
      `capbm-system/infrastructure-capbm InfrastructureProvider ${capbmVersion}`,
      `capi-kubeadm-bootstrap-system/bootstrap-kubeadm BootstrapProvider ${capi}`,
      `capi-kubeadm-control-plane-system/control-plane-kubeadm ControlPlaneProvider ${capi}`,
      `capi-system/cluster-api CoreProvider ${capi}`,
    ]);
    // Every object of ours carries the provider label, the manager-secrets ClusterRole too.
    for (const what of [
      'customresourcedefinitions',
      'clusterroles',
      'clusterrolebindings',
      'deployments -n capbm-system',
      'services -n capbm-system',
      'roles -n capbm-system',
    ]) {
      const r = await kubectl(cp.kubeconfigPath, [
        'get',
        ...what.split(' '),
        '-l',
        'cluster.x-k8s.io/provider=infrastructure-capbm',
        '-o',
        'name',
      ]);
      t.is(r.exitCode, 0, show(r));
      t.not(r.stdout.trim(), '', `${what} labelled infrastructure-capbm`);
      if (what === 'clusterroles') t.regex(r.stdout, /clusterrole.rbac.authorization.k8s.io\/capbm-manager-secrets/);
      if (what === 'customresourcedefinitions') t.is(r.stdout.trim().split('\n').length, 6);
    }
    const manager = await kubectl(cp.kubeconfigPath, [
      'get',
      'deployment',
      'capbm-manager',
      '-n',
      'capbm-system',
      '-o',
      'jsonpath={.spec.template.spec.containers[0].name} {.spec.template.spec.containers[0].image}',
    ]);
    t.is(manager.stdout, `manager ghcr.io/capbm/capbm-manager:${capbmVersion}`, show(manager));

    const plan = await clusterctl(['upgrade', 'plan', '--kubeconfig', cp.kubeconfigPath], { config });
    t.is(plan.exitCode, 0, show(plan));
    const row = (next: string) =>
      new RegExp(`infrastructure-capbm\\s+capbm-system\\s+InfrastructureProvider\\s+${capbmVersion}\\s+${next}`);
    t.regex(plan.stdout, row('Already up to date'));
    t.regex(plan.stdout, /You are already up to date!/);
    t.log(plan.stdout.trim());

    // A newer release in the repository (a version folder beside this one) is offered.
    const newer = capbmVersion.replace(/\d+$/, (p) => String(Number(p) + 1));
    cpSync(
      join(dir, 'repository', 'infrastructure-capbm', capbmVersion),
      join(dir, 'repository', 'infrastructure-capbm', newer),
      {
        recursive: true,
      },
    );
    const next = await clusterctl(['upgrade', 'plan', '--kubeconfig', cp.kubeconfigPath], { config });
    t.is(next.exitCode, 0, show(next));
    t.regex(next.stdout, row(newer));
    t.regex(next.stdout, new RegExp(`clusterctl upgrade apply --contract v1beta2`));
  } finally {
    await cp.stop();
  }
});

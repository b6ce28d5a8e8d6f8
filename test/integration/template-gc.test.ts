// The template garbage collector against the real API server and the genuine CAPI CRDs: labelled
// machine templates go once no MachineDeployment, MachineSet or KubeadmControlPlane of their
// namespace references them, or once their Cluster is gone; referenced and unlabelled ones stay.
// The collector runs as the provider does: under its ServiceAccount and manifests/rbac.
import test from 'ava';
import { createLogger } from '../../common/log.ts';
import { TemplateGcLabel, templateGcControllers } from '../../provider/controllers/template-gc.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import { EventRecorder } from '../../provider/runtime/events.ts';
import { startManager, type Manager } from '../../provider/runtime/manager.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { waitFor } from '../harness/process.ts';
import { providerIdentity } from '../harness/env.ts';
import { loadKubeConfig } from '../../provider/runtime/manager.ts';

const NS = 'gc-a';
const OTHER_NS = 'gc-b';
const CAPI = '/apis/cluster.x-k8s.io/v1beta2/namespaces';
const BMMT = (ns: string) =>
  `/apis/infrastructure.cluster.x-k8s.io/v1alpha1/namespaces/${ns}/baremetalmachinetemplates`;
const KCT = (ns: string) => `/apis/bootstrap.cluster.x-k8s.io/v1beta2/namespaces/${ns}/kubeadmconfigtemplates`;

let cp: ControlPlane;
let manager: Manager;
test.before(async () => {
  cp = await startControlPlane();
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
  for (const name of [NS, OTHER_NS])
    await raw(cp.kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
});
test.after.always(async () => {
  await manager?.stop();
  await cp?.stop();
});

const labels = (cluster: string, gc = true) => ({
  'cluster.x-k8s.io/cluster-name': cluster,
  ...(gc ? { [TemplateGcLabel]: 'true' } : {}),
});

async function machineTemplate(name: string, o: { ns?: string; cluster?: string; gc?: boolean } = {}) {
  await raw(cp.kc, 'POST', BMMT(o.ns ?? NS), {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1alpha1',
    kind: 'BareMetalMachineTemplate',
    metadata: { name, labels: labels(o.cluster ?? 'demo', o.gc ?? true) },
    spec: { template: { spec: { poolRef: { name: 'rack' } } } },
  });
}

async function configTemplate(name: string, cluster = 'demo') {
  await raw(cp.kc, 'POST', KCT(NS), {
    apiVersion: 'bootstrap.cluster.x-k8s.io/v1beta2',
    kind: 'KubeadmConfigTemplate',
    metadata: { name, labels: labels(cluster) },
    spec: { template: { spec: { preKubeadmCommands: ['true'] } } },
  });
}

const machineSpec = (infra: string, bootstrap: string) => ({
  clusterName: 'demo',
  bootstrap: { configRef: { apiGroup: 'bootstrap.cluster.x-k8s.io', kind: 'KubeadmConfigTemplate', name: bootstrap } },
  infrastructureRef: { apiGroup: 'infrastructure.cluster.x-k8s.io', kind: 'BareMetalMachineTemplate', name: infra },
});

/** A MachineDeployment or MachineSet using the two templates. */
async function machineOwner(
  kind: 'MachineDeployment' | 'MachineSet',
  name: string,
  infra: string,
  boot: string,
  ns = NS,
) {
  const sel = { 'cluster.x-k8s.io/deployment-name': name };
  await raw(cp.kc, 'POST', `${CAPI}/${ns}/${kind.toLowerCase()}s`, {
    apiVersion: 'cluster.x-k8s.io/v1beta2',
    kind,
    metadata: { name },
    spec: {
      clusterName: 'demo',
      replicas: 0,
      selector: { matchLabels: sel },
      template: { metadata: { labels: sel }, spec: machineSpec(infra, boot) },
    },
  });
}

const exists = async (path: string) => {
  try {
    await raw(cp.kc, 'GET', path);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) return false;
    throw err;
  }
};
const gone = (path: string) =>
  waitFor(`${path} to be deleted`, async () => ((await exists(path)) ? undefined : true), 30_000, 200);

test.serial('setup: a cluster mid-rollout, an orphan, an unlabelled template, the collector running', async (t) => {
  await raw(cp.kc, 'POST', `${CAPI}/${NS}/clusters`, {
    apiVersion: 'cluster.x-k8s.io/v1beta2',
    kind: 'Cluster',
    metadata: { name: 'demo' },
    spec: { clusterNetwork: { serviceDomain: 'cluster.local' } },
  });
  for (const n of ['cp', 'md-new', 'md-old', 'orphan', 'shared']) await machineTemplate(n);
  await machineTemplate('unlabelled', { gc: false });
  await machineTemplate('of-a-gone-cluster', { cluster: 'gone' });
  for (const n of ['md-new', 'md-old', 'orphan']) await configTemplate(n);
  await machineOwner('MachineDeployment', 'demo-md-0', 'md-new', 'md-new');
  await machineOwner('MachineSet', 'demo-md-0-old', 'md-old', 'md-old');
  // A reference from another namespace protects nothing here.
  await machineOwner('MachineDeployment', 'elsewhere', 'shared', 'shared', OTHER_NS);
  await raw(cp.kc, 'POST', `/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/${NS}/kubeadmcontrolplanes`, {
    apiVersion: 'controlplane.cluster.x-k8s.io/v1beta2',
    kind: 'KubeadmControlPlane',
    metadata: { name: 'demo-control-plane' },
    spec: {
      replicas: 1,
      version: 'v1.36.3',
      machineTemplate: {
        spec: {
          infrastructureRef: {
            apiGroup: 'infrastructure.cluster.x-k8s.io',
            kind: 'BareMetalMachineTemplate',
            name: 'cp',
          },
        },
      },
      kubeadmConfigSpec: { preKubeadmCommands: ['true'] },
    },
  });
  // Under the provider's own ServiceAccount, with the ClusterRole of manifests/rbac.
  const kc = loadKubeConfig(await providerIdentity(cp));
  const log = createLogger();
  manager = await startManager(
    { kc, signals: [], metricsBindAddress: '0', healthProbeBindAddress: '0', leaderElect: false, log },
    templateGcControllers({ kc, log, recorder: new EventRecorder(kc, { log }), graceMs: 1500 }),
  );
  t.pass();
});

test.serial('unreferenced labelled templates are deleted; referenced and unlabelled ones stay', async (t) => {
  await gone(`${BMMT(NS)}/orphan`);
  await gone(`${KCT(NS)}/orphan`);
  await gone(`${BMMT(NS)}/shared`);
  await gone(`${BMMT(NS)}/of-a-gone-cluster`);
  for (const n of ['cp', 'md-new', 'md-old', 'unlabelled']) t.true(await exists(`${BMMT(NS)}/${n}`), n);
  for (const n of ['md-new', 'md-old']) t.true(await exists(`${KCT(NS)}/${n}`), n);
  const events = await raw<{ items: Array<{ reason: string; involvedObject: { name: string }; message: string }> }>(
    cp.kc,
    'GET',
    `/api/v1/namespaces/${NS}/events`,
  );
  const orphan = events.items.find((e) => e.reason === 'TemplateDeleted' && e.involvedObject.name === 'orphan');
  t.regex(orphan?.message ?? '', /no MachineDeployment, MachineSet or KubeadmControlPlane has referenced it/);
});

test.serial('the old MachineSet deleted after its rollout: its templates go', async (t) => {
  await raw(cp.kc, 'DELETE', `${CAPI}/${NS}/machinesets/demo-md-0-old`);
  await gone(`${BMMT(NS)}/md-old`);
  await gone(`${KCT(NS)}/md-old`);
  t.true(await exists(`${BMMT(NS)}/md-new`));
});

test.serial('a MachineDeployment moved to a new template: the previous one goes', async (t) => {
  await machineTemplate('md-newer');
  await raw(cp.kc, 'PATCH', `${CAPI}/${NS}/machinedeployments/demo-md-0`, {
    spec: { template: { spec: { infrastructureRef: { name: 'md-newer' } } } },
  });
  await gone(`${BMMT(NS)}/md-new`);
  t.true(await exists(`${BMMT(NS)}/md-newer`));
  t.true(await exists(`${KCT(NS)}/md-new`), 'the bootstrap template it still uses stays');
});

test.serial('the Cluster deleted: all its labelled templates go, the unlabelled one stays', async (t) => {
  await raw(cp.kc, 'DELETE', `${CAPI}/${NS}/clusters/demo`);
  for (const p of [`${BMMT(NS)}/cp`, `${BMMT(NS)}/md-newer`, `${KCT(NS)}/md-new`]) await gone(p);
  t.true(await exists(`${BMMT(NS)}/unlabelled`));
});

// Cluster API objects for harness tests: a minimal test-only infrastructure provider (two CRDs that
// carry the CAPI contract labels and nothing else) and helpers to create a Cluster, Machines with
// KubeadmConfigs, and to wait for what the real CAPI controllers do with them.
import {
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { applyCrds, waitForCrds } from './controlplane.ts';
import { waitFor } from './process.ts';

export const CAPI = 'cluster.x-k8s.io/v1beta2';
export const CABPK = 'bootstrap.cluster.x-k8s.io/v1beta2';
export const HARNESS_GROUP = 'infrastructure.cluster.x-k8s.io';
export const HARNESS = `${HARNESS_GROUP}/v1alpha1`;

// A CRD with the contract labels CAPI uses to resolve the kind's version
// (cluster-api util/contract: "cluster.x-k8s.io/<contract>: <versions>"), schemaless spec/status.
function harnessCrd(kind: string): KubernetesObject & Record<string, unknown> {
  const plural = `${kind.toLowerCase()}s`;
  const open = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${plural}.${HARNESS_GROUP}`,
      labels: { 'cluster.x-k8s.io/v1beta1': 'v1alpha1', 'cluster.x-k8s.io/v1beta2': 'v1alpha1' },
    },
    spec: {
      group: HARNESS_GROUP,
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: { openAPIV3Schema: { type: 'object', properties: { spec: open, status: open } } },
        },
      ],
    },
  };
}

export async function installHarnessInfraCrds(kc: KubeConfig): Promise<void> {
  await waitForCrds(kc, await applyCrds(kc, [harnessCrd('HarnessCluster'), harnessCrd('HarnessMachine')]));
}

export type Obj = KubernetesObject & { spec?: any; status?: any; data?: Record<string, string> };

export class Objects {
  readonly api: KubernetesObjectApi;
  readonly custom: CustomObjectsApi;
  constructor(kc: KubeConfig) {
    this.api = KubernetesObjectApi.makeApiClient(kc);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }
  create(obj: Obj): Promise<Obj> {
    return this.api.create(obj);
  }
  get(apiVersion: string, kind: string, namespace: string, name: string): Promise<Obj> {
    return this.api.read({ apiVersion, kind, metadata: { namespace, name } });
  }
  async tryGet(apiVersion: string, kind: string, namespace: string, name: string): Promise<Obj | undefined> {
    try {
      return await this.get(apiVersion, kind, namespace, name);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }
  /** Merge-patches the status subresource of a custom resource (plural: lowercased kind + "s"). */
  async patchStatus(obj: Obj, status: unknown): Promise<Obj> {
    const [group, version] = obj.apiVersion!.split('/') as [string, string];
    return (await this.custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version,
        namespace: obj.metadata!.namespace!,
        plural: `${obj.kind!.toLowerCase()}s`,
        name: obj.metadata!.name!,
        body: { status },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as Obj;
  }
}

export interface ClusterSpecOptions {
  namespace: string;
  name: string;
  endpoint?: { host: string; port: number };
}

/** A Cluster whose infrastructure is a HarnessCluster; not yet provisioned. */
export async function createCluster(o: Objects, c: ClusterSpecOptions): Promise<void> {
  const endpoint = c.endpoint ?? { host: '10.250.0.10', port: 6443 };
  await o.create({
    apiVersion: HARNESS,
    kind: 'HarnessCluster',
    metadata: { namespace: c.namespace, name: c.name },
    spec: { controlPlaneEndpoint: endpoint },
  });
  await o.create({
    apiVersion: CAPI,
    kind: 'Cluster',
    metadata: { namespace: c.namespace, name: c.name },
    spec: {
      clusterNetwork: { pods: { cidrBlocks: ['192.168.0.0/16'] }, serviceDomain: 'cluster.local' },
      infrastructureRef: { apiGroup: HARNESS_GROUP, kind: 'HarnessCluster', name: c.name },
    },
  });
}

/** Reports the HarnessCluster provisioned, as an infrastructure provider would (both contract generations). */
export async function markInfraClusterProvisioned(o: Objects, namespace: string, name: string): Promise<void> {
  const hc = await o.get(HARNESS, 'HarnessCluster', namespace, name);
  await o.patchStatus(hc, { initialization: { provisioned: true }, ready: true });
}

export interface MachineOptions {
  namespace: string;
  cluster: string;
  name: string;
  controlPlane: boolean;
  version?: string;
  /** KubeadmConfig spec. */
  kubeadm: Record<string, unknown>;
}

export async function createMachine(o: Objects, m: MachineOptions): Promise<void> {
  const labels: Record<string, string> = { 'cluster.x-k8s.io/cluster-name': m.cluster };
  if (m.controlPlane) labels['cluster.x-k8s.io/control-plane'] = '';
  await o.create({
    apiVersion: CABPK,
    kind: 'KubeadmConfig',
    metadata: { namespace: m.namespace, name: m.name, labels },
    spec: m.kubeadm,
  });
  await o.create({
    apiVersion: HARNESS,
    kind: 'HarnessMachine',
    metadata: { namespace: m.namespace, name: m.name, labels },
    spec: {},
  });
  await o.create({
    apiVersion: CAPI,
    kind: 'Machine',
    metadata: { namespace: m.namespace, name: m.name, labels },
    spec: {
      clusterName: m.cluster,
      version: m.version ?? 'v1.36.3',
      bootstrap: { configRef: { apiGroup: 'bootstrap.cluster.x-k8s.io', kind: 'KubeadmConfig', name: m.name } },
      infrastructureRef: { apiGroup: HARNESS_GROUP, kind: 'HarnessMachine', name: m.name },
    },
  });
}

/** Waits for CABPK to write the bootstrap data Secret named on the Machine; returns its data, decoded. */
export async function waitForBootstrapData(
  o: Objects,
  namespace: string,
  machine: string,
  timeoutMs = 60_000,
): Promise<{ secretName: string; value: string; format: string; secret: Obj }> {
  const secretName = await waitFor(
    `Machine ${namespace}/${machine} to get spec.bootstrap.dataSecretName`,
    async () => {
      const m = await o.get(CAPI, 'Machine', namespace, machine);
      return (m.spec?.bootstrap?.dataSecretName as string | undefined) || undefined;
    },
    timeoutMs,
    250,
  );
  const secret = await o.get('v1', 'Secret', namespace, secretName);
  const decode = (k: string) => Buffer.from(secret.data?.[k] ?? '', 'base64').toString('utf8');
  return { secretName, value: decode('value'), format: decode('format'), secret };
}

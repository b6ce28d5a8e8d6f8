// Which resource an informer, a patch or an event talks about, and how its URL is built.
// A kind is described once (group, version, plural, namespaced) so no code guesses plurals: ours
// come from the CRD table (api/kinds.ts), Kubernetes' and Cluster API's are listed here.
import { DNS1123_SUBDOMAIN, GROUP, VERSION, type ObjectMeta, type OwnerReference } from '../api/common.ts';
import { kinds as crdKinds } from '../api/kinds.ts';

export type { ObjectMeta, OwnerReference };

/** Enough of an object for the runtime: every Kubernetes object has this. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: Partial<ObjectMeta>;
  spec?: unknown;
  status?: unknown;
}

export interface ResourceKind {
  /** '' for the core group. */
  group: string;
  version: string;
  kind: string;
  /** Lower-case plural used in URLs, e.g. 'configmaps'. */
  plural: string;
  namespaced: boolean;
}

/** A name that cannot be an object name, refused before it reaches a URL. */
export class InvalidName extends Error {
  override name = 'InvalidName';
}

const validName = new RegExp(DNS1123_SUBDOMAIN);

/**
 * One path segment: a DNS-1123 name, encoded. Anything else (a "../other-namespace/..." planted in
 * a reference) is refused here, so no name can lead a request out of its namespace.
 */
export function seg(v: string): string {
  if (v.length > 253 || !validName.test(v))
    throw new InvalidName(
      `${JSON.stringify(v.slice(0, 80))} is not a valid object name (lower-case letters, digits, '-' and '.', at most 253)`,
    );
  return encodeURIComponent(v);
}

export const apiVersionOf = (k: ResourceKind): string => (k.group ? `${k.group}/${k.version}` : k.version);

/** Collection URL, e.g. /api/v1/namespaces/ns/configmaps or /apis/g/v/plural (all namespaces). */
export function collectionPath(k: ResourceKind, namespace?: string): string {
  const base = k.group ? `/apis/${k.group}/${k.version}` : `/api/${k.version}`;
  return k.namespaced && namespace ? `${base}/namespaces/${seg(namespace)}/${k.plural}` : `${base}/${k.plural}`;
}

/** Object URL; `subresource` e.g. 'status'. */
export function objectPath(k: ResourceKind, namespace: string | undefined, name: string, subresource?: string): string {
  const p = `${collectionPath(k, k.namespaced ? namespace : undefined)}/${seg(name)}`;
  return subresource ? `${p}/${subresource}` : p;
}

/** The cache and work-queue key: "namespace/name", or "name" for cluster-scoped objects. */
export function objectKey(obj: { metadata?: { namespace?: string; name?: string } }): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name ?? ''}` : (obj.metadata?.name ?? '');
}

export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export const ConfigMaps: ResourceKind = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
export const Secrets: ResourceKind = { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true };
export const Leases: ResourceKind = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
};
export const Events: ResourceKind = { group: '', version: 'v1', kind: 'Event', plural: 'events', namespaced: true };
export const Nodes: ResourceKind = { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false };

// Cluster API (v1beta2), the fields the provider reads are typed in controllers/capi.ts.
export const CAPI_GROUP = 'cluster.x-k8s.io';
const capi = (kind: string, plural: string): ResourceKind => ({
  group: CAPI_GROUP,
  version: 'v1beta2',
  kind,
  plural,
  namespaced: true,
});
export const Machines = capi('Machine', 'machines');
export const Clusters = capi('Cluster', 'clusters');
export const MachineDeployments = capi('MachineDeployment', 'machinedeployments');
export const MachineSets = capi('MachineSet', 'machinesets');
export const KubeadmControlPlanes: ResourceKind = {
  group: 'controlplane.cluster.x-k8s.io',
  version: 'v1beta2',
  kind: 'KubeadmControlPlane',
  plural: 'kubeadmcontrolplanes',
  namespaced: true,
};
export const KubeadmConfigTemplates: ResourceKind = {
  group: 'bootstrap.cluster.x-k8s.io',
  version: 'v1beta2',
  kind: 'KubeadmConfigTemplate',
  plural: 'kubeadmconfigtemplates',
  namespaced: true,
};

/** One of our kinds, from the CRD table. */
function ours(kind: string): ResourceKind {
  const k = crdKinds.find((x) => x.kind === kind);
  if (!k) throw new Error(`${kind} is not in provider/api/kinds.ts`);
  return { group: GROUP, version: VERSION, kind, plural: k.plural, namespaced: true };
}
export const BareMetalMachines = ours('BareMetalMachine');
export const BareMetalClusters = ours('BareMetalCluster');
export const BareMetalHosts = ours('BareMetalHost');
export const BareMetalHostPools = ours('BareMetalHostPool');
export const BareMetalMachineTemplates = ours('BareMetalMachineTemplate');

// The kinds the reconcilers read and write, and the few fields of CAPI's own kinds they use.
import type { Resource } from '../api/common.ts';
import { GROUP, VERSION } from '../api/common.ts';
import type { ClusterSpec, ClusterStatus, MachineSpec, MachineStatus } from '../api/machine.ts';
import type { KubeObject, ResourceKind } from '../runtime/kinds.ts';

const ours = (kind: string, plural: string): ResourceKind => ({
  group: GROUP,
  version: VERSION,
  kind,
  plural,
  namespaced: true,
});

export const BareMetalMachines = ours('BareMetalMachine', 'baremetalmachines');
export const BareMetalClusters = ours('BareMetalCluster', 'baremetalclusters');
export const BareMetalHosts = ours('BareMetalHost', 'baremetalhosts');
export const BareMetalHostPools = ours('BareMetalHostPool', 'baremetalhostpools');

export const CAPI_GROUP = 'cluster.x-k8s.io';
export const Machines: ResourceKind = {
  group: CAPI_GROUP,
  version: 'v1beta2',
  kind: 'Machine',
  plural: 'machines',
  namespaced: true,
};
export const Clusters: ResourceKind = {
  group: CAPI_GROUP,
  version: 'v1beta2',
  kind: 'Cluster',
  plural: 'clusters',
  namespaced: true,
};

export const ClusterNameLabel = 'cluster.x-k8s.io/cluster-name';
export const ControlPlaneLabel = 'cluster.x-k8s.io/control-plane';

export type BareMetalMachine = Resource<'BareMetalMachine', MachineSpec, MachineStatus>;
export type BareMetalCluster = Resource<'BareMetalCluster', ClusterSpec, ClusterStatus>;

/** The fields of a CAPI Machine (v1beta2) the provider reads. */
export interface CapiMachine extends KubeObject {
  spec?: {
    clusterName?: string;
    bootstrap?: { dataSecretName?: string };
    infrastructureRef?: { kind?: string; name?: string };
  };
  status?: { nodeRef?: { name?: string } };
}

/** The fields of a CAPI Cluster (v1beta2) the provider reads. */
export interface CapiCluster extends KubeObject {
  spec?: {
    paused?: boolean;
    controlPlaneRef?: { kind?: string; name?: string };
  };
  status?: { initialization?: { infrastructureProvisioned?: boolean; controlPlaneInitialized?: boolean } };
}

/** The controller owner of `kind` in the CAPI group, e.g. a BareMetalMachine's Machine. */
export function capiOwner(obj: KubeObject, kind: string): string | undefined {
  return (obj.metadata?.ownerReferences ?? []).find((r) => r.kind === kind && r.apiVersion.split('/')[0] === CAPI_GROUP)
    ?.name;
}

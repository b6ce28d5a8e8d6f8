// The few fields of Cluster API's own kinds the reconcilers read, and the contract's labels.
import type { KubeObject } from '../kube/kinds.ts';
import { CAPI_GROUP } from '../kube/kinds.ts';

export const ClusterNameLabel = 'cluster.x-k8s.io/cluster-name';
export const ControlPlaneLabel = 'cluster.x-k8s.io/control-plane';

/** The fields of a CAPI Machine (v1beta2) the provider reads. */
export interface CapiMachine extends KubeObject {
  spec?: {
    clusterName?: string;
    /** The Kubernetes version: what host preparation installs. */
    version?: string;
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
    infrastructureRef?: { kind?: string; name?: string };
  };
  status?: { initialization?: { infrastructureProvisioned?: boolean; controlPlaneInitialized?: boolean } };
}

/** The controller owner of `kind` in the CAPI group, e.g. a BareMetalMachine's Machine. */
export function capiOwner(obj: KubeObject, kind: string): string | undefined {
  return (obj.metadata?.ownerReferences ?? []).find((r) => r.kind === kind && r.apiVersion.split('/')[0] === CAPI_GROUP)
    ?.name;
}

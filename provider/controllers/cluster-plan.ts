// What the BareMetalCluster reconciler does next, decided from facts alone.
//
// Control plane endpoint rule: a user-set spec.controlPlaneEndpoint (a VIP or load balancer in
// front of the control-plane hosts) always wins. When it is empty the provider sets it once, to the
// address of the first host claimed by a control-plane machine of the cluster, port 6443, and never
// changes it afterwards (CAPI copies it to the Cluster, and kubeadm bakes it into every
// certificate and kubeconfig). A cluster that wants control-plane high availability must set a VIP.

export interface Endpoint {
  host: string;
  port: number;
}

export interface ClusterFacts {
  deleting: boolean;
  hasFinalizer: boolean;
  ownerCluster: boolean;
  paused: boolean;
  endpoint?: Endpoint;
  /** Address of the first host claimed by a control-plane machine of this cluster, if any. */
  firstControlPlaneHost?: string;
  provisioned: boolean;
  /** BareMetalMachines of this cluster that still exist (deletion waits for them). */
  machines: number;
}

export type ClusterStep =
  | {
      kind: 'wait';
      reason: 'WaitingForOwnerCluster' | 'Paused' | 'WaitingForControlPlaneHost' | 'WaitingForMachines';
      message: string;
    }
  | { kind: 'add-finalizer' }
  | { kind: 'set-endpoint'; endpoint: Endpoint }
  | { kind: 'set-provisioned' }
  | { kind: 'remove-finalizer' }
  | { kind: 'done' };

export const defaultApiServerPort = 6443;

export function validEndpoint(e: Endpoint | undefined): e is Endpoint {
  return !!e && e.host !== '' && e.port > 0;
}

function nextDeleteStep(f: ClusterFacts): ClusterStep {
  if (f.machines > 0) {
    return { kind: 'wait', reason: 'WaitingForMachines', message: `Waiting for ${f.machines} machines to be deleted.` };
  }
  return f.hasFinalizer ? { kind: 'remove-finalizer' } : { kind: 'done' };
}

export function nextClusterStep(f: ClusterFacts): ClusterStep {
  if (f.deleting) return nextDeleteStep(f);
  if (!f.ownerCluster) {
    return {
      kind: 'wait',
      reason: 'WaitingForOwnerCluster',
      message: 'Waiting for Cluster API to set the owner Cluster.',
    };
  }
  if (f.paused) return { kind: 'wait', reason: 'Paused', message: 'The Cluster is paused.' };
  if (!f.hasFinalizer) return { kind: 'add-finalizer' };
  if (!validEndpoint(f.endpoint)) {
    if (!f.firstControlPlaneHost) {
      // Infrastructure is provisioned without an endpoint so that CABPK can render the first control
      // plane's data only once the endpoint is known: the endpoint comes first, from the first claim.
      return {
        kind: 'wait',
        reason: 'WaitingForControlPlaneHost',
        message: 'No controlPlaneEndpoint is set: it will be the first control-plane host claimed, port 6443.',
      };
    }
    return { kind: 'set-endpoint', endpoint: { host: f.firstControlPlaneHost, port: defaultApiServerPort } };
  }
  return f.provisioned ? { kind: 'done' } : { kind: 'set-provisioned' };
}

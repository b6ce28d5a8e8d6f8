// What the BareMetalMachine reconciler does next, decided from facts alone (no I/O). The
// reconciler gathers the facts (caches, the bootstrap runs of this process), calls nextMachineStep,
// carries out the one step, writes the outcome once, and is woken by the next event. Every step is
// idempotent: a manager killed at any line re-derives the same step from the same facts.

/** Condition types on a BareMetalMachine (v1beta2 metav1.Condition types). */
export const MachineConditions = {
  /** Summary, computed from the three below. */
  Ready: 'Ready',
  /** A host is claimed for this machine. */
  HostClaimed: 'HostClaimed',
  /** The host passed preflight over SSH. */
  HostReady: 'HostReady',
  /** The host has the container runtime and Kubernetes of the machine's version (spec.preparation). */
  HostPrepared: 'HostPrepared',
  /** The bootstrap data ran and the CAPI success sentinel exists. */
  BootstrapSucceeded: 'BootstrapSucceeded',
  /** The node agent runs on the host. */
  AgentInstalled: 'AgentInstalled',
  /** HostHealthy, from the node agent's reports. */
  HostHealthy: 'HostHealthy',
  Paused: 'Paused',
  Deleting: 'Deleting',
} as const;

export interface MachineFacts {
  deleting: boolean;
  /** clusterctl move deletes this machine from the source: its host moves with it, untouched (moved.ts). */
  deletedForMove?: boolean;
  hasFinalizer: boolean;
  /** The owner Machine (set by CAPI) and its Cluster were found. */
  ownerMachine: boolean;
  /** Cluster.spec.paused or the cluster.x-k8s.io/paused annotation on the Cluster or this object. */
  paused: boolean;
  /** Cluster status.initialization.infrastructureProvisioned. */
  clusterInfraProvisioned: boolean;
  /** Machine.spec.bootstrap.dataSecretName is set. */
  bootstrapDataReady: boolean;
  /** A control-plane machine (label cluster.x-k8s.io/control-plane). */
  controlPlane: boolean;
  /** The host this machine holds, if any. */
  host?: HostFacts;
  /** The host this machine held before a clusterctl move, which still names its old uid (moved.ts). */
  movedHost?: string;
  /** Available hosts matching the machine's pool and selector, as the cache sees them. */
  availableHosts: number;
  providerIDSet: boolean;
  provisioned: boolean;
  /** Why the bootstrap failed for good (BootstrapSucceeded=False, BootstrapFailed), if it did. */
  bootstrapFailure?: string;
  /** The node agent is configured: it is installed before the machine is provisioned. */
  agentEnabled: boolean;
  /** spec.preparation is set: the host is prepared (preparation/plan.ts) before the bootstrap. */
  preparationWanted: boolean;
  /** Milliseconds since the machine was created. */
  ageMs: number;
  /** A wait this young (ms since creation), before anything was said, is not written (below). */
  quietMs: number;
  /** Whether this controller said anything on the machine yet (its HostClaimed condition). */
  said: boolean;
}

export interface HostFacts {
  name: string;
  phase: 'Claimed' | 'Provisioning' | 'Provisioned' | 'Deprovisioning' | 'Quarantined' | 'Available';
  preflightPassed: boolean;
  /** Preparation found or made the host ready for this machine's version (HostPrepared=True). */
  prepared: boolean;
  /** The bootstrap finished and /run/cluster-api/bootstrap-success.complete was seen. */
  bootstrapSucceeded: boolean;
  agentInstalled: boolean;
  /** The host was reset (kubeadm reset, bootstrap files, sentinel and step markers removed). */
  reset: boolean;
  /** This process's bootstrap run on the host (bootstrap-runs.ts): none, going, or ended. */
  run: 'none' | 'running' | 'finished';
}

export type MachineStep =
  | { kind: 'add-finalizer' }
  | { kind: 'wait'; reason: WaitReason; message: string; quiet?: Quiet }
  | { kind: 'claim-host' }
  | { kind: 'adopt-host'; host: string }
  | { kind: 'preflight'; host: string }
  | { kind: 'prepare-host'; host: string }
  | { kind: 'start-bootstrap'; host: string }
  | { kind: 'follow-bootstrap'; host: string }
  | { kind: 'finish-bootstrap'; host: string }
  | { kind: 'install-agent'; host: string }
  | { kind: 'set-provisioned'; host: string }
  | { kind: 'done' }
  | { kind: 'reset-host'; host: string }
  | { kind: 'release-host'; host: string }
  | { kind: 'remove-finalizer' };

export type StepKind = MachineStep['kind'];

export type WaitReason =
  | 'WaitingForOwnerMachine'
  | 'Paused'
  | 'WaitingForClusterInfrastructure'
  | 'WaitingForBootstrapData'
  | 'NoHostAvailable'
  | 'HostQuarantined'
  | 'BootstrapFailed';

/**
 * A wait not written to the machine: nothing new to say yet. CAPI's Machine shows the same wait
 * itself, and the event that ends it (the owner reference, the bootstrap data) usually comes
 * within moments of the machine's creation; writing it would cost a write per machine for a state
 * nobody reads. `recheckMs`: when to look again (the wait is then written if it still holds).
 */
export interface Quiet {
  recheckMs?: number;
}

const wait = (reason: WaitReason, message: string, quiet?: Quiet): MachineStep => ({
  kind: 'wait',
  reason,
  message,
  ...(quiet ? { quiet } : {}),
});

/** CAPI's own waits, quiet while the machine is young and nothing was said on it yet. */
function quietly(f: MachineFacts, step: MachineStep | undefined): MachineStep | undefined {
  if (step?.kind !== 'wait' || f.said || f.ageMs >= f.quietMs) return step;
  return { ...step, quiet: { recheckMs: f.quietMs - f.ageMs } };
}

/** The next step for a machine being deleted: reset the host, then release it, then let go. */
function nextDeleteStep(f: MachineFacts): MachineStep {
  if (f.deletedForMove) return f.hasFinalizer ? { kind: 'remove-finalizer' } : { kind: 'done' };
  if (f.paused) return wait('Paused', 'The Cluster or this machine is paused; deletion resumes when unpaused.');
  if (!f.host && f.movedHost) return { kind: 'adopt-host', host: f.movedHost };
  const h = f.host;
  if (h && h.phase === 'Quarantined') {
    // Never returned to the pool without a clean reset; an operator decides (docs/operations.md).
    return { kind: 'remove-finalizer' };
  }
  if (h && !h.reset) return { kind: 'reset-host', host: h.name };
  if (h) return { kind: 'release-host', host: h.name };
  return f.hasFinalizer ? { kind: 'remove-finalizer' } : { kind: 'done' };
}

/** Why a machine cannot go on yet for want of what CAPI provides, if it cannot. */
function capiWait(f: MachineFacts): MachineStep | undefined {
  if (!f.clusterInfraProvisioned) {
    return wait('WaitingForClusterInfrastructure', 'Waiting for the Cluster infrastructure to be provisioned.');
  }
  if (!f.bootstrapDataReady) {
    return wait('WaitingForBootstrapData', 'Waiting for the bootstrap provider to write the bootstrap data Secret.');
  }
  return undefined;
}

/**
 * The next step for a machine that exists and should be provisioned.
 *
 * A control-plane machine claims a host as soon as it exists, before the Cluster infrastructure is
 * provisioned and before bootstrap data exists: the first control-plane host's address may become
 * the cluster's control plane endpoint (cluster-plan.ts), which CABPK needs to render kubeadm init
 * data. Holding the host early is bookkeeping only; nothing runs on it until the bootstrap data is
 * there. A worker claims when it can go on at once (claim, preflight and the bootstrap's start then
 * come in one reconcile and one write).
 */
function nextProvisionStep(f: MachineFacts): MachineStep {
  // The owner reference comes within moments (an event): as CAPI's own providers, nothing is written.
  if (!f.ownerMachine) return wait('WaitingForOwnerMachine', 'Waiting for Cluster API to set the owner Machine.', {});
  if (f.paused) return wait('Paused', 'The Cluster or this machine is paused.');
  if (!f.hasFinalizer) return { kind: 'add-finalizer' };
  const h = f.host;
  if (!h && f.movedHost) return { kind: 'adopt-host', host: f.movedHost };
  if (!h) {
    const notYet = f.controlPlane ? undefined : quietly(f, capiWait(f));
    if (notYet) return notYet;
    if (f.availableHosts === 0) {
      return wait(
        'NoHostAvailable',
        'No Available host matches this machine: add addresses to a pool or free a host; the machine waits for one.',
      );
    }
    return { kind: 'claim-host' };
  }
  return capiWait(f) ?? hostStep(f, h);
}

/** Preparation comes before a bootstrap starts, never under one already running, done or failed. */
const needsPreparation = (f: MachineFacts, h: HostFacts): boolean =>
  f.preparationWanted && !h.prepared && !h.bootstrapSucceeded && h.run === 'none' && f.bootstrapFailure === undefined;

/** The next step on the host this machine holds, once it may be provisioned. */
function hostStep(f: MachineFacts, h: HostFacts): MachineStep {
  if (h.phase === 'Quarantined') {
    return wait(
      'HostQuarantined',
      `Host ${h.name} is quarantined; delete this machine so a fresh host takes its place.`,
    );
  }
  if (!h.preflightPassed) return { kind: 'preflight', host: h.name };
  if (needsPreparation(f, h)) return { kind: 'prepare-host', host: h.name };
  if (!h.bootstrapSucceeded) return bootstrapStep(f, h);
  if (f.agentEnabled && !h.agentInstalled) return { kind: 'install-agent', host: h.name };
  if (!f.providerIDSet || !f.provisioned) return { kind: 'set-provisioned', host: h.name };
  return { kind: 'done' };
}

/** A failed bootstrap is final (the host is not reused in place); otherwise start, follow, finish. */
function bootstrapStep(f: MachineFacts, h: HostFacts): MachineStep {
  if (h.run === 'finished') return { kind: 'finish-bootstrap', host: h.name };
  if (f.bootstrapFailure !== undefined) return wait('BootstrapFailed', f.bootstrapFailure);
  if (h.run === 'running') return { kind: 'follow-bootstrap', host: h.name };
  return { kind: 'start-bootstrap', host: h.name };
}

export function nextMachineStep(f: MachineFacts): MachineStep {
  return f.deleting ? nextDeleteStep(f) : nextProvisionStep(f);
}

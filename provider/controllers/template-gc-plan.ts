// What the template garbage collector does with one labelled machine template, decided from facts.
//
// Machine templates are immutable in Cluster API: a chart that changes one makes a new template
// (its name carries a hash of its spec) and points the MachineDeployment or KubeadmControlPlane at
// it. The old template must outlive the rollout: the old MachineSet still references it until
// Cluster API scales it to zero and deletes it (cluster-api core/reconcilers/machinedeployment
// machinedeployment_sync.go cleanupDeployment). So Helm keeps templates (helm.sh/resource-policy:
// keep) and this collector deletes a labelled template once it is unused:
// - no MachineDeployment, MachineSet or KubeadmControlPlane of its namespace references it, or
// - the Cluster named by its cluster-name label is gone (the whole cluster was deleted),
// and only after the grace period, counted both from its creation and from when the collector first
// saw it unused: a template just created, or just referenced again (a rollback to earlier values
// points back at an old template), is not taken away while the referencing object is on its way
// through the API server and the caches.

export interface TemplateGcFacts {
  /** The template already has a deletionTimestamp. */
  deleting: boolean;
  nowMs: number;
  createdMs: number;
  graceMs: number;
  /** Objects referencing the template, e.g. "MachineSet/demo-md-0-x7k2p". */
  referencedBy: string[];
  /** The template's cluster-name label, when it has one. */
  cluster?: string;
  /** Whether that Cluster exists (ignored without a cluster label). */
  clusterExists: boolean;
  /** When this collector first saw the template unused (memory; a restart starts over). */
  unusedSinceMs?: number;
}

export type TemplateGcReason = 'ClusterDeleted' | 'Unreferenced';

export type TemplateGcStep =
  | { kind: 'none' }
  /** In use: forget any unused-since time. */
  | { kind: 'keep'; referencedBy: string[] }
  /** Unused, or too new to judge: remember since when (unusedSinceMs), look again after requeueAfterMs. */
  | { kind: 'wait'; reason: TemplateGcReason | 'TooNew'; unusedSinceMs?: number; requeueAfterMs: number }
  | { kind: 'delete'; reason: TemplateGcReason; message: string };

function unusedReason(f: TemplateGcFacts): TemplateGcReason | undefined {
  if (f.cluster !== undefined && !f.clusterExists) return 'ClusterDeleted';
  return f.referencedBy.length === 0 ? 'Unreferenced' : undefined;
}

function message(f: TemplateGcFacts, reason: TemplateGcReason): string {
  const secs = Math.round(f.graceMs / 1000);
  return reason === 'ClusterDeleted'
    ? `Deleted: its Cluster ${f.cluster ?? ''} has been gone for at least ${secs}s`
    : `Deleted: no MachineDeployment, MachineSet or KubeadmControlPlane has referenced it for at least ${secs}s`;
}

export function nextTemplateGcStep(f: TemplateGcFacts): TemplateGcStep {
  if (f.deleting) return { kind: 'none' };
  const reason = unusedReason(f);
  if (!reason) return { kind: 'keep', referencedBy: f.referencedBy };
  const since = f.unusedSinceMs ?? f.nowMs;
  // Unused for the grace period, and at least that old: the later of the two clocks decides.
  const due = Math.max(since, f.createdMs) + f.graceMs;
  if (f.nowMs >= due) return { kind: 'delete', reason, message: message(f, reason) };
  return {
    kind: 'wait',
    reason: f.createdMs + f.graceMs > f.nowMs ? 'TooNew' : reason,
    unusedSinceMs: since,
    requeueAfterMs: due - f.nowMs,
  };
}

// The template garbage collector: deletes labelled BareMetalMachineTemplates and
// KubeadmConfigTemplates that no rollout needs any more (the rule is in template-gc-plan.ts).
// Opt-in per template by label, as the capbm-cluster chart sets it: templates without the label,
// whoever made them, are never touched. One controller per template kind, sharing the caches of
// the objects that reference templates (MachineDeployments, MachineSets, KubeadmControlPlanes).
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../common/log.ts';
import {
  BareMetalMachineTemplates,
  Clusters,
  KubeadmConfigTemplates,
  KubeadmControlPlanes,
  MachineDeployments,
  MachineSets,
  objectKey,
  objectPath,
  type KubeObject,
  type ResourceKind,
} from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import {
  controller,
  specOrMetadataChanged,
  type Controller,
  type ReconcileContext,
  type Request,
  type Result,
} from '../runtime/controller.ts';
import type { EventRecorder } from '../runtime/events.ts';
import { createInformer, type Informer } from '../runtime/informer.ts';
import { counter } from '../runtime/metrics.ts';
import { ClusterNameLabel, type CapiCluster } from './capi.ts';
import { nextTemplateGcStep, type TemplateGcFacts } from './template-gc-plan.ts';

/** Templates carrying this label (value "true") are collected. */
export const TemplateGcLabel = 'infrastructure.cluster.x-k8s.io/capbm-template-gc';
export const defaultTemplateGcGraceMs = 5 * 60_000;

interface Ref {
  kind?: string;
  name?: string;
}

/** A MachineDeployment, MachineSet or KubeadmControlPlane (v1beta2): only its template references. */
export interface TemplateReferrer extends KubeObject {
  spec?: {
    template?: { spec?: { infrastructureRef?: Ref; bootstrap?: { configRef?: Ref } } };
    machineTemplate?: { spec?: { infrastructureRef?: Ref } };
  };
}

/** The templates an object references, as "Kind/name". */
export function templateRefs(o: TemplateReferrer): string[] {
  const s = o.spec;
  return [
    s?.template?.spec?.infrastructureRef,
    s?.template?.spec?.bootstrap?.configRef,
    s?.machineTemplate?.spec?.infrastructureRef,
  ]
    .filter((r): r is Required<Ref> => !!r?.kind && !!r.name)
    .map((r) => `${r.kind}/${r.name}`);
}

/** Keeps the references only: a cache of every MachineSet stays small. */
function slimReferrer(o: TemplateReferrer): TemplateReferrer {
  const m = o.metadata ?? {};
  const s = o.spec;
  const t = s?.template?.spec;
  return {
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion },
    spec: {
      ...(t ? { template: { spec: { infrastructureRef: t.infrastructureRef, bootstrap: t.bootstrap } } } : {}),
      ...(s?.machineTemplate ? { machineTemplate: s.machineTemplate } : {}),
    },
  };
}

const RefIndex = 'template';
const ClusterIndex = 'cluster';
const refKey = (ns: string | undefined, ref: string) => `${ns ?? ''}/${ref}`;

const deleted = counter(
  'capbm_templates_deleted_total',
  'Machine templates deleted by the template garbage collector',
  ['kind', 'reason'],
);

export interface TemplateGcOptions {
  kc: KubeConfig;
  log: Logger;
  recorder: EventRecorder;
  namespace?: string;
  /** The shard's watch filter: applies to the templates, never to what references them. */
  labelSelector?: string;
  /** A Cluster cache of every shard (a Cluster outside this shard still keeps its templates). */
  clusters?: Informer<CapiCluster>;
  graceMs?: number;
  now?: () => number;
}

interface GcDeps {
  kc: KubeConfig;
  recorder: EventRecorder;
  kind: ResourceKind;
  templates: Informer<KubeObject>;
  referrers: Array<Informer<TemplateReferrer>>;
  clusters: Informer<CapiCluster>;
  graceMs: number;
  now: () => number;
}

function facts(d: GcDeps, t: KubeObject, unusedSinceMs: number | undefined): TemplateGcFacts {
  const md = t.metadata ?? {};
  const key = refKey(md.namespace, `${d.kind.kind}/${md.name ?? ''}`);
  const cluster = md.labels?.[ClusterNameLabel];
  const now = d.now();
  return {
    deleting: md.deletionTimestamp !== undefined,
    nowMs: now,
    createdMs: Date.parse(md.creationTimestamp ?? '') || now,
    graceMs: d.graceMs,
    referencedBy: d.referrers.flatMap((i) => i.byIndex(RefIndex, key).map((r) => `${i.kind.kind}/${r.metadata?.name}`)),
    ...(cluster
      ? { cluster, clusterExists: d.clusters.get(md.namespace, cluster) !== undefined }
      : { clusterExists: false }),
    ...(unusedSinceMs !== undefined ? { unusedSinceMs } : {}),
  };
}

/** Deletes exactly the template that was judged: a re-created or re-adopted one (new uid or version) survives. */
async function deleteTemplate(d: GcDeps, t: KubeObject): Promise<void> {
  const md = t.metadata ?? {};
  try {
    await raw(d.kc, 'DELETE', objectPath(d.kind, md.namespace, md.name ?? ''), {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      preconditions: { uid: md.uid, resourceVersion: md.resourceVersion },
    });
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 404)) throw err;
  }
}

function reconcileTemplate(d: GcDeps) {
  // When each template was first seen unused, by this process (template-gc-plan.ts).
  const unusedSince = new Map<string, number>();
  return async (req: Request, ctx: ReconcileContext): Promise<Result> => {
    const t = d.templates.get(req.namespace, req.name);
    if (!t) {
      unusedSince.delete(req.key);
      return;
    }
    const step = nextTemplateGcStep(facts(d, t, unusedSince.get(req.key)));
    switch (step.kind) {
      case 'none':
        return;
      case 'keep':
        unusedSince.delete(req.key);
        return;
      case 'wait':
        if (step.unusedSinceMs !== undefined) unusedSince.set(req.key, step.unusedSinceMs);
        return { requeueAfter: step.requeueAfterMs };
      case 'delete':
        await deleteTemplate(d, t);
        unusedSince.delete(req.key);
        deleted.inc({ kind: d.kind.kind, reason: step.reason });
        ctx.log.info('template deleted', { reason: step.reason });
        d.recorder.event(t, 'Normal', 'TemplateDeleted', step.message);
        return;
    }
  };
}

function templateController(o: TemplateGcOptions, kind: ResourceKind, shared: Omit<GcDeps, 'kind' | 'templates'>) {
  const selector = [`${TemplateGcLabel}=true`, ...(o.labelSelector ? [o.labelSelector] : [])].join(',');
  const templates = createInformer<KubeObject>(o.kc, kind, {
    ...(o.namespace ? { namespace: o.namespace } : {}),
    labelSelector: selector,
    log: o.log,
    indexers: {
      [ClusterIndex]: (t) =>
        t.metadata?.labels?.[ClusterNameLabel]
          ? [`${t.metadata.namespace}/${t.metadata.labels[ClusterNameLabel]}`]
          : [],
    },
  });
  const prefix = `${kind.kind}/`;
  const toTemplates = (r: TemplateReferrer) =>
    templateRefs(r)
      .filter((x) => x.startsWith(prefix))
      .map((x) => `${r.metadata?.namespace}/${x.slice(prefix.length)}`);
  const refsChanged = (a: TemplateReferrer, b: TemplateReferrer) => templateRefs(a).join() !== templateRefs(b).join();
  return controller({
    name: `${kind.kind.toLowerCase()}-gc`,
    workers: 2,
    log: o.log,
    watches: [
      { informer: templates, updatePredicate: specOrMetadataChanged },
      ...shared.referrers.map((informer) => ({ informer, mapToKeys: toTemplates, updatePredicate: refsChanged })),
      {
        informer: shared.clusters,
        mapToKeys: (c: CapiCluster) => templates.byIndex(ClusterIndex, objectKey(c)).map((t) => objectKey(t)),
        // Only a Cluster's coming and going matters (add and delete events).
        updatePredicate: () => false,
      },
    ],
    reconcile: reconcileTemplate({ ...shared, kind, templates }),
  });
}

/** The collector's controllers, one per template kind, on shared caches of what references templates. */
export function templateGcControllers(o: TemplateGcOptions): Controller[] {
  const base = { ...(o.namespace ? { namespace: o.namespace } : {}), log: o.log };
  const referrers = [MachineDeployments, MachineSets, KubeadmControlPlanes].map((k) =>
    createInformer<TemplateReferrer>(o.kc, k, {
      ...base,
      transform: slimReferrer,
      indexers: { [RefIndex]: (r) => templateRefs(r).map((x) => refKey(r.metadata?.namespace, x)) },
    }),
  );
  const clusters =
    o.clusters ??
    createInformer<CapiCluster>(o.kc, Clusters, {
      ...base,
      transform: (c) => ({
        apiVersion: c.apiVersion,
        kind: c.kind,
        metadata: { name: c.metadata?.name, namespace: c.metadata?.namespace, uid: c.metadata?.uid },
      }),
    });
  const shared = {
    kc: o.kc,
    recorder: o.recorder,
    referrers,
    clusters,
    graceMs: o.graceMs ?? defaultTemplateGcGraceMs,
    now: o.now ?? Date.now,
  };
  return [BareMetalMachineTemplates, KubeadmConfigTemplates].map((k) => templateController(o, k, shared));
}

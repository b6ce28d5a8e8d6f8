// The BareMetalHost reconciler: hosts nobody holds. A host an operator let out of quarantine
// (spec.quarantine removed) is reset over SSH (reset.ts, the same reset as a machine's delete) and
// returned Available only when the reset leaves it clean; otherwise it goes back to quarantine
// with the reason. It keeps status.phase in step with spec for hosts without a consumer.
import type { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import * as life from '../hosts/lifecycle.ts';
import { BareMetalHosts, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import { PausedAnnotation } from '../runtime/conditions.ts';
import type { ReconcileContext, Request, Result } from '../runtime/controller.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { SshRunner } from '../ssh/index.ts';
import { resetHost } from './reset.ts';
import { Writer } from '../runtime/writer.ts';

export interface HostDeps {
  kc: KubeConfig;
  recorder: EventRecorder;
  ssh: SshRunner;
  hosts: Informer<BareMetalHost>;
  pools: Informer<BareMetalHostPool>;
  /** Shell that removes the node agent, run by the reset. */
  agentRemoval?: string;
}

export function reconcileHost(d: HostDeps) {
  return async (req: Request, ctx: ReconcileContext): Promise<Result> => {
    const cached = d.hosts.get(req.namespace, req.name);
    if (!cached || cached.spec.consumerRef || cached.metadata.deletionTimestamp) return;
    if (cached.metadata.annotations?.[PausedAnnotation] !== undefined) return; // hands off while paused
    const action = life.unheldAction(cached);
    if (action !== 'reset') return mark(d.kc, cached, action);
    const h = await takeForReset(d.kc, cached);
    if (!h) return; // it changed since the cache saw it (a claim?): decided again on its next event
    const w = new Writer(d.kc, BareMetalHosts, h);
    const r = await resetHost(d, h, ctx.signal);
    if (ctx.signal.aborted) return;
    await w.update((o) => {
      life.resetDone(o, r);
      if (r.clean) life.released(o);
    });
    if (r.clean) {
      d.recorder.event(w.obj, 'Normal', 'HostReleased', `Host ${h.metadata.name} was reset and is Available again`);
      ctx.log.info('host reset and returned', { host: h.metadata.name });
      return;
    }
    d.recorder.event(w.obj, 'Warning', 'HostQuarantined', w.obj.spec.quarantine?.message ?? r.detail);
  };
}

/** The phase a host nobody holds should show, written when it does not. */
async function mark(kc: KubeConfig, h: BareMetalHost, action: Exclude<life.UnheldAction, 'reset'>): Promise<void> {
  const w = new Writer(kc, BareMetalHosts, h);
  if (action === 'mark-quarantined') await w.update(life.markQuarantined);
  if (action === 'mark-available') await w.update(life.released);
}

/**
 * Takes the host for a reset on exactly the version the decision saw (the merge patch carries its
 * resourceVersion, a precondition): a claim or release written since, which a lagging cache may not
 * show yet, makes the write fail with 409 and nothing runs on the host. Returns the host as taken.
 */
async function takeForReset(kc: KubeConfig, h: BareMetalHost): Promise<BareMetalHost | undefined> {
  try {
    return await raw<BareMetalHost>(
      kc,
      'PATCH',
      objectPath(BareMetalHosts, h.metadata.namespace, h.metadata.name, 'status'),
      {
        metadata: { resourceVersion: h.metadata.resourceVersion },
        status: { phase: 'Deprovisioning' },
      },
    );
  } catch (err) {
    if (err instanceof ApiError && err.code === 409) return undefined;
    throw err;
  }
}

// The BareMetalHost reconciler: hosts nobody holds. A host an operator let out of quarantine
// (spec.quarantine removed) is reset over SSH (reset.ts, the same reset as a machine's delete) and
// returned Available only when the reset leaves it clean; otherwise it goes back to quarantine
// with the reason. It keeps status.phase in step with spec for hosts without a consumer.
import type { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import * as life from '../hosts/lifecycle.ts';
import { BareMetalHosts } from '../kube/kinds.ts';
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
    const h = d.hosts.get(req.namespace, req.name);
    if (!h || h.spec.consumerRef || h.metadata.deletionTimestamp) return;
    const w = new Writer(d.kc, BareMetalHosts, h);
    switch (life.unheldAction(h)) {
      case 'none':
        return;
      case 'mark-quarantined':
        return w.update((o) => (o.status = { ...o.status, phase: 'Quarantined' }));
      case 'mark-available':
        return w.update(life.released);
      case 'reset':
        break;
    }
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

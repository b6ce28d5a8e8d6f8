// The BareMetalHost reconciler: hosts nobody holds. A host an operator let out of quarantine
// (spec.quarantine removed) is reset over SSH and returned Available only when the reset leaves it
// clean; otherwise it goes back to quarantine with the reason. It keeps status.phase in step with
// spec for hosts without a consumer.
import type { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import { setCondition } from '../runtime/conditions.ts';
import type { ReconcileContext, Request, Result } from '../runtime/controller.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import { SshError, type SshPool } from '../ssh/index.ts';
import { AccessError, hostTarget } from './access.ts';
import { runReset } from './host-ops.ts';
import { BareMetalHosts } from './kinds.ts';
import { Writer } from './writer.ts';

export interface HostDeps {
  kc: KubeConfig;
  recorder: EventRecorder;
  ssh: SshPool;
  hosts: Informer<BareMetalHost>;
  pools: Informer<BareMetalHostPool>;
  resetExtra?: () => string;
}

/** Brings status.phase in step with spec; true when nothing else is to be done. */
async function settlePhase(h: BareMetalHost, w: Writer<BareMetalHost>): Promise<boolean> {
  const phase = h.status?.phase;
  if (h.spec.quarantine) {
    if (phase !== 'Quarantined') await w.update((o) => (o.status = { ...o.status, phase: 'Quarantined' }));
    return true;
  }
  if (phase === undefined) await w.update((o) => (o.status = { ...o.status, phase: 'Available' }));
  return phase === undefined || phase === 'Available';
}

/** Resets the host over SSH; undefined when clean, else why not. */
async function tryReset(d: HostDeps, pool: BareMetalHostPool, h: BareMetalHost): Promise<string | undefined> {
  try {
    const target = await hostTarget(d.kc, pool, h);
    const r = await d.ssh.withHost(target, (conn) => runReset(conn, d.resetExtra?.() ?? ''));
    return r.clean ? undefined : `still has ${r.leftovers.join(', ')} after a reset`;
  } catch (err) {
    if (!(err instanceof SshError || err instanceof AccessError)) throw err;
    return `could not be reset (${err.message})`;
  }
}

export function reconcileHost(d: HostDeps) {
  return async (req: Request, ctx: ReconcileContext): Promise<Result> => {
    const h = d.hosts.get(req.namespace, req.name);
    if (!h || h.spec.consumerRef || h.metadata.deletionTimestamp) return;
    const w = new Writer(d.kc, BareMetalHosts, h);
    if (await settlePhase(h, w)) return;
    // Out of quarantine (or a reset interrupted): clean it before anyone may claim it.
    const pool = d.pools.get(h.metadata.namespace, h.spec.poolRef.name);
    if (!pool) return;
    const problem = await tryReset(d, pool, h);
    if (!problem) {
      await w.update((o) => {
        o.status = { ...o.status, phase: 'Available', lastResetTime: new Date().toISOString() };
        setCondition(o, { type: 'Clean', status: true, reason: 'Reset', message: '' });
      });
      d.recorder.event(w.obj, 'Normal', 'HostReleased', `Host ${h.metadata.name} was reset and is Available again`);
      ctx.log.info('host reset and returned', { host: h.metadata.name });
      return;
    }
    const full = `Host ${h.metadata.name} ${problem}; quarantined again. Fix or reinstall it, then remove spec.quarantine once more.`;
    await w.update((o) => {
      o.spec.quarantine = { reason: 'ResetFailed', message: full, since: new Date().toISOString() };
      o.status = { ...o.status, phase: 'Quarantined' };
      setCondition(o, { type: 'Clean', status: false, reason: 'ResetFailed', message: full });
    });
    d.recorder.event(w.obj, 'Warning', 'HostQuarantined', full);
  };
}

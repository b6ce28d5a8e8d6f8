// The one reset path: over SSH, run the reset (host-ops.ts resetScript: stop a bootstrap still
// running, kubeadm reset, remove what the bootstrap wrote and the agent) and judge what is left.
// The machine controller resets a host when its machine is deleted, the host controller when an
// operator lets a host out of quarantine; both record the outcome with lifecycle.resetDone.
import type { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import type { ResetOutcome } from '../hosts/lifecycle.ts';
import type { SshRunner } from '../ssh/index.ts';
import { hostTarget, poolOf } from './access.ts';
import { runReset } from './host-ops.ts';
import { problemOf } from './problems.ts';

export interface ResetDeps {
  kc: KubeConfig;
  ssh: SshRunner;
  pools: { get(namespace: string, name: string): BareMetalHostPool | undefined };
  /** Shell that removes the node agent (health/install.ts removeAgentScript), run by the reset. */
  agentRemoval?: string;
}

/** Resets the host; an SSH or access failure is an outcome (ResetFailed), anything else throws. */
export async function resetHost(d: ResetDeps, h: BareMetalHost, signal?: AbortSignal): Promise<ResetOutcome> {
  let pool: BareMetalHostPool | undefined;
  try {
    pool = poolOf(d.pools, h);
    const target = await hostTarget(d.kc, pool, h);
    const r = await d.ssh.withHost({ ...target, connectTimeoutMs: 15_000 }, (conn) => {
      const close = () => conn.close();
      signal?.addEventListener('abort', close, { once: true });
      return runReset(conn, d.agentRemoval ?? '').finally(() => signal?.removeEventListener('abort', close));
    });
    if (r.clean) return { clean: true };
    const notes = r.notes.length ? ` (${r.notes.join('; ')})` : '';
    return { clean: false, reason: 'HostDirty', detail: `still has ${r.leftovers.join(', ')} after the reset${notes}` };
  } catch (err) {
    if (!problemOf(err, pool)) throw err;
    return { clean: false, reason: 'ResetFailed', detail: `could not be reset (${(err as Error).message})` };
  }
}

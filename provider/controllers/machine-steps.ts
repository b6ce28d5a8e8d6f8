// The effects of the machine reconciler's steps: each talks to the API server or to the host over
// SSH, changes the host through hosts/lifecycle.ts (one host write per step), and returns what it
// came to as an Outcome for machine-status.ts. Steps never write the machine: the reconciler does,
// once, after the step (machine.ts). The bootstrap's steps are in bootstrap-steps.ts.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../common/log.ts';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalMachine } from '../api/machine.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import { claimHost, isAvailable, POOL_LABEL, releaseHost } from '../hosts/claim.ts';
import * as life from '../hosts/lifecycle.ts';
import { BareMetalHostPools, BareMetalHosts, objectKey, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import type { Result } from '../runtime/controller.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { SshRunner, SshSession } from '../ssh/index.ts';
import { hostTarget, poolOf } from './access.ts';
import type { BootstrapRuns } from './bootstrap-runs.ts';
import type { CapiCluster, CapiMachine } from './capi.ts';
import { runPreflight } from './host-ops.ts';
import { PoolIndex, poolKeyOf } from './indexes.ts';
import { MachineConditions as C } from './machine-plan.ts';
import type { MachineEvent, Outcome, ProblemCondition } from './machine-status.ts';
import type { NodeAgent } from '../health/node-agent.ts';
import { providerID } from './metadata.ts';
import { problemOf } from './problems.ts';
import type { Bundles } from '../preparation/bundles.ts';
import { resetHost } from './reset.ts';
import { Fresher, Writer } from '../runtime/writer.ts';

export interface MachineDeps {
  kc: KubeConfig;
  recorder: EventRecorder;
  ssh: SshRunner;
  machines: Informer<BareMetalMachine>;
  capiMachines: Informer<CapiMachine>;
  clusters: Informer<CapiCluster>;
  hosts: Informer<BareMetalHost>;
  pools: Informer<BareMetalHostPool>;
  /** The node agent: installed at the end of provisioning, removed by the reset. */
  agent?: NodeAgent;
  runs: BootstrapRuns;
  /** Namespace of the per-address claim locks (hosts/address-lock.ts); none without it. */
  addressLocks?: string;
  /** What this process wrote last, newer than the caches for a moment. */
  fresh: { machines: Fresher<BareMetalMachine>; hosts: Fresher<BareMetalHost> };
  /** Hosts this process is claiming now (claim.ts): its claimers try different hosts. */
  claiming: Set<string>;
  /** The host preparation bundles (--bundle-dir); machines with spec.preparation need it. */
  bundles?: Bundles;
  /** How long a new worker's wait for CAPI stays unwritten; default defaultQuietWaitMs (machine.ts). */
  quietWaitMs?: number;
}

/** One step's inputs: the machine as read (the reconciler's working copy), its host and owner. */
export interface Step {
  d: MachineDeps;
  m: BareMetalMachine;
  key: string;
  host?: BareMetalHost;
  owner?: CapiMachine;
  log: Logger;
  /** Aborted when the controller stops: the next leader picks up from the host's state. */
  signal: AbortSignal;
}

export interface StepResult {
  outcome: Outcome;
  result?: Result;
  /** The host as the step left it (claimed, written, or let go), for the next step of the chain. */
  host?: BareMetalHost;
  /** Events besides the ones the outcome is worth (machine-status.ts). */
  events?: MachineEvent[];
  /** The machine may go: its host was released or quarantined; the finalizer is removed. */
  letGo?: boolean;
}

const none: StepResult = { outcome: { kind: 'none' } };

/** Writes the host through lifecycle changes; the next reconcile sees the write before the cache. */
export async function writeHost(s: Step, h: BareMetalHost, change: (h: BareMetalHost) => void): Promise<BareMetalHost> {
  const key = objectKey(h);
  const w = new Writer(s.d.kc, BareMetalHosts, h, { onWritten: (o) => s.d.fresh.hosts.remember(key, o) });
  await w.update(change);
  return w.obj;
}

/** Hosts this machine may take (its pool and labels), the newest copies this process knows. */
export function matchingHosts(d: MachineDeps, m: BareMetalMachine): BareMetalHost[] {
  const want = {
    ...(m.spec.hostSelector?.matchLabels ?? {}),
    ...(m.spec.poolRef ? { [POOL_LABEL]: m.spec.poolRef.name } : {}),
  };
  const pool = poolKeyOf(m);
  return (pool ? d.hosts.byIndex(PoolIndex, pool) : d.hosts.list(m.metadata.namespace))
    .filter((h) => Object.entries(want).every(([k, v]) => h.metadata.labels?.[k] === v))
    .map((h) => d.fresh.hosts.pick(objectKey(h), h) ?? h);
}

export const availableHosts = (d: MachineDeps, m: BareMetalMachine): number =>
  matchingHosts(d, m).filter(isAvailable).length;

export async function claim(s: Step): Promise<StepResult> {
  const { m, d } = s;
  const h = await claimHost(
    d.kc,
    {
      namespace: m.metadata.namespace,
      ...(m.spec.poolRef?.name ? { pool: m.spec.poolRef.name } : {}),
      ...(m.spec.hostSelector?.matchLabels ? { selector: m.spec.hostSelector.matchLabels } : {}),
      consumer: {
        apiVersion: m.apiVersion,
        kind: m.kind,
        namespace: m.metadata.namespace,
        name: m.metadata.name,
        uid: m.metadata.uid ?? '',
      },
    },
    {
      hosts: matchingHosts(d, m),
      busy: d.claiming,
      newest: (h) => d.fresh.hosts.pick(objectKey(h), h) ?? h,
      ...(d.addressLocks ? { locks: d.addressLocks } : {}),
    },
  );
  if (!h) {
    // Every candidate went to another machine meanwhile; a host event wakes this one again.
    const message =
      'No Available host matches this machine: add addresses to a pool or free a host; the machine waits for one.';
    return { outcome: { kind: 'waiting', reason: 'NoHostAvailable', message } };
  }
  // Its phase goes with the host's next write (the preflight, in the same reconcile when it can run).
  // Until the cache has the claim, this process's other claimers know the host is taken.
  d.fresh.hosts.remember(objectKey(h), h);
  return { outcome: { kind: 'claimed', host: h.metadata.name, address: h.spec.address }, host: h };
}

/**
 * A failure to reach or use the host: on the step's condition of the machine and, since it is the
 * host that cannot be reached, on the host's Reachable condition. Any other error is thrown.
 */
export async function hostProblem(s: Step, err: unknown, on: ProblemCondition): Promise<StepResult> {
  if (s.signal.aborted) return none; // stopping: the next leader picks up from the host's state
  const p = problemOf(err, s.d.pools.get(s.host!.metadata.namespace, s.host!.spec.poolRef.name));
  if (!p) throw err;
  const host = await writeHost(s, s.host!, (h) => life.unreachable(h, p.reason, p.message));
  return { outcome: { kind: 'problem', on, reason: p.reason, message: p.message }, result: { requeue: true }, host };
}

/**
 * A jump host trusted on first use: its key is recorded on the pool, once (a write that carries the
 * pool's version, so a second, different key seen at the same time cannot replace it).
 */
async function recordJumpKey(s: Step, pool: BareMetalHostPool, fingerprint: string): Promise<void> {
  if (pool.status?.jumpHostKeyFingerprint) return;
  try {
    await raw(s.d.kc, 'PATCH', objectPath(BareMetalHostPools, pool.metadata.namespace, pool.metadata.name, 'status'), {
      metadata: { resourceVersion: pool.metadata.resourceVersion },
      status: { jumpHostKeyFingerprint: fingerprint },
    });
  } catch (err) {
    if (err instanceof ApiError && err.code === 409) return; // recorded by another connection meanwhile
    throw err;
  }
  const message = `Trusted jump host key ${fingerprint} of ${pool.spec.jumpHost?.address ?? ''} on first use; it is pinned from now on`;
  s.d.recorder.event(pool, 'Normal', 'JumpHostKeyRecorded', message);
}

/** Connects to the held host and runs fn; the connection closes when the controller stops. */
export async function onHost<T>(s: Step, fn: (conn: SshSession, pool: BareMetalHostPool) => Promise<T>): Promise<T> {
  const pool = poolOf(s.d.pools, s.host!);
  const target = await hostTarget(s.d.kc, pool, s.host!);
  return s.d.ssh.withHost(target, async (conn) => {
    const close = () => conn.close();
    s.signal.addEventListener('abort', close, { once: true });
    try {
      if (conn.jump?.hostKeyFirstUse) await recordJumpKey(s, pool, conn.jump.hostKeyFingerprint);
      return await fn(conn, pool);
    } finally {
      s.signal.removeEventListener('abort', close);
    }
  });
}

/** A host key trusted on first use is news: say so on the machine and the host. */
function hostKeyEvents(conn: SshSession): MachineEvent[] {
  if (!conn.hostKeyFirstUse) return [];
  const message = `Trusted host key ${conn.hostKeyFingerprint} on first use; it is pinned from now on`;
  return [{ type: 'Normal', reason: 'HostKeyRecorded', message, onHost: true }];
}

export async function preflight(s: Step): Promise<StepResult> {
  let seen: { r: Awaited<ReturnType<typeof runPreflight>>; fingerprint: string; events: MachineEvent[] };
  try {
    seen = await onHost(s, async (conn) => {
      return { r: await runPreflight(conn), fingerprint: conn.hostKeyFingerprint, events: hostKeyEvents(conn) };
    });
  } catch (err) {
    return hostProblem(s, err, C.HostReady);
  }
  const { r, fingerprint, events } = seen;
  const name = s.host!.metadata.name;
  const { swapKiB: _swap, ...facts } = r.facts;
  const blocking = r.problems[0];
  if (!blocking) {
    const host = await writeHost(s, s.host!, (h) => (life.reached(h, fingerprint), life.preflightPassed(h, facts)));
    const summary = `${facts.os}, ${facts.arch}, ${facts.cpus} CPUs, ${Math.round(facts.memoryKiB / 1024)} MiB`;
    return { outcome: { kind: 'preflight-passed', host: name, summary }, events, host };
  }
  const message = r.problems.map((p) => p.message).join(' ');
  if (blocking.quarantine) {
    // Refused for good: the host stays quarantined (no consumer) and this machine takes another.
    const host = await writeHost(s, s.host!, (h) => (life.reached(h, fingerprint), life.refuse(h, message)));
    return { outcome: { kind: 'refused', host: name, message }, events, host };
  }
  // The host answered: the problem is on PreflightPassed, Reachable says it answered.
  const host = await writeHost(
    s,
    s.host!,
    (h) => (life.reached(h, fingerprint), life.preflightFailed(h, blocking.reason, message)),
  );
  const outcome: Outcome = { kind: 'problem', on: C.HostReady, reason: blocking.reason, message };
  return { outcome, result: { requeueAfter: 60_000 }, events, host };
}

export async function installAgent(s: Step): Promise<StepResult> {
  const agent = s.d.agent!;
  const host = s.host!.metadata.name;
  try {
    const r = await onHost(s, (conn) => agent.installResult(conn, s.m, s.host!));
    if (!r.installed) return { outcome: { kind: 'agent', host, agent: r }, result: { requeue: true } };
    // The new certificate is the host's newest from now on: any older one is refused.
    const h = await writeHost(s, s.host!, (x) => life.agentCertified(x, r.certificate));
    return { outcome: { kind: 'agent', host, agent: r }, host: h };
  } catch (err) {
    return hostProblem(s, err, C.AgentInstalled);
  }
}

export function setProvisioned(s: Step): StepResult {
  const h = s.host!;
  const provisioned = { providerID: providerID(s.m.metadata.namespace, h.metadata.name), address: h.spec.address };
  return { outcome: { kind: 'provisioned', host: h.metadata.name, provisioned } };
}

/** HostHealthy from the agent's reports, on this machine and on its Node. */
export async function health(s: Step): Promise<StepResult> {
  const host = s.host!.metadata.name;
  const renewed = s.d.agent?.unrecorded(s.host!);
  const h = renewed ? await writeHost(s, s.host!, (x) => life.agentCertified(x, renewed)) : s.host!;
  const r = await s.d.agent?.sync(s.m, objectKey(h), s.owner?.status?.nodeRef?.name);
  const changed = r?.changed ? { outcome: { kind: 'health', host, condition: r.condition } as const } : none;
  return renewed ? { ...changed, host: h } : changed;
}

/** Delete: stop following a bootstrap, reset the host, then release it or quarantine it. */
export async function reset(s: Step): Promise<StepResult> {
  s.d.runs.cancel(s.m.metadata.uid ?? '');
  const held = await writeHost(s, s.host!, life.deprovisioning);
  const agentRemoval = s.d.agent?.removeScript();
  const r = await resetHost(
    { kc: s.d.kc, ssh: s.d.ssh, pools: s.d.pools, ...(agentRemoval ? { agentRemoval } : {}) },
    held,
    s.signal,
  );
  if (s.signal.aborted) return none;
  s.d.agent?.forget(objectKey(held));
  const h = await writeHost(s, held, (x) => {
    life.resetDone(x, r);
    if (r.clean) life.released(x);
  });
  if (!r.clean) {
    const message = h.spec.quarantine?.message ?? r.detail;
    return {
      outcome: { kind: 'none' },
      letGo: true,
      events: [{ type: 'Warning', reason: 'HostQuarantined', message, onHost: true }],
    };
  }
  return release({ ...s, host: h });
}

/** Returns a reset host to its pool: Available first (still held), then the claim is cleared. */
export async function release(s: Step): Promise<StepResult> {
  let h = s.host!;
  if (h.status?.phase !== 'Available') h = await writeHost(s, h, life.released);
  const freed = await releaseHost(s.d.kc, h, { uid: s.m.metadata.uid ?? '' }, s.d.addressLocks);
  s.d.fresh.hosts.remember(objectKey(freed), freed);
  const message = `Host ${h.metadata.name} was reset and returned to pool ${h.spec.poolRef.name}`;
  return {
    outcome: { kind: 'none' },
    letGo: true,
    events: [{ type: 'Normal', reason: 'HostReleased', message, onHost: true }],
  };
}

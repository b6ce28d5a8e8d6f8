// The BareMetalMachine reconciler, in the shape of Cluster API's providers:
//
//   facts (caches, the host held, bootstrap runs) -> nextMachineStep (pure, machine-plan.ts)
//     -> carry out the one step (machine-steps.ts, bootstrap-steps.ts: SSH, host writes)
//     -> applyOutcome to the working copy (pure, machine-status.ts)
//     -> ONE write of the machine (metadata/spec and status, each only if changed)
//     -> the events the outcome is worth.
//
// Waiting is event-driven: the write is the event that triggers the next step; a machine waiting
// for bootstrap data is woken by its Machine's update, one waiting for a host by a host becoming
// Available, one whose bootstrap runs by the run (bootstrap-runs.ts) when its step changes or it ends.
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalMachine } from '../api/machine.ts';
import { phaseOf } from '../hosts/lifecycle.ts';
import { BareMetalHosts, BareMetalMachines, objectKey, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import { getCondition, setPausedCondition } from '../runtime/conditions.ts';
import type { ReconcileContext, Request, Result } from '../runtime/controller.ts';
import { finishBootstrap, followBootstrap, startBootstrap } from './bootstrap-steps.ts';
import { capiOwner, ClusterNameLabel, type CapiCluster, type CapiMachine } from './capi.ts';
import {
  MachineConditions as C,
  nextMachineStep,
  type HostFacts,
  type MachineFacts,
  type MachineStep,
  type StepKind,
} from './machine-plan.ts';
import { applyOutcome, ownedConditions, type MachineEvent } from './machine-status.ts';
import * as steps from './machine-steps.ts';
import type { MachineDeps, Step, StepResult } from './machine-steps.ts';
import { Writer } from '../runtime/writer.ts';

export type { MachineDeps };
export const MachineFinalizer = 'baremetalmachine.infrastructure.cluster.x-k8s.io';
/** Index of the host cache: the uid of the machine holding the host. */
export const ConsumerIndex = 'consumer';
export const byConsumer = (h: BareMetalHost): string[] => (h.spec?.consumerRef?.uid ? [h.spec.consumerRef.uid] : []);

const heldBy = (h: BareMetalHost | undefined, uid: string) => (h?.spec.consumerRef?.uid === uid ? h : undefined);

/** The host this machine holds: from the cache, or (the cache may lag behind our own claim) by hostRef. */
async function heldHost(d: MachineDeps, m: BareMetalMachine): Promise<BareMetalHost | undefined> {
  const uid = m.metadata.uid ?? '';
  const cached = d.hosts.byIndex(ConsumerIndex, uid)[0];
  if (cached) return heldBy(d.fresh.hosts.pick(objectKey(cached), cached), uid);
  const ref = m.status?.hostRef?.name;
  return ref ? heldBy(await fetchHost(d, m.metadata.namespace, ref), uid) : undefined;
}

async function fetchHost(d: MachineDeps, ns: string, name: string): Promise<BareMetalHost | undefined> {
  try {
    return await raw<BareMetalHost>(d.kc, 'GET', objectPath(BareMetalHosts, ns, name));
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) return undefined;
    throw err;
  }
}

/** The owner Machine and its Cluster, from the caches. */
function owners(d: MachineDeps, m: BareMetalMachine): { owner?: CapiMachine; cluster?: CapiCluster } {
  const ns = m.metadata.namespace;
  const ownerName = capiOwner(m, 'Machine');
  const owner = ownerName ? d.capiMachines.get(ns, ownerName) : undefined;
  const clusterName = m.metadata.labels?.[ClusterNameLabel] ?? owner?.spec?.clusterName;
  return { ...(owner ? { owner } : {}), ...(clusterName ? { cluster: d.clusters.get(ns, clusterName) } : {}) };
}

function hostFacts(d: MachineDeps, h: BareMetalHost, m: BareMetalMachine): HostFacts {
  const phase = phaseOf(h);
  const run = d.runs.get(m.metadata.uid ?? '');
  return {
    name: h.metadata.name,
    phase,
    preflightPassed: phase === 'Provisioning' || phase === 'Provisioned',
    bootstrapSucceeded: phase === 'Provisioned',
    agentInstalled: getCondition(m, C.AgentInstalled)?.status === 'True',
    // Claimed: nothing of ours ran on it. Available while still held: reset, the release is pending.
    reset: phase === 'Claimed' || phase === 'Available',
    run: !run ? 'none' : run.state === 'running' ? 'running' : 'finished',
  };
}

/** What CAPI provides: the owner Machine, its Cluster, their readiness. */
function capiFacts(o: ReturnType<typeof owners>) {
  return {
    ownerMachine: o.owner !== undefined && o.cluster !== undefined,
    clusterInfraProvisioned: o.cluster?.status?.initialization?.infrastructureProvisioned === true,
    bootstrapDataReady: Boolean(o.owner?.spec?.bootstrap?.dataSecretName),
  };
}

/** Why the bootstrap failed for good, from the condition that recorded it. */
function bootstrapFailure(m: BareMetalMachine): { bootstrapFailure?: string } {
  const c = getCondition(m, C.BootstrapSucceeded);
  return c?.reason === 'BootstrapFailed' ? { bootstrapFailure: c.message ?? '' } : {};
}

/** Also sets the Paused condition on the working copy as it reads it (cluster-api util/paused). */
function facts(
  d: MachineDeps,
  m: BareMetalMachine,
  host: BareMetalHost | undefined,
  o: ReturnType<typeof owners>,
): MachineFacts {
  return {
    deleting: m.metadata.deletionTimestamp !== undefined,
    hasFinalizer: (m.metadata.finalizers ?? []).includes(MachineFinalizer),
    paused: setPausedCondition(m, o.cluster),
    ...capiFacts(o),
    ...(host ? { host: hostFacts(d, host, m) } : {}),
    availableHosts: host ? 0 : steps.availableHosts(d, m),
    providerIDSet: Boolean(m.spec.providerID),
    provisioned: m.status?.initialization?.provisioned === true,
    ...bootstrapFailure(m),
    agentEnabled: d.agent !== undefined,
  };
}

/** What carries out each step; the compiler checks that every step has one. */
const carryOut: {
  [K in StepKind]: (s: Step, step: Extract<MachineStep, { kind: K }>) => StepResult | Promise<StepResult>;
} = {
  wait: (_s, step) => ({ outcome: { kind: 'waiting', reason: step.reason, message: step.message } }),
  'add-finalizer': () => ({ outcome: { kind: 'none' } }),
  'claim-host': steps.claim,
  preflight: steps.preflight,
  'start-bootstrap': startBootstrap,
  'follow-bootstrap': followBootstrap,
  'finish-bootstrap': finishBootstrap,
  'install-agent': steps.installAgent,
  'set-provisioned': steps.setProvisioned,
  done: steps.health,
  'reset-host': steps.reset,
  'release-host': steps.release,
  'remove-finalizer': () => ({ outcome: { kind: 'none' }, letGo: true }),
};

function run(step: MachineStep, s: Step): StepResult | Promise<StepResult> {
  return (carryOut[step.kind] as (s: Step, step: MachineStep) => StepResult | Promise<StepResult>)(s, step);
}

function record(d: MachineDeps, s: Step, events: MachineEvent[]): void {
  for (const e of events) {
    d.recorder.event(s.m, e.type, e.reason, e.message);
    if (e.onHost && s.host) d.recorder.event(s.host, e.type, e.reason, e.message);
    s.log[e.type === 'Warning' ? 'warn' : 'info'](e.message, { reason: e.reason });
  }
}

/** Removes the finalizer, and only that: the object goes away, a status write would be lost. */
async function letGo(w: Writer<BareMetalMachine>, read: BareMetalMachine): Promise<void> {
  try {
    await w.update((m) => {
      m.status = structuredClone(read.status);
      m.metadata.finalizers = (m.metadata.finalizers ?? []).filter((f) => f !== MachineFinalizer);
    });
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 404)) throw err; // already gone (a stale cache)
  }
}

/** The reconcile function of the BareMetalMachine controller. */
export function reconcileMachine(d: MachineDeps) {
  return async (req: Request, ctx: ReconcileContext): Promise<Result> => {
    const read = d.fresh.machines.pick(req.key, d.machines.get(req.namespace, req.name));
    if (!read) return;
    const w = new Writer(d.kc, BareMetalMachines, read, {
      owned: ownedConditions,
      onWritten: (o) => d.fresh.machines.remember(req.key, o),
    });
    const o = owners(d, w.obj);
    const host = await heldHost(d, w.obj);
    const step = nextMachineStep(facts(d, w.obj, host, o));
    ctx.log.debug('step', { step: step.kind });
    const s: Step = { d, m: w.obj, key: req.key, log: ctx.log, signal: ctx.signal, ...(host ? { host } : {}), ...o };
    if (step.kind === 'add-finalizer')
      w.obj.metadata.finalizers = [...(w.obj.metadata.finalizers ?? []), MachineFinalizer];
    const r = await run(step, s);
    if (r.letGo) {
      await letGo(w, read);
      record(d, s, r.events ?? []);
      return r.result;
    }
    const events = applyOutcome(w.obj, r.outcome);
    await w.save();
    record(d, s, [...(r.events ?? []), ...events]);
    return r.result;
  };
}

/** Keys of machines to wake for a host event: its holder, or (when it became Available) the waiting ones. */
export function hostToMachines(d: Pick<MachineDeps, 'machines'>) {
  return (h: BareMetalHost): string[] => {
    const c = h.spec?.consumerRef;
    if (c) return [`${c.namespace}/${c.name}`];
    if (phaseOf(h) !== 'Available') return [];
    return d.machines
      .list(h.metadata.namespace)
      .filter((m) => {
        const r = getCondition(m, C.HostClaimed)?.reason;
        return r === 'NoHostAvailable' || r === 'HostRefused';
      })
      .map((m) => `${m.metadata.namespace}/${m.metadata.name}`);
  };
}

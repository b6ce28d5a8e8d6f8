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
import { claimed, phaseOf } from '../hosts/lifecycle.ts';
import { BareMetalHosts, BareMetalMachines, objectKey, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import { getCondition, setPausedCondition } from '../runtime/conditions.ts';
import type { ReconcileContext, Request, Result } from '../runtime/controller.ts';
import { adopt, movedHost } from './adopt.ts';
import { finishBootstrap, followBootstrap, startBootstrap } from './bootstrap-steps.ts';
import { prepareHost } from './prepare-step.ts';
import { capiOwner, ClusterNameLabel, ControlPlaneLabel, type CapiCluster, type CapiMachine } from './capi.ts';
import {
  MachineConditions as C,
  nextMachineStep,
  type HostFacts,
  type MachineFacts,
  type MachineStep,
  type Quiet,
  type StepKind,
} from './machine-plan.ts';
import { ConsumerIndex, WaitingIndex, waitingFor } from './indexes.ts';
import { deletedForMove } from './moved.ts';
import { applyOutcome, ownedConditions, type MachineEvent } from './machine-status.ts';
import * as steps from './machine-steps.ts';
import type { MachineDeps, Step, StepResult } from './machine-steps.ts';
import { Writer } from '../runtime/writer.ts';

export type { MachineDeps };
export const MachineFinalizer = 'baremetalmachine.infrastructure.cluster.x-k8s.io';
/** How long a new worker's wait for CAPI (bootstrap data) stays unwritten (machine-plan.ts Quiet). */
export const defaultQuietWaitMs = 30_000;

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
    prepared: getCondition(m, C.HostPrepared)?.status === 'True',
    bootstrapSucceeded: phase === 'Provisioned',
    agentInstalled: getCondition(m, C.AgentInstalled)?.status === 'True',
    // Claimed (phaseOf): nothing of ours ran on it, or it was reset and its release is pending.
    reset: phase === 'Claimed',
    run: !run ? 'none' : run.state === 'running' ? 'running' : 'finished',
  };
}

/** What CAPI provides: the owner Machine, its Cluster, their readiness. */
function capiFacts(m: BareMetalMachine, o: ReturnType<typeof owners>) {
  return {
    controlPlane: m.metadata.labels?.[ControlPlaneLabel] !== undefined,
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
    deletedForMove: deletedForMove(m),
    hasFinalizer: (m.metadata.finalizers ?? []).includes(MachineFinalizer),
    paused: setPausedCondition(m, o.cluster),
    ...capiFacts(m, o),
    ...(host ? { host: hostFacts(d, host, m) } : movedHostFact(d, m)),
    availableHosts: host ? 0 : steps.availableHosts(d, m),
    providerIDSet: Boolean(m.spec.providerID),
    provisioned: m.status?.initialization?.provisioned === true,
    ...bootstrapFailure(m),
    agentEnabled: d.agent !== undefined,
    preparationWanted: m.spec.preparation !== undefined,
    ageMs: Date.now() - Date.parse(m.metadata.creationTimestamp ?? ''),
    quietMs: d.quietWaitMs ?? defaultQuietWaitMs,
    said: getCondition(m, C.HostClaimed) !== undefined,
  };
}

/** The host held before a clusterctl move, named for the plan (adopt.ts). */
function movedHostFact(d: MachineDeps, m: BareMetalMachine): { movedHost?: string } {
  const h = movedHost(d, m);
  return h ? { movedHost: h.metadata.name } : {};
}

/** What carries out each step; the compiler checks that every step has one. */
const carryOut: {
  [K in StepKind]: (s: Step, step: Extract<MachineStep, { kind: K }>) => StepResult | Promise<StepResult>;
} = {
  wait: (_s, step) => ({ outcome: { kind: 'waiting', reason: step.reason, message: step.message } }),
  'add-finalizer': () => ({ outcome: { kind: 'none' } }),
  'claim-host': steps.claim,
  'adopt-host': adopt,
  preflight: steps.preflight,
  'prepare-host': prepareHost,
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

/** An event, with the host it is also about. */
type Noted = { e: MachineEvent; host: BareMetalHost | undefined };

function record(d: MachineDeps, m: BareMetalMachine, log: ReconcileContext['log'], events: Noted[]): void {
  for (const { e, host } of events) {
    d.recorder.event(m, e.type, e.reason, e.message);
    if (e.onHost && host) d.recorder.event(host, e.type, e.reason, e.message);
    log[e.type === 'Warning' ? 'warn' : 'info'](e.message, { reason: e.reason });
  }
}

/**
 * Writes the finalizer, and only that: adding it, it must be stored before anything is claimed for
 * the machine; removing it, the object goes away and a status write would be lost.
 */
async function finalizer(w: Writer<BareMetalMachine>, read: BareMetalMachine, add: boolean): Promise<void> {
  try {
    await w.update((m) => {
      m.status = structuredClone(read.status);
      const rest = (m.metadata.finalizers ?? []).filter((f) => f !== MachineFinalizer);
      m.metadata.finalizers = add ? [...rest, MachineFinalizer] : rest;
    });
  } catch (err) {
    if (add || !(err instanceof ApiError && err.code === 404)) throw err; // gone already (a stale cache)
  }
}

/**
 * Steps after which the next one is taken in the same reconcile, as CAPI's providers chain their
 * phases: claim, preflight and the start of the bootstrap in one pass; the end of the bootstrap,
 * the provisioned fields and the first health in another. A chain stops at a step that waits for
 * an event, asks for a requeue, or reports a problem; the machine is still written once.
 */
const chains: ReadonlySet<StepKind> = new Set([
  'claim-host',
  'adopt-host',
  'preflight',
  'prepare-host',
  'finish-bootstrap',
  'install-agent',
  'set-provisioned',
]);
const maxChain = 6;

/** The claim is written alone; the host's phase goes with its next write, or here if the chain stopped. */
async function settleClaimed(s: Step): Promise<void> {
  const h = s.host;
  if (h && h.spec.consumerRef && (h.status?.phase ?? 'Available') === 'Available') await steps.writeHost(s, h, claimed);
}

/** A quiet wait writes nothing; it is looked at again on the next event or at recheckMs. */
const quietResult = (q: Quiet): Result => (q.recheckMs !== undefined ? { requeueAfter: q.recheckMs } : undefined);

/** One reconcile of one machine: its working copy, the host it holds, what it noted on the way. */
class Pass {
  readonly w: Writer<BareMetalMachine>;
  readonly noted: Noted[] = [];
  host: BareMetalHost | undefined;
  readonly #d: MachineDeps;
  readonly #ctx: ReconcileContext;
  readonly #key: string;
  readonly #o: ReturnType<typeof owners>;

  constructor(
    d: MachineDeps,
    w: Writer<BareMetalMachine>,
    ctx: ReconcileContext & { key: string },
    host?: BareMetalHost,
  ) {
    this.#d = d;
    this.w = w;
    this.#key = ctx.key;
    this.#ctx = ctx;
    this.#o = owners(d, w.obj);
    this.host = host;
  }

  step(): Step {
    const { w, host } = this;
    return {
      d: this.#d,
      m: w.obj,
      key: this.#key,
      log: this.#ctx.log,
      signal: this.#ctx.signal,
      ...(host ? { host } : {}),
      ...this.#o,
    };
  }

  next(): MachineStep {
    const step = nextMachineStep(facts(this.#d, this.w.obj, this.host, this.#o));
    this.#ctx.log.debug('step', { step: step.kind });
    return step;
  }

  /** Records a step's outcome on the working copy; whether the chain may take the next step. */
  take(step: MachineStep, r: StepResult): boolean {
    const about = r.host ?? this.host;
    if (r.host) this.host = heldBy(r.host, this.w.obj.metadata.uid ?? '');
    for (const e of [...(r.events ?? []), ...applyOutcome(this.w.obj, r.outcome)]) this.noted.push({ e, host: about });
    const stops = r.outcome.kind === 'waiting' || r.outcome.kind === 'problem' || r.outcome.kind === 'none';
    return !r.result && !stops && chains.has(step.kind);
  }

  record(): void {
    record(this.#d, this.w.obj, this.#ctx.log, this.noted);
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
      newest: () => d.machines.get(req.namespace, req.name),
    });
    const p = new Pass(d, w, { ...ctx, key: req.key }, await heldHost(d, w.obj));
    let r: StepResult | undefined;
    for (let i = 0, more = true; more && i < maxChain; i++) {
      const step = p.next();
      if (step.kind === 'add-finalizer') return finalizer(w, read, true);
      if (step.kind === 'wait' && step.quiet && i === 0) return quietResult(step.quiet);
      r = await run(step, p.step());
      if (r.letGo) {
        await finalizer(w, read, false);
        p.take(step, { ...r, outcome: { kind: 'none' } });
        p.record();
        return r.result;
      }
      more = p.take(step, r);
    }
    await settleClaimed(p.step());
    await w.save();
    p.record();
    return r?.result;
  };
}

/** Keys of machines to wake for a host event: its holder, or (when it became Available) the waiting ones. */
export function hostToMachines(d: Pick<MachineDeps, 'machines'>) {
  return (h: BareMetalHost): string[] => {
    const c = h.spec?.consumerRef;
    if (c) return [`${c.namespace}/${c.name}`];
    if (phaseOf(h) !== 'Available') return [];
    return waitingFor(h).flatMap((k) =>
      d.machines.byIndex(WaitingIndex, k).map((m) => `${m.metadata.namespace}/${m.metadata.name}`),
    );
  };
}

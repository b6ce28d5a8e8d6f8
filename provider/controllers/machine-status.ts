// How the outcome of a step shows on a BareMetalMachine: conditions (v1beta2 and their v1beta1
// twins), the Ready summary, the phase, the provisioned fields, and the events it is worth (only
// on a transition: a condition that changes status or reason, a milestone reached). Pure: the
// reconciler applies it to its working copy and writes the copy once.
import type { BareMetalMachine } from '../api/machine.ts';
import { HostHealthyReasons } from '../health/condition.ts';
import type { AgentInstall } from '../health/node-agent.ts';
import {
  getCondition,
  setCondition,
  setSummary,
  setV1Beta1Condition,
  setV1Beta1Summary,
  type ConditionInput,
} from '../runtime/conditions.ts';
import { MachineConditions as C, type WaitReason } from './machine-plan.ts';
import type { PreflightProblemReason } from './preflight.ts';
import type { ProblemReason } from './problems.ts';
import type { PreparationProblemReason } from '../preparation/prepare.ts';

/** What carrying out one step came to. */
export type Outcome =
  | { kind: 'none' }
  | { kind: 'waiting'; reason: WaitReason; message: string }
  | {
      kind: 'claimed';
      host: string;
      address: string;
      /** Held since before a clusterctl move (moved.ts): what the host's run markers said. */
      adopted?: { message: string; ran: boolean };
    }
  | { kind: 'preflight-passed'; host: string; summary: string }
  | { kind: 'prepared'; host: string; message: string }
  | { kind: 'refused'; host: string; message: string }
  | {
      kind: 'problem';
      on: ProblemCondition;
      reason: ProblemReason | PreflightProblemReason | PreparationProblemReason;
      message: string;
    }
  | { kind: 'bootstrap-data-invalid'; message: string }
  | { kind: 'bootstrap-started'; total: number }
  | { kind: 'bootstrap-progress'; message: string }
  | { kind: 'bootstrap-failed'; message: string; attached: boolean }
  | {
      kind: 'bootstrapped';
      host: string;
      steps: number;
      attached: boolean;
      agent: AgentResult;
      provisioned?: Provisioned;
    }
  | { kind: 'agent'; host: string; agent: AgentResult }
  | { kind: 'provisioned'; host: string; provisioned: Provisioned }
  | { kind: 'health'; host: string; condition: ConditionInput };

/** The conditions a problem can show on: the one of the step it happened in. */
export type ProblemCondition =
  typeof C.HostReady | typeof C.HostPrepared | typeof C.BootstrapSucceeded | typeof C.AgentInstalled;

export type AgentResult = AgentInstall | 'not-configured';

export interface Provisioned {
  providerID: string;
  address: string;
}

export interface MachineEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** Also on the host (its `kubectl describe` tells the same story). */
  onHost?: boolean;
}

/** The condition types this controller owns on a BareMetalMachine (its writes win). */
export const ownedConditions: string[] = Object.values(C);

const summaryOf = [C.HostClaimed, C.HostReady, C.HostPrepared, C.BootstrapSucceeded];

/** A condition and its v1beta1 twin; waiting is Info there, anything else that is False a Warning. */
function cond(m: BareMetalMachine, c: ConditionInput): void {
  setCondition(m, c);
  setV1Beta1Condition(m, {
    type: c.type,
    status: c.status,
    reason: c.reason,
    ...(c.message ? { message: c.message } : {}),
    severity: c.status === false && /^Waiting|NoHost/.test(c.reason) ? 'Info' : 'Warning',
  });
}

const setPhase = (m: BareMetalMachine, phase: string) => (m.status = { ...m.status, phase });

/** Whether the condition would change status or reason: the transitions worth an event. */
function transition(m: BareMetalMachine, type: string, status: ConditionInput['status'], reason: string): boolean {
  const cur = getCondition(m, type);
  const s = status === true ? 'True' : status === false ? 'False' : status;
  return cur?.status !== s || cur.reason !== reason;
}

function waiting(m: BareMetalMachine, reason: WaitReason, message: string): void {
  if (reason === 'Paused') return; // only Paused changes (set with the facts)
  // CAPI sets the owner within moments of creating the machine: nothing worth a write (as CAPI's
  // own providers do, which return without touching the object until the owner is set).
  if (reason === 'WaitingForOwnerMachine') return;
  if (!m.status?.hostRef) {
    cond(m, { type: C.HostClaimed, status: false, reason, message });
    setPhase(m, 'Pending');
  } else if (reason === 'HostQuarantined') {
    cond(m, { type: C.HostReady, status: false, reason, message });
  } else {
    cond(m, { type: C.BootstrapSucceeded, status: false, reason, message });
  }
  if (!getCondition(m, C.HostReady)) cond(m, { type: C.HostReady, status: 'Unknown', reason: 'PreflightPending' });
  if (!getCondition(m, C.BootstrapSucceeded))
    cond(m, { type: C.BootstrapSucceeded, status: false, reason: 'WaitingForHost' });
}

function provision(m: BareMetalMachine, p: Provisioned): void {
  m.spec.providerID = p.providerID;
  m.status = {
    ...m.status,
    initialization: { provisioned: true },
    ready: true,
    addresses: [
      { type: 'InternalIP', address: p.address },
      { type: 'Hostname', address: m.metadata.name },
    ],
    phase: 'Provisioned',
  };
}

/** AgentInstalled from an install's result; a failure is an event when it is news. */
function agent(m: BareMetalMachine, host: string, a: AgentResult, events: MachineEvent[]): void {
  if (a === 'not-configured') return;
  if (a.installed) return cond(m, { type: C.AgentInstalled, status: true, reason: 'AgentInstalled' });
  const message = `The node agent could not be installed on host ${host}: ${a.message}`;
  if (transition(m, C.AgentInstalled, false, 'AgentInstallFailed'))
    events.push({ type: 'Warning', reason: 'AgentInstallFailed', message });
  cond(m, { type: C.AgentInstalled, status: false, reason: 'AgentInstallFailed', message });
}

function provisionedEvent(host: string, p: Provisioned, detail: string): MachineEvent {
  return {
    type: 'Normal',
    reason: 'Provisioned',
    message: `Provisioned on host ${host} (${p.address}) as ${p.providerID}${detail}`,
  };
}

function health(m: BareMetalMachine, host: string, c: ConditionInput, events: MachineEvent[]): void {
  const prev = getCondition(m, C.HostHealthy);
  setCondition(m, c);
  const status = String(c.status === true ? 'True' : c.status === false ? 'False' : c.status);
  const healthy = status === 'True';
  // News is a change, or a first report that is not healthy: a machine becoming healthy once
  // provisioned is what Provisioned already said (the condition records the time).
  const first = prev === undefined || prev.reason === HostHealthyReasons.NoReportYet;
  if (prev?.status === status || (healthy && first)) return;
  events.push({
    type: healthy ? 'Normal' : 'Warning',
    reason: healthy ? 'HostHealthy' : 'HostUnhealthy',
    message: `Host ${host}: HostHealthy=${status} (${c.reason})${c.message ? `: ${c.message}` : ''}`,
  });
}

type BootstrapOutcome = Extract<
  Outcome,
  { kind: 'bootstrap-started' | 'bootstrap-progress' | 'bootstrap-data-invalid' | 'bootstrap-failed' | 'bootstrapped' }
>;

/** A bootstrap that will not succeed here: its data is invalid, or it ran and failed. */
function bootstrapFailed(
  m: BareMetalMachine,
  o: Extract<BootstrapOutcome, { kind: 'bootstrap-data-invalid' | 'bootstrap-failed' }>,
  events: MachineEvent[],
): void {
  const reason = o.kind === 'bootstrap-failed' ? 'BootstrapFailed' : 'BootstrapDataInvalid';
  if (o.kind === 'bootstrap-failed' && o.attached) events.push(attachedEvent(m));
  if (transition(m, C.BootstrapSucceeded, false, reason)) events.push({ type: 'Warning', reason, message: o.message });
  cond(m, { type: C.BootstrapSucceeded, status: false, reason, message: o.message });
  if (o.kind === 'bootstrap-failed') setPhase(m, 'Failed');
}

function bootstrapped(
  m: BareMetalMachine,
  o: Extract<BootstrapOutcome, { kind: 'bootstrapped' }>,
  events: MachineEvent[],
): void {
  if (o.attached) events.push(attachedEvent(m));
  cond(m, { type: C.BootstrapSucceeded, status: true, reason: 'BootstrapSucceeded' });
  agent(m, o.host, o.agent, events);
  if (!o.provisioned) return;
  provision(m, o.provisioned);
  const withAgent = o.agent === 'not-configured' ? '' : ', node agent installed';
  events.push(provisionedEvent(o.host, o.provisioned, `: bootstrap of ${o.steps} steps succeeded${withAgent}`));
}

/** The part of applyOutcome for the bootstrap's outcomes. */
function bootstrap(m: BareMetalMachine, o: BootstrapOutcome, events: MachineEvent[]): void {
  switch (o.kind) {
    case 'bootstrap-started':
      return cond(m, {
        type: C.BootstrapSucceeded,
        status: false,
        reason: 'Bootstrapping',
        message: `Starting ${o.total} steps`,
      });
    case 'bootstrap-progress':
      return cond(m, { type: C.BootstrapSucceeded, status: false, reason: 'Bootstrapping', message: o.message });
    case 'bootstrap-data-invalid':
    case 'bootstrap-failed':
      return bootstrapFailed(m, o, events);
    case 'bootstrapped':
      return bootstrapped(m, o, events);
  }
}

/** HostPrepared=True: the host has the runtime and Kubernetes of the machine's version. */
function prepared(m: BareMetalMachine, o: Extract<Outcome, { kind: 'prepared' }>, events: MachineEvent[]): void {
  if (transition(m, C.HostPrepared, true, 'HostPrepared'))
    events.push({ type: 'Normal', reason: 'HostPrepared', message: `Host ${o.host}: ${o.message}`, onHost: true });
  cond(m, { type: C.HostPrepared, status: true, reason: 'HostPrepared', message: o.message });
}

/** The outcomes of the steps after preflight: preparation and the bootstrap's. */
function later(
  m: BareMetalMachine,
  o: BootstrapOutcome | Extract<Outcome, { kind: 'prepared' }>,
  events: MachineEvent[],
) {
  if (o.kind === 'prepared') prepared(m, o, events);
  else bootstrap(m, o, events);
}

const attachedEvent = (m: BareMetalMachine): MachineEvent => ({
  type: 'Normal',
  reason: 'BootstrapAttached',
  message: `Followed the bootstrap already running on host ${m.status?.hostRef?.name ?? ''} (started before this manager took over)`,
});

/**
 * A host claimed, or adopted after a clusterctl move. A claim is worth no event: it is on the path
 * to Provisioned, whose event names the host; until then HostClaimed=True says which host and since
 * when, and the host's consumerRef its holder. Events are kept for milestones and problems: each is
 * a write (docs/operations.md). An adoption is news (the operator of a move looks for it).
 */
function claimedHost(m: BareMetalMachine, o: Extract<Outcome, { kind: 'claimed' }>, events: MachineEvent[]): void {
  const a = o.adopted;
  const reason = a ? 'HostAdopted' : 'HostClaimed';
  cond(m, { type: C.HostClaimed, status: true, reason, message: a?.message ?? `Host ${o.host} (${o.address})` });
  if (a?.ran)
    cond(m, { type: C.HostReady, status: true, reason: 'PreflightPassed', message: 'before a clusterctl move' });
  else cond(m, { type: C.HostReady, status: 'Unknown', reason: 'PreflightPending' });
  m.status = { ...m.status, hostRef: { name: o.host }, phase: a?.ran ? 'Provisioning' : 'Claimed' };
  if (a) events.push({ type: 'Normal', reason, message: a.message, onHost: true });
}

/**
 * Applies an outcome to the working copy of the machine and returns the events to record. The
 * Ready summary is recomputed every time, so it always agrees with the conditions written with it.
 */
export function applyOutcome(m: BareMetalMachine, o: Outcome): MachineEvent[] {
  const events: MachineEvent[] = [];
  switch (o.kind) {
    case 'none':
      break;
    case 'waiting':
      waiting(m, o.reason, o.message);
      break;
    case 'claimed':
      claimedHost(m, o, events);
      break;
    case 'preflight-passed':
      cond(m, { type: C.HostReady, status: true, reason: 'PreflightPassed', message: o.summary });
      setPhase(m, 'Provisioning');
      break;
    case 'refused':
      events.push({
        type: 'Warning',
        reason: 'HostRefused',
        message: `Host ${o.host} refused and quarantined: ${o.message}`,
        onHost: true,
      });
      cond(m, {
        type: C.HostClaimed,
        status: false,
        reason: 'HostRefused',
        message: `Host ${o.host} was refused: ${o.message}`,
      });
      delete m.status!.hostRef;
      setPhase(m, 'Pending');
      break;
    case 'problem':
      if (transition(m, o.on, false, o.reason))
        events.push({ type: 'Warning', reason: o.reason, message: o.message, onHost: true });
      cond(m, { type: o.on, status: false, reason: o.reason, message: o.message });
      break;
    case 'agent':
      agent(m, o.host, o.agent, events);
      break;
    case 'provisioned':
      provision(m, o.provisioned);
      events.push(provisionedEvent(o.host, o.provisioned, ''));
      break;
    case 'health':
      health(m, o.host, o.condition, events);
      break;
    default:
      later(m, o, events);
  }
  // HostPrepared only exists on machines with spec.preparation.
  setSummary(m, C.Ready, summaryOf, { ignoreIfMissing: [C.HostPrepared] });
  setV1Beta1Summary(m, summaryOf);
  return events;
}

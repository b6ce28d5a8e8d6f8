// A BareMetalHost's life, as pure changes to a working copy that the caller writes once:
//
//   Available -> Claimed -> Provisioning -> Provisioned -> Deprovisioning -> (reset clean) -> Available
//                    \ (refused by preflight)         \ (reset failed or dirty) -> Quarantined
//
// The machine controller (provisioning, delete) and the host controller (hosts let out of
// quarantine) both go through these functions, so a host is quarantined, reset and released the
// same way whoever does it. The claim itself is spec.consumerRef, written with the host's
// resourceVersion (claim.ts); a quarantined host is never Available until a reset proves it clean.
import type { BareMetalHost, HostPhase } from '../api/host.ts';
import { deleteCondition, setCondition } from '../runtime/conditions.ts';

export const HostConditions = {
  /** The last SSH connection succeeded (or why it did not). */
  Reachable: 'Reachable',
  /** The read-only preflight found the host usable. */
  PreflightPassed: 'PreflightPassed',
  /** The last reset left nothing behind. */
  Clean: 'Clean',
} as const;

/** Why a host is quarantined. */
export type QuarantineReason = 'HostDirty' | 'ResetFailed';

/** Facts the preflight read (status.facts). */
export interface HostFactsRecord {
  os: string;
  kernel: string;
  arch: string;
  cpus: number;
  memoryKiB: number;
}

/**
 * The phase a host is in, spec first: a quarantine wins over whatever status says, and a held host
 * whose status still says Available is Claimed (the claim is written first, its phase with the next
 * write; and a host released after its reset is Available before its claim is cleared). Either
 * way nothing of ours runs on it.
 */
export function phaseOf(h: BareMetalHost): HostPhase {
  if (h.spec.quarantine) return 'Quarantined';
  const p = h.status?.phase ?? 'Available';
  return h.spec.consumerRef && p === 'Available' ? 'Claimed' : p;
}

const phase = (h: BareMetalHost, p: HostPhase) => (h.status = { ...h.status, phase: p });

/** Just claimed (consumerRef written): nothing of ours ran on it yet. */
export function claimed(h: BareMetalHost): void {
  phase(h, 'Claimed');
}

/**
 * Held again after a clusterctl move (controllers/moved.ts), which copies no status: the phase
 * read back from the host's bootstrap run markers. A run was started, so the preflight passed then.
 */
export function adopted(h: BareMetalHost, p: 'Provisioning' | 'Claimed'): void {
  phase(h, p);
  if (p === 'Provisioning')
    setCondition(h, {
      type: HostConditions.PreflightPassed,
      status: true,
      reason: 'PreflightPassed',
      message: 'before a clusterctl move',
    });
}

/** Connected over SSH with this host key. */
export function reached(h: BareMetalHost, fingerprint: string): void {
  h.status = { ...h.status, hostKeyFingerprint: fingerprint };
  setCondition(h, { type: HostConditions.Reachable, status: true, reason: 'Connected', message: '' });
}

/** Could not connect or authenticate; the reason says why (SSH reasons, missing Secret...). */
export function unreachable(h: BareMetalHost, reason: string, message: string): void {
  setCondition(h, { type: HostConditions.Reachable, status: false, reason, message });
}

export function preflightPassed(h: BareMetalHost, facts: HostFactsRecord): void {
  h.status = { ...h.status, phase: 'Provisioning', facts };
  setCondition(h, { type: HostConditions.PreflightPassed, status: true, reason: 'PreflightPassed', message: '' });
}

/** The host answered but cannot be used yet (clock, binaries, sudo): it stays held, retried later. */
export function preflightFailed(h: BareMetalHost, reason: string, message: string): void {
  setCondition(h, { type: HostConditions.PreflightPassed, status: false, reason, message });
}

function quarantine(h: BareMetalHost, reason: QuarantineReason, message: string, now: Date): void {
  h.spec.quarantine = { reason, message, since: now.toISOString() };
  delete h.spec.consumerRef;
  phase(h, 'Quarantined');
}

/**
 * The status of a host whose spec says it is quarantined. Spec and status are two writes, and the
 * host controller may see the first before the second: whoever writes the status writes all of
 * it, the phase and the Clean condition with what to do, so the advice is never lost to a race.
 */
export function markQuarantined(h: BareMetalHost): void {
  phase(h, 'Quarantined');
  const q = h.spec.quarantine;
  if (q) setCondition(h, { type: HostConditions.Clean, status: false, reason: q.reason, message: q.message });
}

/** Refused by preflight (leftovers of an earlier node): quarantined, let go by its machine. */
export function refuse(h: BareMetalHost, message: string, now = new Date()): void {
  quarantine(h, 'HostDirty', message, now);
  setCondition(h, { type: HostConditions.PreflightPassed, status: false, reason: 'HostDirty', message });
}

export function provisioned(h: BareMetalHost): void {
  phase(h, 'Provisioned');
}

export function deprovisioning(h: BareMetalHost): void {
  phase(h, 'Deprovisioning');
}

/** What a reset over SSH came to (controllers/reset.ts). */
export type ResetOutcome =
  | { clean: true }
  | { clean: false; reason: QuarantineReason; /** what is left, or why the reset could not run */ detail: string };

/** What an operator is told to do with a quarantined host. */
export function quarantineAdvice(hostName: string, detail: string): string {
  return `Host ${hostName} ${detail}. It is quarantined, never reused unclean. To return it: make it reachable and clean (or reinstall it), then remove spec.quarantine from the BareMetalHost; the provider resets it and returns it to the pool.`;
}

/**
 * Records a reset: clean -> Clean=True and the reset time (the host is released next, release());
 * otherwise quarantined with the reason and what to do, and no longer held by anyone.
 */
export function resetDone(h: BareMetalHost, r: ResetOutcome, now = new Date()): void {
  if (r.clean) {
    h.status = { ...h.status, lastResetTime: now.toISOString() };
    setCondition(h, { type: HostConditions.Clean, status: true, reason: 'Reset', message: '' });
    return;
  }
  const message = quarantineAdvice(h.metadata.name, r.detail);
  quarantine(h, r.reason, message, now);
  setCondition(h, { type: HostConditions.Clean, status: false, reason: r.reason, message });
}

/**
 * The status of a host returned to its pool: Available, with the conditions of its last tenancy
 * gone. Written BEFORE the consumer is cleared (claim.ts releaseHost): while the consumer is set
 * no other controller acts on the host, so no second reset can slip in between the two writes.
 */
export function released(h: BareMetalHost): void {
  phase(h, 'Available');
  if (h.status) delete h.status.agentCertificate;
  deleteCondition(h, HostConditions.PreflightPassed);
  deleteCondition(h, HostConditions.Reachable);
}

/** The node agent's newest certificate: the only one that may report and renew from now on. */
export function agentCertified(h: BareMetalHost, c: { serial: string; notBefore: string }): void {
  h.status = { ...h.status, agentCertificate: { serial: c.serial, notBefore: c.notBefore } };
}

/** What the host controller does with a host nobody holds. */
export type UnheldAction = 'none' | 'mark-quarantined' | 'mark-available' | 'reset';

export function unheldAction(h: BareMetalHost): UnheldAction {
  const p = h.status?.phase;
  if (h.spec.quarantine) return p === 'Quarantined' ? 'none' : 'mark-quarantined';
  if (p === undefined) return 'mark-available';
  // Out of quarantine, or a reset interrupted: clean it before anyone may claim it.
  return p === 'Available' ? 'none' : 'reset';
}

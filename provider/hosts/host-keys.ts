// The pool's HostKeysMatch condition, from its hosts' Reachable conditions, and the pool's warnings.
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import { hostKeyAdvice } from '../controllers/problems.ts';
import type { ConditionInput } from '../runtime/conditions.ts';
import type { EventRecorder } from '../runtime/events.ts';

type Cond = ConditionInput & { message: string };

/**
 * Whether every host of the pool serves a key the pool accepts, as the last connection to each found
 * (the host's Reachable condition): a re-created machine at a pinned address is named here.
 */
export function hostKeysCondition(pool: BareMetalHostPool, hosts: BareMetalHost[]): Cond {
  const bad = hosts.filter((h) =>
    h.status?.conditions?.some((c) => c.type === 'Reachable' && c.status === 'False' && c.reason === 'HostKeyMismatch'),
  );
  if (bad.length === 0) return { type: 'HostKeysMatch', status: 'True', reason: 'NoMismatch', message: '' };
  const which = bad.map((h) => `${h.metadata.name} (${h.spec.address})`).join(', ');
  return {
    type: 'HostKeysMatch',
    status: 'False',
    reason: 'HostKeyMismatch',
    message: `${which} served an SSH host key the pool does not accept; nothing was run there. ${hostKeyAdvice(pool)}`,
  };
}

/** Events for what is wrong: an overlap (True is the problem), missing credentials, a host key refused. */
export function warn(
  recorder: EventRecorder,
  pool: BareMetalHostPool,
  c: { clash: Cond; creds: Cond; keys: Cond },
): void {
  if (c.clash.status === 'True') recorder.event(pool, 'Warning', c.clash.reason, c.clash.message);
  if (c.creds.status === 'False') recorder.event(pool, 'Warning', c.creds.reason, c.creds.message);
  if (c.keys.status === 'False') recorder.event(pool, 'Warning', c.keys.reason, c.keys.message);
}

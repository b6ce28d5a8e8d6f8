// The pool's HostKeysMatch condition, from its hosts' Reachable conditions.
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import { hostKeyAdvice } from '../controllers/problems.ts';
import type { ConditionInput } from '../runtime/conditions.ts';

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

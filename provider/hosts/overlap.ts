// One physical host, one BareMetalHost, cluster-wide: when pools (of any namespace) list the same
// address, exactly one of them holds it and only that pool materializes a host for it. Pure: the
// pool controller gives the caches (every pool, hosts by address) and gets, per address of its
// pool that another pool holds, the holder. The rule, the same whoever computes it:
//   1. a pool that already has a host for the address holds it (a host in use is never undercut
//      by a pool edited later); with hosts in two pools (made in the same instant), the older host;
//   2. otherwise the oldest pool (creation time, then namespace/name) holds it.
// Claims are additionally serialised per address (claim.ts address locks), so even in the instant
// before the pools agree, one server is never claimed twice.
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';

export interface PoolAddresses {
  pool: BareMetalHostPool;
  /** The pool's expanded addresses. */
  addresses: ReadonlySet<string>;
}

const key = (o: { metadata: { namespace: string; name: string } }) => `${o.metadata.namespace}/${o.metadata.name}`;

/** Older first: creation time, then namespace/name, so every reader orders the same. */
function older(a: { metadata: { creationTimestamp?: string; namespace: string; name: string } }, b: typeof a): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  return ta !== tb ? (ta < tb ? -1 : 1) : key(a) < key(b) ? -1 : 1;
}

/** The pool (namespace/name) that holds an address, given its hosts and the pools that list it. */
export function holderOf(hosts: BareMetalHost[], listing: BareMetalHostPool[]): string | undefined {
  const live = hosts.filter((h) =>
    listing.some((p) => p.metadata.namespace === h.metadata.namespace && p.metadata.name === h.spec.poolRef.name),
  );
  const first = [...live].sort(older)[0];
  if (first) return `${first.metadata.namespace}/${first.spec.poolRef.name}`;
  const oldest = [...listing].sort(older)[0];
  return oldest ? key(oldest) : undefined;
}

/**
 * The addresses of `mine` that another pool holds, with that pool (namespace/name). Pools whose
 * addresses cannot be expanded are left out (they report their own problem).
 */
export function heldElsewhere(
  mine: PoolAddresses,
  others: PoolAddresses[],
  hostsAt: (address: string) => BareMetalHost[],
): Map<string, string> {
  const me = key(mine.pool);
  const out = new Map<string, string>();
  for (const address of mine.addresses) {
    const listing = others.filter((o) => o.addresses.has(address)).map((o) => o.pool);
    if (listing.length === 0) continue;
    const holder = holderOf(hostsAt(address), [mine.pool, ...listing]);
    if (holder && holder !== me) out.set(address, holder);
  }
  return out;
}

/** "10.0.0.12 and 3 more are held by pool team-a/rack1": what the pool's condition says. */
export function heldMessage(held: Map<string, string>): string {
  const byHolder = new Map<string, string[]>();
  for (const [a, p] of held) byHolder.set(p, [...(byHolder.get(p) ?? []), a]);
  const parts = [...byHolder].map(([p, as]) => {
    const shown = as.slice(0, 5).join(', ');
    return `${shown}${as.length > 5 ? ` and ${as.length - 5} more` : ''} ${as.length === 1 ? 'is' : 'are'} held by pool ${p}`;
  });
  return `${parts.join('; ')}. One server is one host: these addresses get no host in this pool; remove them here (or from the other pool) to end the overlap.`;
}

/** The pool's AddressesOverlap condition: addresses another pool holds, or this pool's that others list too. */
export function overlapCondition(o: { held: Map<string, string>; shared: PoolAddresses[] }): {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
} {
  if (o.held.size)
    return { type: 'AddressesOverlap', status: 'True', reason: 'AddressesHeldElsewhere', message: heldMessage(o.held) };
  if (o.shared.length) {
    const names = o.shared.map((x) => key(x.pool)).join(', ');
    return {
      type: 'AddressesOverlap',
      status: 'True',
      reason: 'AddressesAlsoListed',
      message: `Pool(s) ${names} list addresses of this pool; this pool holds them (its hosts came first), the others get no host for them.`,
    };
  }
  return { type: 'AddressesOverlap', status: 'False', reason: 'NoOverlap', message: '' };
}

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

/** The other pools that list an address (address-book.ts). */
export type Listing = (address: string) => BareMetalHostPool[];

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
 * The addresses of `pool` that another pool holds, with that pool (namespace/name). Pools whose
 * addresses cannot be expanded list none (they report their own problem).
 */
export function heldElsewhere(
  pool: BareMetalHostPool,
  addresses: Iterable<string>,
  listing: Listing,
  hostsAt: (address: string) => BareMetalHost[],
): Map<string, string> {
  const me = key(pool);
  const out = new Map<string, string>();
  for (const address of addresses) {
    const others = listing(address);
    if (others.length === 0) continue;
    const holder = holderOf(hostsAt(address), [pool, ...others]);
    if (holder && holder !== me) out.set(address, holder);
  }
  return out;
}

/** The other pools listing addresses this pool keeps (the ones it holds although they list them too). */
export function sharedWith(kept: Iterable<string>, listing: Listing): BareMetalHostPool[] {
  const out = new Map<string, BareMetalHostPool>();
  for (const address of kept) for (const p of listing(address)) out.set(key(p), p);
  return [...out.values()];
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
export function overlapCondition(o: { held: Map<string, string>; shared: BareMetalHostPool[] }): {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
} {
  if (o.held.size)
    return { type: 'AddressesOverlap', status: 'True', reason: 'AddressesHeldElsewhere', message: heldMessage(o.held) };
  if (o.shared.length) {
    const names = o.shared.map(key).join(', ');
    return {
      type: 'AddressesOverlap',
      status: 'True',
      reason: 'AddressesAlsoListed',
      message: `Pool(s) ${names} list addresses of this pool; this pool holds them (its hosts came first), the others get no host for them.`,
    };
  }
  return { type: 'AddressesOverlap', status: 'False', reason: 'NoOverlap', message: '' };
}

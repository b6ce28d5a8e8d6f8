// Which pools list an address: every pool's ranges expanded once per change of its addresses, and
// an index from address to the pools listing it. The pool reconciler's overlap check asks it for
// the addresses of one pool, so a reconcile costs the size of its pool, not of every pool (with
// 1,000 pools, expanding all the others on every reconcile was a fifth of the manager's CPU).
import type { BareMetalHostPool } from '../api/pool.ts';
import { expandPool } from './expand.ts';

interface Entry {
  /** The pool object last seen: the same object (an informer's copy) is not looked at again. */
  seen: BareMetalHostPool;
  /** What the expansion was made from. */
  source: string;
  /** Undefined when the pool's addresses cannot be expanded (the pool reports that itself). */
  addresses?: ReadonlySet<string>;
}

/** A pool's key in the book: its uid, else namespace/name (objects not yet stored). */
const idOf = (p: BareMetalHostPool) => p.metadata.uid ?? `${p.metadata.namespace}/${p.metadata.name}`;

const sourceOf = (p: BareMetalHostPool) => JSON.stringify([p.spec.addresses, p.spec.exclude ?? []]);

export class AddressBook {
  readonly #entries = new Map<string, Entry>();
  readonly #listing = new Map<string, Set<string>>();
  readonly #pools = new Map<string, BareMetalHostPool>();

  /** Brings the book to these pools (every pool the caller knows): cheap when few changed. */
  sync(pools: Iterable<BareMetalHostPool>): void {
    const present = new Set<string>();
    for (const p of pools) {
      const uid = idOf(p);
      present.add(uid);
      this.#pools.set(uid, p);
      const e = this.#entries.get(uid);
      if (e?.seen === p) continue;
      const source = sourceOf(p);
      if (e && e.source === source) {
        e.seen = p;
        continue;
      }
      this.#drop(uid);
      this.#add(uid, p, source);
    }
    for (const uid of [...this.#entries.keys()]) if (!present.has(uid)) this.#drop(uid);
  }

  /** The pools other than `self` (by uid) that list the address. */
  listing(address: string, self: BareMetalHostPool): BareMetalHostPool[] {
    const uids = this.#listing.get(address);
    if (!uids) return [];
    const out: BareMetalHostPool[] = [];
    for (const uid of uids) {
      const p = this.#pools.get(uid);
      if (p && uid !== idOf(self)) out.push(p);
    }
    return out;
  }

  #add(uid: string, p: BareMetalHostPool, source: string): void {
    let addresses: Set<string> | undefined;
    try {
      addresses = new Set(expandPool(p.spec.addresses, p.spec.exclude ?? []));
    } catch {
      addresses = undefined;
    }
    this.#entries.set(uid, { seen: p, source, ...(addresses ? { addresses } : {}) });
    this.#pools.set(uid, p);
    for (const a of addresses ?? []) {
      let set = this.#listing.get(a);
      if (!set) this.#listing.set(a, (set = new Set()));
      set.add(uid);
    }
  }

  #drop(uid: string): void {
    const e = this.#entries.get(uid);
    this.#entries.delete(uid);
    this.#pools.delete(uid);
    for (const a of e?.addresses ?? []) {
      const set = this.#listing.get(a);
      set?.delete(uid);
      if (set?.size === 0) this.#listing.delete(a);
    }
  }
}

import test from 'ava';
import type { BareMetalHost } from '../../../provider/api/host.ts';
import type { BareMetalHostPool } from '../../../provider/api/pool.ts';
import { AddressBook } from '../../../provider/hosts/address-book.ts';
import { heldElsewhere, sharedWith } from '../../../provider/hosts/overlap.ts';

const pool = (
  name: string,
  addresses: string[],
  o: { uid?: string; ns?: string; at?: string; exclude?: string[] } = {},
) =>
  ({
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1alpha1',
    kind: 'BareMetalHostPool',
    metadata: {
      name,
      namespace: o.ns ?? 'ns',
      uid: o.uid ?? `uid-${name}`,
      creationTimestamp: o.at ?? '2026-12-01T00:00:00Z',
    },
    spec: { addresses, ...(o.exclude ? { exclude: o.exclude } : {}), ssh: { user: 'root', secretRef: { name: 's' } } },
  }) as BareMetalHostPool;

const names = (ps: BareMetalHostPool[]) => ps.map((p) => p.metadata.name).sort();

test('address book: the other pools listing an address, never the asking pool', (t) => {
  const a = pool('a', ['10.0.0.0/30']);
  const b = pool('b', ['10.0.0.2-10.0.0.5']);
  const c = pool('c', ['10.0.1.1']);
  const book = new AddressBook();
  book.sync([a, b, c]);
  t.deepEqual(names(book.listing('10.0.0.2', a)), ['b']);
  t.deepEqual(names(book.listing('10.0.0.2', b)), ['a']);
  t.deepEqual(names(book.listing('10.0.0.1', a)), []);
  t.deepEqual(names(book.listing('10.0.1.1', a)), ['c']);
  t.deepEqual(names(book.listing('10.9.9.9', a)), []);
});

test('address book: an edited, deleted or broken pool is seen at the next sync', (t) => {
  const book = new AddressBook();
  const a = pool('a', ['10.0.0.1-10.0.0.4']);
  const b = pool('b', ['10.0.0.4']);
  book.sync([a, b]);
  t.deepEqual(names(book.listing('10.0.0.4', a)), ['b']);
  // b edited (a new object, as the informer gives): its old address is no longer listed by it.
  const b2 = pool('b', ['10.0.0.3']);
  book.sync([a, b2]);
  t.deepEqual(names(book.listing('10.0.0.4', a)), []);
  t.deepEqual(names(book.listing('10.0.0.3', a)), ['b']);
  // exclude counts as an edit.
  book.sync([a, pool('b', ['10.0.0.3'], { exclude: ['10.0.0.3'] })]);
  t.deepEqual(names(book.listing('10.0.0.3', a)), []);
  // A status-only change (same addresses, a new object) keeps the expansion and serves the new object.
  const b3 = { ...pool('b', ['10.0.0.2']), status: { total: 1 } } as BareMetalHostPool;
  book.sync([a, b3]);
  const b4 = { ...b3, status: { total: 2 } } as BareMetalHostPool;
  book.sync([a, b4]);
  t.is(book.listing('10.0.0.2', a)[0], b4);
  // Unparseable addresses list nothing; deleted pools neither.
  book.sync([a, pool('b', ['not-an-address'])]);
  t.deepEqual(names(book.listing('10.0.0.2', a)), []);
  book.sync([pool('b', ['10.0.0.2'])]);
  book.sync([a]);
  t.deepEqual(names(book.listing('10.0.0.2', a)), []);
});

test('overlap from the book: the older pool holds, a pool with the host holds, shared ones are named', (t) => {
  const old = pool('old', ['10.0.0.1-10.0.0.3'], { at: '2026-12-01T00:00:00Z' });
  const late = pool('late', ['10.0.0.3-10.0.0.5'], { at: '2026-12-01T01:00:00Z', ns: 'other' });
  const book = new AddressBook();
  book.sync([old, late]);
  const none = () => [] as BareMetalHost[];
  const lateHeld = heldElsewhere(late, ['10.0.0.3', '10.0.0.4', '10.0.0.5'], (a) => book.listing(a, late), none);
  t.deepEqual([...lateHeld], [['10.0.0.3', 'ns/old']]);
  const oldHeld = heldElsewhere(old, ['10.0.0.1', '10.0.0.2', '10.0.0.3'], (a) => book.listing(a, old), none);
  t.is(oldHeld.size, 0);
  t.deepEqual(names(sharedWith(['10.0.0.1', '10.0.0.2', '10.0.0.3'], (a) => book.listing(a, old))), ['late']);
  // The late pool already has a host there (made before the old pool listed it): it keeps it.
  const host = {
    metadata: { name: 'late-10-0-0-3', namespace: 'other', creationTimestamp: '2026-12-01T02:00:00Z' },
    spec: { address: '10.0.0.3', poolRef: { name: 'late' } },
  } as BareMetalHost;
  const at = (a: string) => (a === '10.0.0.3' ? [host] : []);
  t.deepEqual([...heldElsewhere(old, ['10.0.0.3'], (a) => book.listing(a, old), at)], [['10.0.0.3', 'other/late']]);
});

test('address book: 1,000 pools, one reconcile looks at its own addresses only', (t) => {
  const pools = Array.from({ length: 1000 }, (_, i) =>
    pool(`p${i}`, [`10.${(i >> 8) & 255}.${i & 255}.0/28`], { uid: `u${i}` }),
  );
  const book = new AddressBook();
  book.sync(pools);
  // A sync with nothing changed is a walk over the pools, no expansion: bounded, not timed.
  for (let i = 0; i < 100; i++) book.sync(pools);
  t.deepEqual(book.listing('10.0.5.3', pools[0]!), [pools[5]!]);
  t.deepEqual(book.listing('10.0.5.3', pools[5]!), []);
});

import test from 'ava';
import ipaddr from 'ipaddr.js';
import fc from 'fast-check';
import { BadAddress, PoolTooLarge, expandPool, hostName } from '../../../provider/hosts/expand.ts';

test('addresses, ranges and CIDRs expand, IPv4 and IPv6, with exclusions', (t) => {
  t.deepEqual(expandPool(['10.0.0.1', '10.0.0.3-10.0.0.5']), ['10.0.0.1', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
  t.deepEqual(expandPool(['10.0.0.0/30']), ['10.0.0.1', '10.0.0.2'], 'network and broadcast are not hosts');
  t.deepEqual(expandPool(['10.0.0.0/31']), ['10.0.0.0', '10.0.0.1'], 'RFC 3021');
  t.deepEqual(expandPool(['fd00::/126']), ['fd00::1', 'fd00::2', 'fd00::3']);
  t.deepEqual(expandPool(['fd00::a-fd00::c']), ['fd00::a', 'fd00::b', 'fd00::c']);
  t.deepEqual(expandPool(['10.0.0.1-10.0.0.6'], ['10.0.0.2', '10.0.0.4-10.0.0.5']), [
    '10.0.0.1',
    '10.0.0.3',
    '10.0.0.6',
  ]);
  t.deepEqual(expandPool(['10.0.0.1', '10.0.0.1-10.0.0.2']), ['10.0.0.1', '10.0.0.2'], 'no duplicates');
});

test('bad entries and oversized pools are refused before anything is listed', (t) => {
  t.throws(() => expandPool(['10.0.0.9-10.0.0.1']), { instanceOf: BadAddress, message: /starts above its end/ });
  t.throws(() => expandPool(['10.0.0.1-fd00::1']), { instanceOf: BadAddress, message: /mix IPv4 and IPv6/ });
  t.throws(() => expandPool(['10.0.0.0/33']), { instanceOf: BadAddress });
  t.throws(() => expandPool(['10.0.0.0/8']), { instanceOf: PoolTooLarge, message: /split it into several pools/ });
  t.throws(() => expandPool(['fd00::/64']), { instanceOf: PoolTooLarge });
});

test('host names are DNS-safe and distinct per address', (t) => {
  t.is(hostName('rack1', '10.0.0.5'), 'rack1-10-0-0-5');
  t.is(hostName('rack1', 'fd00::5'), 'rack1-fd00-0000-0000-0000-0000-0000-0000-0005');
  t.regex(hostName('p', 'fd00::'), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  // The review's collision: pool rack1 + 10.0.0.12 and pool rack1-10-0-0 + 12:: had one name.
  t.not(hostName('rack1', '10.0.0.12'), hostName('rack1-10-0-0', '12::'));
});

test('property: host names are unique by construction (no two (pool, address) pairs share one)', (t) => {
  const label = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/);
  const v4 = fc.ipV4();
  const v6 = fc.ipV6();
  const pair = fc.tuple(label, fc.oneof(v4, v6));
  fc.assert(
    fc.property(pair, pair, ([p1, a1], [p2, a2]) => {
      const same = p1 === p2 && ipaddr.parse(a1).toNormalizedString() === ipaddr.parse(a2).toNormalizedString();
      return same === (hostName(p1, a1) === hostName(p2, a2));
    }),
    { numRuns: 2000 },
  );
  // Built to collide: a pool name that ends like an address.
  for (const [p, a] of [
    ['a-1-2', '3.4.5.6'],
    ['a-1-2-3-4', '5.6.7.8'],
  ] as const)
    t.not(hostName(p, a), hostName('a', '1.2.3.4'));
});

test('property: a range expands to exactly its size, without duplicates, minus exclusions', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 32 - 300 }),
      fc.integer({ min: 0, max: 250 }),
      fc.array(fc.integer({ min: 0, max: 250 }), { maxLength: 10 }),
      (start, len, ex) => {
        const ip = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
        const excluded = new Set(ex.filter((e) => e <= len).map((e) => ip(start + e)));
        const out = expandPool([`${ip(start)}-${ip(start + len)}`], [...excluded]);
        return (
          out.length === len + 1 - excluded.size &&
          new Set(out).size === out.length &&
          out.every((a) => !excluded.has(a))
        );
      },
    ),
    { numRuns: 200 },
  );
  t.pass();
});

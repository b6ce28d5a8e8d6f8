import test from 'ava';
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
  t.is(hostName('rack1', 'fd00::5'), 'rack1-fd00--5');
  t.regex(hostName('p', 'fd00::'), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
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

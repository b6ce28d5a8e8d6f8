// The test harness's own logic (test/harness/env.ts, host-sim-net.ts): what it hands the provider
// must be accepted, and the simulated hosts' addresses stay inside the lab's 10.250.0.0/16.
import test from 'ava';
import { addressRanges } from '../harness/env.ts';
import { simAddresses, simRange } from '../harness/host-sim-net.ts';

test('consecutive lab addresses become ranges a pool accepts', (t) => {
  t.deepEqual(addressRanges(['10.250.1.3', '10.250.1.1', '10.250.1.2', '10.250.1.9', '10.250.1.255', '10.250.2.0']), [
    '10.250.1.1-10.250.1.3',
    '10.250.1.9',
    '10.250.1.255-10.250.2.0',
  ]);
  t.is(addressRanges(Array.from({ length: 200 }, (_, i) => `10.250.${1 + (i >> 8)}.${i & 255}`)).length, 1);
});

test("the host simulator's addresses: one aligned prefix at the top of 10.250, never past it", (t) => {
  t.deepEqual(simRange(1), { first: 192, prefixLength: 18 });
  t.deepEqual(simRange(64 * 254), { first: 192, prefixLength: 18 });
  t.deepEqual(simRange(64 * 254 + 1), { first: 128, prefixLength: 17 });
  t.deepEqual(simRange(128 * 254), { first: 128, prefixLength: 17 });
  t.throws(() => simRange(128 * 254 + 1), { message: /do not fit: at most 32512/ });
  const a = simAddresses(20_000);
  t.is(a[0], '10.250.128.1');
  t.is(a.at(-1), '10.250.206.188');
  t.is(new Set(a).size, 20_000);
  t.is(simAddresses(128 * 254).at(-1), '10.250.255.254');
});

// The test harness's own logic (test/harness/env.ts): what it hands the provider must be accepted.
import test from 'ava';
import { addressRanges } from '../harness/env.ts';

test('consecutive lab addresses become ranges a pool accepts', (t) => {
  t.deepEqual(addressRanges(['10.250.1.3', '10.250.1.1', '10.250.1.2', '10.250.1.9', '10.250.1.255', '10.250.2.0']), [
    '10.250.1.1-10.250.1.3',
    '10.250.1.9',
    '10.250.1.255-10.250.2.0',
  ]);
  t.is(addressRanges(Array.from({ length: 200 }, (_, i) => `10.250.${1 + (i >> 8)}.${i & 255}`)).length, 1);
});

// Backoff stays within its bounds whatever the attempt and the jitter draw.
import test from 'ava';
import fc from 'fast-check';
import { Backoff, backoffDelay } from '../../../provider/runtime/backoff.ts';

test('property: delay grows, is capped, and jitter adds at most its fraction', (t) => {
  fc.assert(
    fc.property(fc.nat(200), fc.double({ min: 0, max: 0.999, noNaN: true }), (n, r) => {
      const d = backoffDelay(n, { initialMs: 100, maxMs: 10_000, jitter: 0.5, random: () => r });
      const base = Math.min(10_000, 100 * 2 ** n);
      return d >= base && d <= Math.round(base * 1.5);
    }),
  );
  t.pass();
});

test('reset starts over', (t) => {
  const b = new Backoff({ initialMs: 10, jitter: 0 });
  t.deepEqual([b.next(), b.next(), b.next()], [10, 20, 40]);
  b.reset();
  t.is(b.next(), 10);
});

// The bound on checks in flight: taken in order, given back once, a waiter that gives up leaves.
import test from 'ava';
import { Slots } from '../../../provider/runtime/slots.ts';

test('at most max held; waiters go in the order they asked; giving back twice counts once', async (t) => {
  const s = new Slots(2);
  const a = await s.take();
  const b = await s.take();
  const order: string[] = [];
  const c = s.take().then((g) => (order.push('c'), g));
  const d = s.take().then((g) => (order.push('d'), g));
  t.is(s.waiting, 2);
  a();
  a();
  const gc = await c;
  t.deepEqual(order, ['c']);
  t.is(s.inUse, 2);
  b();
  gc();
  (await d)();
  t.deepEqual(order, ['c', 'd']);
  t.is(s.inUse, 0);
});

test('a waiter whose signal aborts leaves the line', async (t) => {
  const s = new Slots(1);
  const held = await s.take();
  const abort = new AbortController();
  const waiting = s.take(abort.signal);
  abort.abort(new Error('stopped'));
  await t.throwsAsync(waiting, { message: 'stopped' });
  t.is(s.waiting, 0);
  held();
  t.is(s.inUse, 0);
  t.is(await s.run(() => Promise.resolve(5)), 5);
});

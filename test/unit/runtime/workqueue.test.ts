// The work queue's promises to a controller, with a fake clock: de-duplication, one worker per key,
// re-queue after processing, per-key backoff, delayed adds, graceful shutdown.
import test from 'ava';
import fc from 'fast-check';
import { WorkQueue, type Clock } from '../../../provider/runtime/workqueue.ts';

class FakeClock implements Clock {
  t = 0;
  timers: Array<{ at: number; fn: () => void; id: number }> = [];
  #id = 0;
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const id = ++this.#id;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown) {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  advance(ms: number) {
    this.t += ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at)[0];
      if (!due) return;
      this.clearTimeout(due.id);
      due.fn();
    }
  }
}

test('a key added while queued is handed out once', async (t) => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('ns/a');
  q.add('ns/b');
  q.add('ns/a');
  t.is(q.len(), 2);
  t.is(await q.get(), 'ns/a');
  t.is(await q.get(), 'ns/b');
  t.is(q.len(), 0);
});

test('a key added while processed is queued again once, after done', async (t) => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('k');
  const k = await q.get();
  q.add('k');
  q.add('k');
  t.is(q.len(), 0, 'not handed to a second worker while in flight');
  q.done(k!);
  t.is(q.len(), 1);
  t.is(await q.get(), 'k');
  q.done('k');
  t.is(q.len(), 0);
});

test('a waiting get() receives the next add', async (t) => {
  const q = new WorkQueue({ clock: new FakeClock() });
  const p = q.get();
  q.add('x');
  t.is(await p, 'x');
});

test('failures back off exponentially per key until forget', (t) => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock, backoff: { initialMs: 10, maxMs: 80 } });
  t.deepEqual(
    [1, 2, 3, 4, 5].map(() => q.addRateLimited('k')),
    [10, 20, 40, 80, 80],
  );
  t.is(q.addRateLimited('other'), 10, 'another key has its own backoff');
  q.forget('k');
  t.is(q.numRequeues('k'), 0);
  t.is(q.addRateLimited('k'), 10);
});

test('addAfter keeps the earliest deadline and adds when it passes', (t) => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock });
  q.addAfter('k', 1000);
  q.addAfter('k', 500);
  q.addAfter('k', 2000);
  t.is(q.delayed(), 1);
  clock.advance(499);
  t.is(q.len(), 0);
  clock.advance(1);
  t.is(q.len(), 1);
  clock.advance(5000);
  t.is(q.len(), 1, 'later deadlines were dropped');
});

test('shutDown releases waiting workers; drain waits for in-flight keys', async (t) => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('a');
  const a = await q.get();
  const waiting = q.get();
  q.shutDown();
  t.is(await waiting, undefined);
  q.add('b');
  t.is(q.len(), 0, 'no adds after shutdown');
  let drained = false;
  const d = q.drain().then(() => (drained = true));
  await Promise.resolve();
  t.false(drained);
  q.done(a!);
  await d;
  t.true(drained);
});

test('metrics hooks see adds, depth, latency and work duration', async (t) => {
  const clock = new FakeClock();
  const seen = { adds: 0, depth: [] as number[], latency: [] as number[], work: [] as number[] };
  const q = new WorkQueue({
    clock,
    metrics: {
      added: () => seen.adds++,
      depth: (n) => seen.depth.push(n),
      queueLatency: (s) => seen.latency.push(s),
      workDuration: (s) => seen.work.push(s),
    },
  });
  q.add('a');
  clock.advance(2000);
  const k = await q.get();
  clock.advance(500);
  q.done(k!);
  t.is(seen.adds, 1);
  t.deepEqual(seen.latency, [2]);
  t.deepEqual(seen.work, [0.5]);
  t.deepEqual(seen.depth, [1, 0]);
});

test('property: with any interleaving of adds and worker steps, no key is held twice and every add is processed', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof(fc.constantFrom('a', 'b', 'c'), fc.constant('step')), { maxLength: 60 }),
      async (ops) => {
        const q = new WorkQueue({ clock: new FakeClock() });
        const held = new Set<string>();
        const pendingSinceLastTake = new Set<string>();
        for (const op of ops) {
          if (op !== 'step') {
            q.add(op);
            pendingSinceLastTake.add(op);
          } else if (held.size > 0) {
            const k = [...held][0]!;
            held.delete(k);
            q.done(k);
          } else if (q.len() > 0) {
            const k = (await q.get())!;
            t.false(held.has(k));
            held.add(k);
            pendingSinceLastTake.delete(k);
          }
        }
        // Finish: every key added after its last take must still come out.
        for (const k of held) q.done(k);
        held.clear();
        while (q.len() > 0) {
          const k = (await q.get())!;
          pendingSinceLastTake.delete(k);
          q.done(k);
        }
        return pendingSinceLastTake.size === 0;
      },
    ),
    { numRuns: 200 },
  );
});

// The work queue's promises to a controller, with a fake clock: de-duplication, one worker per key,
// re-queue after processing, per-key backoff, delayed adds, graceful shutdown.
import test from 'ava';
import fc from 'fast-check';
import { LowPriority, WorkQueue, type Clock } from '../../../provider/runtime/workqueue.ts';

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

test('the highest priority goes first, FIFO within one; a key added again higher moves up, once', async (t) => {
  const clock = new FakeClock();
  const depthAt = new Map<number, number>();
  const q = new WorkQueue({ clock, metrics: { depthAt: (p, n) => depthAt.set(p, n) } });
  for (const k of ['l1', 'l2', 'l3']) q.add(k, LowPriority);
  q.add('n1');
  q.add('l2'); // an event for an object of the initial list: it moves up
  q.add('l3', LowPriority); // no change
  q.addAfter('l1', 10); // a wake later at normal priority: the queued entry stays low until then
  t.is(q.len(), 4);
  t.deepEqual(
    [...depthAt],
    [
      [LowPriority, 2],
      [0, 2],
    ],
    'depth by priority: l2 counted once, where it is now',
  );
  t.deepEqual([await q.get(), await q.get()], ['n1', 'l2']);
  t.is(depthAt.get(0), 0);
  clock.advance(10);
  t.is(await q.get(), 'l1');
  t.is(await q.get(), 'l3');
  t.is(q.len(), 0);
  // Added while processed: queued again after done() at the highest priority it was added at.
  q.add('x', LowPriority);
  q.add('y', LowPriority);
  const x = (await q.get())!;
  q.add(x, LowPriority);
  q.add(x);
  q.done(x);
  t.is(await q.get(), 'x');
  t.is(await q.get(), 'y');
  // A delayed add keeps the earliest deadline at the highest priority asked.
  q.addAfter('d', 5, LowPriority);
  q.addAfter('d', 50);
  q.add('e', LowPriority);
  clock.advance(5);
  t.is(await q.get(), 'd');
});

test('property: with any interleaving of adds and worker steps, no key is held twice, every add is processed, the highest priority first', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.constantFrom(0, LowPriority, 5)), fc.constant('step')),
        { maxLength: 60 },
      ),
      async (ops) => {
        const depthAt = new Map<number, number>();
        const q = new WorkQueue({ clock: new FakeClock(), metrics: { depthAt: (p, n) => depthAt.set(p, n) } });
        const held = new Set<string>();
        const pendingSinceLastTake = new Set<string>();
        // The highest priority each key was added at since it was last handed out.
        const priority = new Map<string, number>();
        for (const op of ops) {
          if (op !== 'step') {
            const [k, p] = op;
            q.add(k, p);
            pendingSinceLastTake.add(k);
            priority.set(k, Math.max(p, priority.get(k) ?? -Infinity));
          } else if (held.size > 0) {
            const k = [...held][0]!;
            held.delete(k);
            q.done(k);
          } else if (q.len() > 0) {
            const k = (await q.get())!;
            t.false(held.has(k));
            const ready = [...priority].filter(([x]) => !held.has(x)).map(([, p]) => p);
            t.is(priority.get(k), Math.max(...ready));
            held.add(k);
            pendingSinceLastTake.delete(k);
            priority.delete(k);
          }
          t.is(
            [...depthAt.values()].reduce((x, n) => x + n, 0),
            q.len(),
            'the depths by priority add up',
          );
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

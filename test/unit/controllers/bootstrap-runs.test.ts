// Bootstrap runs followed off the worker: what a reconcile reads of a running bootstrap is the step
// as of the machine's last wake, so the progress interval bounds the progress writes whatever else
// wakes the machine.
import test from 'ava';
import { createLogger } from '../../../common/log.ts';
import {
  BootstrapRuns,
  checkDelay,
  type RunResult,
  type RunWork,
} from '../../../provider/controllers/bootstrap-runs.ts';

const step = (index: number) => ({ id: `runcmd.${index}`, index, total: 4 });

test('a step is shown when the machine is woken for it, at most once per interval', async (t) => {
  const woken: string[] = [];
  const runs = new BootstrapRuns({
    wake: (k, ended) => woken.push(ended ? `${k} ended` : k),
    log: createLogger({ level: 'error' }),
    progressEveryMs: 60,
  });
  let w!: RunWork;
  let finish!: (r: RunResult) => void;
  runs.start('uid', 'ns/m', new AbortController().signal, (work) => {
    w = work;
    return new Promise((r) => (finish = r));
  });
  w.progress(step(1));
  w.progress(step(2));
  // Woken by something else before the interval: nothing new to say.
  t.deepEqual(runs.get('uid'), { state: 'running' });
  await new Promise((r) => setTimeout(r, 150));
  t.deepEqual(runs.get('uid'), { state: 'running', step: step(2) }, 'the latest step, once');
  t.deepEqual(woken, ['ns/m']);
  w.progress(step(3));
  t.deepEqual(runs.get('uid'), { state: 'running', step: step(2) });
  finish({ bootstrap: { started: true, exitCode: 0, sentinel: true, tail: [] }, steps: 4, agent: 'not-configured' });
  await new Promise((r) => setImmediate(r));
  t.is(runs.get('uid')?.state, 'finished');
  t.deepEqual(woken, ['ns/m', 'ns/m ended'], 'woken at the end (said so: recorded first), the pending step dropped');
});

test('checks come soon after the start, then less often up to the cap, spread by jitter', (t) => {
  const s = { firstMs: 2000, maxMs: 10_000 };
  const mid = () => 0.5;
  t.deepEqual(
    Array.from({ length: 7 }, (_, n) => checkDelay(n, s, mid)),
    [2000, 3000, 4500, 6750, 10_000, 10_000, 10_000],
  );
  for (let n = 0; n < 20; n++) {
    t.is(
      checkDelay(n, s, () => 0),
      Math.round(Math.min(10_000, 2000 * 1.5 ** n) * 0.8),
    );
    t.is(
      checkDelay(n, s, () => 1),
      Math.round(Math.min(10_000, 2000 * 1.5 ** n) * 1.2),
    );
  }
});

test('a run waits its own schedule; the checks of all runs are bounded, the slot given back early when asked', async (t) => {
  const runs = new BootstrapRuns({
    wake: () => {},
    log: createLogger({ level: 'error' }),
    checks: { firstMs: 5, maxMs: 20, concurrency: 3 },
  });
  let now = 0;
  let most = 0;
  const release: Array<() => void> = [];
  const ends: Array<Promise<void>> = [];
  for (let i = 0; i < 10; i++) {
    runs.start(`uid${i}`, `ns/m${i}`, new AbortController().signal, async (w) => {
      await w.due();
      await w.due({ soon: true });
      await w.check(async (giveBack) => {
        most = Math.max(most, ++now);
        await new Promise<void>((r) => release.push(r));
        now--;
        if (i % 2) giveBack(); // the run ended: what follows is not a check
      });
      return { bootstrap: { started: true, exitCode: 0, sentinel: true, tail: [] }, steps: 1, agent: 'not-configured' };
    });
    ends.push(
      (async () => {
        for (let k = 0; k < 400 && runs.get(`uid${i}`)?.state !== 'finished'; k++) {
          await new Promise((r) => setTimeout(r, 10));
          release.shift()?.();
        }
      })(),
    );
  }
  await Promise.all(ends);
  t.is(most, 3, 'never more than checkConcurrency checks at once');
  for (let i = 0; i < 10; i++) t.is(runs.get(`uid${i}`)?.state, 'finished');
});

test('a cancelled run stops waiting for its check at once', async (t) => {
  const runs = new BootstrapRuns({
    wake: () => {},
    log: createLogger({ level: 'error' }),
    checks: { firstMs: 60_000, maxMs: 60_000 },
  });
  let stopped: unknown;
  runs.start('uid', 'ns/m', new AbortController().signal, async (w) => {
    try {
      await w.due();
    } catch (err) {
      stopped = err;
    }
    throw new Error('cancelled');
  });
  runs.cancel('uid');
  await new Promise((r) => setImmediate(r));
  t.truthy(stopped, 'the 60 s wait ended with the cancel');
  t.is(runs.size, 0);
});

// Bootstrap runs followed off the worker: what a reconcile reads of a running bootstrap is the step
// as of the machine's last wake, so the progress interval bounds the progress writes whatever else
// wakes the machine.
import test from 'ava';
import { createLogger } from '../../../common/log.ts';
import { BootstrapRuns, type RunResult, type RunWork } from '../../../provider/controllers/bootstrap-runs.ts';

const step = (index: number) => ({ id: `runcmd.${index}`, index, total: 4 });

test('a step is shown when the machine is woken for it, at most once per interval', async (t) => {
  const woken: string[] = [];
  const runs = new BootstrapRuns({
    wake: (k) => woken.push(k),
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
  t.deepEqual(woken, ['ns/m', 'ns/m'], 'woken at the end, the pending step dropped');
});

// When the agent reports: the first report spread over the interval, a jittered exponential
// backoff after a failure (capped at the interval), the interval's rest after a success.
import test from 'ava';
import { firstReportDelayMs, nextReportDelayMs, retryDelayMs, worthRetrying } from '../../../agent/schedule.ts';

const at = (x: number) => () => x;

test('the first report waits a uniform part of the interval', (t) => {
  t.is(firstReportDelayMs(30_000, at(0)), 0);
  t.is(firstReportDelayMs(30_000, at(0.5)), 15_000);
  t.true(firstReportDelayMs(30_000, at(0.999999)) < 30_000);
  // 10,000 agents started at once arrive spread: no tenth of the interval gets more than ~1,100.
  const buckets = new Array<number>(10).fill(0);
  for (let i = 0; i < 10_000; i++) buckets[Math.floor(firstReportDelayMs(10_000) / 1000)]!++;
  t.true(Math.max(...buckets) < 1_150, String(buckets));
});

test('retries back off with jitter in [d/2, d): a quarter to half the interval, then half to all of it', (t) => {
  t.is(retryDelayMs(1, 30_000, at(0)), 7_500);
  t.is(retryDelayMs(1, 30_000, at(0.999)), 14_992);
  for (const failures of [2, 3, 7, 20, 1000]) {
    t.is(retryDelayMs(failures, 30_000, at(0)), 15_000);
    // Never longer than the interval: a host keeps reporting once an interval.
    t.true(retryDelayMs(failures, 30_000, at(0.999)) < 30_000);
  }
  // A failure count of 0 or less is treated as the first failure.
  t.is(retryDelayMs(0, 30_000, at(0)), 7_500);
  // 10,000 agents failing together: their retries spread over a quarter of the interval, none sooner.
  const first = Array.from({ length: 10_000 }, () => retryDelayMs(1, 10_000));
  t.true(Math.min(...first) >= 2_500 && Math.max(...first) < 5_000);
});

test('what is worth a retry: no answer, 429, 5xx; a refusal waits for the next interval', (t) => {
  t.true(worthRetrying(undefined));
  t.true(worthRetrying(429));
  t.true(worthRetrying(500));
  t.true(worthRetrying(503));
  for (const s of [200, 400, 403, 409, 413]) t.false(worthRetrying(s));
});

test('the next report: the rest of the interval after a success, a backoff after a failure', (t) => {
  t.is(nextReportDelayMs({ intervalMs: 30_000, elapsedMs: 120, failures: 0 }), 29_880);
  t.is(nextReportDelayMs({ intervalMs: 30_000, elapsedMs: 31_000, failures: 0 }), 0);
  t.is(nextReportDelayMs({ intervalMs: 30_000, elapsedMs: 120, failures: 1 }, at(0)), 7_500);
  t.is(nextReportDelayMs({ intervalMs: 30_000, elapsedMs: 120, failures: 3 }, at(0.5)), 22_500);
});

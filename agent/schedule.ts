// When the agent reports. A fleet installed or restarted at once must not report at once: the
// first report waits a random part of the interval, so N agents arrive at about N / interval per
// second from the start, as they do later. A report that fails for want of the provider (no
// connection, a timeout, 429 or 5xx) is tried again after a jittered exponential backoff, capped at
// the interval: a provider that is down or shedding load meets retries spread over time, and the
// host still reports at least once an interval (HostHealthy turns Unknown only after
// --agent-unknown-after, 3 minutes by default). A report the provider refused for a reason of its
// own (403, 409...) waits for the next interval: trying again at once would get the same answer.

/** A number in [0, 1). Math.random by default; tests inject their own. */
export type Random = () => number;

/** The delay before the first report: uniform in [0, interval). */
export function firstReportDelayMs(intervalMs: number, random: Random = Math.random): number {
  return Math.floor(random() * intervalMs);
}

/**
 * The delay after the `failures`-th failure in a row (1, 2, ...): "equal jitter", uniform in
 * [d/2, d) with d = min(interval, interval/2 * 2^(failures-1)): [1/4, 1/2) of the interval after the
 * first failure, [1/2, 1) after every later one. Half of d keeps retries from coming back sooner
 * than the backoff means; the other half spreads agents that failed together.
 */
export function retryDelayMs(failures: number, intervalMs: number, random: Random = Math.random): number {
  const d = Math.min(intervalMs, (intervalMs / 2) * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
  return Math.floor(d / 2 + random() * (d / 2));
}

/** Whether a report's outcome says "try again soon": no answer at all, 429 (too many), or a 5xx. */
export function worthRetrying(status: number | undefined): boolean {
  return status === undefined || status === 429 || status >= 500;
}

/** The delay before the next report: the rest of the interval after a success or a refusal, a backoff after a failure. */
export function nextReportDelayMs(
  o: { intervalMs: number; elapsedMs: number; failures: number },
  random: Random = Math.random,
): number {
  if (o.failures > 0) return retryDelayMs(o.failures, o.intervalMs, random);
  return Math.max(0, o.intervalMs - o.elapsedMs);
}

// Capped exponential backoff with jitter, shared by the informer (relist/rewatch), the work queue
// (per-key retries) and leader election. Pure: the random source is injectable for tests.

export interface BackoffOptions {
  /** First delay in ms. Default 800 (client-go's reflector). */
  initialMs?: number;
  /** Cap in ms. Default 30_000. */
  maxMs?: number;
  /** Multiplier per step. Default 2. */
  factor?: number;
  /** Adds up to this fraction of the delay at random (0 = none). Default 0.5. */
  jitter?: number;
  random?: () => number;
}

/** The delay before attempt `n` (0-based), capped, then jittered (jitter may exceed the cap by at most `jitter`). */
export function backoffDelay(n: number, o: BackoffOptions = {}): number {
  const initial = o.initialMs ?? 800;
  const max = o.maxMs ?? 30_000;
  const factor = o.factor ?? 2;
  const jitter = o.jitter ?? 0.5;
  const base = Math.min(max, initial * factor ** Math.min(n, 64));
  return Math.round(base * (1 + jitter * (o.random ?? Math.random)()));
}

/** Stateful helper: next() grows the delay, reset() after a success. */
export class Backoff {
  #n = 0;
  readonly #o: BackoffOptions;
  constructor(o: BackoffOptions = {}) {
    this.#o = o;
  }
  next(): number {
    return backoffDelay(this.#n++, this.#o);
  }
  reset(): void {
    this.#n = 0;
  }
  get attempts(): number {
    return this.#n;
  }
}

/** A sleep that ends early (resolving false) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

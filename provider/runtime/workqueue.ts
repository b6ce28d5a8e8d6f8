// A de-duplicating, rate-limited work queue of object keys, after client-go's workqueue:
// - a key added while it waits is queued once ("dirty" set);
// - a key added while a worker processes it is queued again once, after done() (never two workers
//   on one key: the "processing" set);
// - per-key exponential backoff for failures (addRateLimited), forget() on success;
// - delayed adds (addAfter) keep the earliest deadline per key, with one timer per waiting key;
// - shutDown() stops handing out keys; drain() resolves when in-flight keys are done.
// The clock is injectable so tests can step time.
import { backoffDelay, type BackoffOptions } from './backoff.ts';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Hooks for metrics (see metrics.ts workQueueMetrics). All optional. */
export interface WorkQueueMetrics {
  depth?(n: number): void;
  added?(): void;
  retried?(): void;
  /** Seconds a key waited in the queue before a worker got it. */
  queueLatency?(seconds: number): void;
  /** Seconds from get() to done(). */
  workDuration?(seconds: number): void;
}

export interface WorkQueueOptions {
  clock?: Clock;
  /** Per-key failure backoff. Default 5 ms doubling to 5 minutes, no jitter (client-go: 5 ms .. 1000 s). */
  backoff?: BackoffOptions;
  metrics?: WorkQueueMetrics;
}

export class WorkQueue {
  readonly #queue: string[] = [];
  #head = 0;
  readonly #dirty = new Set<string>();
  readonly #processing = new Map<string, number>();
  readonly #addedAt = new Map<string, number>();
  readonly #waiting = new Map<string, { at: number; handle: unknown }>();
  readonly #failures = new Map<string, number>();
  readonly #getters: Array<(key: string | undefined) => void> = [];
  readonly #drainers: Array<() => void> = [];
  readonly #clock: Clock;
  readonly #backoff: BackoffOptions;
  readonly #metrics: WorkQueueMetrics;
  #shuttingDown = false;

  constructor(options: WorkQueueOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#backoff = { initialMs: 5, maxMs: 300_000, jitter: 0, ...options.backoff };
    this.#metrics = options.metrics ?? {};
  }

  /** Keys waiting for a worker (not counting delayed or in-flight keys). */
  len(): number {
    return this.#queue.length - this.#head;
  }
  /** Keys a worker holds right now. */
  inFlight(): number {
    return this.#processing.size;
  }
  /** Keys waiting for their delay to pass. */
  delayed(): number {
    return this.#waiting.size;
  }
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#metrics.added?.();
    this.#dirty.add(key);
    this.#addedAt.set(key, this.#clock.now());
    if (this.#processing.has(key)) return; // re-queued by done()
    this.#push(key);
  }

  /** Adds the key after `ms`; an earlier pending deadline for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = this.#clock.now() + ms;
    const existing = this.#waiting.get(key);
    if (existing && existing.at <= at) return;
    if (existing) this.#clock.clearTimeout(existing.handle);
    const handle = this.#clock.setTimeout(() => {
      this.#waiting.delete(key);
      this.add(key);
    }, ms);
    this.#waiting.set(key, { at, handle });
  }

  /** Adds the key after its per-key backoff, which doubles with each call until forget(). */
  addRateLimited(key: string): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    this.#metrics.retried?.();
    const delay = backoffDelay(n, this.#backoff);
    this.addAfter(key, delay);
    return delay;
  }

  /** Resets the key's backoff (after a success). */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** The next key, waiting if none is queued; undefined once the queue shuts down. */
  get(): Promise<string | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#pop();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    return new Promise((resolve) => this.#getters.push(resolve));
  }

  /** Marks a key from get() as finished; if it was added meanwhile it is queued again. */
  done(key: string): void {
    const started = this.#processing.get(key);
    if (started === undefined) return;
    this.#processing.delete(key);
    this.#metrics.workDuration?.((this.#clock.now() - started) / 1000);
    if (this.#dirty.has(key) && !this.#shuttingDown) this.#push(key);
    if (this.#processing.size === 0) this.#drainers.splice(0).forEach((d) => d());
  }

  /** Stops handing out keys (waiting get() calls resolve undefined) and cancels delayed adds. */
  shutDown(): void {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    for (const { handle } of this.#waiting.values()) this.#clock.clearTimeout(handle);
    this.#waiting.clear();
    this.#getters.splice(0).forEach((g) => g(undefined));
  }

  /** Resolves when no key is in flight (call after shutDown() for a graceful stop). */
  drain(): Promise<void> {
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainers.push(resolve));
  }

  #push(key: string): void {
    const getter = this.#getters.shift();
    if (getter) {
      getter(this.#take(key));
      return;
    }
    this.#queue.push(key);
    this.#metrics.depth?.(this.len());
  }

  #pop(): string | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const key = this.#queue[this.#head++];
    // Compact now and then so the array does not grow without bound.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    this.#metrics.depth?.(this.len());
    return key;
  }

  #take(key: string): string {
    const now = this.#clock.now();
    const added = this.#addedAt.get(key);
    if (added !== undefined) this.#metrics.queueLatency?.((now - added) / 1000);
    this.#addedAt.delete(key);
    this.#dirty.delete(key);
    this.#processing.set(key, now);
    return key;
  }
}

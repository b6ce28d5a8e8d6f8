// A de-duplicating, rate-limited work queue of object keys, after client-go's workqueue:
// - a key added while it waits is queued once ("dirty" set);
// - a key added while a worker processes it is queued again once, after done() (never two workers
//   on one key: the "processing" set);
// - per-key exponential backoff for failures (addRateLimited), forget() on success;
// - delayed adds (addAfter) keep the earliest deadline per key, with one timer per waiting key;
// - shutDown() stops handing out keys; drain() resolves when in-flight keys are done;
// - priorities, after controller-runtime's priority queue (pkg/controller/priorityqueue): a key is
//   handed out from the highest priority queued first, FIFO within one; a key added again at a
//   higher priority moves up. The controller queues the informers' initial lists at LowPriority, so
//   a new leader's first pass over thousands of objects does not hold back the changes that come
//   meanwhile (a bootstrap ended, a Machine deleted).
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
  /** Keys waiting at one priority (LowPriority: an initial list not yet handed out). */
  depthAt?(priority: number, n: number): void;
  added?(): void;
  retried?(): void;
  /** Seconds a key waited in the queue before a worker got it. */
  queueLatency?(seconds: number): void;
  /** Seconds from get() to done(). */
  workDuration?(seconds: number): void;
}

/** The priority of the keys from an informer's initial list (controller-runtime's LowPriority). */
export const LowPriority = -100;
/**
 * Above the default 0: a key whose work holds a result only this process knows (a bootstrap run
 * that ended), recorded before a first pass or a burst of events, so it is not lost or held long.
 */
export const HighPriority = 100;

/** One priority's keys in the order they came; an entry is live while its seq is the key's. */
class Fifo {
  readonly items: Array<{ key: string; seq: number }> = [];
  head = 0;
  /** Entries still live. */
  live = 0;

  shift(): { key: string; seq: number } | undefined {
    if (this.head >= this.items.length) return undefined;
    const e = this.items[this.head++];
    // Compact now and then so the array does not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return e;
  }
}

export interface WorkQueueOptions {
  clock?: Clock;
  /** Per-key failure backoff. Default 5 ms doubling to 5 minutes, no jitter (client-go: 5 ms .. 1000 s). */
  backoff?: BackoffOptions;
  metrics?: WorkQueueMetrics;
}

export class WorkQueue {
  /** Per priority, highest first in #order. */
  readonly #fifos = new Map<number, Fifo>();
  #order: number[] = [];
  /** Queued keys (in a Fifo, ready for a worker): the seq of their live entry. */
  readonly #queued = new Map<string, { seq: number; priority: number }>();
  #seq = 0;
  /** Keys added and not yet handed out, with the highest priority they were added at. */
  readonly #dirty = new Map<string, number>();
  readonly #processing = new Map<string, number>();
  readonly #addedAt = new Map<string, number>();
  readonly #waiting = new Map<string, { at: number; handle: unknown; priority: number }>();
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
    return this.#queued.size;
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

  /** Queues the key once; added again at a higher priority while queued, it moves up. */
  add(key: string, priority = 0): void {
    if (this.#shuttingDown) return;
    const was = this.#dirty.get(key);
    if (was !== undefined && was >= priority) return;
    if (was === undefined) {
      this.#metrics.added?.();
      this.#addedAt.set(key, this.#clock.now());
    }
    this.#dirty.set(key, priority);
    if (this.#processing.has(key)) return; // re-queued by done()
    this.#push(key, priority);
  }

  /** Adds the key after `ms`; an earlier pending deadline for the same key wins, at the higher priority. */
  addAfter(key: string, ms: number, priority = 0): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) return this.add(key, priority);
    const at = this.#clock.now() + ms;
    const existing = this.#waiting.get(key);
    if (existing) priority = Math.max(priority, existing.priority);
    if (existing && existing.at <= at) {
      existing.priority = priority;
      return;
    }
    if (existing) this.#clock.clearTimeout(existing.handle);
    const w = { at, priority, handle: undefined as unknown };
    w.handle = this.#clock.setTimeout(() => {
      this.#waiting.delete(key);
      this.add(key, w.priority);
    }, ms);
    this.#waiting.set(key, w);
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
    const priority = this.#dirty.get(key);
    if (priority !== undefined && !this.#shuttingDown) this.#push(key, priority);
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

  /** Queues the key at priority; an entry it had at a lower one is left behind, dead. */
  #push(key: string, priority: number): void {
    const getter = this.#getters.shift();
    if (getter) {
      getter(this.#take(key));
      return;
    }
    let fifo = this.#fifos.get(priority);
    if (!fifo) {
      this.#fifos.set(priority, (fifo = new Fifo()));
      this.#order = [...this.#fifos.keys()].sort((a, b) => b - a);
    }
    const was = this.#queued.get(key);
    if (was) this.#gone(was.priority);
    const seq = ++this.#seq;
    this.#queued.set(key, { seq, priority });
    fifo.items.push({ key, seq });
    fifo.live++;
    this.#metrics.depthAt?.(priority, fifo.live);
    this.#metrics.depth?.(this.len());
  }

  /** One live entry at priority is no more (handed out, or moved up). */
  #gone(priority: number): void {
    const fifo = this.#fifos.get(priority)!;
    fifo.live--;
    this.#metrics.depthAt?.(priority, fifo.live);
  }

  #pop(): string | undefined {
    for (const p of this.#order) {
      const fifo = this.#fifos.get(p)!;
      for (let e = fifo.shift(); e; e = fifo.shift()) {
        if (this.#queued.get(e.key)?.seq !== e.seq) continue; // moved up, or handed out
        this.#queued.delete(e.key);
        this.#gone(p);
        this.#metrics.depth?.(this.len());
        return e.key;
      }
    }
    return undefined;
  }

  #take(key: string): string {
    const now = this.#clock.now();
    const added = this.#addedAt.get(key);
    if (added !== undefined) this.#metrics.queueLatency?.((now - added) / 1000);
    this.#addedAt.delete(key);
    this.#dirty.delete(key);
    const was = this.#queued.get(key);
    if (was) {
      this.#queued.delete(key);
      this.#gone(was.priority);
    }
    this.#processing.set(key, now);
    return key;
  }
}

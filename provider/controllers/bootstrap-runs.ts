// Bootstraps in flight, followed outside the reconcile (the shape of CAPD's taskmanager.go): a
// reconcile starts a run and returns at once; the run follows the detached bootstrap on the host
// with short checks (bootstrap-follow.ts) and wakes the machine when its step changes (at most
// every progressEveryMs) and when it ends. The next reconcile reads the run's state and records
// it: the step as of the last wake, so --bootstrap-progress-interval bounds the progress writes.
// So a machine worker is never held for the minutes a kubeadm takes, and no SSH connection is held
// either: a run between two checks is a timer and a few small objects.
//
// Checks are scheduled per run (soon after the start, then less often: checkDelay) and bounded,
// with the starts, over all runs (checkConcurrency at once): a manager following more runs than it
// can check at their pace checks each less often, and never opens more connections.
//
// Runs live in memory only. A manager that restarts or loses leadership finds no run and starts
// one again, which attaches to the bootstrap still going on the host (host-ops.ts startBootstrap),
// so no bootstrap step ever runs twice.
import type { Logger } from '../../common/log.ts';
import { counter, gauge } from '../runtime/metrics.ts';
import { Slots } from '../runtime/slots.ts';
import type { AgentResult } from './machine-status.ts';
import type { BootstrapOutcome } from './host-ops.ts';

export interface RunStep {
  id: string;
  /** 1-based */
  index: number;
  total: number;
  description?: string;
}

export interface RunResult {
  bootstrap: BootstrapOutcome;
  /** How many steps the rendered bootstrap has. */
  steps: number;
  /** The node agent install after a successful bootstrap (same connection). */
  agent: AgentResult;
}

export type Run =
  /** step: the step as of the last wake, so a reconcile woken by anything else says nothing new. */
  | { state: 'running'; step?: RunStep }
  | { state: 'finished'; result: RunResult }
  /** The run could not be carried out (SSH or access error, or a bug): error says why. */
  | { state: 'failed'; error: unknown };

export interface RunWork {
  /** Report the step the bootstrap is at. */
  progress(step: RunStep): void;
  /** Aborted when the run is cancelled or the controller stops: close the connection. */
  signal: AbortSignal;
  /** Waits until the run's next check is due (checkDelay); `soon`: there is more log to read. */
  due(o?: { soon?: boolean }): Promise<void>;
  /** Runs one start or check within the bound over all runs; `giveBack` frees the slot early (run ended). */
  check<T>(fn: (giveBack: () => void) => Promise<T>): Promise<T>;
}

export interface CheckSchedule {
  /** The first check after the start (and after a check that left log unread). */
  firstMs: number;
  /** The longest wait between two checks of one run. */
  maxMs: number;
}

export const defaultSchedule: CheckSchedule = { firstMs: 2000, maxMs: 10_000 };

/**
 * The wait before a run's check number n+1 (n done): from firstMs, half again as long each time,
 * up to maxMs, each within +-20% at random so runs started together spread out.
 */
export function checkDelay(n: number, s: CheckSchedule, random: () => number = Math.random): number {
  const base = Math.min(s.maxMs, s.firstMs * 1.5 ** Math.max(0, n));
  return Math.round(base * (0.8 + 0.4 * random()));
}

interface Entry {
  run: Run;
  /** The step the bootstrap is at; shown (run.step) when the machine is woken for it. */
  latest?: RunStep;
  abort: AbortController;
  lastWake: number;
  timer?: NodeJS.Timeout;
}

const inFlight = gauge('capbm_bootstrap_runs', 'Bootstrap runs this manager follows', ['state']);
const checks = counter('capbm_bootstrap_checks_total', 'Checks of running bootstraps, by result', ['result']);
const checkSlots = gauge('capbm_bootstrap_checks', 'Checks of running bootstraps in flight or waiting', ['state']);

export class BootstrapRuns {
  readonly #runs = new Map<string, Entry>();
  readonly #wake: (key: string, ended: boolean) => void;
  readonly #everyMs: number;
  readonly #log: Logger;
  readonly #schedule: CheckSchedule;
  readonly #slots: Slots;
  #running = 0;

  constructor(o: {
    /** ended: the run is over, its result held here until a reconcile records it. */
    wake: (key: string, ended: boolean) => void;
    log: Logger;
    progressEveryMs?: number;
    /** The checks' schedule (defaultSchedule), and how many may be in flight at once (default 32). */
    checks?: Partial<CheckSchedule> & { concurrency?: number | undefined };
  }) {
    this.#wake = o.wake;
    this.#log = o.log;
    this.#everyMs = o.progressEveryMs ?? 30_000;
    const maxMs = o.checks?.maxMs ?? defaultSchedule.maxMs;
    this.#schedule = { firstMs: Math.min(o.checks?.firstMs ?? defaultSchedule.firstMs, maxMs), maxMs };
    this.#slots = new Slots(o.checks?.concurrency ?? 32);
  }

  /** The run for a machine (by uid), if this process has one. */
  get(uid: string): Run | undefined {
    return this.#runs.get(uid)?.run;
  }

  /**
   * Starts a run for the machine unless one exists. `key` is the machine's work-queue key, woken on
   * progress and at the end; `stop` is the controller's signal (leadership lost, shutdown).
   */
  start(uid: string, key: string, stop: AbortSignal, work: (w: RunWork) => Promise<RunResult>): void {
    if (this.#runs.has(uid)) return;
    const abort = new AbortController();
    const e: Entry = { run: { state: 'running' }, abort, lastWake: Date.now() };
    this.#runs.set(uid, e);
    this.#running++;
    this.#count();
    const signal = AbortSignal.any([abort.signal, stop]);
    const progress = (step: RunStep) => {
      e.latest = step;
      this.#wakeSoon(key, e);
    };
    work({ progress, signal, due: this.#due(signal), check: (fn) => this.#check(fn, signal) }).then(
      (result) => this.#end(uid, key, e, { state: 'finished', result }),
      (error: unknown) => this.#end(uid, key, e, { state: 'failed', error }),
    );
  }

  /** Forgets a run whose outcome was recorded. */
  take(uid: string): void {
    const e = this.#runs.get(uid);
    if (e && e.run.state !== 'running') this.#drop(uid, e);
  }

  /** Stops following a run (its machine is being deleted); the reset stops the bootstrap itself. */
  cancel(uid: string): void {
    const e = this.#runs.get(uid);
    if (!e) return;
    e.abort.abort();
    this.#drop(uid, e);
  }

  get size(): number {
    return this.#runs.size;
  }

  /** A run's schedule: the n-th wait grows (checkDelay); a wait ends early, rejecting, on abort. */
  #due(signal: AbortSignal): RunWork['due'] {
    let n = 0;
    return (o = {}) => {
      const ms = o.soon ? this.#schedule.firstMs : checkDelay(n++, this.#schedule);
      return new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason as Error);
        const abort = () => {
          clearTimeout(timer);
          reject(signal.reason as Error);
        };
        const timer = setTimeout(() => {
          signal.removeEventListener('abort', abort);
          resolve();
        }, ms);
        signal.addEventListener('abort', abort, { once: true });
      });
    };
  }

  async #check<T>(fn: (giveBack: () => void) => Promise<T>, signal: AbortSignal): Promise<T> {
    checkSlots.set({ state: 'waiting' }, this.#slots.waiting + 1);
    const giveBack = await this.#slots.take(signal).finally(() => this.#countSlots());
    this.#countSlots();
    const back = () => {
      giveBack();
      this.#countSlots();
    };
    try {
      const r = await fn(back);
      checks.inc({ result: 'ok' });
      return r;
    } catch (err) {
      checks.inc({ result: 'error' });
      throw err;
    } finally {
      back();
    }
  }

  #countSlots(): void {
    checkSlots.set({ state: 'running' }, this.#slots.inUse);
    checkSlots.set({ state: 'waiting' }, this.#slots.waiting);
  }

  #wakeSoon(key: string, e: Entry): void {
    if (e.timer) return;
    const wait = Math.max(0, e.lastWake + this.#everyMs - Date.now());
    e.timer = setTimeout(() => {
      e.timer = undefined;
      e.lastWake = Date.now();
      // Shown from now on: a reconcile between two wakes (another object's event) writes no step.
      if (e.run.state === 'running') e.run = { state: 'running', ...(e.latest ? { step: e.latest } : {}) };
      this.#wake(key, false);
    }, wait);
    e.timer.unref();
  }

  #end(uid: string, key: string, e: Entry, run: Run): void {
    if (this.#runs.get(uid) !== e) return; // cancelled meanwhile
    clearTimeout(e.timer);
    e.timer = undefined;
    e.run = run;
    this.#running--;
    this.#count();
    if (run.state === 'failed' && e.abort.signal.aborted) return;
    if (run.state === 'failed') this.#log.debug('bootstrap run failed', { object: key, err: run.error });
    this.#wake(key, true);
  }

  #drop(uid: string, e: Entry): void {
    clearTimeout(e.timer);
    if (e.run.state === 'running') this.#running--;
    this.#runs.delete(uid);
    this.#count();
  }

  #count(): void {
    inFlight.set({ state: 'running' }, this.#running);
    inFlight.set({ state: 'ended' }, this.#runs.size - this.#running);
  }
}

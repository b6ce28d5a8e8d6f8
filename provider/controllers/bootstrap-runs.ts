// Bootstraps in flight, followed outside the reconcile (the shape of CAPD's taskmanager.go): a
// reconcile starts a run and returns at once; the run follows the detached bootstrap on the host
// over its own SSH connection and wakes the machine when its step changes (at most every
// progressEveryMs) and when it ends. The next reconcile reads the run's state and records it: the
// step as of the last wake, so --bootstrap-progress-interval bounds the progress writes. So a
// machine worker is never held for the minutes a kubeadm takes, and the number of bootstraps in
// flight is bounded by SSH connections, not by workers.
//
// Runs live in memory only. A manager that restarts or loses leadership finds no run and starts
// one again, which attaches to the bootstrap still going on the host (host-ops.ts runBootstrap),
// so no bootstrap step ever runs twice.
import type { Logger } from '../../common/log.ts';
import { gauge } from '../runtime/metrics.ts';
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

export class BootstrapRuns {
  readonly #runs = new Map<string, Entry>();
  readonly #wake: (key: string) => void;
  readonly #everyMs: number;
  readonly #log: Logger;
  #running = 0;

  constructor(o: { wake: (key: string) => void; log: Logger; progressEveryMs?: number }) {
    this.#wake = o.wake;
    this.#log = o.log;
    this.#everyMs = o.progressEveryMs ?? 30_000;
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
    work({ progress, signal }).then(
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

  #wakeSoon(key: string, e: Entry): void {
    if (e.timer) return;
    const wait = Math.max(0, e.lastWake + this.#everyMs - Date.now());
    e.timer = setTimeout(() => {
      e.timer = undefined;
      e.lastWake = Date.now();
      // Shown from now on: a reconcile between two wakes (another object's event) writes no step.
      if (e.run.state === 'running') e.run = { state: 'running', ...(e.latest ? { step: e.latest } : {}) };
      this.#wake(key);
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
    this.#wake(key);
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

// A controller: informers feed keys into one work queue, N workers reconcile them, one key at a
// time. reconcile returns { requeueAfter } or nothing, or throws:
//   nothing          -> forget (backoff reset)
//   { requeueAfter } -> forget, then add again after that many ms (a periodic check)
//   { requeue: true} -> add again with the key's backoff
//   throws           -> logged with the key, counted, added again with the key's backoff;
//                       PatchConflict is expected under concurrency and logged at info level.
// Secondary kinds map their events to primary keys (mapToKeys), e.g. a Machine's events to its
// BareMetalMachine through spec.infrastructureRef (see mapInfrastructureRef below).
import { createLogger, type Logger } from '../../common/log.ts';
import type { Informer } from './informer.ts';
import type { Channel } from './source.ts';
import { objectKey, splitKey, type KubeObject } from '../kube/kinds.ts';
import {
  activeWorkers,
  maxWorkers,
  reconcileErrors,
  reconcileTime,
  reconcileTotal,
  workQueueMetrics,
} from './metrics.ts';
import { PatchConflict } from './patch.ts';
import { LowPriority, WorkQueue, type WorkQueueOptions } from './workqueue.ts';

export interface Request {
  key: string;
  namespace?: string;
  name: string;
}

export type Result = { requeueAfter?: number; requeue?: boolean } | void;

export interface ReconcileContext {
  log: Logger;
  /** Aborted when the controller stops (leadership lost, SIGTERM): stop long work, keep state consistent. */
  signal: AbortSignal;
}

export interface Watch<T extends KubeObject = KubeObject> {
  informer: Informer<T>;
  /** Keys of primary objects to reconcile for an event on `obj`. Default: the object's own key. */
  mapToKeys?: (obj: T) => string[];
  /** Skip updates that change nothing we care about, e.g. only status or resourceVersion. */
  updatePredicate?: (oldObj: T, newObj: T) => boolean;
  /**
   * Queue the keys this long after the event (the earliest deadline of a burst wins): many events
   * for one primary, e.g. a pool's hosts claimed in a burst, become one reconcile.
   */
  delayMs?: number;
}

export interface ControllerOptions {
  name: string;
  /** The primary kind first; secondary kinds with mapToKeys. */
  watches: Array<Watch<any>>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Keys from outside the informers (background tasks, agent reports). */
  channels?: Channel[];
  reconcile: (req: Request, ctx: ReconcileContext) => Promise<Result>;
  /** Concurrent reconciles (distinct keys). Default 1. */
  workers?: number;
  queue?: Omit<WorkQueueOptions, 'metrics'>;
  log?: Logger;
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  readonly #o: ControllerOptions;
  readonly #log: Logger;
  #abort = new AbortController();
  #workers: Array<Promise<void>> = [];
  #started = false;

  constructor(o: ControllerOptions) {
    this.name = o.name;
    this.#o = o;
    this.#log = (o.log ?? createLogger()).with({ controller: o.name });
    this.queue = new WorkQueue({ ...o.queue, metrics: workQueueMetrics(o.name) });
    for (const w of o.watches) this.#wire(w);
    for (const c of o.channels ?? []) c.subscribe((key, priority) => this.queue.add(key, priority));
  }

  get informers(): Informer[] {
    return this.#o.watches.map((w) => w.informer as Informer);
  }

  /** Starts the workers (the informers are started by the manager; events queue up meanwhile). */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const n = Math.max(1, this.#o.workers ?? 1);
    maxWorkers.set({ controller: this.name }, n);
    for (let i = 0; i < n; i++) this.#workers.push(this.#worker());
  }

  /** Stops handing out keys, aborts the context signal and waits for in-flight reconciles. */
  async stop(): Promise<void> {
    this.queue.shutDown();
    this.#abort.abort();
    await Promise.all(this.#workers);
    await this.queue.drain();
  }

  /** Queue a key by hand (e.g. when a background task finishes). */
  enqueue(key: string, afterMs = 0): void {
    this.queue.addAfter(key, afterMs);
  }

  #wire<T extends KubeObject>(w: Watch<T>): void {
    const keys = (o: T) => (w.mapToKeys ? w.mapToKeys(o) : [objectKey(o)]);
    // The initial list's keys at LowPriority (controller-runtime does the same): a new leader's
    // first pass over every object gives way to what changes meanwhile, e.g. a run that ended.
    const add = (o: T, initial = false) =>
      keys(o).forEach((k) => k && this.queue.addAfter(k, w.delayMs ?? 0, initial ? LowPriority : 0));
    w.informer.addEventHandler({
      add,
      update: (a, b) => {
        if (w.updatePredicate && !w.updatePredicate(a, b)) return;
        // An owner change can move the object to another primary: enqueue the old one too.
        if (w.mapToKeys) keys(a).forEach((k) => k && this.queue.addAfter(k, w.delayMs ?? 0));
        add(b);
      },
      delete: (o) => add(o),
    });
  }

  async #worker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.#process(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  async #process(key: string): Promise<void> {
    const req = { key, ...splitKey(key) };
    const log = this.#log.with({ object: key }); // not 'key': the logger redacts fields named *key
    const end = reconcileTime.startTimer({ controller: this.name });
    activeWorkers.inc({ controller: this.name });
    try {
      const result = await this.#o.reconcile(req, { log, signal: this.#abort.signal });
      if (result?.requeueAfter && result.requeueAfter > 0) {
        this.queue.forget(key);
        this.queue.addAfter(key, result.requeueAfter);
        reconcileTotal.inc({ controller: this.name, result: 'requeue_after' });
      } else if (result?.requeue) {
        this.queue.addRateLimited(key);
        reconcileTotal.inc({ controller: this.name, result: 'requeue' });
      } else {
        this.queue.forget(key);
        reconcileTotal.inc({ controller: this.name, result: 'success' });
      }
    } catch (err) {
      const delay = this.queue.addRateLimited(key);
      reconcileTotal.inc({ controller: this.name, result: 'error' });
      reconcileErrors.inc({ controller: this.name });
      const fields = { err, retryInMs: delay, attempt: this.queue.numRequeues(key) };
      if (err instanceof PatchConflict) log.info('reconcile conflict; retrying', fields);
      else log.error('reconcile failed', fields);
    } finally {
      activeWorkers.dec({ controller: this.name });
      end();
    }
  }
}

export function controller(o: ControllerOptions): Controller {
  return new Controller(o);
}

/** mapToKeys for a child kind: the key of its controller owner of the given kind. */
export function mapOwner(kind: string, group?: string) {
  return (o: KubeObject): string[] =>
    (o.metadata?.ownerReferences ?? [])
      .filter((r) => r.kind === kind && r.controller && (group === undefined || r.apiVersion.split('/')[0] === group))
      .map((r) => (o.metadata?.namespace ? `${o.metadata.namespace}/${r.name}` : r.name));
}

/**
 * mapToKeys for a CAPI Machine (or Cluster): the key of the infrastructure object it references
 * when that object is of `kind`, e.g. Machine -> BareMetalMachine.
 */
export function mapInfrastructureRef(kind: string) {
  return (o: KubeObject): string[] => {
    const ref = (o.spec as { infrastructureRef?: { kind?: string; name?: string; namespace?: string } } | undefined)
      ?.infrastructureRef;
    if (!ref?.name || ref.kind !== kind) return [];
    const ns = ref.namespace ?? o.metadata?.namespace;
    return [ns ? `${ns}/${ref.name}` : ref.name];
  };
}

/** updatePredicate: only generation (spec), labels, annotations, finalizers or deletion changes. */
export function specOrMetadataChanged(a: KubeObject, b: KubeObject): boolean {
  const ma = a.metadata ?? {};
  const mb = b.metadata ?? {};
  return (
    ma.generation !== mb.generation ||
    ma.deletionTimestamp !== mb.deletionTimestamp ||
    JSON.stringify(ma.labels) !== JSON.stringify(mb.labels) ||
    JSON.stringify(ma.annotations) !== JSON.stringify(mb.annotations) ||
    JSON.stringify(ma.finalizers) !== JSON.stringify(mb.finalizers)
  );
}

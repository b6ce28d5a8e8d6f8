// An event recorder that aggregates repeats, so a flapping reconcile does not flood etcd.
// Why core/v1 Events: `kubectl describe` lists events by involvedObject (uid/name/namespace) and
// prints "Age (xN over T)" from count/firstTimestamp/lastTimestamp, which is exactly what the
// aggregation below maintains; events.k8s.io/v1 objects are the same stored resource but their
// series form needs a two-step isomorphic protocol, and CAPI's providers (controller-runtime's
// GetEventRecorderFor, client-go record) write core/v1 Events the same way.
// Aggregation: one Event object per (object, type, reason, message). A repeat only bumps count and
// lastTimestamp, written at most once per `minIntervalMs` per key (the pending count is flushed by
// a timer); the key cache is bounded (LRU) like client-go's EventCorrelator.
import type { KubeConfig } from '@kubernetes/client-node';
import { ApiError, raw } from '../kube/raw.ts';
import { createLogger, type Logger } from '../../common/log.ts';
import { collectionPath, Events, objectPath, type KubeObject } from '../kube/kinds.ts';
import { counter } from './metrics.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventSpec {
  type: EventType;
  reason: string;
  message: string;
}

export interface RecorderOptions {
  /** source.component and reportingController. Default 'capbm-manager'. */
  component?: string;
  /** source.host / reportingInstance, e.g. the pod name. */
  instance?: string;
  /** Minimum time between writes of the same event. Default 30 s. */
  minIntervalMs?: number;
  /** Distinct events remembered for aggregation. Default 4096. */
  cacheSize?: number;
  log?: Logger;
}

interface Entry {
  name: string;
  namespace: string;
  count: number;
  written: number;
  lastWrite: number;
  lastSeen: string;
  timer?: NodeJS.Timeout;
  chain: Promise<void>;
  body: Record<string, unknown>;
}

const eventsWritten = counter('capbm_events_written_total', 'Event API writes (create or count update)', ['op']);

export class EventRecorder {
  readonly #kc: KubeConfig;
  readonly #o: Required<Omit<RecorderOptions, 'instance' | 'log'>> & { instance: string };
  readonly #log: Logger;
  readonly #cache = new Map<string, Entry>();

  constructor(kc: KubeConfig, options: RecorderOptions = {}) {
    this.#kc = kc;
    this.#o = {
      component: options.component ?? 'capbm-manager',
      instance: options.instance ?? '',
      minIntervalMs: options.minIntervalMs ?? 30_000,
      cacheSize: options.cacheSize ?? 4096,
    };
    this.#log = (options.log ?? createLogger()).with({ component: 'events' });
  }

  /** Records an event on obj (needs apiVersion, kind, metadata.name/namespace/uid). Never throws. */
  event(obj: KubeObject, type: EventType, reason: string, message: string): void {
    const md = obj.metadata ?? {};
    const msg = message.slice(0, 1024);
    const key = [md.uid ?? '', obj.kind ?? '', md.namespace ?? '', md.name ?? '', type, reason, msg].join('\u0000');
    const now = new Date().toISOString();
    let e = this.#cache.get(key);
    if (e) {
      this.#cache.delete(key); // re-insert: most recently used last
      this.#cache.set(key, e);
      e.count++;
      e.lastSeen = now;
      this.#scheduleUpdate(e);
      return;
    }
    e = this.#newEntry(obj, { type, reason, message: msg }, now);
    this.#cache.set(key, e);
    this.#evict();
    const entry = e;
    this.#enqueue(entry, () => this.#create(entry));
  }

  /** Writes pending counts now and waits for all writes (shutdown, tests). */
  async flush(): Promise<void> {
    for (const e of this.#cache.values()) {
      if (e.timer) {
        clearTimeout(e.timer);
        e.timer = undefined;
        this.#enqueue(e, () => this.#update(e));
      }
    }
    await Promise.all([...this.#cache.values()].map((e) => e.chain));
  }

  #newEntry(obj: KubeObject, { type, reason, message }: EventSpec, now: string): Entry {
    const md = obj.metadata ?? {};
    const namespace = md.namespace || 'default';
    const name = `${md.name ?? 'unknown'}.${(BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1e6))).toString(16)}`;
    return {
      name,
      namespace,
      count: 1,
      written: 0,
      lastWrite: 0,
      lastSeen: now,
      chain: Promise.resolve(),
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: md.name,
          namespace: md.namespace,
          uid: md.uid,
          resourceVersion: md.resourceVersion,
        },
        type,
        reason,
        message,
        source: { component: this.#o.component, ...(this.#o.instance ? { host: this.#o.instance } : {}) },
        reportingComponent: this.#o.component,
        reportingInstance: this.#o.instance || this.#o.component,
        firstTimestamp: now,
      },
    };
  }

  #scheduleUpdate(e: Entry): void {
    if (e.timer) return;
    const wait = Math.max(0, e.lastWrite + this.#o.minIntervalMs - Date.now());
    e.timer = setTimeout(() => {
      e.timer = undefined;
      this.#enqueue(e, () => this.#update(e));
    }, wait);
    e.timer.unref();
  }

  #enqueue(e: Entry, fn: () => Promise<void>): void {
    e.chain = e.chain.then(fn).catch((err: unknown) => this.#log.warn('event not written', { err, event: e.name }));
  }

  async #create(e: Entry): Promise<void> {
    const count = e.count;
    await raw(this.#kc, 'POST', collectionPath(Events, e.namespace), {
      ...e.body,
      count,
      lastTimestamp: e.lastSeen,
    });
    eventsWritten.inc({ op: 'create' });
    e.written = count;
    e.lastWrite = Date.now();
    if (e.count > count) this.#scheduleUpdate(e);
  }

  async #update(e: Entry): Promise<void> {
    const count = e.count;
    if (count === e.written) return;
    try {
      await raw(this.#kc, 'PATCH', objectPath(Events, e.namespace, e.name), {
        count,
        lastTimestamp: e.lastSeen,
      });
      eventsWritten.inc({ op: 'update' });
    } catch (err) {
      // The Event expired (TTL) or was deleted: start a new one with the running count.
      if (!(err instanceof ApiError && err.code === 404)) throw err;
      return this.#create(e);
    }
    e.written = count;
    e.lastWrite = Date.now();
  }

  #evict(): void {
    while (this.#cache.size > this.#o.cacheSize) {
      const [oldest, e] = this.#cache.entries().next().value as [string, Entry];
      if (e.timer) {
        clearTimeout(e.timer);
        this.#enqueue(e, () => this.#update(e));
      }
      this.#cache.delete(oldest);
    }
  }
}

export function createRecorder(kc: KubeConfig, options?: RecorderOptions): EventRecorder {
  return new EventRecorder(kc, options);
}

// A shared informer: list + watch of one kind (optionally one namespace, optionally a label
// selector such as the watch filter), an in-memory store keyed by namespace/name with optional
// secondary indexes, and add/update/delete handlers.
// Relist and backoff belong here, not to the reconcilers (style.md: watching is a managed stream):
// - the watch starts at the list's resourceVersion and follows bookmarks;
// - a watch the server ends (timeoutSeconds, 5-10 min like client-go) is resumed at the last
//   resourceVersion without a relist;
// - 410 Gone / "too old resource version" -> relist at once; the relist diffs against the store
//   so handlers see the adds, updates and deletes that were missed;
// - any other failure (network, 5xx, 403) -> rewatch, or relist, after a capped, jittered backoff.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../common/log.ts';
import { createLogger } from '../../common/log.ts';
import { raw } from '../kube/raw.ts';
import { Backoff, sleep, type BackoffOptions } from './backoff.ts';
import { apiVersionOf, collectionPath, objectKey, type KubeObject, type ResourceKind } from '../kube/kinds.ts';
import { ResourceExpired, startWatch, type WatchEvent, type WatchHandle } from './watch.ts';

export interface EventHandlers<T> {
  /** initial: the object came with the first list (or was in the store when the handler came). */
  add?(obj: T, initial: boolean): void;
  update?(oldObj: T, newObj: T): void;
  delete?(obj: T): void;
}

/** Values an object is indexed under, e.g. its owners' uids or a label's value. */
export type IndexFunc<T> = (obj: T) => string[];

export interface InformerOptions<T> {
  /** Watch one namespace; default all namespaces (or the kind is cluster-scoped). */
  namespace?: string;
  /** e.g. 'cluster.x-k8s.io/watch-filter=shard-a' (sharding across manager replicas). */
  labelSelector?: string;
  fieldSelector?: string;
  indexers?: Record<string, IndexFunc<T>>;
  /** Applied to every object before it is stored. Default: drop metadata.managedFields (memory). */
  transform?: (obj: T) => T;
  /** Page size of the list. Default 500. */
  pageSize?: number;
  backoff?: BackoffOptions;
  /** Server-side watch timeout range in seconds. Default [300, 600]. */
  watchTimeoutSeconds?: [number, number];
  log?: Logger;
}

interface ListResponse<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

function dropManagedFields<T extends KubeObject>(obj: T): T {
  if (obj.metadata && 'managedFields' in obj.metadata) {
    const { managedFields: _drop, ...metadata } = obj.metadata;
    return { ...obj, metadata };
  }
  return obj;
}

export class Informer<T extends KubeObject = KubeObject> {
  readonly kind: ResourceKind;
  readonly #kc: KubeConfig;
  readonly #o: InformerOptions<T>;
  readonly #log: Logger;
  #store = new Map<string, T>();
  readonly #indexes = new Map<string, Map<string, Set<string>>>();
  readonly #handlers: Array<EventHandlers<T>> = [];
  readonly #syncWaiters: Array<() => void> = [];
  #synced = false;
  #resourceVersion = '';
  #abort = new AbortController();
  #watch: WatchHandle | undefined;
  #running: Promise<void> | undefined;
  /** Counts lists, for observability and tests. */
  lists = 0;

  constructor(kc: KubeConfig, kind: ResourceKind, options: InformerOptions<T> = {}) {
    this.#kc = kc;
    this.kind = kind;
    this.#o = options;
    this.#log = (options.log ?? createLogger()).with({ informer: kind.kind, namespace: options.namespace ?? '' });
    for (const name of Object.keys(options.indexers ?? {})) this.#indexes.set(name, new Map());
  }

  /** Registers handlers; objects already in the store are replayed as adds. */
  addEventHandler(h: EventHandlers<T>): void {
    this.#handlers.push(h);
    if (h.add) for (const obj of this.#store.values()) this.#call(() => h.add?.(obj, true));
  }

  start(): void {
    if (this.#running) return;
    this.#abort = new AbortController();
    this.#running = this.#run(this.#abort.signal);
  }

  /** Stops listing and watching; the store keeps its contents. */
  async stop(): Promise<void> {
    this.#abort.abort();
    this.#watch?.abort();
    await this.#running;
    this.#running = undefined;
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves once the first list is in the store; false if the signal aborts first. */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.#synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onAbort = () => resolve(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#syncWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      });
    });
  }

  /** The cached object with this key ("ns/name" or "name"). Treat it as read-only. */
  getByKey(key: string): T | undefined {
    return this.#store.get(key);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#store.get(namespace ? `${namespace}/${name}` : name);
  }

  /** Every cached object, or those in one namespace. */
  list(namespace?: string): T[] {
    const all = [...this.#store.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  keys(): string[] {
    return [...this.#store.keys()];
  }

  /** Objects whose indexer `index` returned `value`. */
  byIndex(index: string, value: string): T[] {
    const idx = this.#indexes.get(index);
    if (!idx) throw new Error(`informer ${this.kind.kind} has no index ${index}`);
    return [...(idx.get(value) ?? [])].map((k) => this.#store.get(k)).filter((o): o is T => o !== undefined);
  }

  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  async #run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(this.#o.backoff);
    while (!signal.aborted) {
      try {
        await this.#list(signal);
        backoff.reset();
      } catch (err) {
        if (signal.aborted) return;
        this.#log.warn('list failed; retrying', { err, attempt: backoff.attempts });
        await sleep(backoff.next(), signal);
        continue;
      }
      await this.#watchUntilExpired(signal, backoff);
    }
  }

  /** Watches, resuming after normal closes and errors, until the resourceVersion expires or stop(). */
  async #watchUntilExpired(signal: AbortSignal, backoff: Backoff): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.#watchOnce();
        backoff.reset();
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ResourceExpired) {
          this.#log.info('watch expired; relisting', { resourceVersion: this.#resourceVersion });
          return;
        }
        this.#log.warn('watch failed; retrying', { err, attempt: backoff.attempts });
        await sleep(backoff.next(), signal);
      }
    }
  }

  async #watchOnce(): Promise<void> {
    const [lo, hi] = this.#o.watchTimeoutSeconds ?? [300, 600];
    const timeout = Math.round(lo + Math.random() * (hi - lo));
    this.#watch = await startWatch(
      this.#kc,
      collectionPath(this.kind, this.#o.namespace),
      {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: 'true',
        timeoutSeconds: String(timeout),
        labelSelector: this.#o.labelSelector,
        fieldSelector: this.#o.fieldSelector,
      },
      (e) => this.#onWatchEvent(e),
    );
    if (this.#abort.signal.aborted) this.#watch.abort();
    await this.#watch.done;
  }

  async #list(signal: AbortSignal): Promise<void> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const q = new URLSearchParams({ limit: String(this.#o.pageSize ?? 500) });
      if (this.#o.labelSelector) q.set('labelSelector', this.#o.labelSelector);
      if (this.#o.fieldSelector) q.set('fieldSelector', this.#o.fieldSelector);
      if (cont) q.set('continue', cont);
      const page = await raw<ListResponse<T>>(
        this.#kc,
        'GET',
        `${collectionPath(this.kind, this.#o.namespace)}?${q.toString()}`,
      );
      if (signal.aborted) return;
      items.push(...page.items);
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    this.lists++;
    this.#replace(items);
    this.#resourceVersion = rv;
    if (!this.#synced) {
      this.#synced = true;
      this.#syncWaiters.splice(0).forEach((w) => w());
    }
  }

  #prepare(obj: T): T {
    const withType = {
      ...obj,
      apiVersion: obj.apiVersion ?? apiVersionOf(this.kind),
      kind: obj.kind ?? this.kind.kind,
    };
    return (this.#o.transform ?? dropManagedFields)(withType);
  }

  /** Swaps in a full list, telling handlers what changed since the store was last current. */
  #replace(rawItems: T[]): void {
    const initial = !this.#synced;
    const old = this.#store;
    const next = new Map<string, T>();
    for (const item of rawItems) {
      const obj = this.#prepare(item);
      next.set(objectKey(obj), obj);
    }
    this.#store = next;
    for (const idx of this.#indexes.values()) idx.clear();
    for (const [key, obj] of next) this.#indexAdd(key, obj);
    for (const [key, obj] of next) {
      const before = old.get(key);
      if (!before) this.#emit('add', obj, undefined, initial);
      else if (before.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.#emit('update', obj, before);
    }
    for (const [key, obj] of old) if (!next.has(key)) this.#emit('delete', obj);
  }

  #onWatchEvent(e: WatchEvent): void {
    const rv = e.object.metadata?.resourceVersion;
    if (rv) this.#resourceVersion = rv;
    if (e.type === 'BOOKMARK') return;
    const obj = this.#prepare(e.object as T);
    const key = objectKey(obj);
    const before = this.#store.get(key);
    if (before) this.#indexRemove(key, before);
    if (e.type === 'DELETED') {
      this.#store.delete(key);
      this.#emit('delete', obj);
      return;
    }
    this.#store.set(key, obj);
    this.#indexAdd(key, obj);
    if (before) this.#emit('update', obj, before);
    else this.#emit('add', obj);
  }

  #indexAdd(key: string, obj: T): void {
    for (const [name, fn] of Object.entries(this.#o.indexers ?? {})) {
      const idx = this.#indexes.get(name)!;
      for (const v of fn(obj)) {
        let set = idx.get(v);
        if (!set) idx.set(v, (set = new Set()));
        set.add(key);
      }
    }
  }

  #indexRemove(key: string, obj: T): void {
    for (const [name, fn] of Object.entries(this.#o.indexers ?? {})) {
      const idx = this.#indexes.get(name)!;
      for (const v of fn(obj)) {
        const set = idx.get(v);
        set?.delete(key);
        if (set?.size === 0) idx.delete(v);
      }
    }
  }

  #emit(type: 'add' | 'update' | 'delete', obj: T, before?: T, initial = false): void {
    for (const h of this.#handlers) {
      if (type === 'add') this.#call(() => h.add?.(obj, initial));
      else if (type === 'update') this.#call(() => h.update?.(before!, obj));
      else this.#call(() => h.delete?.(obj));
    }
  }

  #call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error('event handler threw', { err });
    }
  }
}

/** Index function: the uids of an object's owners (find children of an owner with byIndex('owner', uid)). */
export const byOwnerUid: IndexFunc<KubeObject> = (o) => (o.metadata?.ownerReferences ?? []).map((r) => r.uid);

/** Index function factory: the value of one label. */
export const byLabel =
  (label: string): IndexFunc<KubeObject> =>
  (o) => {
    const v = o.metadata?.labels?.[label];
    return v === undefined ? [] : [v];
  };

export function createInformer<T extends KubeObject = KubeObject>(
  kc: KubeConfig,
  kind: ResourceKind,
  options: InformerOptions<T> = {},
): Informer<T> {
  return new Informer<T>(kc, kind, options);
}

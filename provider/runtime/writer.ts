// A copy of an object to change and write back, as many times as a long reconcile needs: each
// write sends only what changed since the last one (patch.ts: merge patches, conditions merged
// per type), and continues from what the server returned.
import type { KubeConfig } from '@kubernetes/client-node';
import { objectKey, type KubeObject, type ResourceKind } from '../kube/kinds.ts';
import { patchObject } from './patch.ts';

export interface WriterOptions<T> {
  /** Condition types this writer owns: its change wins over another writer's (patch.ts). */
  owned?: string[];
  /** Called with the object as the server returned it after every write that sent something. */
  onWritten?: (obj: T) => void;
  /** The newest copy this process has (its informer cache), if newer than the one written last (patch.ts). */
  newest?: () => T | undefined;
}

export class Writer<T extends KubeObject> {
  obj: T;
  #saved: T;
  readonly #kc: KubeConfig;
  readonly #kind: ResourceKind;
  readonly #o: WriterOptions<T>;
  #chain: Promise<void> = Promise.resolve();

  constructor(kc: KubeConfig, kind: ResourceKind, fetched: T, o: WriterOptions<T> = {}) {
    this.#kc = kc;
    this.#kind = kind;
    this.#o = o;
    this.#saved = structuredClone(fetched);
    this.obj = structuredClone(fetched);
  }

  /** Changes the object with `fn` and writes it; calls are serialized (progress callbacks). */
  update(fn: (obj: T) => void): Promise<void> {
    const run = this.#chain.then(async () => {
      fn(this.obj);
      const r = await patchObject(
        this.#kc,
        this.#kind,
        { before: this.#saved, after: this.obj },
        { ownedConditions: this.#o.owned ?? [], ...(this.#o.newest ? { newest: this.#o.newest } : {}) },
      );
      this.#saved = structuredClone(r.object);
      this.obj = structuredClone(r.object);
      if (r.patchedMain || r.patchedStatus) this.#o.onWritten?.(r.object);
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  /** Writes changes already made to obj. */
  save(): Promise<void> {
    return this.update(() => {});
  }
}

const rv = (o: KubeObject | undefined) => Number(o?.metadata?.resourceVersion ?? NaN);

/**
 * The objects this process wrote last, until the informer cache catches up. A reconcile woken by
 * another object's event may otherwise read an older copy of an object it just wrote and repeat a
 * step. resourceVersions are compared as numbers (etcd revisions); when they do not parse, the cache
 * wins, as it would without this.
 */
export class Fresher<T extends KubeObject> {
  readonly #written = new Map<string, T>();

  remember(key: string, obj: T): void {
    this.#written.set(key, obj);
  }

  forget(key: string): void {
    this.#written.delete(key);
  }

  /**
   * Lets go of a written copy as soon as the cache holds it (or the object is gone), so an object
   * written once and never read again is not kept twice (with 10,000 machines, that was most of them).
   */
  follow(informer: { addEventHandler(h: { update?: (a: T, b: T) => void; delete?: (o: T) => void }): void }): this {
    informer.addEventHandler({
      update: (_before, now) => void this.pick(objectKey(now), now),
      delete: (gone) => this.forget(objectKey(gone)),
    });
    return this;
  }

  /** How many written copies are held (the cache has not caught up with them yet). */
  get size(): number {
    return this.#written.size;
  }

  /** The newer of the cached copy and the one written last. */
  pick(key: string, cached: T | undefined): T | undefined {
    const w = this.#written.get(key);
    if (!w) return cached;
    if (!cached || !(rv(w) > rv(cached))) {
      this.#written.delete(key); // the cache caught up (or the object is gone)
      return cached;
    }
    return w;
  }
}

// Bounded SSH work: a global cap on concurrent connections and a per-host cap kept below sshd's
// default MaxStartups (10 unauthenticated connections; beyond that sshd drops new ones). One
// connection serves a whole unit of work (withHost), and commands inside it may run in parallel
// as channels of that connection.
import PQueue from 'p-queue';
import { connect, type SshConnection, type SshSession, type Target } from './connection.ts';
import { SshError } from './errors.ts';

export interface SshPoolOptions {
  /** Connections open at once, over all hosts. Default 256. */
  maxConnections?: number;
  /** Connections open at once to one host. Default 4 (sshd's MaxStartups begins dropping at 10). */
  maxPerHost?: number;
  /** Called after every unit of work, for metrics. */
  observe?: (o: { host: string; ok: boolean; reason?: string; seconds: number }) => void;
}

/** Runs a unit of work on a host over one connection (SshPool; fakes in reconciler tests). */
export interface SshRunner {
  withHost<T>(t: Target, fn: (c: SshSession) => Promise<T>): Promise<T>;
}

export class SshPool implements SshRunner {
  readonly #global: PQueue;
  readonly #perHost = new Map<string, PQueue>();
  readonly #maxPerHost: number;
  readonly #observe: SshPoolOptions['observe'];

  constructor(o: SshPoolOptions = {}) {
    this.#global = new PQueue({ concurrency: o.maxConnections ?? 256 });
    this.#maxPerHost = Math.min(o.maxPerHost ?? 4, 9);
    this.#observe = o.observe;
  }

  #hostQueue(key: string): PQueue {
    let q = this.#perHost.get(key);
    if (!q) {
      q = new PQueue({ concurrency: this.#maxPerHost });
      this.#perHost.set(key, q);
      q.addEventListener('idle', () => {
        if (q!.size === 0 && q!.pending === 0) this.#perHost.delete(key);
      });
    }
    return q;
  }

  /** Opens one connection to the target, runs fn with it, and closes it, within both caps. */
  async withHost<T>(t: Target, fn: (c: SshConnection) => Promise<T>): Promise<T> {
    const key = `${t.user}@${t.host}:${t.port ?? 22}`;
    return this.#hostQueue(key).add(() =>
      this.#global.add(async () => {
        const start = performance.now();
        let conn: SshConnection | undefined;
        try {
          conn = await connect(t);
          const r = await fn(conn);
          this.#observe?.({ host: t.host, ok: true, seconds: (performance.now() - start) / 1000 });
          return r;
        } catch (err) {
          this.#observe?.({
            host: t.host,
            ok: false,
            reason: err instanceof SshError ? err.reason : 'Error',
            seconds: (performance.now() - start) / 1000,
          });
          throw err;
        } finally {
          conn?.close();
        }
      }),
    );
  }

  /** Work waiting or running, for metrics and graceful shutdown. */
  get pending(): number {
    return this.#global.size + this.#global.pending;
  }

  onIdle(): Promise<void> {
    return this.#global.onIdle();
  }
}

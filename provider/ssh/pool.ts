// Bounded SSH work: a global cap on connections and a per-host cap kept below sshd's default
// MaxStartups (10 unauthenticated connections; beyond that sshd drops new ones). One connection
// serves a whole unit of work (withHost), and commands inside it may run in parallel as channels
// of that connection. After its work a connection is kept a while (parked.ts) for the next unit of
// work to the same host as the same identity.
import PQueue from 'p-queue';
import { connect, type SshSession, type Target } from './connection.ts';
import { SshError } from './errors.ts';
import { identityOf, ParkedConnections, type Keepable } from './parked.ts';

export interface SshPoolOptions {
  /** Connections open at once over all hosts, kept ones included. Default 256. */
  maxConnections?: number;
  /** Units of work at once on one host. Default 4 (sshd's MaxStartups begins dropping at 10). */
  maxPerHost?: number;
  /** How long a connection is kept after its work for the next (ControlPersist). Default 30 s; 0: none kept. */
  keepIdleMs?: number;
  /** A kept connection is not used again after this long open. Default 5 min. */
  keepMaxLifeMs?: number;
  /** Called after every unit of work, for metrics; connected: it opened a new connection. */
  observe?: (o: { host: string; ok: boolean; reason?: string; seconds: number; connected: boolean }) => void;
  /** Opens a connection (connection.ts connect; tests replace it). */
  connect?: (t: Target) => Promise<Keepable>;
}

/** Runs a unit of work on a host over one connection (SshPool; fakes in reconciler tests). */
export interface SshRunner {
  withHost<T>(t: Target, fn: (c: SshSession) => Promise<T>): Promise<T>;
}

export class SshPool implements SshRunner {
  readonly #global: PQueue;
  readonly #max: number;
  readonly #perHost = new Map<string, PQueue>();
  readonly #maxPerHost: number;
  readonly #parked: ParkedConnections;
  readonly #observe: SshPoolOptions['observe'];
  readonly #connect: (t: Target) => Promise<Keepable>;

  constructor(o: SshPoolOptions = {}) {
    this.#max = o.maxConnections ?? 256;
    this.#global = new PQueue({ concurrency: this.#max });
    this.#maxPerHost = Math.min(o.maxPerHost ?? 4, 9);
    this.#parked = new ParkedConnections({
      max: this.#max,
      idleMs: o.keepIdleMs ?? 30_000,
      lifeMs: o.keepMaxLifeMs ?? 5 * 60_000,
    });
    this.#observe = o.observe;
    this.#connect = o.connect ?? connect;
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

  /** Runs fn with a connection to the target (a kept one, or a new one), within both caps. */
  async withHost<T>(t: Target, fn: (c: SshSession) => Promise<T>): Promise<T> {
    const id = identityOf(t);
    return this.#hostQueue(`${t.user}@${t.host}:${t.port ?? 22}`).add(() =>
      this.#global.add(async () => {
        const start = performance.now();
        const done = (ok: boolean, connected: boolean, err?: unknown) =>
          this.#observe?.({
            host: t.host,
            ok,
            ...(ok ? {} : { reason: err instanceof SshError ? err.reason : 'Error' }),
            seconds: (performance.now() - start) / 1000,
            connected,
          });
        const kept = this.#parked.take(id);
        if (kept) {
          const sessions = kept.conn.sessionsOpened;
          try {
            const r = await fn(kept.conn);
            done(true, false);
            return r;
          } catch (err) {
            // Gone before any command reached the host (the host rebooted, the link dropped while
            // it was kept): the work goes on a new connection. Anything else is the work's error.
            if (!kept.conn.lost || kept.conn.sessionsOpened !== sessions) {
              done(false, false, err);
              throw err;
            }
          } finally {
            this.#parked.park(id, kept.conn, kept.openedAt);
          }
        }
        // Room for one more: the kept connections give way first.
        while (this.#global.pending + this.#parked.size > this.#max && this.#parked.closeOldest());
        let conn: Keepable | undefined;
        const openedAt = performance.now();
        try {
          conn = await this.#connect(t);
          const r = await fn(conn);
          done(true, true);
          return r;
        } catch (err) {
          done(false, true, err);
          throw err;
        } finally {
          if (conn) this.#parked.park(id, conn, openedAt);
        }
      }),
    );
  }

  /** Connections kept open for reuse right now. */
  get kept(): number {
    return this.#parked.size;
  }

  /** Work waiting or running, for metrics and graceful shutdown. */
  get pending(): number {
    return this.#global.size + this.#global.pending;
  }

  onIdle(): Promise<void> {
    return this.#global.onIdle();
  }

  /** Closes the kept connections (work in progress keeps its own). */
  close(): void {
    this.#parked.closeAll();
  }
}

// Connections kept open between units of work, as OpenSSH's ControlPersist does: a bootstrap's
// start, its checks every few seconds and its end then cost a session each on one connection, not
// a handshake each (the handshake is most of the CPU an SSH command costs, on both ends).
//
// A connection is used again only for the same identity: host, port, user, privilege, the
// credentials and the host-key policy it was verified with (and the jump host's), so a changed
// Secret or pin always opens a new connection that is checked anew. Bounded: at most `max` parked,
// each closed after idleMs unused and never used after lifeMs open.
import { createHash } from 'node:crypto';
import type { Endpoint, SshSession, Target } from './target.ts';

/** A connection that can be kept: an SshConnection, or a test's stand-in. */
export interface Keepable extends SshSession {
  /** Closed, or found gone. */
  readonly lost: boolean;
  /** Sessions opened on it so far. */
  readonly sessionsOpened: number;
}

export interface ParkedOptions {
  /** Connections parked at once; the oldest is closed to park another. */
  max: number;
  /** Closed after this long unused. 0: nothing is parked. */
  idleMs: number;
  /** Never handed out after this long open. */
  lifeMs: number;
}

interface Entry {
  key: string;
  conn: Keepable;
  openedAt: number;
  timer: NodeJS.Timeout;
}

function endpointIdentity(e: Endpoint): unknown {
  const c = e.credentials;
  const key = typeof c.privateKey === 'string' ? c.privateKey : c.privateKey.toString('base64');
  return [e.host, e.port ?? 22, e.user, key, c.passphrase ?? '', c.sudoPassword ?? '', e.hostKey];
}

/** What a connection was made for; a digest, so no secret is kept in a map key. */
export function identityOf(t: Target): string {
  const id = [endpointIdentity(t), t.privilege ?? '', t.jump ? endpointIdentity(t.jump) : null];
  return createHash('sha256').update(JSON.stringify(id)).digest('base64');
}

export class ParkedConnections {
  readonly #o: ParkedOptions;
  /** In the order parked: the first is the oldest. */
  readonly #all = new Map<Keepable, Entry>();
  readonly #byKey = new Map<string, Set<Keepable>>();

  constructor(o: ParkedOptions) {
    this.#o = o;
  }

  get size(): number {
    return this.#all.size;
  }

  /** A live parked connection for this identity, taken out (the caller parks or closes it). */
  take(key: string): { conn: Keepable; openedAt: number } | undefined {
    const set = this.#byKey.get(key);
    if (!set) return undefined;
    for (const conn of [...set].reverse()) {
      const e = this.#remove(conn)!;
      if (!conn.lost && performance.now() - e.openedAt < this.#o.lifeMs) return { conn, openedAt: e.openedAt };
      conn.close();
    }
    return undefined;
  }

  /** Keeps a connection for the next unit of work of the same identity, or closes it. */
  park(key: string, conn: Keepable, openedAt: number): void {
    if (this.#o.idleMs <= 0 || this.#o.max <= 0 || conn.lost || performance.now() - openedAt >= this.#o.lifeMs) {
      conn.close();
      return;
    }
    while (this.#all.size >= this.#o.max) this.closeOldest();
    const timer = setTimeout(() => {
      this.#remove(conn);
      conn.close();
    }, this.#o.idleMs).unref();
    this.#all.set(conn, { key, conn, openedAt, timer });
    let set = this.#byKey.get(key);
    if (!set) this.#byKey.set(key, (set = new Set()));
    set.add(conn);
  }

  /** Closes the connection parked longest ago; false when none is parked. */
  closeOldest(): boolean {
    const first = this.#all.keys().next();
    if (first.done) return false;
    this.#remove(first.value);
    first.value.close();
    return true;
  }

  closeAll(): void {
    while (this.closeOldest());
  }

  #remove(conn: Keepable): Entry | undefined {
    const e = this.#all.get(conn);
    if (!e) return undefined;
    clearTimeout(e.timer);
    this.#all.delete(conn);
    const set = this.#byKey.get(e.key)!;
    set.delete(conn);
    if (set.size === 0) this.#byKey.delete(e.key);
    return e;
  }
}

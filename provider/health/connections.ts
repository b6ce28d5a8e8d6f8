// Which agent connections the health endpoint keeps open between reports. An idle TLS connection
// costs the provider about 80 KiB (Node's TLS socket and OpenSSL's state, measured by
// hack/bench agents), a reconnect with TLS session resumption about 1-2 ms of CPU: so the first
// `max` connections that finish a request are kept (and stay kept until they close), every other
// answer says `Connection: close` and that agent resumes its TLS session on its next report.
// Closing the connection that has just answered (never the one idle longest) is what suits
// periodic reporters: the one idle longest is the next to report, and an idle connection closed
// by the server races the agent's next request.
import type { Socket } from 'node:net';

export class KeptConnections {
  readonly #kept = new Set<Socket>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#kept.size;
  }

  /** Whether the connection may stay open after this answer (it is kept, or there is room for it). */
  keep(socket: Socket): boolean {
    if (this.#kept.has(socket)) return true;
    if (this.#kept.size >= this.#max) return false;
    this.#kept.add(socket);
    socket.once('close', () => this.#kept.delete(socket));
    return true;
  }
}

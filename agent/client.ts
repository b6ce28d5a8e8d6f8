// The agent's side of mutual TLS: it proves who it is with its certificate (CN=host:<name>) and
// trusts only the provider's agent CA. JSON in, JSON out, bounded in time and size.
import { Agent, request } from 'node:https';
import { createSecureContext } from 'node:tls';

export interface Identity {
  certPem: string;
  /** Secret. */
  keyPem: string;
  caPem: string;
}

export interface Exchange<T> {
  status: number;
  body: T | undefined;
  /** Local clock (ms) when the request was sent and when the answer came. */
  sentAt: number;
  receivedAt: number;
}

const maxAnswer = 256 * 1024;

export class ProviderClient {
  readonly #base: string;
  readonly #timeoutMs: number;
  #agent: Agent;
  /**
   * The provider's last session ticket. Node's Agent keeps one too, but drops it whenever a
   * connection ends in an error, as every report in flight (or in its handshake) does when the
   * provider restarts: those agents would all come back with full handshakes at once. A ticket the
   * provider cannot use costs nothing (it makes a full handshake and sends a new one), so this one is
   * dropped only with the identity (a ticket carries the client certificate).
   */
  #session: Buffer | undefined;

  constructor(baseUrl: string, id: Identity, timeoutMs = 10_000) {
    this.#base = baseUrl;
    this.#timeoutMs = timeoutMs;
    this.#agent = this.#newAgent(id);
  }

  #newAgent(id: Identity): Agent {
    // Keep-alive while the provider keeps the connection (it keeps a bounded number: an idle TLS
    // connection costs it memory); otherwise the next report reconnects and resumes the TLS session
    // (#session), which skips the certificates and signatures. One secure context for every
    // connection: the key and certificates are parsed once.
    const secureContext = createSecureContext({ ca: id.caPem, cert: id.certPem, key: id.keyPem });
    const agent = new Agent({ keepAlive: true, maxSockets: 1, secureContext });
    // A session given to tls.connect wins over the Agent's own (request options do not reach it).
    const connect = agent.createConnection.bind(agent);
    agent.createConnection = (options, callback) => {
      const socket = connect({ ...options, ...(this.#session ? { session: this.#session } : {}) }, callback);
      // Not from a connection of the identity before (setIdentity).
      socket?.on('session', (session: Buffer) => this.#agent === agent && (this.#session = session));
      return socket;
    };
    return agent;
  }

  /** Uses a renewed certificate from the next request on. */
  setIdentity(id: Identity): void {
    this.#agent.destroy();
    this.#agent = this.#newAgent(id);
    this.#session = undefined;
  }

  post<T>(path: string, body: unknown): Promise<Exchange<T>> {
    const payload = JSON.stringify(body);
    const sentAt = Date.now();
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, this.#base),
        {
          method: 'POST',
          agent: this.#agent,
          timeout: this.#timeoutMs,
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= maxAnswer) chunks.push(c);
          });
          res.on('end', () => {
            let parsed: T | undefined;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, sentAt, receivedAt: Date.now() });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from ${this.#base} within ${this.#timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

// A raw JSON request to the API server with the kubeconfig's identity. The generated client
// serializes known kinds through its models, which drops schema keys such as
// x-kubernetes-int-or-string from CRDs; the harness applies CRDs byte-for-byte through this.
import type { KubeConfig } from '@kubernetes/client-node';
import { Agent, request, type RequestOptions } from 'node:https';
import { counter } from '../runtime/metrics.ts';

/** Requests by API server, verb and code (client-go's rest_client_requests_total{host,method,code}). */
export const apiRequests = counter('rest_client_requests_total', 'Requests to the API server', [
  'method',
  'code',
  'host',
  'resource',
]);

/**
 * The resource a request path names, with its subresource: "baremetalmachines/status", "leases",
 * "events". Bounded (kinds, not names), so the metric says where writes go without a label per object.
 */
export function resourceOf(path: string): string {
  const parts = path.split('?')[0]!.split('/').filter(Boolean);
  let rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3);
  if (rest[0] === 'namespaces' && rest.length > 2) rest = rest.slice(2);
  return rest[2] ? `${rest[0]}/${rest[2]}` : (rest[0] ?? '');
}

/** The message of a Kubernetes Status body, or the body itself. */
function statusMessage(body: string): string {
  try {
    const status = JSON.parse(body) as { message?: string };
    if (typeof status.message === 'string') return status.message;
  } catch {
    // not JSON: show it as it came
  }
  return body.slice(0, 2000);
}

export class ApiError extends Error {
  readonly code: number;
  readonly retryAfterMs: number | undefined;
  constructor(code: number, request: string, body: string, retryAfter?: string) {
    super(`${request}: HTTP ${code}: ${statusMessage(body)}`);
    this.name = 'ApiError';
    this.code = code;
    this.retryAfterMs = retryAfter && Number.isFinite(Number(retryAfter)) ? Number(retryAfter) * 1000 : undefined;
  }
}

/**
 * One request with the kubeconfig's identity. 429 Too Many Requests (API priority and fairness,
 * or a CRD's storage still starting) is retried after the server's Retry-After, a few times.
 */
export async function raw<T = unknown>(kc: KubeConfig, method: string, path: string, body?: unknown): Promise<T> {
  // A PATCH is a JSON merge patch; server-side apply goes through apply().
  return send<T>(kc, {
    method,
    path,
    body,
    contentType: method === 'PATCH' ? 'application/merge-patch+json' : 'application/json',
  });
}

/** Server-side apply with a field manager, forcing ownership of the fields it sets. */
export function apply<T = unknown>(kc: KubeConfig, path: string, body: unknown, fieldManager = 'capbm'): Promise<T> {
  const sep = path.includes('?') ? '&' : '?';
  return send<T>(kc, {
    method: 'PATCH',
    path: `${path}${sep}fieldManager=${fieldManager}&force=true`,
    body,
    contentType: 'application/apply-patch+yaml',
  });
}

interface Request {
  method: string;
  path: string;
  body?: unknown;
  contentType: string;
}

/** A request sent on a kept connection the server had closed: sent again on a new one. */
class StaleConnection extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'StaleConnection';
  }
}

async function send<T>(kc: KubeConfig, r: Request): Promise<T> {
  for (let attempt = 0, stale = 0; ; attempt++) {
    try {
      return await once<T>(kc, r);
    } catch (err) {
      if (err instanceof StaleConnection && stale++ < 2) continue;
      if (err instanceof StaleConnection) throw err.cause;
      if (!(err instanceof ApiError) || err.code !== 429 || attempt >= 8) throw err;
      await new Promise((r) => setTimeout(r, Math.min(err.retryAfterMs ?? 250 * 2 ** attempt, 5000)));
    }
  }
}

/** The TLS settings an agent's connections were made with: a new agent when any of them changes. */
const text = (v: unknown): string =>
  Buffer.isBuffer(v)
    ? v.toString('base64')
    : Array.isArray(v)
      ? v.map(text).join(',')
      : typeof v === 'string'
        ? v
        : (JSON.stringify(v) ?? '');
const tlsKeys = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'] as const;
const tlsIdentity = (o: RequestOptions) => tlsKeys.map((k) => text(o[k])).join('\0');

const agents = new WeakMap<KubeConfig, { identity: string; agent: Agent }>();

/**
 * One keep-alive agent per kubeconfig: requests reuse their TLS connections, as client-go's do.
 * (applyToHTTPSOptions makes a new agent per request, so every request was a new TLS handshake on
 * both sides: at 10,000 machines the API server spent most of its CPU on them.) A rotated client
 * certificate or CA gets a new agent; the old one's connections close once their requests are done.
 */
function keptAgent(kc: KubeConfig, opts: RequestOptions): Agent {
  const identity = tlsIdentity(opts);
  const had = agents.get(kc);
  if (had?.identity === identity) return had.agent;
  const tls = Object.fromEntries(tlsKeys.filter((k) => opts[k] !== undefined).map((k) => [k, opts[k]]));
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 64, ...tls });
  agents.set(kc, { identity, agent });
  if (had) setTimeout(() => had.agent.destroy(), 120_000).unref();
  return agent;
}

const staleCodes: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE']);

async function once<T>(kc: KubeConfig, { method, path, body, contentType }: Request): Promise<T> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('kubeconfig has no current cluster');
  const opts: RequestOptions = { method, headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  opts.agent = keptAgent(kc, opts);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  // Content-Length always: Node frames a DELETE's body (preconditions) neither chunked nor by length,
  // so the server took it for no body and read the bytes as the next request on a kept connection.
  if (payload !== undefined)
    opts.headers = { ...opts.headers, 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(payload) };
  return new Promise<T>((resolve, reject) => {
    const req = request(new URL(path, server), opts, (res) => {
      apiRequests.inc({
        method,
        code: String(res.statusCode ?? 0),
        host: new URL(server).host,
        resource: resourceOf(path),
      });
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 0) >= 300) {
          return reject(new ApiError(res.statusCode ?? 0, `${method} ${path}`, text, res.headers['retry-after']));
        }
        resolve((text ? JSON.parse(text) : undefined) as T);
      });
      res.on('error', reject);
    });
    // A kept connection the server closed as this request went out: nothing reached the server.
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(req.reusedSocket && staleCodes.has(err.code ?? '') ? new StaleConnection(err) : err),
    );
    req.end(payload);
  });
}

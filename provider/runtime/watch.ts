// One watch request as a stream of events, over node:https with the kubeconfig's identity.
// client-node's Watch aborts a watch after 30 s without bytes (a quiet namespace), which would
// churn connections at scale; here the server ends the watch (timeoutSeconds) and bookmarks keep
// the resourceVersion fresh. The caller (informer.ts) owns relist and backoff.
import type { KubeConfig } from '@kubernetes/client-node';
import { request, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import { ApiError, apiRequests, resourceOf } from '../kube/raw.ts';
import type { KubeObject } from '../kube/kinds.ts';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject;
}

/** The watch's resourceVersion is too old (HTTP 410 or an ERROR event with code 410): relist. */
export class ResourceExpired extends Error {
  constructor(message: string) {
    super(`${message}; the informer relists`);
    this.name = 'ResourceExpired';
  }
}

export interface WatchHandle {
  /** Resolves when the server closes the watch normally; rejects on errors (ResourceExpired, ApiError, network). */
  done: Promise<void>;
  /** Ends the watch; `done` then resolves. */
  abort(): void;
}

/**
 * Starts a watch on `path` (a collection URL) with the given query parameters
 * (resourceVersion, labelSelector, timeoutSeconds, allowWatchBookmarks, ...).
 */
export async function startWatch(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | undefined>,
  onEvent: (e: WatchEvent) => void,
): Promise<WatchHandle> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('kubeconfig has no current cluster');
  const url = new URL(path, server);
  url.searchParams.set('watch', 'true');
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  const opts: RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  const controller = new AbortController();
  const done = new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      if (err && !controller.signal.aborted)
        reject(err instanceof Error ? err : new Error('watch failed', { cause: err }));
      else resolve();
    };
    const req = request(url, { ...opts, signal: controller.signal }, (res) => {
      apiRequests.inc({
        method: 'WATCH',
        code: String(res.statusCode ?? 0),
        host: url.host,
        resource: resourceOf(url.pathname),
      });
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          settle(
            status === 410
              ? new ResourceExpired(`watch ${path}: HTTP 410`)
              : new ApiError(status, `WATCH ${path}`, body),
          );
        });
        res.on('error', settle);
        return;
      }
      const lines = createInterface({ input: res, crlfDelay: Infinity });
      lines.on('line', (line) => {
        if (!line.trim() || settled) return;
        let e: WatchEvent;
        try {
          e = JSON.parse(line) as WatchEvent;
        } catch {
          return; // a partial line on abort
        }
        if (e.type === 'ERROR') {
          const s = e.object as { code?: number; message?: string };
          settle(
            s.code === 410
              ? new ResourceExpired(`watch ${path}: ${s.message ?? 'expired'}`)
              : new ApiError(s.code ?? 500, `WATCH ${path}`, JSON.stringify(s)),
          );
          req.destroy();
          return;
        }
        onEvent(e);
      });
      lines.on('error', settle); // readline re-emits the response's errors
      res.on('error', settle);
      res.on('close', () => settle());
    });
    req.on('error', settle);
    req.end();
  });
  return { done, abort: () => controller.abort() };
}

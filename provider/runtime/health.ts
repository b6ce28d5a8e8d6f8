// /healthz, /readyz and /metrics on plain HTTP (probes and Prometheus scrape inside the cluster).
// Metrics and probes may share one server or use two (CAPI's default ports: 8080 and 9440).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { registry } from './metrics.ts';

export interface Check {
  name: string;
  /** Returns an empty string when fine, else why not. */
  check: () => string;
}

export interface ProbeServerOptions {
  host: string;
  port: number;
  healthz?: Check[];
  readyz?: Check[];
  /** Serve /metrics from the shared registry. */
  metrics?: boolean;
}

export interface ProbeServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

function runChecks(checks: Check[]): { ok: boolean; body: string } {
  const lines = checks.map((c) => {
    const why = c.check();
    return { ok: !why, line: why ? `[-]${c.name} failed: ${why}` : `[+]${c.name} ok` };
  });
  const ok = lines.every((l) => l.ok);
  return { ok, body: `${lines.map((l) => l.line).join('\n')}\n${ok ? 'ok' : 'not ok'}\n` };
}

export async function startProbeServer(o: ProbeServerOptions): Promise<ProbeServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const probe = path === '/healthz' ? o.healthz : path === '/readyz' ? o.readyz : undefined;
    if (probe) {
      const { ok, body } = runChecks(probe);
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(body);
      return;
    }
    if (path === '/metrics' && o.metrics) {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
      return;
    }
    res.writeHead(404).end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// Web servers for bundle.source HTTP on the lab bridge, where lab hosts reach them: a static server
// of a bundle folder (any static server would do) and a forward proxy that records what went
// through it. Used by test/integration/preparation-http.test.ts and test/e2e/upgrade.test.ts.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join, normalize } from 'node:path';
import { BRIDGE_ADDRESS } from './lab.ts';

/** A static web server of a folder (GET only, nothing outside the folder). */
export function staticServer(root: string): Server {
  return createServer((req, res) => {
    const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!path.startsWith(`${root}/`) || !existsSync(path) || !statSync(path).isFile())
      return void res.writeHead(404).end('not found\n');
    res.writeHead(200, { 'content-length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
}

/** A forward proxy for plain http (absolute-form request targets), pushing each request's URL to `seen`. */
export function forwardProxy(seen: string[]): Server {
  return createServer((req, res) => {
    seen.push(req.url ?? '');
    const up = request(req.url ?? '', { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', (e) => res.writeHead(502).end(`${e.message}\n`));
    req.pipe(up);
  });
}

/** Listens on the lab bridge (it exists once a lab host is on it), on a free port; returns the base URL. */
export async function listenOnBridge(s: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, BRIDGE_ADDRESS, resolve);
  });
  return `http://${BRIDGE_ADDRESS}:${(s.address() as { port: number }).port}`;
}

/** Closes the server and every connection still open to it. */
export async function closeServer(s: Server): Promise<void> {
  s.closeAllConnections();
  await new Promise((r) => s.close(r));
}

// A check environment rooted in a fresh temp folder: the checks read <root>/proc, <root>/var/lib,
// ... exactly as they read / on a host. Commands run for real; kubelet's healthz is a real HTTP
// server on loopback when a test starts one.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { defaultThresholds } from '../../../agent/config.ts';
import { httpGet, type CheckEnv } from '../../../agent/checks/env.ts';
import { runCommand } from '../../../agent/runner.ts';

const roots: string[] = [];
process.on('exit', () => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

/** A fresh folder standing in for a host's root; removed when the test process exits. */
export function tempRoot(): string {
  const r = mkdtempSync(join(tmpdir(), 'capbm-agent-root-'));
  roots.push(r);
  return r;
}

export function put(root: string, path: string, content: string | Buffer): string {
  const p = join(root, path);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, content);
  return p;
}

/** A fake process in <root>/proc: what the agent sees of a running program. */
export const addProcess = (root: string, pid: number, comm: string) => put(root, `proc/${pid}/comm`, `${comm}\n`);

export function envOf(root: string, o: Partial<CheckEnv> = {}): CheckEnv {
  return { root, run: runCommand, httpGet, now: Date.now, thresholds: { ...defaultThresholds }, ...o };
}

/** An HTTP server on 127.0.0.1 answering every GET with this status and body. */
export async function healthz(status: number, body: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(status);
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`, server };
}

// The node agent the provider ships to hosts: the bundle built by `node agent/build.ts` (a build
// step: hack/test, hack/lab and the image build run it), read once and checked against the sha256
// file written beside it. The provider never builds it at run time: what runs on hosts is exactly
// what was built and shipped with the provider.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface AgentBundle {
  path: string;
  code: Buffer;
  /** hex */
  sha256: string;
}

export class AgentBundleUnavailable extends Error {
  override name = 'AgentBundleUnavailable';
}

const here = dirname(fileURLToPath(import.meta.url));
/** From source (provider/health) the bundle is in dist/agent; from a build (dist/provider/health), in dist/agent. */
const candidates = [join(here, '../../dist/agent/capbm-agent.mjs'), join(here, '../../agent/capbm-agent.mjs')];

/** Where the built bundle is: the path given, or the first default that exists. */
export function agentBundlePath(path?: string): string {
  return path ?? candidates.find((c) => existsSync(c)) ?? candidates[0]!;
}

const loaded = new Map<string, Promise<AgentBundle>>();

async function load(path: string): Promise<AgentBundle> {
  const read = (p: string) =>
    readFile(p).catch((err: NodeJS.ErrnoException) => {
      throw new AgentBundleUnavailable(
        `the node agent bundle ${p} cannot be read (${err.code ?? err.message}): build it with \`node agent/build.ts\` (hack/test, hack/lab and the image build do)`,
      );
    });
  const [code, shaFile] = await Promise.all([read(path), read(`${path}.sha256`)]);
  const want = shaFile.toString('utf8').trim().split(/\s+/)[0] ?? '';
  const sha256 = createHash('sha256').update(code).digest('hex');
  if (sha256 !== want) {
    throw new AgentBundleUnavailable(
      `the node agent bundle ${path} does not match its sha256 file (${sha256.slice(0, 12)}... is not ${want.slice(0, 12)}...): rebuild it with \`node agent/build.ts\``,
    );
  }
  return { path, code, sha256 };
}

/** The verified bundle, read once per path per process (a failed read is tried again next time). */
export function loadAgentBundle(path?: string): Promise<AgentBundle> {
  const p = agentBundlePath(path);
  let b = loaded.get(p);
  if (!b) {
    b = load(p);
    loaded.set(p, b);
    b.catch(() => loaded.delete(p));
  }
  return b;
}

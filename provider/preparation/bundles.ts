// The bundles the provider serves to hosts over SSH (air-gapped: nothing is downloaded by a host),
// read from the folder given by --bundle-dir (hack/bundle builds it). A bundle is checked against
// its manifest once, before its first upload; a file changed since is caught again on the host,
// where every file is verified before use.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BundleInvalid, digestOf, parseManifest, verifyDigests, type BundleManifest } from './manifest.ts';

export interface Bundle {
  manifest: BundleManifest;
  /** sha256 of manifest.json: names this exact bundle (on the host's record, in pins). */
  digest: string;
  /** The bundle's folder; a file of the manifest is at files/<path>. */
  dir: string;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export class Bundles {
  readonly dir: string;
  readonly #checked = new Map<string, Promise<Bundle>>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The bundle for a Kubernetes version (or the named one), checked; BundleInvalid when there is none. */
  find(version: string, o: { name?: string; sha256?: string; source?: string } = {}): Promise<Bundle> {
    const name = o.name ?? this.#newest(version);
    let p = this.#checked.get(name);
    if (!p) {
      p = this.#load(name);
      this.#checked.set(name, p);
      p.catch(() => this.#checked.delete(name));
    }
    return p.then((b) => {
      if (b.manifest.kubernetesVersion !== version)
        throw new BundleInvalid(
          `bundle ${name} is for Kubernetes ${b.manifest.kubernetesVersion}, the machine is ${version}`,
        );
      if (o.sha256 && o.sha256 !== b.digest)
        throw new BundleInvalid(
          `bundle ${name} has digest ${b.digest}, the template pins ${o.sha256}; build or pin the right one`,
        );
      return b;
    });
  }

  /** The highest build of kubernetes-<version>-b<n> in the folder. */
  #newest(version: string): string {
    const prefix = `kubernetes-${version}-b`;
    const names = existsSync(this.dir) ? readdirSync(this.dir).filter((n) => n.startsWith(prefix)) : [];
    const best = names.sort((a, b) => Number(b.slice(prefix.length)) - Number(a.slice(prefix.length)))[0];
    if (!best)
      throw new BundleInvalid(
        `no bundle for Kubernetes ${version} in ${this.dir}; build one (hack/bundle build ${version}) and copy it there`,
      );
    return best;
  }

  async #load(name: string): Promise<Bundle> {
    const dir = join(this.dir, name);
    const file = join(dir, 'manifest.json');
    if (!existsSync(file))
      throw new BundleInvalid(`bundle ${name} has no manifest.json in ${this.dir}; build it with hack/bundle`);
    const text = readFileSync(file, 'utf8');
    const manifest = parseManifest(text, file);
    const computed = new Map<string, string>();
    for (const f of manifest.files) {
      const p = join(dir, 'files', f.path);
      computed.set(f.path, existsSync(p) ? await sha256File(p) : 'missing');
    }
    const bad = verifyDigests(manifest, computed);
    if (bad.length)
      throw new BundleInvalid(
        `bundle ${name} does not match its manifest (${bad.map((b) => `${b.path}: ${b.got === 'missing' ? 'missing' : 'sha256 differs'}`).join(', ')}); build it again with hack/bundle`,
      );
    return { manifest, digest: digestOf(text), dir };
  }
}

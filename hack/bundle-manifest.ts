// Writes manifest.json for a bundle folder built by hack/bundle: every file under files/ with its
// sha256, size and mode, and what preparation enables and sets (provider/preparation/manifest.ts).
//   node hack/bundle-manifest.ts <folder> <kubernetes version> <name>
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { arch } from 'node:os';
import { join, relative } from 'node:path';
import { MANIFEST_API, parseManifest, type BundleFile, type BundleManifest } from '../provider/preparation/manifest.ts';

const [dir, version, name] = process.argv.slice(2);
if (!dir || !version || !name) {
  process.stderr.write('usage: node hack/bundle-manifest.ts <folder> <kubernetes version> <name>\n');
  process.exit(2);
}
const root = join(dir, 'files');

function walk(d: string): string[] {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(d, e.name)) : e.isFile() ? [join(d, e.name)] : [],
  );
}

const files: BundleFile[] = walk(root)
  .sort()
  .map((p) => {
    const st = statSync(p);
    return {
      path: `/${relative(root, p)}`,
      sha256: createHash('sha256').update(readFileSync(p)).digest('hex'),
      size: st.size,
      mode: `0${(st.mode & 0o777).toString(8).padStart(3, '0')}`,
    };
  });
const manifest: BundleManifest = {
  apiVersion: MANIFEST_API,
  name,
  kubernetesVersion: version,
  arch: arch() === 'arm64' ? 'aarch64' : 'x86_64',
  files,
  units: ['containerd.service', 'kubelet.service'],
  modules: ['overlay', 'br_netfilter'],
  sysctls: { 'net.ipv4.ip_forward': '1', 'net.bridge.bridge-nf-call-iptables': '1' },
};
const text = JSON.stringify(manifest, null, 2) + '\n';
parseManifest(text, join(dir, 'manifest.json'));
writeFileSync(join(dir, 'manifest.json'), text);
process.stderr.write(`    ${files.length} files, ${Math.round(files.reduce((n, f) => n + f.size, 0) / 2 ** 20)} MiB\n`);

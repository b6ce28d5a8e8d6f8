// Assembles OCI images from files on this machine and pushes them into a registry's storage
// folder, for the lab's air-gapped registry (hack/images runs this; see docs/lab.md).
//
// An image is a list of layers, each a list of [source path, path in the image] pairs (a source
// may be a folder, copied whole), plus an image config (entrypoint, environment). Layers are
// reproducible tarballs (sorted, owner 0, mtime 0), so the same inputs give the same digests and a
// layer shared by several images (the busybox base) is stored once.
//
// The push speaks the registry's HTTP API (OCI distribution spec) to a Debian `docker-registry`
// started on 127.0.0.1 for the push only: blobs with a monolithic upload, then the manifest.
// Usage: node hack/images.ts INPUTS.json   (written by hack/images: where each built program is)
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

interface ImagePlan {
  /** Repository path in the registry, e.g. kube-apiserver or capbm-lab/agnhost. */
  name: string;
  tag: string;
  layers: Array<Array<[string, string]>>;
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
}

interface Plan {
  /** The registry's storage root (filesystem driver). */
  storage: string;
  /** The Debian docker-registry binary. */
  registry: string;
  images: ImagePlan[];
}

interface Blob {
  digest: string;
  size: number;
  data: Buffer;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blob = (data: Buffer): Blob => ({ digest: sha256(data), size: data.length, data });

const layerCache = new Map<string, { gz: Blob; diffId: string }>();

/** A reproducible gzip'd tar of the given files. */
function layer(files: Array<[string, string]>): { gz: Blob; diffId: string } {
  const key = JSON.stringify(files);
  const hit = layerCache.get(key);
  if (hit) return hit;
  const stage = mkdtempSync(join(tmpdir(), 'capbm-layer-'));
  try {
    for (const [src, dst] of files) {
      const to = join(stage, dst);
      mkdirSync(dirname(to), { recursive: true });
      cpSync(src, to, { recursive: true, dereference: false, verbatimSymlinks: true });
    }
    const tar = execFileSync(
      'tar',
      ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', stage, '-cf', '-', '.'],
      { maxBuffer: 1 << 30 },
    );
    const out = { gz: blob(gzipSync(tar, { level: 6 })), diffId: sha256(tar) };
    layerCache.set(key, out);
    return out;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function build(img: ImagePlan): { manifest: Buffer; blobs: Blob[] } {
  const layers = img.layers.map(layer);
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '1970-01-01T00:00:00Z',
        config: {
          Env: img.env ?? ['PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin'],
          ...(img.entrypoint ? { Entrypoint: img.entrypoint } : {}),
          ...(img.cmd ? { Cmd: img.cmd } : {}),
        },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      }),
    ),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: l.gz.digest,
        size: l.gz.size,
      })),
    }),
  );
  return { manifest, blobs: [config, ...layers.map((l) => l.gz)] };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function ok(res: Response, what: string): Promise<Response> {
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  return res;
}

async function push(base: string, img: ImagePlan): Promise<string> {
  const { manifest, blobs } = build(img);
  for (const b of blobs) {
    const head = await fetch(`${base}/v2/${img.name}/blobs/${b.digest}`, { method: 'HEAD' });
    if (head.ok) continue;
    const start = await ok(
      await fetch(`${base}/v2/${img.name}/blobs/uploads/`, { method: 'POST' }),
      `starting an upload to ${img.name}`,
    );
    const loc = new URL(start.headers.get('location')!, base);
    loc.searchParams.set('digest', b.digest);
    await ok(
      await fetch(loc, {
        method: 'PUT',
        body: new Uint8Array(b.data),
        headers: { 'content-type': 'application/octet-stream' },
      }),
      `uploading ${b.digest} to ${img.name}`,
    );
  }
  await ok(
    await fetch(`${base}/v2/${img.name}/manifests/${img.tag}`, {
      method: 'PUT',
      body: new Uint8Array(manifest),
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    }),
    `pushing the manifest of ${img.name}:${img.tag}`,
  );
  return sha256(manifest);
}

interface Built {
  tag: string;
  path: string;
}

interface Inputs {
  storage: string;
  registry: string;
  rootfs: string;
  busybox: string;
  kubernetes: Array<{ version: string; bin: string }>;
  etcd: Built[];
  coredns: Built[];
  pause: Built[];
  kubeRouter: Built;
  agnhost: Built;
}

/** Which iptables the images run: nf_tables, as the lab hosts' Debian (its default alternative) does. */
const IPTABLES_MODE = 'nft';

/** Folders staged in the temp folder for the images' layers, removed once they are pushed. */
const staged: string[] = [];
function stage(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  staged.push(d);
  return d;
}

/** A folder with a static busybox and its applets, passwd/group, /tmp: the base of every image. */
function baseDir(i: Inputs): string {
  const d = stage('capbm-base-');
  mkdirSync(join(d, 'bin'), { recursive: true });
  mkdirSync(join(d, 'etc'));
  mkdirSync(join(d, 'tmp'), { mode: 0o1777 });
  cpSync(i.busybox, join(d, 'bin/busybox'));
  const applets = execFileSync(i.busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') symlinkSync('busybox', join(d, 'bin', a));
  writeFileSync(join(d, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(join(d, 'etc/group'), 'root:x:0:\nnobody:x:65534:\n');
  writeFileSync(join(d, 'etc/nsswitch.conf'), 'hosts: files dns\n');
  for (const f of ['etc/protocols', 'etc/services']) cpSync(join(i.rootfs, f), join(d, f));
  return d;
}

/** Programs of the lab OS image with every shared library they load (what distroless-iptables has). */
function fromRootfs(rootfs: string, programs: string[], extra: string[]): Array<[string, string]> {
  const files = new Map<string, string>();
  const real = (p: string) => execFileSync('chroot', [rootfs, 'readlink', '-f', p], { encoding: 'utf8' }).trim();
  const libsOf = (paths: string) => {
    const ldd = execFileSync('chroot', [rootfs, 'sh', '-c', `ldd ${paths}`], { encoding: 'utf8' });
    for (const m of ldd.matchAll(/(\/\S+) \(0x/g)) files.set(m[1]!, join(rootfs, real(m[1]!)));
  };
  for (const p of programs) {
    files.set(p, join(rootfs, real(p)));
    libsOf(p);
  }
  // Plugin folders (iptables' extensions): their own libraries too (libxt_statistic needs libm).
  for (const p of extra) {
    files.set(p, join(rootfs, p));
    if (statSync(join(rootfs, p)).isDirectory()) libsOf(`${p}/*.so`);
  }
  return [...files].map(([dst, src]) => [src, dst]);
}

function iptablesDir(): string {
  const d = stage('capbm-iptables-');
  mkdirSync(join(d, 'usr/sbin'), { recursive: true });
  for (const mode of ['legacy', 'nft']) {
    for (const t of ['iptables', 'ip6tables'])
      for (const s of ['', '-save', '-restore'])
        symlinkSync(`xtables-${mode}-multi`, join(d, `usr/sbin/${t}-${mode}${s}`));
  }
  for (const t of ['iptables', 'ip6tables'])
    for (const s of ['', '-save', '-restore'])
      symlinkSync(`xtables-${IPTABLES_MODE}-multi`, join(d, `usr/sbin/${t}${s}`));
  return d;
}

function plan(i: Inputs): ImagePlan[] {
  const base: Array<[string, string]> = [[baseDir(i), '/']];
  const net = [
    ...fromRootfs(
      i.rootfs,
      ['/usr/sbin/xtables-legacy-multi', '/usr/sbin/xtables-nft-multi', '/usr/sbin/ipset', '/usr/sbin/conntrack'],
      ['/usr/lib/x86_64-linux-gnu/xtables', '/etc/ethertypes'],
    ),
    [iptablesDir(), '/'] as [string, string],
  ];
  const bin = (path: string, name: string): Array<[string, string]> => [[path, `/usr/local/bin/${name}`]];
  const out: ImagePlan[] = [];
  for (const k of i.kubernetes) {
    for (const c of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'])
      out.push({ name: c, tag: k.version, layers: [base, bin(join(k.bin, c), c)] });
    out.push({ name: 'kube-proxy', tag: k.version, layers: [base, net, bin(join(k.bin, 'kube-proxy'), 'kube-proxy')] });
  }
  for (const e of i.etcd) out.push({ name: 'etcd', tag: e.tag, layers: [base, bin(e.path, 'etcd')] });
  for (const c of i.coredns)
    out.push({ name: 'coredns', tag: c.tag, layers: [base, [[c.path, '/coredns']]], entrypoint: ['/coredns'] });
  for (const p of i.pause)
    out.push({ name: 'pause', tag: p.tag, layers: [[[p.path, '/pause']]], entrypoint: ['/pause'] });
  out.push({
    name: 'kube-router',
    tag: i.kubeRouter.tag,
    layers: [base, net, bin(i.kubeRouter.path, 'kube-router')],
    entrypoint: ['/usr/local/bin/kube-router'],
  });
  out.push({
    name: 'agnhost',
    tag: i.agnhost.tag,
    layers: [base, bin(i.agnhost.path, 'agnhost')],
    entrypoint: ['/usr/local/bin/agnhost'],
  });
  // Deduplicated by name:tag (two Kubernetes versions may ask for the same etcd, CoreDNS or pause).
  return [...new Map(out.map((x) => [`${x.name}:${x.tag}`, x])).values()];
}

async function main(): Promise<void> {
  const inputs = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Inputs;
  try {
    const plan_ = { storage: inputs.storage, registry: inputs.registry, images: plan(inputs) };
    await pushAll(plan_);
  } finally {
    for (const d of staged) rmSync(d, { recursive: true, force: true });
  }
}

async function pushAll(plan: Plan): Promise<void> {
  mkdirSync(plan.storage, { recursive: true });
  const port = await freePort();
  const config = join(plan.storage, '..', `.registry-push-${process.pid}.yml`);
  writeFileSync(
    config,
    `version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: ${plan.storage}}}
http: {addr: 127.0.0.1:${port}}
`,
  );
  const logFile = join(plan.storage, '..', `.registry-push-${process.pid}.log`);
  const logFd = openSync(logFile, 'w');
  const reg = spawn(plan.registry, ['serve', config], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const base = `http://127.0.0.1:${port}`;
  try {
    const up = async () => (await fetch(`${base}/v2/`).catch(() => undefined))?.ok === true;
    for (let i = 0; !(await up()); i++) {
      if (i > 100) throw new Error(`the registry did not start on ${base}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const img of plan.images) {
      const digest = await push(base, img);
      process.stderr.write(`    ${img.name}:${img.tag} ${digest.slice(0, 19)}\n`);
    }
  } catch (err) {
    process.stderr.write(
      `the registry's log (${logFile}):\n${readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n')}\n`,
    );
    throw err;
  } finally {
    reg.kill();
    rmSync(config, { force: true });
  }
  rmSync(logFile, { force: true });
}

await main();

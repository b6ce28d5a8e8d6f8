// The manifest of a host preparation bundle (hack/bundle, docs/hosts.md): what a stock host needs
// to become a node of one Kubernetes version, each file with its sha256. Pure: parsing, checking
// a manifest, and comparing the digests a host (or the provider) computed with it.
import { createHash } from 'node:crypto';

export const MANIFEST_API = 'capbm.dev/bundle/v1';

export interface BundleFile {
  /** Absolute path on the host, where the file is installed. */
  path: string;
  sha256: string;
  size: number;
  /** File mode, octal digits (e.g. "0755"). */
  mode: string;
}

export interface BundleManifest {
  apiVersion: typeof MANIFEST_API;
  name: string;
  kubernetesVersion: string;
  /** The host architecture the binaries are for, as `uname -m` prints it. */
  arch: string;
  files: BundleFile[];
  /** systemd units enabled and started after the files are in place. */
  units: string[];
  /** Kernel modules loaded (and listed in /etc/modules-load.d). */
  modules: string[];
  /** Sysctls the node needs, checked after they are applied. */
  sysctls: Record<string, string>;
}

/** A manifest that cannot be used: what is wrong, and to build the bundle again. */
export class BundleInvalid extends Error {
  override name = 'BundleInvalid';
}

const SHA256 = /^[0-9a-f]{64}$/;
const SAFE_PATH = /^\/[A-Za-z0-9._+\-/@]+$/;
const UNIT = /^[A-Za-z0-9@._-]+\.service$/;
const MODULE = /^[A-Za-z0-9_-]+$/;
const SYSCTL = /^[a-z0-9_.-]+$/;

export const digestOf = (text: string | Buffer): string => createHash('sha256').update(text).digest('hex');

function problemsOfFile(f: Partial<BundleFile>, i: number): string[] {
  const p: string[] = [];
  const at = `files[${i}]`;
  if (typeof f.path !== 'string' || !SAFE_PATH.test(f.path) || f.path.split('/').includes('..'))
    p.push(`${at}.path must be an absolute path without "..", spaces or quotes`);
  if (typeof f.sha256 !== 'string' || !SHA256.test(f.sha256)) p.push(`${at}.sha256 must be 64 lowercase hex digits`);
  if (typeof f.size !== 'number' || !Number.isInteger(f.size) || f.size < 0) p.push(`${at}.size must be a byte count`);
  if (typeof f.mode !== 'string' || !/^0[0-7]{3}$/.test(f.mode)) p.push(`${at}.mode must be octal like "0755"`);
  return p;
}

function problemsOfLists(m: Partial<BundleManifest>): string[] {
  const p: string[] = [];
  if (!Array.isArray(m.units) || !m.units.every((u) => typeof u === 'string' && UNIT.test(u)))
    p.push('units must be a list of systemd service names');
  if (!Array.isArray(m.modules) || !m.modules.every((x) => typeof x === 'string' && MODULE.test(x)))
    p.push('modules must be a list of kernel module names');
  const s = m.sysctls;
  if (!s || typeof s !== 'object' || !Object.entries(s).every(([k, v]) => SYSCTL.test(k) && /^[0-9]+$/.test(String(v))))
    p.push('sysctls must map sysctl names to numbers');
  return p;
}

function problemsOfHeader(m: Partial<BundleManifest>): string[] {
  const p: string[] = [];
  if (m.apiVersion !== MANIFEST_API) p.push(`apiVersion must be ${MANIFEST_API}`);
  if (typeof m.name !== 'string' || !/^[a-z0-9][a-z0-9.-]*$/.test(m.name)) p.push('name must be a DNS-like name');
  if (typeof m.kubernetesVersion !== 'string' || !/^v\d+\.\d+\.\d+/.test(m.kubernetesVersion))
    p.push('kubernetesVersion must look like v1.36.3');
  if (typeof m.arch !== 'string' || !m.arch) p.push('arch must be set (x86_64, aarch64)');
  return p;
}

function problemsOfFiles(m: Partial<BundleManifest>): string[] {
  if (!Array.isArray(m.files) || m.files.length === 0) return ['files must list at least one file'];
  const p = m.files.flatMap((f, i) => problemsOfFile(f, i));
  const seen = new Set<string>();
  for (const f of m.files) {
    if (seen.has(f.path)) p.push(`files: ${f.path} is listed twice`);
    seen.add(f.path);
  }
  return p;
}

/** Parses and checks a manifest.json; throws BundleInvalid saying everything that is wrong. */
export function parseManifest(text: string, where = 'manifest.json'): BundleManifest {
  let m: Partial<BundleManifest>;
  try {
    m = JSON.parse(text) as Partial<BundleManifest>;
  } catch (err) {
    throw new BundleInvalid(`${where} is not JSON (${(err as Error).message}); build the bundle again (hack/bundle)`);
  }
  const p = [...problemsOfHeader(m), ...problemsOfFiles(m)];
  p.push(...problemsOfLists(m));
  if (p.length)
    throw new BundleInvalid(
      `${where} is not a valid bundle manifest: ${p.join('; ')}; build the bundle again (hack/bundle)`,
    );
  return m as BundleManifest;
}

export interface Mismatch {
  path: string;
  want: string;
  /** What was computed; "missing" when the file is not there. */
  got: string;
}

/** The files whose computed digest is not the manifest's (or that are missing). */
export function verifyDigests(m: BundleManifest, computed: ReadonlyMap<string, string>): Mismatch[] {
  return m.files
    .filter((f) => computed.get(f.path) !== f.sha256)
    .map((f) => ({ path: f.path, want: f.sha256, got: computed.get(f.path) ?? 'missing' }));
}

/** Parses `sha256sum` output ("<hex>  <path>" lines) into path -> digest. */
export function parseSha256sum(out: string, strip = ''): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const r = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (r) m.set(r[2]!.startsWith(strip) ? r[2]!.slice(strip.length) : r[2]!, r[1]!);
  }
  return m;
}

export const totalBytes = (m: BundleManifest): number => m.files.reduce((n, f) => n + f.size, 0);

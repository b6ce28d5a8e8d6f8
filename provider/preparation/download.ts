// bundle.source HTTP over SSH: the host downloads the bundle itself (connected sites); the provider
// never holds it. Used only once the probe found something to install (prepare.ts). The host fetches manifest.json and the provider reads it from the command's
// output and checks it against bundle.sha256; then the host downloads each file into the same
// staging folder the Provider source uploads to, from the base URL that served last first, then
// the mirrors in order. URLs and the proxy go on stdin (http.ts), never on a command line.
import { Timeout, type SshSession } from '../ssh/index.ts';
import {
  argvOnly,
  baseOrder,
  downloadScript,
  downloadStdin,
  downloaderProbeScript,
  fetchToStdoutScript,
  parseDownloader,
  redact,
  secretsOf,
  unavailableMessage,
  urlOf,
  type Attempt,
  type Downloader,
  type HttpBundle,
  type HttpSource,
} from './http.ts';
import { BundleInvalid, digestOf, parseManifest, type BundleFile, type BundleManifest } from './manifest.ts';

/** A refusal before anything is staged or installed. */
export interface Refused {
  reason: 'NoDownloader' | 'BundleUnavailable' | 'ChecksumMismatch';
  message: string;
}

/** A file the host could not download from any URL (BundleUnavailable; the message says each try). */
export class DownloadFailed extends Error {
  override name = 'DownloadFailed';
}

export interface Downloading {
  manifest: BundleManifest;
  digest: string;
  /** Downloads one file of the manifest to dest on the host; DownloadFailed when every URL failed. */
  send(f: BundleFile, dest: string): Promise<void>;
}

const noDownloader = (why: string): Refused => ({
  reason: 'NoDownloader',
  message: `${why} Install curl on the host (or bake it into its image), or use bundle.source: Provider (the provider uploads the bundle over SSH). Nothing was installed.`,
});

/** The host's downloader, or why the host cannot download this source. */
async function downloaderOf(conn: SshSession, src: HttpSource): Promise<Downloader | Refused> {
  const out = await conn.exec(downloaderProbeScript, { what: 'looking for curl or wget', timeoutMs: 30_000 });
  const d = parseDownloader(out.stdout);
  if (!d)
    return noDownloader('The host has neither curl nor wget (nor busybox), which bundle.source HTTP downloads with.');
  if (argvOnly(d) && secretsOf([src.url, ...(src.mirrors ?? [])]).length)
    return noDownloader(
      'The host has only busybox wget, which takes a URL on its command line, where every user of the host sees it: a URL with credentials is not given to it.',
    );
  return d;
}

/** Runs one download command: its output, or its error. */
async function attempt(
  conn: SshSession,
  script: string,
  o: { stdin: string; timeoutMs: number; what: string },
): Promise<{ stdout: string } | { error: string }> {
  let r;
  try {
    r = await conn.exec(script, { ...o, check: false });
  } catch (err) {
    if (err instanceof Timeout) return { error: `no answer in ${o.timeoutMs / 1000} s` };
    throw err;
  }
  return r.exitCode === 0 ? { stdout: r.stdout } : { error: r.stderr.trim() || `exit code ${r.exitCode}` };
}

interface Manifest {
  text: string;
  base: string;
}

/** manifest.json from the first base URL that serves the pinned one; the tries when none does. */
async function fetchManifest(
  conn: SshSession,
  d: Downloader,
  src: HttpSource,
): Promise<Manifest | { tries: Attempt[]; mismatch: boolean }> {
  const tries: Attempt[] = [];
  let mismatch = false;
  for (const base of baseOrder(src)) {
    const url = urlOf(base);
    const stdin = downloadStdin(d, url, src.proxy);
    const r = await attempt(conn, fetchToStdoutScript(d), {
      stdin,
      timeoutMs: 90_000,
      what: 'downloading manifest.json',
    });
    if ('error' in r) {
      tries.push({ url, error: r.error });
      continue;
    }
    const got = digestOf(r.stdout);
    if (got === src.sha256) return { text: r.stdout, base };
    mismatch = true;
    tries.push({ url, error: `its sha256 is ${got}, bundle.sha256 pins ${src.sha256}` });
  }
  return { tries, mismatch };
}

function manifestRefused(src: HttpSource, tries: Attempt[], mismatch: boolean): Refused {
  if (!mismatch)
    return {
      reason: 'BundleUnavailable',
      message: `${unavailableMessage('manifest.json', src, tries)} Nothing was installed.`,
    };
  const list = redact(
    tries.map((a) => `${a.url}: ${a.error}`).join('; '),
    secretsOf([src.url, ...(src.mirrors ?? [])]),
  );
  return {
    reason: 'ChecksumMismatch',
    message: `No URL served the bundle that bundle.sha256 pins (${list}). Pin the sha256 hack/bundle printed for the bundle that is served, or serve the pinned bundle. Nothing was installed.`,
  };
}

/**
 * Gets the host ready to download the bundle: its downloader, the pinned manifest.json (checked
 * here, before anything is staged), and the way each file is then downloaded.
 */
export async function httpBundle(conn: SshSession, b: HttpBundle): Promise<Downloading | Refused> {
  const src = b.http;
  const d = await downloaderOf(conn, src);
  if (typeof d !== 'string') return d;
  const got = await fetchManifest(conn, d, src);
  if ('tries' in got) return manifestRefused(src, got.tries, got.mismatch);
  let manifest: BundleManifest;
  try {
    manifest = parseManifest(got.text, redact(urlOf(got.base), secretsOf([got.base])));
  } catch (err) {
    if (!(err instanceof BundleInvalid)) throw err;
    return { reason: 'BundleUnavailable', message: `${err.message}. Nothing was installed.` };
  }
  if (manifest.kubernetesVersion !== b.version)
    return {
      reason: 'BundleUnavailable',
      message: `The bundle at ${redact(got.base)} (${manifest.name}) is for Kubernetes ${manifest.kubernetesVersion}, the machine is ${b.version}: point bundle.url at a bundle of ${b.version}. Nothing was installed.`,
    };
  let preferred = got.base;
  const send = async (f: BundleFile, dest: string) => {
    const tries: Attempt[] = [];
    for (const base of baseOrder(src, preferred)) {
      const url = urlOf(base, f.path);
      const stdin = downloadStdin(d, url, src.proxy);
      const r = await attempt(conn, downloadScript(d, dest), {
        stdin,
        timeoutMs: 660_000,
        what: `downloading ${f.path}`,
      });
      if (!('error' in r)) return void (preferred = base);
      tries.push({ url, error: r.error });
    }
    throw new DownloadFailed(unavailableMessage(f.path, src, tries));
  };
  return { manifest, digest: src.sha256, send };
}

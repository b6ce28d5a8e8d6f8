// Preparation on one host, over one SSH session: probe (read-only), decide (plan.ts), then stage
// the bundle (uploaded from the provider's --bundle-dir, or downloaded by the host from an HTTP
// source: download.ts), verify every staged file's sha256 on the host, and install. Nothing is
// installed before the host passed every check and every file verified; an install that fails
// part-way undoes itself (scripts.ts). An HTTP source probes first: a host prepared earlier is
// decided on before the host needs curl or wget and the manifest. Returns what happened; the caller
// turns it into conditions.
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { SshSession } from '../ssh/index.ts';
import type { Bundle } from './bundles.ts';
import { DownloadFailed, httpBundle, type Refused } from './download.ts';
import { redact, type HttpBundle } from './http.ts';
import { parseSha256sum, totalBytes, verifyDigests, type BundleFile, type BundleManifest } from './manifest.ts';
import {
  decidePreparation,
  earlierPreparation,
  parseProbe,
  type Decision,
  type PreparationRefusal,
  type Policy,
  type ProbeFacts,
} from './plan.ts';
import { dropStagedScript, installScript, probeScript, stagedDigestsScript, stagingDir } from './scripts.ts';

export type PreparationFailure =
  | PreparationRefusal
  | 'ChecksumMismatch'
  | 'InstallFailed'
  | 'ModuleFailed'
  | 'SysctlFailed'
  | 'UnitFailed'
  | 'NoDownloader'
  | 'BundleUnavailable';

/** Every reason HostPrepared can be False for (controllers/prepare-step.ts adds the provider's own). */
export type PreparationProblemReason = PreparationFailure | 'PreparationNotConfigured';

export type PreparationResult =
  | {
      ok: true;
      how: 'recorded' | 'image' | 'installed';
      message: string;
      /** Bytes staged this time: uploaded by the provider, or downloaded by the host (HTTP). */
      uploadedBytes: number;
      ms: number;
    }
  | { ok: false; reason: PreparationFailure; message: string; ms: number };

const MiB = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;

/** A bundle on its way to the host: its manifest, its digest, and how one file gets to the host. */
interface Staging {
  manifest: BundleManifest;
  digest: string;
  /** How the files got to the host, for the condition: "uploaded" or "downloaded by the host". */
  verb: string;
  send(f: BundleFile, dest: string): Promise<void>;
}

// Streamed: a bundle is hundreds of MiB, and several hosts may be prepared at once.
const uploading = (conn: SshSession, b: Bundle): Staging => ({
  manifest: b.manifest,
  digest: b.digest,
  verb: 'uploaded',
  send: (f, dest) => conn.upload(dest, createReadStream(join(b.dir, 'files', f.path)), { mode: 0o600 }),
});

/** Sends the files whose staged copy is missing or differs; returns the bytes sent. */
async function stage(conn: SshSession, b: Staging): Promise<number> {
  const dir = `${stagingDir(b.digest)}/files`;
  const have = parseSha256sum(
    (await conn.exec(stagedDigestsScript(b.digest), { what: 'listing the staged bundle', timeoutMs: 300_000 })).stdout,
    dir,
  );
  let sent = 0;
  for (const f of b.manifest.files) {
    if (have.get(f.path) === f.sha256) continue; // staged before (an interrupted preparation)
    await b.send(f, `${dir}${f.path}`);
    sent += f.size;
  }
  return sent;
}

/** sha256 of every staged file, on the host, against the manifest; mismatches drop the staging. */
async function verify(conn: SshSession, m: BundleManifest, digest: string): Promise<string | undefined> {
  const dir = `${stagingDir(digest)}/files`;
  const out = await conn.exec(stagedDigestsScript(digest), { what: 'verifying the staged bundle', timeoutMs: 300_000 });
  const bad = verifyDigests(m, parseSha256sum(out.stdout, dir));
  if (!bad.length) return undefined;
  await conn.exec(dropStagedScript(digest), { what: 'removing the staged bundle' });
  const list = bad
    .slice(0, 3)
    .map((x) => `${x.path} (${x.got === 'missing' ? 'missing' : `sha256 ${x.got.slice(0, 12)}…`})`);
  return `${bad.length} file(s) of bundle ${m.name} do not match its manifest on the host: ${list.join(', ')}${bad.length > 3 ? ', …' : ''}. Nothing was installed and the staged files were removed. Rebuild the bundle (hack/bundle) if the provider's copy is damaged, or check the host's disk.`;
}

function installOutcome(
  stdout: string,
  exitCode: number | null,
): { reason: PreparationFailure; message: string } | undefined {
  if (exitCode === 0 && stdout.includes('prepared=')) return undefined;
  const line = stdout.split('\n').find((l) => l.startsWith('fail='));
  const [reason, ...rest] = (line?.slice('fail='.length) ?? 'InstallFailed the install script ended early').split(' ');
  const known: PreparationFailure[] = ['InstallFailed', 'ModuleFailed', 'SysctlFailed', 'UnitFailed'];
  return {
    reason: known.includes(reason as PreparationFailure) ? (reason as PreparationFailure) : 'InstallFailed',
    message: `Installing failed: ${rest.join(' ') || `exit code ${exitCode}`}. What was installed was removed again; fix the host and the machine retries.`,
  };
}

export interface PrepareInput {
  /** A bundle of the provider's --bundle-dir (uploaded over SSH), or an HTTP source the host downloads from. */
  bundle: Bundle | HttpBundle;
  policy: Policy;
  /** Called with what the step is doing, for logs. */
  onStep?: (what: string) => void;
}

function summary(f: ProbeFacts, b: Staging, sent: number): string {
  const m = b.manifest;
  return `Prepared with ${m.name}: ${f.os.replace(/"/g, '')}, ${Math.floor(f.freeKiB / 1024)} MiB free; ${m.files.length} files (${MiB(totalBytes(m))}, ${MiB(sent)} ${b.verb}) sha256-verified on the host; installed; modules ${m.modules.join(', ')}, sysctls, swap off; ${m.units.join(', ')} enabled`;
}

/** How the bundle gets to the host; for an HTTP source, why the host cannot get it (nothing staged). */
async function stagingOf(conn: SshSession, b: Bundle | HttpBundle): Promise<Staging | Refused> {
  if (!('http' in b)) return uploading(conn, b);
  const h = await httpBundle(conn, b);
  return 'reason' in h ? h : { ...h, verb: 'downloaded by the host' };
}

/** stage(), with a file no URL served turned into BundleUnavailable. */
async function staged(conn: SshSession, b: Staging): Promise<number | Refused> {
  try {
    return await stage(conn, b);
  } catch (err) {
    if (!(err instanceof DownloadFailed)) throw err;
    return {
      reason: 'BundleUnavailable',
      message: `${err.message} Nothing was installed; the files downloaded so far stay staged for the next attempt.`,
    };
  }
}

type Failed = { reason: PreparationFailure; message: string };

const probe = async (conn: SshSession, m: Pick<BundleManifest, 'files'>): Promise<ProbeFacts | undefined> =>
  parseProbe((await conn.exec(probeScript(m), { what: 'the preparation probe', timeoutMs: 60_000 })).stdout);

/** The probe and the decision for this host; a refusal (nothing installed) is returned as a failure. */
async function decideOn(
  conn: SshSession,
  b: Staging,
  policy: Policy,
): Promise<Failed | { facts: ProbeFacts; d: Exclude<Decision, { kind: 'refuse' }> }> {
  const facts = await probe(conn, b.manifest);
  if (!facts)
    return {
      reason: 'ProbeOutputInvalid',
      message: 'The preparation probe printed no usable facts; check that the SSH user gets a POSIX shell.',
    };
  const m = b.manifest;
  const d = decidePreparation(
    facts,
    { version: m.kubernetesVersion, bundle: m.name, digest: b.digest, arch: m.arch, bytes: totalBytes(m) },
    policy,
  );
  if (d.kind === 'refuse') return { reason: d.reason, message: `${d.message} Nothing was installed.` };
  return { facts, d };
}

/**
 * bundle.source HTTP, before the host needs a downloader or the manifest: a host prepared with the
 * pinned bundle or by an OS image of the version is left alone, one prepared otherwise refused
 * (per the policy). Undefined: something must be installed (or the probe failed: decideOn says so).
 */
async function beforeDownload(
  conn: SshSession,
  b: HttpBundle,
  policy: Policy,
  ms: () => number,
): Promise<PreparationResult | undefined> {
  const facts = await probe(conn, { files: [] });
  const wanted = { version: b.version, digest: b.http.sha256, bundle: `the bundle at ${redact(b.http.url)}` };
  const d = facts && earlierPreparation(facts, wanted, policy);
  if (!d || d.kind === 'install') return undefined;
  if (d.kind === 'refuse')
    return { ok: false, reason: d.reason, message: `${d.message} Nothing was installed.`, ms: ms() };
  return { ok: true, how: d.how, message: d.message, uploadedBytes: 0, ms: ms() };
}

/** Prepares the host for the bundle's Kubernetes version (or finds it prepared). */
export async function prepareOn(conn: SshSession, input: PrepareInput): Promise<PreparationResult> {
  const t0 = Date.now();
  const ms = () => Date.now() - t0;
  const step = input.onStep ?? (() => {});
  if ('http' in input.bundle) {
    step('probe');
    const early = await beforeDownload(conn, input.bundle, input.policy, ms);
    if (early) return early;
    step('manifest');
  }
  const b = await stagingOf(conn, input.bundle);
  if ('reason' in b) return { ok: false, ...b, ms: ms() };
  step('probe');
  const decided = await decideOn(conn, b, input.policy);
  if ('reason' in decided) return { ok: false, ...decided, ms: ms() };
  const { facts, d } = decided;
  if (d.kind === 'prepared') return { ok: true, how: d.how, message: d.message, uploadedBytes: 0, ms: ms() };
  step(b.verb === 'uploaded' ? 'upload' : 'download');
  const sent = await staged(conn, b);
  if (typeof sent !== 'number') return { ok: false, ...sent, ms: ms() };
  step('verify');
  const bad = await verify(conn, b.manifest, b.digest);
  if (bad) return { ok: false, reason: 'ChecksumMismatch', message: bad, ms: ms() };
  step('install');
  const r = await conn.exec(installScript(b.manifest, b.digest, d.replace), {
    what: 'installing the bundle',
    check: false,
    timeoutMs: 600_000,
  });
  const failed = installOutcome(r.stdout, r.exitCode);
  if (failed) return { ok: false, ...failed, ms: ms() };
  return { ok: true, how: 'installed', message: summary(facts, b, sent), uploadedBytes: sent, ms: ms() };
}

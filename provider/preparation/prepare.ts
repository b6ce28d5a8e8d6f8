// Preparation on one host, over one SSH session: probe (read-only), decide (plan.ts), then stage
// the bundle, verify every staged file's sha256 on the host, and install. Nothing is installed
// before the host passed every check and every file verified; an install that fails part-way
// undoes itself (scripts.ts). Returns what happened; the caller turns it into conditions.
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { SshSession } from '../ssh/index.ts';
import type { Bundle } from './bundles.ts';
import { parseSha256sum, totalBytes, verifyDigests, type BundleManifest } from './manifest.ts';
import { decidePreparation, parseProbe, type PreparationRefusal, type Policy, type ProbeFacts } from './plan.ts';
import { dropStagedScript, installScript, probeScript, stagedDigestsScript, stagingDir } from './scripts.ts';

export type PreparationFailure =
  PreparationRefusal | 'ChecksumMismatch' | 'InstallFailed' | 'ModuleFailed' | 'SysctlFailed' | 'UnitFailed';

/** Every reason HostPrepared can be False for (controllers/prepare-step.ts adds the provider's own). */
export type PreparationProblemReason = PreparationFailure | 'BundleUnavailable' | 'PreparationNotConfigured';

export type PreparationResult =
  | { ok: true; how: 'recorded' | 'image' | 'installed'; message: string; uploadedBytes: number; ms: number }
  | { ok: false; reason: PreparationFailure; message: string; ms: number };

const MiB = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;

/** Uploads the files whose staged copy is missing or differs; returns the bytes sent. */
async function stage(conn: SshSession, b: Bundle): Promise<number> {
  const dir = `${stagingDir(b.digest)}/files`;
  const have = parseSha256sum(
    (await conn.exec(stagedDigestsScript(b.digest), { what: 'listing the staged bundle', timeoutMs: 300_000 })).stdout,
    dir,
  );
  let sent = 0;
  for (const f of b.manifest.files) {
    if (have.get(f.path) === f.sha256) continue; // staged before (an interrupted preparation)
    // Streamed: a bundle is hundreds of MiB, and several hosts may be prepared at once.
    await conn.upload(`${dir}${f.path}`, createReadStream(join(b.dir, 'files', f.path)), { mode: 0o600 });
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
  bundle: Bundle;
  policy: Policy;
  /** Called with what the step is doing, for logs. */
  onStep?: (what: string) => void;
}

function summary(f: ProbeFacts, b: Bundle, sent: number): string {
  const m = b.manifest;
  return `Prepared with ${m.name}: ${f.os.replace(/"/g, '')}, ${Math.floor(f.freeKiB / 1024)} MiB free; ${m.files.length} files (${MiB(totalBytes(m))}, ${MiB(sent)} uploaded) sha256-verified on the host; installed; modules ${m.modules.join(', ')}, sysctls, swap off; ${m.units.join(', ')} enabled`;
}

/** Prepares the host for the bundle's Kubernetes version (or finds it prepared). */
export async function prepareOn(conn: SshSession, input: PrepareInput): Promise<PreparationResult> {
  const t0 = Date.now();
  const ms = () => Date.now() - t0;
  const { bundle: b, policy } = input;
  input.onStep?.('probe');
  const out = await conn.exec(probeScript(b.manifest), { what: 'the preparation probe', timeoutMs: 60_000 });
  const facts = parseProbe(out.stdout);
  if (!facts)
    return {
      ok: false,
      reason: 'ProbeOutputInvalid',
      message: 'The preparation probe printed no usable facts; check that the SSH user gets a POSIX shell.',
      ms: ms(),
    };
  const m = b.manifest;
  const d = decidePreparation(
    facts,
    { version: m.kubernetesVersion, bundle: m.name, digest: b.digest, arch: m.arch, bytes: totalBytes(m) },
    policy,
  );
  if (d.kind === 'prepared') return { ok: true, how: d.how, message: d.message, uploadedBytes: 0, ms: ms() };
  if (d.kind === 'refuse')
    return { ok: false, reason: d.reason, message: `${d.message} Nothing was installed.`, ms: ms() };
  input.onStep?.('upload');
  const sent = await stage(conn, b);
  input.onStep?.('verify');
  const bad = await verify(conn, m, b.digest);
  if (bad) return { ok: false, reason: 'ChecksumMismatch', message: bad, ms: ms() };
  input.onStep?.('install');
  const r = await conn.exec(installScript(m, b.digest, d.replace), {
    what: 'installing the bundle',
    check: false,
    timeoutMs: 600_000,
  });
  const failed = installOutcome(r.stdout, r.exitCode);
  if (failed) return { ok: false, ...failed, ms: ms() };
  return { ok: true, how: 'installed', message: summary(facts, b, sent), uploadedBytes: sent, ms: ms() };
}

// Expiry of the node's Kubernetes certificates: the kubelet's client and serving certificates,
// and on control-plane hosts kubeadm's /etc/kubernetes/pki (and pki/etcd). A certificate is parsed
// again only when its file changes (mtime and size), so a pass costs a few stat calls.
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { CheckResult } from '../../common/agent-protocol.ts';
import { at, result, type CheckEnv } from './env.ts';

export const kubeletCertificates = [
  'var/lib/kubelet/pki/kubelet-client-current.pem',
  'var/lib/kubelet/pki/kubelet.crt',
];
export const kubeadmPkiDirs = ['etc/kubernetes/pki', 'etc/kubernetes/pki/etcd'];

const pemBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

interface Parsed {
  stamp: string;
  notAfter: number | undefined;
}

/** Remembers each file's expiry by (mtime, size). */
export class CertificateCache {
  readonly #byPath = new Map<string, Parsed>();

  /** notAfter in ms, undefined when the file holds no readable certificate; throws when the file is gone. */
  notAfter(file: string): number | undefined {
    const st = statSync(file);
    const stamp = `${st.mtimeMs}:${st.size}`;
    const hit = this.#byPath.get(file);
    if (hit?.stamp === stamp) return hit.notAfter;
    let notAfter: number | undefined;
    try {
      const pem = pemBlock.exec(readFileSync(file, 'utf8'))?.[0];
      notAfter = pem ? Date.parse(new X509Certificate(pem).validTo) : undefined;
    } catch {
      notAfter = undefined;
    }
    this.#byPath.set(file, { stamp, notAfter });
    return notAfter;
  }
}

function crtFiles(env: CheckEnv, dir: string): string[] {
  try {
    return readdirSync(at(env, dir))
      .filter((f) => f.endsWith('.crt'))
      .map((f) => at(env, `${dir}/${f}`));
  } catch {
    return []; // not a control-plane host (or not yet)
  }
}

const candidates = (env: CheckEnv): string[] => [
  ...kubeletCertificates.map((f) => at(env, f)),
  ...kubeadmPkiDirs.flatMap((d) => crtFiles(env, d)),
];

const days = (ms: number) => (ms / 86_400_000).toFixed(1);

function describe(file: string, notAfter: number, now: number): string {
  const when = new Date(notAfter).toISOString();
  return notAfter <= now
    ? `${basename(file)} expired at ${when}`
    : `${basename(file)} expires in ${days(notAfter - now)} days (${when})`;
}

export function certificatesCheck(env: CheckEnv, cache: CertificateCache): CheckResult {
  const name = 'certificates';
  const now = env.now();
  const limit = now + env.thresholds.certificateExpiryWarningSeconds * 1000;
  const expiring: string[] = [];
  const unreadable: string[] = [];
  let found = 0;
  let soonest: { file: string; at: number } | undefined;
  for (const file of candidates(env)) {
    let notAfter: number | undefined;
    try {
      notAfter = cache.notAfter(file);
    } catch {
      continue; // absent
    }
    found++;
    if (notAfter === undefined) unreadable.push(basename(file));
    else if (notAfter < limit) expiring.push(describe(file, notAfter, now));
    else if (!soonest || notAfter < soonest.at) soonest = { file, at: notAfter };
  }
  if (expiring.length) return result(name, 'failed', 'CertificatesExpiring', expiring.join('; '));
  if (unreadable.length)
    return result(name, 'failed', 'CertificatesUnreadable', `no certificate can be read in ${unreadable.join(', ')}`);
  if (found === 0) return result(name, 'unknown', 'NoCertificates', 'no Kubernetes certificate found on this host');
  return result(name, 'ok', 'CertificatesValid', soonest ? `soonest: ${describe(soonest.file, soonest.at, now)}` : '');
}

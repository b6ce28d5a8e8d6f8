// What host preparation does on one host, decided from what the read-only probe printed (no I/O):
// leave a prepared host alone, refuse one that cannot or must not be prepared (before anything is
// installed), or install the bundle (replacing an earlier CAPBM preparation when the policy says so).

/** Where preparation records what it installed; the reset reads it (host-ops.ts resetScript). */
export const RECORD = '/etc/capbm/prepared';

/** Host OS releases preparation supports (ID VERSION_ID of /etc/os-release). */
export const supportedOS = ['debian 12', 'debian 13', 'ubuntu 22.04', 'ubuntu 24.04'] as const;

export type PreparationRefusal =
  | 'UnsupportedOS'
  | 'UnsupportedArch'
  | 'NoSystemd'
  | 'InsufficientDisk'
  | 'VersionMismatch'
  | 'PackageConflict'
  | 'ProbeOutputInvalid';

export interface ProbeFacts {
  os: string;
  arch: string;
  systemd: boolean;
  /** The least free space, in KiB, of the file systems preparation writes to. */
  freeKiB: number;
  /** What RECORD says, if the host has one. */
  record?: { stock: boolean; version: string; bundle: string; digest: string };
  /** `kubeadm version -o short` of a kubeadm already on the host, not installed by CAPBM. */
  kubeadm?: string;
  /** Bundle paths that exist on the host. */
  existing: string[];
}

export interface Wanted {
  version: string;
  bundle: string;
  digest: string;
  arch: string;
  /** Bytes the bundle's files take (staged, then installed: twice that is needed). */
  bytes: number;
}

export interface Policy {
  onVersionMismatch: 'Refuse' | 'Replace';
  minFreeDiskMiB: number;
}

export type Decision =
  | { kind: 'prepared'; how: 'recorded' | 'image'; message: string }
  | { kind: 'refuse'; reason: PreparationRefusal; message: string }
  | { kind: 'install'; replace: boolean };

function kv(output: string): Array<[string, string]> {
  return output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

/** Parses what probeScript printed; undefined when it printed nothing usable. */
export function parseProbe(output: string): ProbeFacts | undefined {
  const pairs = kv(output);
  const one = (k: string) => pairs.find(([key]) => key === k)?.[1];
  const os = one('os');
  if (!os || one('free_kib') === undefined) return undefined;
  const recVersion = one('record_version');
  return {
    os,
    arch: one('arch') ?? '',
    systemd: one('systemd') === '1',
    freeKiB: Number(one('free_kib')) || 0,
    ...(recVersion
      ? {
          record: {
            stock: one('record_stock') === '1',
            version: recVersion,
            bundle: one('record_bundle') ?? '',
            digest: one('record_digest') ?? '',
          },
        }
      : {}),
    ...(one('kubeadm') ? { kubeadm: one('kubeadm')! } : {}),
    existing: pairs.filter(([k]) => k === 'exists').map(([, v]) => v),
  };
}

const refuse = (reason: PreparationRefusal, message: string): Decision => ({ kind: 'refuse', reason, message });

/** Whether the host can take the bundle at all: OS, architecture, systemd, disk. */
function unfit(f: ProbeFacts, w: Wanted, p: Policy): Decision | undefined {
  const os = f.os.replace(/"/g, '');
  if (!(supportedOS as readonly string[]).includes(os))
    return refuse(
      'UnsupportedOS',
      `The host runs ${os}; preparation supports ${supportedOS.join(', ')}. Use a supported OS, or an OS image with Kubernetes ${w.version} and no preparation.`,
    );
  if (f.arch !== w.arch)
    return refuse(
      'UnsupportedArch',
      `The host is ${f.arch}; bundle ${w.bundle} is for ${w.arch}. Build a bundle for ${f.arch}.`,
    );
  if (!f.systemd)
    return refuse(
      'NoSystemd',
      'The host does not run systemd (no /run/systemd/system); containerd and the kubelet run as systemd units. Use a host booted with systemd.',
    );
  const needKiB = Math.ceil((2 * w.bytes) / 1024) + p.minFreeDiskMiB * 1024;
  if (f.freeKiB < needKiB)
    return refuse(
      'InsufficientDisk',
      `The host has ${Math.floor(f.freeKiB / 1024)} MiB free; preparation needs ${Math.ceil(needKiB / 1024)} MiB (the bundle twice, staged and installed, plus minFreeDiskMiB ${p.minFreeDiskMiB}). Free space on / and /var, or lower minFreeDiskMiB.`,
    );
  return undefined;
}

/**
 * What a host prepared earlier (by CAPBM or by its OS image) means for this machine: left alone,
 * refused, replaced, or undefined (nothing earlier). Needs no manifest: an HTTP source decides it
 * before the host downloads anything (prepare.ts).
 */
export function earlierPreparation(
  f: ProbeFacts,
  w: Pick<Wanted, 'version' | 'bundle' | 'digest'>,
  p: Policy,
): Decision | undefined {
  const r = f.record;
  if (r && r.version === w.version && r.digest === w.digest)
    return { kind: 'prepared', how: 'recorded', message: `Already prepared with bundle ${r.bundle}` };
  if (r && p.onVersionMismatch === 'Replace' && r.stock) return { kind: 'install', replace: true };
  if (r)
    return refuse(
      'VersionMismatch',
      `The host was prepared with ${r.bundle} (Kubernetes ${r.version}); this machine needs ${w.bundle}. Versions are never mixed: reset the host (delete its machine) or set preparation.onVersionMismatch: Replace.`,
    );
  if (f.kubeadm === w.version)
    return { kind: 'prepared', how: 'image', message: `The OS image has Kubernetes ${w.version}; left as it is` };
  if (f.kubeadm)
    return refuse(
      'VersionMismatch',
      `The OS image has kubeadm ${f.kubeadm}; this machine needs ${w.version}. An OS image is never changed: use hosts with ${w.version} or stock hosts.`,
    );
  return undefined;
}

/** The decision for one host. */
export function decidePreparation(f: ProbeFacts, w: Wanted, p: Policy): Decision {
  const before = earlierPreparation(f, w, p);
  if (before && before.kind !== 'install') return before;
  const cannot = unfit(f, w, p);
  if (cannot) return cannot;
  if (!before && f.existing.length)
    return refuse(
      'PackageConflict',
      `The host already has ${f.existing.slice(0, 5).join(', ')}${f.existing.length > 5 ? ` and ${f.existing.length - 5} more` : ''}, not installed by CAPBM. Remove that installation (or its packages), or use an OS image with Kubernetes ${w.version}.`,
    );
  return before ?? { kind: 'install', replace: false };
}

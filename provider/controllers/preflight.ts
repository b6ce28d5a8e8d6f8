// Preflight: one read-only POSIX sh script run over SSH before a host is used, and the pure
// judgement of what it printed. A host with leftovers of an earlier kubelet is dirty: it is refused
// and quarantined, never provisioned over (nodes are cattle, and a half-cleaned host is a pet).

/** Binaries the rendered bootstrap and the reset need on the host. */
export const requiredBinaries = ['sh', 'base64', 'gzip', 'mkdir', 'mv', 'chmod', 'chown', 'cat', 'rm'] as const;

/** Paths that only exist on a host that ran a kubelet or kubeadm before and was not reset. */
export const leftoverPaths = [
  '/etc/kubernetes/kubelet.conf',
  '/etc/kubernetes/admin.conf',
  '/etc/kubernetes/manifests/kube-apiserver.yaml',
  '/var/lib/kubelet/config.yaml',
  '/var/lib/etcd/member',
  '/run/cluster-api/bootstrap-success.complete',
  // What a bootstrap changed in accounts (users, sudo rules, authorized keys) and no reset undid.
  '/var/lib/capbm/ledger',
] as const;

/**
 * The script. It changes nothing; each line it prints is `key=value`. It runs as the SSH user and
 * checks sudo itself (sudo -n: a password prompt would hang; the SSH layer feeds the password when
 * the pool says so, so `sudo_ok` is only informative there).
 */
export function preflightScript(): string {
  const bins = requiredBinaries.join(' ');
  const paths = leftoverPaths.join(' ');
  return `set -u
echo "os=$( (. /etc/os-release 2>/dev/null && echo "$ID $VERSION_ID") || uname -s)"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo 0)"
echo "memory_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)"
echo "swap_kib=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)"
echo "epoch=$(date +%s)"
echo "uid=$(id -u)"
for b in ${bins}; do command -v "$b" >/dev/null 2>&1 || echo "missing_binary=$b"; done
for p in ${paths}; do [ -e "$p" ] && echo "leftover=$p"; done
# A kubelet counts when configured: an OS image may enable one that waits for kubeadm.
pgrep -x kubelet >/dev/null 2>&1 && [ -e /var/lib/kubelet/config.yaml ] && echo "leftover=process:kubelet"
true
`;
}

export interface HostFacts {
  os: string;
  kernel: string;
  arch: string;
  cpus: number;
  memoryKiB: number;
  swapKiB: number;
}

export type PreflightProblemReason =
  'HostDirty' | 'MissingBinaries' | 'ClockSkew' | 'UnsupportedArch' | 'PreflightOutputInvalid' | 'PrivilegeFailed';

export interface PreflightProblem {
  reason: PreflightProblemReason;
  message: string;
  /** A dirty host is quarantined; other problems leave the host Available for an operator to fix. */
  quarantine: boolean;
}

export interface PreflightResult {
  facts: HostFacts;
  problems: PreflightProblem[];
  /** Host clock minus the provider's, in seconds. */
  clockSkewSeconds: number;
}

export interface PreflightPolicy {
  /** Largest tolerated clock difference. Default 30 s (kubeadm's certificates start "now"). */
  maxClockSkewSeconds?: number;
  architectures?: string[];
}

function lines(output: string): Array<[string, string]> {
  return output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

/** Judges what preflightScript printed. `nowEpoch` is the provider's clock when the output arrived. */
export function judgePreflight(output: string, nowEpoch: number, policy: PreflightPolicy = {}): PreflightResult {
  const kv = lines(output);
  const one = (k: string) => kv.find(([key]) => key === k)?.[1] ?? '';
  const all = (k: string) => kv.filter(([key]) => key === k).map(([, v]) => v);
  const num = (k: string) => Number(one(k)) || 0;
  const facts: HostFacts = {
    os: one('os'),
    kernel: one('kernel'),
    arch: one('arch'),
    cpus: num('cpus'),
    memoryKiB: num('memory_kib'),
    swapKiB: num('swap_kib'),
  };
  const problems: PreflightProblem[] = [];
  const epoch = Number(one('epoch'));
  if (!facts.kernel || !Number.isFinite(epoch) || epoch === 0) {
    problems.push({
      reason: 'PreflightOutputInvalid',
      message: 'The preflight script printed no usable facts; check that the SSH user gets a POSIX shell.',
      quarantine: false,
    });
    return { facts, problems, clockSkewSeconds: 0 };
  }
  const leftovers = all('leftover');
  if (leftovers.length) {
    problems.push({
      reason: 'HostDirty',
      message: `The host has leftovers of an earlier node (${leftovers.join(', ')}); it was not reset. Reset or reinstall it, then release it from quarantine.`,
      quarantine: true,
    });
  }
  const missing = all('missing_binary');
  if (missing.length) {
    problems.push({
      reason: 'MissingBinaries',
      message: `The host lacks ${missing.join(', ')}; install them (Debian/Ubuntu: coreutils, gzip).`,
      quarantine: false,
    });
  }
  const skew = epoch - nowEpoch;
  const maxSkew = policy.maxClockSkewSeconds ?? 30;
  if (Math.abs(skew) > maxSkew) {
    problems.push({
      reason: 'ClockSkew',
      message: `The host clock is ${skew} s off the provider's (at most ${maxSkew} s allowed); enable NTP on the host.`,
      quarantine: false,
    });
  }
  const archs = policy.architectures ?? ['x86_64', 'aarch64'];
  if (!archs.includes(facts.arch)) {
    problems.push({
      reason: 'UnsupportedArch',
      message: `The host architecture ${facts.arch} is not one of ${archs.join(', ')}.`,
      quarantine: false,
    });
  }
  return { facts, problems, clockSkewSeconds: skew };
}

// The shell preparation runs on a host over SSH (POSIX sh, as root): a read-only probe, the
// digests of the staged bundle, the install, and the uninstall the reset runs. Pure text; the
// step in controllers/prepare-step.ts decides when each runs.
import { shQuote } from '../../common/quote.ts';
import type { BundleManifest } from './manifest.ts';
import { RECORD } from './plan.ts';

/** Where the bundle is uploaded before it is verified and installed (under the provider's state). */
export const stagingDir = (digest: string) => `/var/lib/capbm/bundle/${digest.slice(0, 16)}`;
const INSTALLING = '/etc/capbm/installing';

/** Read-only: OS, systemd, free space, an earlier preparation, a kubeadm of an OS image, conflicts (with m's files). */
export function probeScript(m: Pick<BundleManifest, 'files'>): string {
  const paths = m.files.map((f) => shQuote(f.path)).join(' ');
  return `set -u
echo "os=$( (. /etc/os-release 2>/dev/null && echo "$ID $VERSION_ID") || uname -s)"
echo "arch=$(uname -m)"
[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && echo "systemd=1"
echo "free_kib=$(df -Pk / /var /usr /opt 2>/dev/null | awk 'NR > 1 { print $4 }' | sort -n | head -n 1)"
[ -f ${RECORD} ] && sed -n 's/^\\(stock\\|version\\|bundle\\|digest\\)=/record_\\1=/p' ${RECORD}
command -v kubeadm >/dev/null 2>&1 && echo "kubeadm=$(kubeadm version -o short 2>/dev/null)"
for p in ${paths}; do [ -e "$p" ] && echo "exists=$p"; done
true
`;
}

/** sha256sum of every staged file ("<hex>  <staging>/files<path>"). */
export function stagedDigestsScript(digest: string): string {
  const s = shQuote(`${stagingDir(digest)}/files`);
  return `[ -d ${s} ] && find ${s} -type f -exec sha256sum {} + ; true`;
}

/**
 * Removes what an earlier preparation installed, if the host came stock (its RECORD says so):
 * units stopped and disabled, the runtime's state unmounted and removed, every recorded file, the
 * swap lines it commented out restored. Prints `unprepared=<bundle>`. Used by the reset and by a
 * replacing install.
 */
export const uninstallScript = `if [ -f ${RECORD} ] && grep -qx 'stock=1' ${RECORD}; then
  systemctl disable --now kubelet.service containerd.service >/dev/null 2>&1
  for p in $(pgrep -x containerd-shim-runc-v2 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  grep -o ' /\\(var/lib\\|run\\)/containerd/[^ ]*' /proc/mounts | sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null; done
  rm -rf /var/lib/containerd/* /run/containerd 2>/dev/null
  sed -n 's/^file=//p' ${RECORD} | while IFS= read -r p; do
    rm -f -- "$p"; rmdir -p --ignore-fail-on-non-empty "\${p%/*}" 2>/dev/null
  done
  grep -qx 'swap=fstab' ${RECORD} && sed -i 's|^#capbm-swap# ||' /etc/fstab
  echo "unprepared=$(sed -n 's/^bundle=//p' ${RECORD})"
  rm -f ${RECORD} ${INSTALLING}
  rmdir /etc/capbm 2>/dev/null
  systemctl daemon-reload >/dev/null 2>&1
fi
true`;

function installFiles(m: BundleManifest, staged: string): string {
  return m.files
    .map((f) => {
      const dst = shQuote(f.path);
      const src = shQuote(`${staged}/files${f.path}`);
      return `install -D -m ${f.mode} ${src} ${dst}.capbm-new && mv -f ${dst}.capbm-new ${dst} && echo ${dst} >> "$I" || fail InstallFailed "cannot install ${f.path} (a full disk or a read-only file system?)"`;
    })
    .join('\n');
}

function settings(m: BundleManifest): string {
  // A module built into the kernel has no /sys/module entry of its own: what it provides is looked for.
  const present: Record<string, string> = {
    overlay: 'grep -qw overlay /proc/filesystems',
    br_netfilter: '[ -d /proc/sys/net/bridge ]',
  };
  const modules = m.modules
    .map(
      (x) =>
        `{ [ -d /sys/module/${x} ] || ${present[x] ?? 'false'} || modprobe ${x} 2>/dev/null; } || fail ModuleFailed "kernel module ${x} cannot be loaded; install the running kernel's modules package"`,
    )
    .join('\n');
  const sysctls = Object.entries(m.sysctls)
    .map(([k, v]) => {
      const f = `/proc/sys/${k.replaceAll('.', '/')}`;
      return `[ "$(cat ${f} 2>/dev/null)" = ${v} ] || sysctl -q -w ${k}=${v} >/dev/null 2>&1 || fail SysctlFailed "sysctl ${k}=${v} cannot be set"`;
    })
    .join('\n');
  return `${modules}
${sysctls}
swap=
if awk '$1 !~ /^#/ && $3 == "swap" { f = 1 } END { exit !f }' /etc/fstab 2>/dev/null; then
  awk '$1 !~ /^#/ && $3 == "swap" { print $1 }' /etc/fstab | while read -r d; do swapoff "$d" 2>/dev/null; done
  sed -i -E 's|^([^#].*[[:space:]]swap[[:space:]].*)$|#capbm-swap# \\1|' /etc/fstab
  swap=fstab
fi`;
}

function units(m: BundleManifest): string {
  const all = m.units.join(' ');
  return `systemctl daemon-reload || fail UnitFailed "systemctl daemon-reload failed"
systemctl enable ${all} >/dev/null 2>&1 || fail UnitFailed "cannot enable ${all}"
systemctl restart containerd.service || fail UnitFailed "containerd did not start: $(journalctl -u containerd -n 3 --no-pager 2>&1 | tr '\\n' ' ')"
i=0; until [ -S /run/containerd/containerd.sock ]; do i=$((i + 1)); [ $i -gt 60 ] && fail UnitFailed "containerd did not open its socket in 30 s"; sleep 0.5; done
systemctl start --no-block kubelet.service || fail UnitFailed "cannot start the kubelet unit"`;
}

/**
 * Installs the verified staged bundle, applies the node's settings, enables the units and writes
 * RECORD last. Any failure undoes the files installed so far (nothing half-installed) and prints
 * `fail=<Reason> <what>`; success prints `prepared=<bundle>`.
 */
export function installScript(m: BundleManifest, digest: string, replace: boolean): string {
  const staged = stagingDir(digest);
  return `set -u
S=${shQuote(staged)}
I=${INSTALLING}
fail() { echo "fail=$1 $2"; exit 1; }
undo() { [ -f "$I" ] && while IFS= read -r p; do rm -f -- "$p"; done < "$I"; rm -f "$I"; systemctl daemon-reload >/dev/null 2>&1; }
${replace ? uninstallScript : ''}
mkdir -p /etc/capbm || fail InstallFailed "cannot create /etc/capbm"
trap 'rc=$?; [ $rc -ne 0 ] && undo' EXIT
: > "$I"
${installFiles(m, staged)}
${settings(m)}
${units(m)}
{ echo stock=1; echo version=${m.kubernetesVersion}; echo bundle=${m.name}; echo digest=${digest}
  echo "prepared=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; [ -n "$swap" ] && echo "swap=$swap"; sed 's/^/file=/' "$I"; } > ${RECORD}.new &&
  mv -f ${RECORD}.new ${RECORD} || fail InstallFailed "cannot write ${RECORD}"
rm -f "$I"
rm -rf "$S"; rmdir /var/lib/capbm/bundle 2>/dev/null
echo "prepared=${m.name}"
`;
}

/** Removes a staged bundle (after a checksum mismatch: nothing of it is used). */
export const dropStagedScript = (digest: string) =>
  `rm -rf ${shQuote(stagingDir(digest))}; rmdir /var/lib/capbm/bundle 2>/dev/null; true`;

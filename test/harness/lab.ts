// Bare-metal hosts on one machine (docs/lab.md): each host is a whole Linux server: a network
// namespace on the lab bridge (10.250.0.0/16) with a fixed MAC; its own PID, mount, UTS, IPC and
// cgroup namespaces (the way kind runs its node containers); systemd as its PID 1, with OpenSSH,
// containerd and the kubelet as systemd units; a copy-on-write root (overlayfs over the OS image
// from hack/rootfs: a base layer and one Kubernetes version's layer); and a disk of its own (a
// plain folder on this machine's file system, for containerd's snapshots and the kubelet, which
// cannot live on overlayfs). Faults are injected the way they happen to real machines.
// Hosts are numbered slots reserved under .cache/lab/hosts so that parallel test files never share
// one; a slot whose owner died is reclaimed.
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:net';
import { repoRoot, versions } from './paths.ts';
import { alive, waitFor } from './process.ts';

export const BRIDGE = 'capbm0';
export const BRIDGE_ADDRESS = '10.250.0.1';
const labRoot = process.env.CAPBM_LAB_HOSTS_DIR ?? join(repoRoot, '.cache', 'lab', 'hosts');
const MAX_SLOTS = 250 * 200;
// Where this checkout's slots start: two checkouts on one machine (their own .cache) give each other
// room with different bases, since a slot number names a network namespace and an address.
const SLOT_BASE = Number(process.env.CAPBM_LAB_SLOT_BASE ?? 10);

export type SudoMode = 'nopasswd' | 'password';

export interface HostOptions {
  /** Public keys (OpenSSH format) allowed for root and for the user `capbm`. */
  authorizedKeys: string[];
  /** How `sudo` asks the user `capbm`: not at all, or for this password. Default nopasswd. */
  sudo?: SudoMode;
  sudoPassword?: string;
  /** Files to place in the host before it starts (absolute path in the host -> content). */
  files?: Record<string, string>;
  /** Persistent hosts (the lab) are not stopped when this process exits. */
  persistent?: boolean;
  /** The Kubernetes version of the host's OS image (kubelet, kubeadm, kubectl). Default: the pinned one. */
  kubernetesVersion?: string;
  /**
   * A stock host: Debian with systemd, sshd and sudo only, no container runtime and no Kubernetes
   * (hack/bundle stock), for host preparation (docs/hosts.md). kubernetesVersion is then ignored.
   */
  stock?: boolean;
  /** Extra sshd_config lines, e.g. "MaxSessions 1" to try the provider against a strict server. */
  sshd?: string[];
}

export interface LabHost {
  slot: number;
  name: string;
  address: string;
  port: number;
  /** The host key's SHA256 fingerprint, as OpenSSH prints it (SHA256:...). */
  hostKeyFingerprint: string;
  hostKeyPublic: string;
  /** The host's root as provisioning left it (overlay upper layer merged with the rootfs). */
  root: string;
  /** The OS image's Kubernetes version; '' on a stock host. */
  kubernetesVersion: string;
  stock: boolean;
}

export function slotDir(slot: number): string {
  return join(labRoot, String(slot));
}

export function addressOf(slot: number): string {
  return `10.250.${Math.floor(slot / 250) + 1}.${(slot % 250) + 2}`;
}

function nsName(slot: number): string {
  return `capbm-h${slot}`;
}

function macOf(slot: number): string {
  const hex = slot.toString(16).padStart(4, '0');
  return `02:ca:b0:00:${hex.slice(0, 2)}:${hex.slice(2)}`;
}

async function sh(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await execa(cmd, args, { input, reject: false });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.exitCode}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

interface SlotState {
  owner: number;
  persistent: boolean;
  pid?: number;
}

function readSlot(slot: number): SlotState | undefined {
  try {
    return JSON.parse(readFileSync(join(slotDir(slot), 'state.json'), 'utf8')) as SlotState;
  } catch {
    return undefined;
  }
}

export function writeSlot(slot: number, s: SlotState): void {
  writeFileSync(join(slotDir(slot), 'state.json'), JSON.stringify(s));
}

/** Reserves a free slot: mkdir is atomic, so two processes never get the same one. */
export function reserveSlot(persistent: boolean): number {
  mkdirSync(labRoot, { recursive: true });
  for (let slot = SLOT_BASE; slot < MAX_SLOTS; slot++) {
    try {
      mkdirSync(slotDir(slot));
    } catch {
      continue;
    }
    writeSlot(slot, { owner: process.pid, persistent });
    return slot;
  }
  throw new Error(`no free lab host slot under ${labRoot}`);
}

export async function ensureBridge(): Promise<void> {
  raiseSharedLimits();
  const links = await sh('ip', ['-o', 'link', 'show']);
  if (!links.includes(` ${BRIDGE}:`)) {
    await execa('ip', ['link', 'add', BRIDGE, 'type', 'bridge'], { reject: false });
    await execa('ip', ['addr', 'add', `${BRIDGE_ADDRESS}/16`, 'dev', BRIDGE], { reject: false });
  }
  await sh('ip', ['link', 'set', BRIDGE, 'up']);
  // A bridge removed and made again leaves running hosts' links unattached: attach them again.
  for (const m of links.matchAll(/^\d+: (cbh\d+)@[^:]*:.*$/gm)) {
    if (!m[0].includes(` master ${BRIDGE} `))
      await execa('ip', ['link', 'set', m[1]!, 'master', BRIDGE], { reject: false });
  }
}

/**
 * Kernel limits every lab host shares with this machine. inotify instances are counted per user
 * across all namespaces, and every lab host is a whole server running as root: systemd, journald,
 * logind, dbus, containerd, the kubelet (cAdvisor, its certificate watchers) and each control-plane
 * pod take some. With 20 hosts of several test runs up, the usual 128 or 1024 runs out and a
 * kubelet starts without cAdvisor ("inotify_init: too many open files"): kubeadm init fails, or its
 * Node never turns Ready. kind asks its users to raise the same limits.
 */
export const SHARED_LIMITS: Record<string, number> = {
  'fs/inotify/max_user_instances': 8192,
  'fs/inotify/max_user_watches': 1048576,
};

function raiseSharedLimits(): void {
  for (const [key, want] of Object.entries(SHARED_LIMITS)) {
    const file = `/proc/sys/${key}`;
    const now = Number(readFileSync(file, 'utf8').trim());
    if (now >= want) continue;
    try {
      writeFileSync(file, `${want}\n`);
    } catch (err) {
      throw new Error(
        `lab hosts need ${key.replaceAll('/', '.')} >= ${want} (it is ${now}) and this process could not raise it: ${(err as Error).message}\n  fix: sudo sysctl -w ${key.replaceAll('/', '.')}=${want}`,
        { cause: err },
      );
    }
  }
}

function rootfs(): string {
  const dir = process.env.CAPBM_ROOTFS;
  if (!dir || !existsSync(join(dir, 'usr/sbin/sshd'))) {
    throw new Error('lab hosts need the rootfs: run hack/rootfs build and export CAPBM_ROOTFS (hack/test does both)');
  }
  return dir;
}

/** The stock OS image: the base rootfs without the runtime, units and Kubernetes (hack/bundle stock). */
function stockRootfs(): string {
  const dir = process.env.CAPBM_STOCK_ROOTFS;
  if (!dir || !existsSync(join(dir, 'usr/sbin/sshd')))
    throw new Error(
      'stock lab hosts need the stock rootfs: run hack/bundle stock and export CAPBM_STOCK_ROOTFS (hack/test does both)',
    );
  return dir;
}

/** The folder of host preparation bundles (hack/bundle build), for the provider's --bundle-dir. */
export function bundleDir(): string {
  const dir = process.env.CAPBM_BUNDLES;
  if (!dir || !existsSync(dir))
    throw new Error(
      'host preparation needs bundles: run hack/bundle build and export CAPBM_BUNDLES (hack/test does both)',
    );
  return dir;
}

/** The OS image layer with one Kubernetes version's kubelet, kubeadm and kubectl (hack/rootfs). */
export function kubernetesLayer(version: string): string {
  const cache = process.env.CAPBM_CACHE ?? join(repoRoot, '.cache');
  const dir = join(cache, 'rootfs', 'layers', `kubernetes-${version}-b${versions().KUBERNETES_BUILD}`);
  if (!existsSync(join(dir, 'usr/bin/kubeadm'))) {
    throw new Error(`lab hosts of Kubernetes ${version} need its OS image layer: run hack/rootfs build ${version}`);
  }
  return dir;
}

/** The Kubernetes versions lab hosts can run: the pinned one and the one before. */
export function kubernetesVersions(): { current: string; previous: string } {
  const v = versions();
  return { current: v.KUBERNETES_VERSION!, previous: v.KUBERNETES_PREVIOUS_VERSION! };
}

const sshdConfig = `# capbm lab host
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PidFile none
Subsystem sftp internal-sftp
`;

async function prepareRoot(
  slot: number,
  o: HostOptions,
): Promise<{ merged: string; fingerprint: string; publicKey: string }> {
  const d = slotDir(slot);
  const [upper, work, merged] = ['upper', 'work', 'merged'].map((x) => join(d, x)) as [string, string, string];
  for (const x of [upper, work, merged, ...diskDirs.map((x) => join(d, 'disk', x))]) mkdirSync(x, { recursive: true });
  // The kernel tunables the kubelet wants, shown to it as already set: it would otherwise write
  // them, and they are not namespaced (they would change this whole machine).
  mkdirSync(join(d, 'sysctl'), { recursive: true });
  for (const [k, v] of Object.entries(kubeletSysctls))
    writeFileSync(join(d, 'sysctl', k.replaceAll('/', '.')), `${v}\n`);
  const lower = o.stock
    ? stockRootfs()
    : `${kubernetesLayer(o.kubernetesVersion ?? kubernetesVersions().current)}:${rootfs()}`;
  const mounts = readFileSync('/proc/mounts', 'utf8');
  if (!mounts.includes(` ${merged} `)) {
    await sh('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
      merged,
    ]);
  }
  const key = join(merged, 'etc/ssh/ssh_host_ed25519_key');
  if (!existsSync(key)) await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `capbm-lab-${slot}`, '-f', key]);
  writeFileSync(join(merged, 'etc/ssh/sshd_config'), sshdConfig + (o.sshd ?? []).map((l) => `${l}\n`).join(''));
  writeFileSync(join(merged, 'etc/hostname'), `lab-${slot}\n`);
  writeFileSync(
    join(merged, 'etc/hosts'),
    `127.0.0.1 localhost\n127.0.1.1 lab-${slot}\n${addressOf(slot)} lab-${slot}\n`,
  );
  for (const home of ['root', 'home/capbm']) {
    mkdirSync(join(merged, home, '.ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(join(merged, home, '.ssh/authorized_keys'), o.authorizedKeys.join('\n') + '\n', { mode: 0o600 });
  }
  await sh('chroot', [merged, 'chown', '-R', 'capbm:capbm', '/home/capbm/.ssh']);
  const rule = o.sudo === 'password' ? 'capbm ALL=(ALL:ALL) ALL' : 'capbm ALL=(ALL:ALL) NOPASSWD:ALL';
  writeFileSync(join(merged, 'etc/sudoers.d/capbm'), `${rule}\n`, { mode: 0o440 });
  if (o.sudo === 'password') {
    if (!o.sudoPassword) throw new Error('sudo mode password needs sudoPassword');
    await sh('chroot', [merged, 'chpasswd'], `capbm:${o.sudoPassword}\n`);
  } else {
    // useradd leaves the password locked ("!"), and sshd without PAM refuses locked accounts.
    await sh('chroot', [merged, 'usermod', '-p', '*', 'capbm']);
  }
  for (const [path, content] of Object.entries(o.files ?? {})) {
    mkdirSync(join(merged, path, '..'), { recursive: true });
    writeFileSync(join(merged, path), content);
  }
  const pub = readFileSync(`${key}.pub`, 'utf8').trim();
  const fp = (await sh('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key}.pub`])).split(' ')[1]!;
  return { merged, fingerprint: fp, publicKey: pub };
}

/** Folders on this machine's own disk, bind-mounted into the host (overlayfs cannot hold them). */
const diskDirs = ['containerd', 'kubelet'] as const;

/** Global (not namespaced) kernel settings the kubelet sets when they differ. */
const kubeletSysctls: Record<string, number> = {
  'vm/overcommit_memory': 1,
  'vm/panic_on_oom': 0,
  'kernel/panic': 10,
  'kernel/panic_on_oops': 1,
  'kernel/keys/root_maxkeys': 1000000,
  'kernel/keys/root_maxbytes': 25000000,
};

const cgroupControllers = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids'] as const;
/** The host's cgroup (in every hierarchy): the root of its cgroup namespace, as a container's is. */
const cgroupOf = (slot: number) => `capbm-lab/${slot}`;
const hierarchies = [...cgroupControllers, 'systemd', 'unified'];

/** Makes the host's cgroups (cpuset needs its cpus and mems before a task can join). */
function makeCgroups(slot: number): void {
  for (const h of hierarchies) mkdirSync(`/sys/fs/cgroup/${h}/${cgroupOf(slot)}`, { recursive: true });
  for (const d of ['capbm-lab', cgroupOf(slot)]) {
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const p = `/sys/fs/cgroup/cpuset/${d}/${f}`;
      if (!readFileSync(p, 'utf8').trim()) writeFileSync(p, readFileSync(`/sys/fs/cgroup/cpuset/${f}`, 'utf8'));
    }
  }
}

/** Shell (builtins only: no child process) that moves itself into the host's cgroups. */
function joinCgroupsScript(slot: number): string {
  return hierarchies.map((h) => `echo $$ > /sys/fs/cgroup/${h}/${cgroupOf(slot)}/cgroup.procs`).join('\n');
}

/** Removes the host's cgroups, deepest first, once its processes are gone. */
function removeCgroups(slot: number): void {
  const rm = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rm(join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch {
      // still busy (a process not yet reaped): the next start of this slot tries again
    }
  };
  for (const h of hierarchies) rm(`/sys/fs/cgroup/${h}/${cgroupOf(slot)}`);
}

/** Memory the host uses now (its cgroup: every process, page cache included) and its RSS. */
export function hostMemory(h: Pick<LabHost, 'slot'>): { usageBytes: number; rssBytes: number } {
  const dir = `/sys/fs/cgroup/memory/${cgroupOf(h.slot)}`;
  const stat = readFileSync(join(dir, 'memory.stat'), 'utf8');
  const val = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(stat)?.[1] ?? 0);
  return {
    usageBytes: Number(readFileSync(join(dir, 'memory.usage_in_bytes'), 'utf8')),
    rssBytes: val('total_rss'),
  };
}

export async function createNetwork(slot: number): Promise<void> {
  const ns = nsName(slot);
  const veth = `cbh${slot}`;
  await execa('ip', ['netns', 'del', ns], { reject: false });
  await execa('ip', ['link', 'del', veth], { reject: false });
  await sh('ip', ['netns', 'add', ns]);
  await sh('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await sh('ip', ['link', 'set', veth, 'master', BRIDGE, 'up']);
  await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', macOf(slot)]);
  await sh('ip', ['-n', ns, 'addr', 'add', `${addressOf(slot)}/16`, 'dev', 'eth0']);
  await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', BRIDGE_ADDRESS]);
}

/** The network namespace of a slot, for processes that run beside hosts (the load balancer). */
export const netnsOf = nsName;

/** The PID (in this namespace) of the host's PID 1, the sshd that `unshare --fork` started. */
async function pid1Of(unsharePid: number): Promise<number> {
  return waitFor(
    'the lab host init process',
    () => {
      const kids = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim();
      return Promise.resolve(kids ? Number(kids.split(' ')[0]) : undefined);
    },
    5000,
    20,
  );
}

async function boot(slot: number, merged: string, name: string): Promise<number> {
  // In the host's own namespaces: /proc (the kubelet's global sysctls shown as set), a read-only
  // /sys of its network namespace, the cgroup v1 hierarchies and the unified one as a container
  // sees them (its own subtree as root), a /dev of its own (kmsg for the kubelet), tmpfs /run and
  // /tmp, its disk folders, shared mount propagation (the kubelet needs it), then systemd.
  const d = slotDir(slot);
  const M = merged;
  const devs = ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'kmsg'];
  const init = [
    'set -e',
    `mount -t proc proc ${M}/proc`,
    ...Object.keys(kubeletSysctls).map((k) => `mount --bind ${d}/sysctl/${k.replaceAll('/', '.')} ${M}/proc/sys/${k}`),
    `mount -t sysfs -o ro sysfs ${M}/sys`,
    `mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs ${M}/sys/fs/cgroup`,
    ...cgroupControllers.map(
      (c) => `mkdir ${M}/sys/fs/cgroup/${c}; mount -t cgroup -o ${c} cgroup ${M}/sys/fs/cgroup/${c}`,
    ),
    `mkdir ${M}/sys/fs/cgroup/systemd; mount -t cgroup -o none,name=systemd cgroup ${M}/sys/fs/cgroup/systemd`,
    `mkdir ${M}/sys/fs/cgroup/unified; mount -t cgroup2 cgroup2 ${M}/sys/fs/cgroup/unified`,
    `mount -t tmpfs -o mode=755,nosuid tmpfs ${M}/dev`,
    ...devs.map((x) => `touch ${M}/dev/${x}; mount --bind /dev/${x} ${M}/dev/${x}`),
    `mkdir ${M}/dev/pts ${M}/dev/shm ${M}/dev/mqueue`,
    `mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts ${M}/dev/pts`,
    `ln -s pts/ptmx ${M}/dev/ptmx`,
    `mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs ${M}/dev/shm`,
    `mount -t mqueue mqueue ${M}/dev/mqueue`,
    `ln -s /proc/self/fd ${M}/dev/fd; ln -s /proc/self/fd/0 ${M}/dev/stdin; ln -s /proc/self/fd/1 ${M}/dev/stdout; ln -s /proc/self/fd/2 ${M}/dev/stderr`,
    `mount -t tmpfs -o mode=755,nosuid,nodev tmpfs ${M}/run`,
    `mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs ${M}/tmp`,
    ...diskDirs.map((x) => `mount --bind ${d}/disk/${x} ${M}/var/lib/${x}`),
    `mount --make-rshared ${M}`,
    `hostname ${name}`,
    'export container=other',
    `exec chroot ${M} /sbin/init`,
  ].join('\n');
  removeCgroups(slot);
  makeCgroups(slot);
  // `ip netns exec` mounts a /sys of its own: the host joins its cgroups before it.
  const outer = `${joinCgroupsScript(slot)}
exec ip netns exec ${nsName(slot)} unshare --mount --uts --ipc --pid --cgroup --fork --propagation private sh -c '${init.replaceAll("'", `'\\''`)}'`;
  const log = openSync(join(d, 'boot.log'), 'w');
  const child = spawn('sh', ['-c', outer], {
    detached: true,
    stdio: ['ignore', 'ignore', log],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  closeSync(log);
  child.unref();
  const unsharePid = child.pid!;
  // sh execs `ip netns exec`, which execs unshare: the child's pid is unshare's.
  const pid = await pid1Of(unsharePid);
  await waitFor(
    `sshd on ${addressOf(slot)}:22`,
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = connect({ host: addressOf(slot), port: 22, timeout: 500 });
        s.once('data', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(undefined));
        s.once('timeout', () => (s.destroy(), resolve(undefined)));
      }),
    30_000,
    100,
  ).catch(async (err: Error) => {
    // What the host says about its boot, for whoever reads the failure.
    const r = await execa(
      'nsenter',
      [
        '-t',
        String(pid),
        '-m',
        '-p',
        '-r',
        'sh',
        '-c',
        'cd /; systemctl is-system-running; systemctl list-jobs --no-pager | head -n 8; journalctl -b --no-pager -t systemd | tail -n 10',
      ],
      { reject: false, timeout: 10_000 },
    );
    // Whatever it started goes with it: the caller may boot it again.
    if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 200 && !cgroupEmpty(slot); i++) await sleep(50);
    throw new Error(
      `${err.message}\nboot log ${join(d, 'boot.log')}: ${tailOf(join(d, 'boot.log'))}\nthe host: ${r.stdout} ${r.stderr}`,
    );
  });
  return pid;
}

const tailOf = (file: string) => {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-10).join('\n');
  } catch {
    return '(none)';
  }
};

/**
 * Boots the host, once more if its first boot hung (seen once in about a hundred boots on a busy
 * machine: systemd with every start job waiting). startHost takes a host that fails twice down whole.
 */
async function bootOrRetry(
  slot: number,
  merged: string,
  name: string,
  o: { owner: number; persistent: boolean },
): Promise<number> {
  writeSlot(slot, { owner: o.owner, persistent: o.persistent });
  const pid = await boot(slot, merged, name).catch(() => boot(slot, merged, name));
  writeSlot(slot, { owner: o.owner, persistent: o.persistent, pid });
  return pid;
}

const started = new Map<number, LabHost>();

export async function startHost(o: HostOptions): Promise<LabHost> {
  await ensureBridge();
  void cleanupStaleHosts();
  const slot = reserveSlot(!!o.persistent);
  const name = `lab-${slot}`;
  const kubernetesVersion = o.stock ? '' : (o.kubernetesVersion ?? kubernetesVersions().current);
  const { merged, fingerprint, publicKey } = await prepareRoot(slot, o);
  await createNetwork(slot);
  await bootOrRetry(slot, merged, name, { owner: process.pid, persistent: !!o.persistent }).catch(
    async (err: Error) => {
      await stopHost({ slot });
      throw err;
    },
  );
  const host: LabHost = {
    slot,
    name,
    address: addressOf(slot),
    port: 22,
    hostKeyFingerprint: fingerprint,
    hostKeyPublic: publicKey,
    root: merged,
    kubernetesVersion,
    stock: !!o.stock,
  };
  if (!o.persistent) {
    started.set(slot, host);
    hookExit();
  }
  return host;
}

export async function startHosts(n: number, o: HostOptions): Promise<LabHost[]> {
  const out: LabHost[] = [];
  for (let i = 0; i < n; i++) out.push(await startHost(o));
  return out;
}

/** Power off: the host's PID 1 dies, and with it every process of the host. */
export async function powerOff(h: Pick<LabHost, 'slot'>): Promise<void> {
  const s = readSlot(h.slot);
  freeze(h, false);
  if (s?.pid && alive(s.pid)) {
    process.kill(s.pid, 'SIGKILL');
    while (alive(s.pid)) await sleep(10);
  }
  await waitFor('the host processes to be gone', () => Promise.resolve(cgroupEmpty(h.slot) || undefined), 30_000, 50);
  removeCgroups(h.slot);
}

function cgroupEmpty(slot: number): boolean {
  try {
    return readFileSync(`/sys/fs/cgroup/pids/${cgroupOf(slot)}/pids.current`, 'utf8').trim() === '0';
  } catch {
    return true;
  }
}

/** Power on again, with the same disk (overlay) and host key. */
export async function powerOn(h: Pick<LabHost, 'slot' | 'root'> & { name?: string }): Promise<void> {
  const s = readSlot(h.slot);
  await bootOrRetry(h.slot, h.root, h.name ?? `lab-${h.slot}`, {
    owner: s?.owner ?? process.pid,
    persistent: s?.persistent ?? false,
  });
}

/** Replaces the host key (the next start serves the new one): what a reinstall does. */
export async function rotateHostKey(h: LabHost): Promise<LabHost> {
  const key = join(h.root, 'etc/ssh/ssh_host_ed25519_key');
  rmSync(key, { force: true });
  rmSync(`${key}.pub`, { force: true });
  await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `capbm-lab-${h.slot}-rotated`, '-f', key]);
  const fp = (await sh('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key}.pub`])).split(' ')[1]!;
  return { ...h, hostKeyFingerprint: fp, hostKeyPublic: readFileSync(`${key}.pub`, 'utf8').trim() };
}

export const linkDown = (h: Pick<LabHost, 'slot'>) =>
  sh('ip', ['-n', nsName(h.slot), 'link', 'set', 'eth0', 'down']).then(() => {});
export const linkUp = async (h: Pick<LabHost, 'slot'>) => {
  await sh('ip', ['-n', nsName(h.slot), 'link', 'set', 'eth0', 'up']);
  await execa('ip', ['-n', nsName(h.slot), 'route', 'replace', 'default', 'via', BRIDGE_ADDRESS], { reject: false });
};
export const blackhole = (h: Pick<LabHost, 'slot'>) =>
  sh('ip', ['-n', nsName(h.slot), 'route', 'add', 'blackhole', `${BRIDGE_ADDRESS}/32`]).then(() => {});
export const unblackhole = (h: Pick<LabHost, 'slot'>) =>
  sh('ip', ['-n', nsName(h.slot), 'route', 'del', 'blackhole', `${BRIDGE_ADDRESS}/32`]).then(() => {});

/** Freeze the whole host (its cgroup freezer): TCP connects, no SSH banner ever comes. */
export function freeze(h: Pick<LabHost, 'slot'>, on = true): void {
  const f = `/sys/fs/cgroup/freezer/${cgroupOf(h.slot)}/freezer.state`;
  if (existsSync(f)) writeFileSync(f, on ? 'FROZEN' : 'THAWED');
}

/** The host's PID 1 (systemd), seen from this machine. */
export function hostPid(slot: number): number {
  const s = readSlot(slot);
  if (!s?.pid || !alive(s.pid)) throw new Error(`lab host ${slot} is not running`);
  return s.pid;
}

/** Runs a command inside the host, out of band (not over SSH), for assertions. */
export async function hostExec(
  h: Pick<LabHost, 'slot'>,
  script: string,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const s = readSlot(h.slot);
  if (!s?.pid) throw new Error(`lab host ${h.slot} is not running`);
  const r = await execa(
    'nsenter',
    ['-t', String(s.pid), '-m', '-u', '-n', '-p', '-i', '-C', '-r', '-w', 'sh', '-c', script],
    {
      reject: false,
    },
  );
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Stops a host and removes everything it made: processes, mounts, namespace, veth, files. */
export async function stopHost(h: Pick<LabHost, 'slot'>): Promise<void> {
  const s = readSlot(h.slot);
  freeze(h, false);
  if (s?.pid && alive(s.pid)) {
    process.kill(s.pid, 'SIGKILL');
    while (alive(s.pid)) await sleep(10);
  }
  for (let i = 0; i < 600 && !cgroupEmpty(h.slot); i++) await sleep(50);
  removeCgroups(h.slot);
  const merged = join(slotDir(h.slot), 'merged');
  // A mount stacked twice (a boot retried) needs two unmounts.
  for (let i = 0; i < 5 && (await execa('mountpoint', ['-q', merged], { reject: false })).exitCode === 0; i++)
    await execa('umount', ['-l', merged], { reject: false });
  await execa('ip', ['netns', 'del', nsName(h.slot)], { reject: false });
  await execa('ip', ['link', 'del', `cbh${h.slot}`], { reject: false });
  rmSync(slotDir(h.slot), { recursive: true, force: true });
  started.delete(h.slot);
}

function slots(): number[] {
  return existsSync(labRoot) ? readdirSync(labRoot).map(Number).filter(Number.isInteger) : [];
}

/**
 * Stops hosts whose (non-persistent) owner process is gone: what a killed test run left. `hack/lab
 * down` runs it too, so a killed run's mounts never block removing .cache/lab.
 */
export async function cleanupStaleHosts(): Promise<void> {
  for (const slot of slots()) {
    const s = readSlot(slot);
    if (s && !s.persistent && !alive(s.owner)) await stopHost({ slot });
  }
}

/**
 * Removes the bridge, but only when nothing is attached to it any more: another checkout's hosts
 * (their own slot folder) or a test running beside this one may still be on it.
 */
async function removeBridgeIfUnused(): Promise<void> {
  const members = await execa('ip', ['-o', 'link', 'show', 'master', BRIDGE], { reject: false });
  if (members.exitCode === 0 && members.stdout.trim() === '') {
    await execa('ip', ['link', 'del', BRIDGE], { reject: false });
  }
}

/**
 * Stops the persistent hosts (the lab's; tests never make any) and, when nothing is left on it,
 * the bridge: what `hack/lab down` does, without touching the hosts of a test running beside it.
 */
export async function stopPersistentHosts(): Promise<void> {
  for (const slot of slots()) if (readSlot(slot)?.persistent) await stopHost({ slot });
  await cleanupStaleHosts();
  await removeBridgeIfUnused();
}

/** Stops every lab host of this checkout, persistent ones included, and the bridge if unused. */
export async function stopAllHosts(): Promise<void> {
  for (const slot of slots()) await stopHost({ slot });
  await removeBridgeIfUnused();
}

export function listHosts(): Array<{ slot: number; address: string; running: boolean; persistent: boolean }> {
  return slots().map((slot) => {
    const s = readSlot(slot);
    return { slot, address: addressOf(slot), running: alive(s?.pid), persistent: !!s?.persistent };
  });
}

let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // Synchronous best effort; anything missed is reclaimed by cleanupStaleHosts on the next start.
  process.on('exit', () => {
    for (const h of started.values()) {
      const s = readSlot(h.slot);
      try {
        if (s?.pid) process.kill(s.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** Stops every host this process started (test.after.always). */
export async function stopStartedHosts(): Promise<void> {
  for (const h of [...started.values()]) await stopHost(h);
}

// Fake bare-metal hosts on one machine (shared/docs/lab.md): each host is a network namespace on
// the lab bridge (10.250.0.0/16) with a fixed MAC, its own PID, mount and UTS namespaces, a
// copy-on-write root (overlayfs over the cached rootfs from hack/rootfs) and a real OpenSSH server
// as its PID 1, with its own host key. Faults are injected the way they happen to real machines.
// Hosts are numbered slots reserved under .cache/lab/hosts so that parallel test files never share
// one; a slot whose owner died is reclaimed.
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:net';
import { repoRoot } from './paths.ts';
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
}

function slotDir(slot: number): string {
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

function writeSlot(slot: number, s: SlotState): void {
  writeFileSync(join(slotDir(slot), 'state.json'), JSON.stringify(s));
}

/** Reserves a free slot: mkdir is atomic, so two processes never get the same one. */
function reserveSlot(persistent: boolean): number {
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

function rootfs(): string {
  const dir = process.env.CAPBM_ROOTFS;
  if (!dir || !existsSync(join(dir, 'usr/sbin/sshd'))) {
    throw new Error('lab hosts need the rootfs: run hack/rootfs build and export CAPBM_ROOTFS (hack/test does both)');
  }
  return dir;
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
  for (const x of [upper, work, merged]) mkdirSync(x, { recursive: true });
  const mounts = readFileSync('/proc/mounts', 'utf8');
  if (!mounts.includes(` ${merged} `)) {
    await sh('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${rootfs()},upperdir=${upper},workdir=${work}`,
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

async function createNetwork(slot: number): Promise<void> {
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
  // In the host's own mount namespace: /proc for its PID namespace, /dev, a tmpfs /run (sshd's
  // privilege separation folder lives there), then sshd as PID 1 inside the overlay root.
  const init = [
    'set -e',
    `mount -t proc proc ${merged}/proc`,
    `mount --rbind /dev ${merged}/dev`,
    `mount -t tmpfs -o mode=755 tmpfs ${merged}/run`,
    `mkdir -p ${merged}/run/sshd ${merged}/run/cluster-api`,
    `mount -t tmpfs tmpfs ${merged}/tmp`,
    `hostname ${name}`,
    `exec chroot ${merged} /usr/sbin/sshd -D -E /var/log/sshd.log`,
  ].join('\n');
  const args = [
    'netns',
    'exec',
    nsName(slot),
    'unshare',
    '--mount',
    '--uts',
    '--pid',
    '--fork',
    '--propagation',
    'private',
    'sh',
    '-c',
    init,
  ];
  const child = spawn('ip', args, { detached: true, stdio: 'ignore' });
  child.unref();
  const unsharePid = child.pid!;
  // `ip netns exec` execs unshare, so the child's pid is unshare's.
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
    10_000,
    50,
  );
  return pid;
}

const started = new Map<number, LabHost>();

export async function startHost(o: HostOptions): Promise<LabHost> {
  await ensureBridge();
  cleanupStaleHosts();
  const slot = reserveSlot(!!o.persistent);
  const name = `lab-${slot}`;
  const { merged, fingerprint, publicKey } = await prepareRoot(slot, o);
  await createNetwork(slot);
  const pid = await boot(slot, merged, name);
  writeSlot(slot, { owner: process.pid, persistent: !!o.persistent, pid });
  const host: LabHost = {
    slot,
    name,
    address: addressOf(slot),
    port: 22,
    hostKeyFingerprint: fingerprint,
    hostKeyPublic: publicKey,
    root: merged,
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
  if (s?.pid && alive(s.pid)) {
    process.kill(s.pid, 'SIGKILL');
    while (alive(s.pid)) await sleep(10);
  }
}

/** Power on again, with the same disk (overlay) and host key. */
export async function powerOn(h: Pick<LabHost, 'slot' | 'root'> & { name?: string }): Promise<void> {
  const pid = await boot(h.slot, h.root, h.name ?? `lab-${h.slot}`);
  const s = readSlot(h.slot);
  writeSlot(h.slot, { owner: s?.owner ?? process.pid, persistent: s?.persistent ?? false, pid });
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

/** Freeze the host's sshd: TCP connects, no banner ever comes. */
export function freeze(h: Pick<LabHost, 'slot'>, on = true): void {
  const s = readSlot(h.slot);
  if (s?.pid) process.kill(s.pid, on ? 'SIGSTOP' : 'SIGCONT');
}

/** Runs a command inside the host, out of band (not over SSH), for assertions. */
export async function hostExec(
  h: Pick<LabHost, 'slot'>,
  script: string,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const s = readSlot(h.slot);
  if (!s?.pid) throw new Error(`lab host ${h.slot} is not running`);
  const r = await execa('nsenter', ['-t', String(s.pid), '-m', '-u', '-n', '-p', '-r', '-w', 'sh', '-c', script], {
    reject: false,
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Stops a host and removes everything it made: processes, mounts, namespace, veth, files. */
export async function stopHost(h: Pick<LabHost, 'slot'>): Promise<void> {
  const s = readSlot(h.slot);
  if (s?.pid && alive(s.pid)) {
    process.kill(s.pid, 'SIGCONT');
    process.kill(s.pid, 'SIGKILL');
    while (alive(s.pid)) await sleep(10);
  }
  const merged = join(slotDir(h.slot), 'merged');
  await execa('umount', ['-l', merged], { reject: false });
  await execa('ip', ['netns', 'del', nsName(h.slot)], { reject: false });
  await execa('ip', ['link', 'del', `cbh${h.slot}`], { reject: false });
  rmSync(slotDir(h.slot), { recursive: true, force: true });
  started.delete(h.slot);
}

function slots(): number[] {
  return existsSync(labRoot) ? readdirSync(labRoot).map(Number).filter(Number.isInteger) : [];
}

/** Stops hosts whose (non-persistent) owner process is gone: what a killed test run left. */
export function cleanupStaleHosts(): void {
  for (const slot of slots()) {
    const s = readSlot(slot);
    if (s && !s.persistent && !alive(s.owner)) void stopHost({ slot });
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

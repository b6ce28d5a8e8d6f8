// Starts the host simulator (host-sim-server.ts) in a network namespace of its own: a veth pair
// from this namespace, the simulated hosts' addresses on the namespace's eth0 (10.250.192.0/18 for
// up to 16,256 hosts, 10.250.128.0/17 for up to 32,512: above the lab slots' addresses in use), and one route here for that range through the veth:
// one neighbour entry for all hosts (the lab bridge would need one per host). Traffic stays on
// this machine. Everything goes when stop() runs (or the namespace is found stale next time).
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BRIDGE_ADDRESS } from './lab.ts';
import type { SimStats } from './host-sim.ts';
import { repoRoot } from './paths.ts';
import { startProcess, waitFor, type ManagedProcess } from './process.ts';

export interface HostSim {
  hosts: Array<{ address: string; fingerprint: string }>;
  process: ManagedProcess;
  stats(): Promise<SimStats>;
  stop(): Promise<void>;
}

export interface HostSimOptions {
  count: number;
  bootstrapMs: number;
  /** The public key (OpenSSH format) the hosts accept for root. */
  authorizedKey: string;
  log?: (m: string) => void;
}

/**
 * Where the hosts' addresses live: one aligned prefix of 10.250, at 192 (a /18, up to 64 /24s) or at
 * the top of 10.250 (up to a /17) for more. Each /24 holds .1 to .254.
 */
export function simRange(count: number): { first: number; prefixLength: number } {
  const needed = 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(count / 254))));
  if (needed > 128) throw new Error(`${count} simulated hosts do not fit: at most ${128 * 254} (10.250.128.0/17)`);
  const blocks = Math.max(64, needed);
  return { first: 256 - blocks, prefixLength: 24 - Math.log2(blocks) };
}

/** Host addresses: 10.250.<first>.1 upward, .1 to .254 of each /24. */
export function simAddresses(count: number): string[] {
  const { first } = simRange(count);
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(`10.250.${first + Math.floor(i / 254)}.${(i % 254) + 1}`);
  return out;
}

async function sh(args: string[], input?: string): Promise<void> {
  const r = await execa('ip', args, { input, reject: false });
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.exitCode}): ${r.stderr.slice(0, 300)}`);
}

export async function startHostSim(o: HostSimOptions): Promise<HostSim> {
  const { first, prefixLength } = simRange(o.count);
  const ns = `capbm-sim${first}`;
  const veth = `cbsim${first}`;
  const gw = `10.250.${first}.0`; // the namespace's own address: no host has it
  const prefix = `10.250.${first}.0/${prefixLength}`;
  const addresses = simAddresses(o.count);
  const say = o.log ?? (() => {});
  await execa('ip', ['netns', 'del', ns], { reject: false });
  await execa('ip', ['link', 'del', veth], { reject: false });
  await execa('ip', ['route', 'del', prefix], { reject: false });
  await sh(['netns', 'add', ns]);
  await sh(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await sh(['link', 'set', veth, 'up']);
  await sh(['-n', ns, 'link', 'set', 'lo', 'up']);
  await sh(['-n', ns, 'link', 'set', 'eth0', 'up']);
  await sh(['-n', ns, 'addr', 'add', `${gw}/32`, 'dev', 'eth0']);
  say(`host simulator: ${o.count} addresses on ${ns}'s eth0 (${addresses[0]} .. ${addresses.at(-1)})`);
  await sh(['-n', ns, '-batch', '-'], addresses.map((a) => `addr add ${a}/32 dev eth0`).join('\n') + '\n');
  await sh(['-n', ns, 'route', 'add', 'default', 'via', BRIDGE_ADDRESS, 'dev', 'eth0', 'onlink']);
  await sh(['route', 'add', prefix, 'via', gw, 'dev', veth, 'onlink', 'src', BRIDGE_ADDRESS]);
  const dir = mkdtempSync(join(tmpdir(), 'capbm-host-sim-'));
  writeFileSync(join(dir, 'addresses'), addresses.join('\n') + '\n');
  writeFileSync(join(dir, 'authorized.pub'), o.authorizedKey);
  const socket = join(dir, 'control.sock');
  const proc = startProcess({
    name: 'host-sim',
    command: 'ip',
    args: [
      'netns',
      'exec',
      ns,
      process.execPath,
      join(repoRoot, 'test/harness/host-sim-server.ts'),
      join(dir, 'addresses'),
      join(dir, 'authorized.pub'),
      String(o.bootstrapMs),
      socket,
      join(dir, 'hosts.json'),
    ],
    logFile: join(dir, 'host-sim.log'),
  });
  const teardown = async () => {
    await proc.stop();
    await execa('ip', ['route', 'del', prefix], { reject: false });
    await execa('ip', ['link', 'del', veth], { reject: false });
    await execa('ip', ['netns', 'del', ns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      'the host simulator to listen',
      () => Promise.resolve(readFileSync(proc.logFile, 'utf8').includes('host-sim ready') ? true : undefined),
      60_000 + o.count * 5,
      100,
    );
  } catch (err) {
    await teardown();
    throw new Error(`${(err as Error).message}; its log: ${readFileSync(proc.logFile, 'utf8').slice(-800)}`);
  }
  const hosts = JSON.parse(readFileSync(join(dir, 'hosts.json'), 'utf8')) as HostSim['hosts'];
  const stats = () =>
    new Promise<SimStats>((resolve, reject) => {
      const req = get({ socketPath: socket, path: '/stats', timeout: 10_000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString('utf8')));
        res.on('end', () => resolve(JSON.parse(body) as SimStats));
      });
      req.on('timeout', () => req.destroy(new Error('the host simulator did not answer /stats in 10 s')));
      req.on('error', reject);
    });
  return { hosts, process: proc, stats, stop: teardown };
}

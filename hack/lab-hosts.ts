// Lab hosts that outlive this command (hack/lab dispatches here):
//   hosts up N | hosts down | hosts list
//   poweroff | start | linkdown | linkup | blackhole | unblackhole | freeze | thaw SLOT-or-ADDRESS
//   shell SLOT-or-ADDRESS [COMMAND...]   a root shell (or one command) inside the host, out of band
// The lab's SSH key is generated once in .cache/lab/ssh/id_ed25519 (never committed).
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  addressOf,
  blackhole,
  hostPid,
  freeze,
  linkDown,
  linkUp,
  listHosts,
  powerOff,
  powerOn,
  startHost,
  stopPersistentHosts,
  unblackhole,
} from '../test/harness/lab.ts';
import { repoRoot } from '../test/harness/paths.ts';

const keyDir = join(repoRoot, '.cache', 'lab', 'ssh');
const key = join(keyDir, 'id_ed25519');

async function labKey(): Promise<string> {
  if (!existsSync(key)) {
    mkdirSync(keyDir, { recursive: true, mode: 0o700 });
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'capbm-lab', '-f', key]);
  }
  return readFileSync(`${key}.pub`, 'utf8').trim();
}

function slotOf(arg: string | undefined): { slot: number; root: string } {
  const hosts = listHosts();
  const h = hosts.find((x) => String(x.slot) === arg || x.address === arg);
  if (!h) {
    throw new Error(
      `no lab host "${arg ?? ''}"; hosts: ${hosts.map((x) => `${x.slot} (${x.address})`).join(', ') || 'none (run: hack/lab hosts up 3)'}`,
    );
  }
  return { slot: h.slot, root: join(repoRoot, '.cache', 'lab', 'hosts', String(h.slot), 'merged') };
}

async function up(n: number): Promise<void> {
  if (!Number.isInteger(n) || n < 1 || n > 500) throw new Error('usage: hack/lab hosts up N (1..500)');
  const pub = await labKey();
  for (let i = 0; i < n; i++) {
    const h = await startHost({ authorizedKeys: [pub], persistent: true });
    process.stdout.write(`${h.name}  ${h.address}  users root, capbm (sudo)  host key ${h.hostKeyFingerprint}\n`);
  }
  process.stdout.write(`\nSSH key: ${key}\nTry: ssh -i ${key} capbm@<address> sudo id\n`);
}

function list(): void {
  for (const h of listHosts())
    process.stdout.write(`lab-${h.slot}  ${h.address}  ${h.running ? 'running' : 'powered off'}\n`);
}

const faults: Record<string, (h: { slot: number; root: string }) => Promise<void> | void> = {
  poweroff: powerOff,
  start: powerOn,
  linkdown: linkDown,
  linkup: linkUp,
  blackhole,
  unblackhole,
  freeze: (h) => freeze(h, true),
  thaw: (h) => freeze(h, false),
};

async function main(args: string[]): Promise<void> {
  const [cmd, sub, arg] = args;
  if (cmd === 'hosts' && sub === 'up') return up(Number(arg ?? 3));
  if (cmd === 'hosts' && sub === 'down') return stopPersistentHosts();
  if (cmd === 'hosts' && (sub === 'list' || sub === undefined)) return list();
  if (cmd === 'down') return stopPersistentHosts();
  if (cmd === 'shell') {
    const h = slotOf(sub);
    const pid = hostPid(h.slot);
    const command = args.slice(2);
    const r = await execa(
      'nsenter',
      [
        '-t',
        String(pid),
        '-m',
        '-u',
        '-n',
        '-p',
        '-i',
        '-C',
        '-r',
        '-w',
        ...(command.length ? ['sh', '-c', command.join(' ')] : ['bash', '-l']),
      ],
      { stdio: 'inherit', reject: false },
    );
    process.exitCode = r.exitCode ?? 1;
    return;
  }
  const fault = cmd ? faults[cmd] : undefined;
  if (fault) {
    const h = slotOf(sub);
    await fault(h);
    process.stdout.write(`${cmd}: lab-${h.slot} (${addressOf(h.slot)})\n`);
    return;
  }
  throw new Error(
    `usage: hack/lab hosts up N | hosts down | hosts list | shell HOST [COMMAND] | ${Object.keys(faults).join('|')} HOST`,
  );
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`error: ${(err as Error).message}\n`);
  process.exit(1);
}

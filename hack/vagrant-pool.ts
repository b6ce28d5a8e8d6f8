// hack/vagrant-pool: running Vagrant VMs -> a BareMetalHostPool with pinned host keys + its SSH Secret.
// For each VM of `vagrant ssh-config` (in --dir): read its host keys and addresses inside the VM
// (over Vagrant's own SSH channel), take its address in the private network (--network), fetch the
// host keys served at that address (ssh-keyscan), and refuse unless both agree; then check CAPBM's
// key logs in there as --user with sudo. Prints the Secret and the pool (YAML), or applies them.
//   node hack/vagrant-pool.ts [--dir DIR] [--network CIDR] [--name NAME] [--namespace NS]
//        [--user USER] [--key FILE] [--apply --kubeconfig FILE [--kubectl PATH]]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import {
  VagrantPoolError,
  addressIn,
  crossCheck,
  parseAddresses,
  parseHostKeys,
  parseSshConfig,
  poolManifests,
  type PoolHost,
  type VagrantVm,
} from './vagrant/pool.ts';

const root = resolve(import.meta.dirname, '..');
const usage =
  'usage: hack/vagrant-pool [--dir DIR] [--network CIDR] [--name NAME] [--namespace NS] [--user USER] [--key FILE] [--apply --kubeconfig FILE]';

const say = (m: string) => process.stderr.write(`==> ${m}\n`);
const sshOpts = ['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-o', 'LogLevel=ERROR'];

/** The VMs of the Vagrantfile in dir that are not running, with their state. */
async function notRunning(dir: string): Promise<string[]> {
  const r = await execa('vagrant', ['status', '--machine-readable'], { cwd: dir, reject: false, timeout: 120_000 });
  return r.stdout
    .split('\n')
    .map((l) => l.split(','))
    .filter((f) => f[2] === 'state' && f[3] !== 'running')
    .map((f) => `${f[1]} (${f[3]})`);
}

async function vagrantVms(dir: string): Promise<{ vms: VagrantVm[]; config: string }> {
  const r = await execa('vagrant', ['ssh-config'], { cwd: dir, reject: false, timeout: 180_000 });
  const down = await notRunning(dir);
  if (down.length > 0)
    throw new VagrantPoolError(
      `VMs not running: ${down.join(', ')}: run \`vagrant up\` in ${dir} (or remove them from the Vagrantfile)`,
    );
  if (r.exitCode !== 0)
    throw new VagrantPoolError(
      `\`vagrant ssh-config\` failed in ${dir}: ${r.stderr.trim().split('\n').slice(-2).join(' ')}: run \`vagrant up\` there first`,
    );
  const vms = parseSshConfig(r.stdout);
  if (vms.length === 0) throw new VagrantPoolError(`no VMs in ${dir}: run \`vagrant up\` there first`);
  return { vms, config: r.stdout };
}

/** Keys and addresses read inside the VM, over Vagrant's channel (its key, its network). */
async function inside(vm: VagrantVm, configFile: string) {
  const r = await execa(
    'ssh',
    ['-F', configFile, ...sshOpts, vm.name, 'cat /etc/ssh/ssh_host_*_key.pub; echo ---; ip -4 -o addr show'],
    { reject: false, timeout: 60_000 },
  );
  if (r.exitCode !== 0)
    throw new VagrantPoolError(
      `cannot run a command in VM "${vm.name}" over Vagrant's SSH (${r.stderr.trim() || `exit ${r.exitCode}`}): try \`vagrant ssh ${vm.name}\``,
    );
  const [keys = '', addrs = ''] = r.stdout.split('\n---\n');
  return { keys: parseHostKeys(keys), addresses: parseAddresses(addrs) };
}

async function scan(address: string) {
  const r = await execa('ssh-keyscan', ['-T', '20', address], { reject: false, timeout: 60_000 });
  return parseHostKeys(r.stdout);
}

/** CAPBM's key must log in as user at the address, the host key checked against the pin, with sudo. */
async function login(host: PoolHost, user: string, key: string, knownHosts: string) {
  const r = await execa(
    'ssh',
    [
      ...sshOpts,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'IdentitiesOnly=yes',
      '-i',
      key,
      `${user}@${host.address}`,
      user === 'root' ? 'true' : 'sudo -n true',
    ],
    { reject: false, timeout: 60_000 },
  );
  if (r.exitCode !== 0)
    throw new VagrantPoolError(
      `CAPBM's key ${key} cannot log in as ${user}@${host.address} (VM "${host.vm}") with sudo: ${r.stderr.trim() || `exit ${r.exitCode}`}: run \`vagrant provision ${host.vm}\` (it authorises the key and sudo for ${user})`,
    );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string', default: join(root, 'examples', 'vagrant') },
      network: { type: 'string', default: `${process.env.CAPBM_NETWORK ?? '10.250.160'}.0/24` },
      name: { type: 'string', default: 'vagrant' },
      namespace: { type: 'string', default: 'default' },
      user: { type: 'string', default: 'capbm' },
      key: { type: 'string' },
      apply: { type: 'boolean', default: false },
      kubeconfig: { type: 'string' },
      kubectl: { type: 'string', default: 'kubectl' },
    },
  });
  const dir = resolve(values.dir);
  const key = resolve(values.key ?? process.env.CAPBM_SSH_KEY ?? join(dir, '.capbm', 'id_ed25519'));
  if (values.apply && !values.kubeconfig) throw new VagrantPoolError(`--apply needs --kubeconfig\n${usage}`);
  let privateKey: string;
  try {
    privateKey = readFileSync(key, 'utf8');
  } catch {
    throw new VagrantPoolError(
      `cannot read CAPBM's SSH key ${key}: pass --key, or run \`vagrant up\` in ${dir} (it makes one)`,
    );
  }
  const tmp = mkdtempSync(join(tmpdir(), 'capbm-vagrant-'));
  try {
    const { vms, config } = await vagrantVms(dir);
    const configFile = join(tmp, 'ssh-config');
    writeFileSync(configFile, config);
    const hosts: PoolHost[] = [];
    for (const vm of vms) {
      const seen = await inside(vm, configFile);
      const address = addressIn(vm.name, seen.addresses, values.network);
      const keys = crossCheck(vm.name, address, seen.keys, await scan(address));
      hosts.push({ vm: vm.name, address, keys });
      say(`${vm.name} ${address} ${keys.map((k) => `${k.type} ${k.fingerprint}`).join(' ')}`);
    }
    const knownHosts = join(tmp, 'known_hosts');
    const pubs = await Promise.all(hosts.map((h) => execa('ssh-keyscan', ['-T', '20', h.address], { reject: false })));
    writeFileSync(knownHosts, pubs.map((p) => p.stdout).join('\n'));
    for (const h of hosts) await login(h, values.user, key, knownHosts);
    const yaml = poolManifests({
      name: values.name,
      namespace: values.namespace,
      user: values.user,
      privateKey,
      hosts,
    });
    if (!values.apply) {
      process.stdout.write(yaml);
      return;
    }
    await execa(values.kubectl, ['--kubeconfig', values.kubeconfig as string, 'apply', '-f', '-'], { input: yaml });
    say(
      `applied Secret ${values.namespace}/${values.name}-ssh and BareMetalHostPool ${values.namespace}/${values.name} (${hosts.length} hosts, keys pinned)`,
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (err) {
  if (!(err instanceof VagrantPoolError)) throw err;
  process.stderr.write(`error: ${err.message}\n`);
  process.exit(1);
}

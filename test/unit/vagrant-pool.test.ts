// hack/vagrant-pool's pure parts: `vagrant ssh-config`, host keys as ssh-keygen fingerprints them,
// the private address, the cross-check that makes a pin trusted, and the pool it prints.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { parseAllDocuments } from 'yaml';
import {
  VagrantPoolError,
  addressIn,
  crossCheck,
  parseAddresses,
  parseHostKeys,
  parseSshConfig,
  poolManifests,
} from '../../hack/vagrant/pool.ts';

const sshConfig = `Host capbm-1
  HostName 10.250.161.57
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/me/.vagrant/machines/capbm-1/libvirt/private_key"
  IdentityFile /home/me/.vagrant.d/insecure_private_key
  IdentitiesOnly yes
  LogLevel FATAL

Host capbm-2
  HostName 127.0.0.1
  User vagrant
  Port 2200
  IdentityFile /tmp/k2
`;

test('ssh-config: one VM per Host block, the first IdentityFile, quotes removed', (t) => {
  t.deepEqual(parseSshConfig(sshConfig), [
    {
      name: 'capbm-1',
      hostName: '10.250.161.57',
      user: 'vagrant',
      port: 22,
      identityFile: '/home/me/.vagrant/machines/capbm-1/libvirt/private_key',
    },
    { name: 'capbm-2', hostName: '127.0.0.1', user: 'vagrant', port: 2200, identityFile: '/tmp/k2' },
  ]);
  t.deepEqual(parseSshConfig(''), []);
});

test('ssh-config: a VM without HostName is an error naming it and what to run', (t) => {
  const e = t.throws(() => parseSshConfig('Host capbm-3\n  User vagrant\n  Port 22\n'), {
    instanceOf: VagrantPoolError,
  });
  t.regex(e.message, /VM "capbm-3".*vagrant up capbm-3/);
});

test("host keys: fingerprints are ssh-keygen's, from .pub and ssh-keyscan lines alike", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vagrant-pool-'));
  try {
    const want: Record<string, string> = {};
    const lines: string[] = [];
    for (const type of ['ed25519', 'ecdsa', 'rsa']) {
      const f = join(dir, type);
      execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'root@capbm-1', '-f', f]);
      const pub = readFileSync(`${f}.pub`, 'utf8').trim();
      want[pub.split(' ')[0] as string] = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${f}.pub`], {
        encoding: 'utf8',
      }).split(' ')[1] as string;
      lines.push(pub);
    }
    const inside = parseHostKeys(lines.join('\n'));
    t.deepEqual(Object.fromEntries(inside.map((k) => [k.type, k.fingerprint])), want);
    const scanned = parseHostKeys(
      [
        '# 10.250.160.11:22 SSH-2.0-OpenSSH_9.2p1',
        ...lines.map((l) => `10.250.160.11 ${l.split(' ').slice(0, 2).join(' ')}`),
      ].join('\n'),
    );
    t.deepEqual(scanned, inside);
    t.deepEqual(crossCheck('capbm-1', '10.250.160.11', inside, scanned), scanned);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const k = (type: string, fingerprint: string) => ({ type, fingerprint });

test('cross-check: another key at the address, or none at all, is refused', (t) => {
  const inside = [k('ssh-ed25519', 'SHA256:a'), k('ssh-rsa', 'SHA256:b')];
  const other = t.throws(() => crossCheck('capbm-2', '10.250.160.12', inside, [k('ssh-ed25519', 'SHA256:x')]));
  t.regex(other.message, /served at 10\.250\.160\.12 is not VM "capbm-2"'s.*another machine answers/);
  t.regex(
    t.throws(() => crossCheck('capbm-2', '10.250.160.12', inside, [])).message,
    /nothing answered SSH at 10\.250\.160\.12/,
  );
  t.regex(t.throws(() => crossCheck('capbm-2', '10.250.160.12', [], inside)).message, /no SSH host keys/);
  t.deepEqual(crossCheck('capbm-2', '10.250.160.12', inside, [k('ssh-rsa', 'SHA256:b')]), [k('ssh-rsa', 'SHA256:b')]);
});

test('address: the one in the private network; none or several is an error', (t) => {
  const addrs = parseAddresses(
    [
      '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
      '2: eth0    inet 10.250.161.57/24 metric 1024 brd 10.250.161.255 scope global dynamic eth0',
      '3: eth1    inet 10.250.160.11/24 brd 10.250.160.255 scope global eth1',
    ].join('\n'),
  );
  t.deepEqual(addrs, ['127.0.0.1', '10.250.161.57', '10.250.160.11']);
  t.is(addressIn('capbm-1', addrs, '10.250.160.0/24'), '10.250.160.11');
  t.regex(
    t.throws(() => addressIn('capbm-1', addrs, '192.168.56.0/24')).message,
    /no address in the private network 192\.168\.56\.0\/24/,
  );
  t.regex(t.throws(() => addressIn('capbm-1', addrs, '10.250.160.0/23')).message, /several addresses/);
});

test('manifests: the ssh-auth Secret and a pool pinning every key per address', (t) => {
  const yaml = poolManifests({
    name: 'laptop',
    namespace: 'team-a',
    user: 'capbm',
    privateKey: ssh2.utils.generateKeyPairSync('ed25519').private, // made here, never committed
    hosts: [
      { vm: 'capbm-1', address: '10.250.160.11', keys: [k('ssh-ed25519', 'SHA256:a'), k('ssh-rsa', 'SHA256:b')] },
      { vm: 'capbm-2', address: '10.250.160.12', keys: [k('ssh-ed25519', 'SHA256:c')] },
    ],
  });
  const [secret, pool] = parseAllDocuments(yaml).map((d) => d.toJS() as Record<string, any>);
  t.is(secret?.type, 'kubernetes.io/ssh-auth');
  t.is(secret?.metadata.name, 'laptop-ssh');
  t.true((secret?.stringData['ssh-privatekey'] as string).endsWith('-----\n'));
  t.is(pool?.kind, 'BareMetalHostPool');
  t.deepEqual(pool?.spec.addresses, ['10.250.160.11', '10.250.160.12']);
  t.deepEqual(pool?.spec.ssh, { user: 'capbm', secretRef: { name: 'laptop-ssh' }, privilege: 'NoPasswordSudo' });
  t.deepEqual(pool?.spec.hostKeyPolicy, {
    type: 'Pinned',
    pinned: { '10.250.160.11': ['SHA256:a', 'SHA256:b'], '10.250.160.12': ['SHA256:c'] },
  });
  t.is(pool?.metadata.annotations['capbm.dev/vagrant-vms'], 'capbm-1=10.250.160.11,capbm-2=10.250.160.12');
  t.regex(
    pool?.metadata.annotations['capbm.dev/host-keys-from'],
    /^hack\/vagrant-pool --name laptop --namespace team-a/,
  );
});

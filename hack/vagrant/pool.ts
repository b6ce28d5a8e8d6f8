// The pure parts of hack/vagrant-pool: reading `vagrant ssh-config`, host keys and addresses, the
// cross-check of the key seen over the network with the one read inside the VM, and the pool.
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { stringify } from 'yaml';

/** One VM as `vagrant ssh-config` describes it (how Vagrant itself reaches it). */
export interface VagrantVm {
  name: string;
  hostName: string;
  port: number;
  user: string;
  identityFile: string;
}

/** Thrown for anything the user must fix; the message says what and how. */
export class VagrantPoolError extends Error {
  override name = 'VagrantPoolError';
}

const unquote = (v: string) => v.replace(/^"(.*)"$/, '$1');

/** The `Host` blocks of `vagrant ssh-config` output, in order. */
export function parseSshConfig(text: string): VagrantVm[] {
  const vms: VagrantVm[] = [];
  let cur: Partial<VagrantVm> | undefined;
  for (const raw of text.split('\n')) {
    const m = /^\s*(\S+)\s+(.*?)\s*$/.exec(raw);
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    const k = key.toLowerCase();
    if (k === 'host') {
      cur = { name: value };
      vms.push(cur as VagrantVm);
    } else if (cur && k === 'hostname') cur.hostName = value;
    else if (cur && k === 'port') cur.port = Number(value);
    else if (cur && k === 'user') cur.user = value;
    else if (cur && k === 'identityfile' && !cur.identityFile) cur.identityFile = unquote(value);
  }
  for (const vm of vms) {
    if (!vm.hostName || !vm.user || !Number.isInteger(vm.port))
      throw new VagrantPoolError(
        `vagrant ssh-config gave no HostName, User or Port for VM "${vm.name}": run \`vagrant ssh-config ${vm.name}\` and \`vagrant up ${vm.name}\``,
      );
  }
  return vms;
}

/** One host key: its type and SHA256 fingerprint, as `ssh-keygen -l -E sha256` prints it. */
export interface HostKey {
  type: string;
  fingerprint: string;
}

const keyTypes = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|ssh-dss)$/;

/** The fingerprint of a public key blob (base64 of the wire format). */
export function fingerprint(blobBase64: string): string {
  const digest = createHash('sha256').update(Buffer.from(blobBase64, 'base64')).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

/**
 * Host keys in `.pub` or `ssh-keyscan` form ("[host] type base64 [comment]"), one per type,
 * sorted by type; other lines (comments, addresses) are skipped.
 */
export function parseHostKeys(text: string): HostKey[] {
  const byType = new Map<string, string>();
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const i = fields.findIndex((f) => keyTypes.test(f));
    if (i < 0 || !fields[i + 1] || !/^[A-Za-z0-9+/]+=*$/.test(fields[i + 1] as string)) continue;
    byType.set(fields[i] as string, fingerprint(fields[i + 1] as string));
  }
  return [...byType].map(([type, fp]) => ({ type, fingerprint: fp })).sort((a, b) => a.type.localeCompare(b.type));
}

/** IPv4 addresses in `ip -4 -o addr show` output. */
export function parseAddresses(text: string): string[] {
  return [...text.matchAll(/\sinet\s+(\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1] as string);
}

/** The VM's one address in the private network; an error naming the VM when none or several. */
export function addressIn(vm: string, addresses: string[], cidr: string): string {
  const range = ipaddr.parseCIDR(cidr);
  const inside = addresses.filter((a) => ipaddr.isValid(a) && ipaddr.parse(a).match(range));
  if (inside.length === 1) return inside[0] as string;
  if (inside.length === 0)
    throw new VagrantPoolError(
      `VM "${vm}" has no address in the private network ${cidr} (it has ${addresses.join(', ') || 'none'}): check its private_network in the Vagrantfile, or pass --network with the CIDR it uses, then \`vagrant reload ${vm}\``,
    );
  throw new VagrantPoolError(
    `VM "${vm}" has several addresses in ${cidr} (${inside.join(', ')}): pass a narrower --network`,
  );
}

/**
 * The pin: the keys served at the address must be the keys the VM holds. Anything else (another
 * machine answering at that address, a key missing on either side) is refused.
 */
export function crossCheck(vm: string, address: string, inside: HostKey[], scanned: HostKey[]): HostKey[] {
  if (inside.length === 0)
    throw new VagrantPoolError(
      `VM "${vm}" has no SSH host keys in /etc/ssh/ssh_host_*_key.pub: is sshd installed? Run \`vagrant ssh ${vm} -c 'sudo ssh-keygen -A'\``,
    );
  if (scanned.length === 0)
    throw new VagrantPoolError(
      `nothing answered SSH at ${address} (VM "${vm}"'s private address): check the VM is up and sshd listens there (\`vagrant ssh ${vm} -c 'ss -ltn'\`)`,
    );
  const mine = new Map(inside.map((k) => [k.type, k.fingerprint]));
  const wrong = scanned.filter((k) => mine.get(k.type) !== k.fingerprint);
  if (wrong.length > 0)
    throw new VagrantPoolError(
      `the SSH host key served at ${address} is not VM "${vm}"'s (${wrong.map((k) => `${k.type} ${k.fingerprint}`).join(', ')} is not in its /etc/ssh): another machine answers at that address; fix the private network's addresses before pinning`,
    );
  return scanned;
}

/** One host of the pool: its private address and the fingerprints pinned for it. */
export interface PoolHost {
  vm: string;
  address: string;
  keys: HostKey[];
}

export interface PoolOptions {
  name: string;
  namespace: string;
  user: string;
  privateKey: string;
  hosts: PoolHost[];
}

/** The SSH Secret and the BareMetalHostPool with pinned host keys, as one YAML stream. */
export function poolManifests(o: PoolOptions): string {
  const secretName = `${o.name}-ssh`;
  const pinned = Object.fromEntries(o.hosts.map((h) => [h.address, h.keys.map((k) => k.fingerprint)]));
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: secretName, namespace: o.namespace },
    type: 'kubernetes.io/ssh-auth',
    stringData: { 'ssh-privatekey': o.privateKey.endsWith('\n') ? o.privateKey : `${o.privateKey}\n` },
  };
  const pool = {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1alpha1',
    kind: 'BareMetalHostPool',
    metadata: {
      name: o.name,
      namespace: o.namespace,
      annotations: {
        'capbm.dev/vagrant-vms': o.hosts.map((h) => `${h.vm}=${h.address}`).join(','),
        // The provider quotes it when a host's key changes (provider/controllers/problems.ts).
        'capbm.dev/host-keys-from': `hack/vagrant-pool --name ${o.name} --namespace ${o.namespace} --apply --kubeconfig FILE`,
      },
    },
    spec: {
      addresses: o.hosts.map((h) => h.address),
      ssh: {
        user: o.user,
        secretRef: { name: secretName },
        privilege: o.user === 'root' ? 'Root' : 'NoPasswordSudo',
      },
      hostKeyPolicy: { type: 'Pinned', pinned },
      hostLabels: { 'capbm.dev/vagrant': 'true' },
    },
  };
  return [secret, pool].map((d) => `---\n${stringify(d)}`).join('');
}

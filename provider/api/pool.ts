// BareMetalHostPool: the machines a team owns, as addresses and an SSH key.
import { type Resource, conditions, labels, objectName, secretKeyRef, unixUser } from './common.ts';
import { array, enumeration, int, map, object, string, type Infer } from './schema.ts';

/** Addresses of one pool at most; larger ranges are refused before anything is created. */
export const MAX_POOL_ADDRESSES = 65536;

// An entry is an address, a CIDR, or "first-last". CEL's IP library checks the forms; for IPv4
// ranges it also checks first <= last by comparing the addresses as numbers.
const v4num = (e: string) =>
  `${e}.split('.').map(o, int(o)).all(o, o >= 0) ? ${e}.split('.').map(o, int(o))[0] * 16777216 + ${e}.split('.').map(o, int(o))[1] * 65536 + ${e}.split('.').map(o, int(o))[2] * 256 + ${e}.split('.').map(o, int(o))[3] : 0`;
const first = "self.split('-')[0]";
const last = "self.split('-')[1]";
export const addressEntry = string({
  minLength: 1,
  maxLength: 100,
  description:
    'An IP address (10.0.0.5), a CIDR (10.0.0.0/28), or an inclusive range (10.0.0.10-10.0.0.50). IPv4 or IPv6.',
  rules: [
    {
      rule: `isIP(self) || isCIDR(self) || (self.split('-').size() == 2 && isIP(${first}) && isIP(${last}))`,
      message: 'must be an IP address, a CIDR such as 10.0.0.0/24, or a range such as 10.0.0.10-10.0.0.50',
    },
    {
      rule: `!(self.split('-').size() == 2 && isIP(${first}) && isIP(${last})) || ip(${first}).family() == ip(${last}).family()`,
      message: 'a range must not mix IPv4 and IPv6: both ends must be of the same family',
    },
    {
      rule: `!(self.split('-').size() == 2 && isIP(${first}) && isIP(${last}) && ip(${first}).family() == 4 && ip(${last}).family() == 4) || (${v4num(first)}) <= (${v4num(last)})`,
      message: 'a range must start at or below its end (first-last)',
    },
  ],
});

export const hostKeyPolicy = object(
  {
    type: enumeration(['Pinned', 'KnownHosts', 'TrustOnFirstUse'], {
      description:
        'Pinned: only the SHA256 fingerprints listed per address. KnownHosts: the known_hosts content in a Secret. TrustOnFirstUse: the first key seen is recorded on the BareMetalHost and pinned from then on.',
    }),
    pinned: map(array(string({ pattern: '^SHA256:[A-Za-z0-9+/]{43}$' }), { minItems: 1, maxItems: 8 }), {
      maxProperties: 4096,
      description: 'Address -> accepted fingerprints (as `ssh-keygen -l -E sha256` prints them).',
    }),
    knownHostsSecretRef: secretKeyRef,
  },
  {
    required: ['type'],
    rules: [
      {
        rule: "self.type != 'Pinned' || has(self.pinned)",
        message: 'hostKeyPolicy type Pinned needs pinned fingerprints per address',
      },
      {
        rule: "self.type != 'KnownHosts' || has(self.knownHostsSecretRef)",
        message: 'hostKeyPolicy type KnownHosts needs knownHostsSecretRef',
      },
    ],
  },
);

export const sshAccess = object(
  {
    user: unixUser('root'),
    port: int({ minimum: 1, maximum: 65535, default: 22 }),
    secretRef: object(
      { name: objectName() },
      {
        required: ['name'],
        description:
          'Secret with ssh-privatekey, and optionally passphrase and sudo-password (kubernetes.io/ssh-auth layout).',
      },
    ),
    privilege: enumeration(['Root', 'NoPasswordSudo', 'PasswordSudo'], { default: 'Root' }),
  },
  { required: ['secretRef'] },
);

export const poolSpec = object(
  {
    addresses: array(addressEntry, { minItems: 1, maxItems: 64, description: 'Where the hosts are.' }),
    exclude: array(addressEntry, {
      maxItems: 64,
      description: 'Addresses inside the ranges above that are not hosts.',
    }),
    ssh: sshAccess,
    jumpHost: object(
      {
        address: string({ minLength: 1, maxLength: 253 }),
        port: int({ minimum: 1, maximum: 65535, default: 22 }),
        user: unixUser('root'),
        secretRef: object({ name: objectName() }, { required: ['name'] }),
        hostKeyPolicy,
      },
      { required: ['address', 'secretRef', 'hostKeyPolicy'], description: 'A bastion reached first.' },
    ),
    hostKeyPolicy,
    hostLabels: labels,
  },
  { required: ['addresses', 'ssh', 'hostKeyPolicy'] },
);

export const poolStatus = object({
  total: int({ minimum: 0 }),
  available: int({ minimum: 0 }),
  claimed: int({ minimum: 0 }),
  quarantined: int({ minimum: 0 }),
  observedGeneration: int({ minimum: 0 }),
  jumpHostKeyFingerprint: string({
    description:
      "The jump host's SSH host key, recorded at first use when its policy is TrustOnFirstUse; pinned from then on.",
  }),
  conditions,
});

export type PoolSpec = Infer<typeof poolSpec>;
export type PoolStatus = Infer<typeof poolStatus>;
export type BareMetalHostPool = Resource<'BareMetalHostPool', PoolSpec, PoolStatus>;

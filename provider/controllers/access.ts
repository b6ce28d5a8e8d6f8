// How the provider reaches a host: the pool's SSH settings and Secret, and the host-key policy,
// turned into an ssh Target. Secrets are read when needed (never cached, never logged): a rotated
// key takes effect on the next connection.
import type { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool, PoolSpec } from '../api/pool.ts';
import { InvalidName } from '../kube/kinds.ts';
import { readSecret, SecretForbidden } from '../kube/secrets.ts';
import type { Credentials, HostKeyPolicy, Privilege, Target } from '../ssh/index.ts';

/** Every way a pool's settings can fail to give an SSH target, closed. */
export type AccessReason = 'PoolNotFound' | 'SecretNotFound' | 'SecretForbidden' | 'SecretInvalid' | 'HostKeyNotPinned';

/** A pool setting that cannot work; the message says what to do. Shown on the machine and the host. */
export class AccessError extends Error {
  override name = 'AccessError';
  readonly reason: AccessReason;
  constructor(reason: AccessReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** The Secret's data; AccessError when it does not exist. */
async function secretData(kc: KubeConfig, namespace: string, name: string): Promise<Record<string, string>> {
  const s = await readSecret(kc, namespace, name).catch((err: unknown) => {
    if (err instanceof InvalidName)
      throw new AccessError('SecretInvalid', `the pool names Secret ${err.message}: fix the pool's secretRef`);
    if (err instanceof SecretForbidden) throw new AccessError('SecretForbidden', err.message);
    throw err;
  });
  if (!s) {
    throw new AccessError(
      'SecretNotFound',
      `Secret ${namespace}/${name} does not exist: create it with the SSH private key under "ssh-privatekey" (kubectl create secret generic ${name} --from-file=ssh-privatekey=KEYFILE)`,
    );
  }
  return s.data;
}

async function credentials(kc: KubeConfig, namespace: string, secretName: string): Promise<Credentials> {
  const data = await secretData(kc, namespace, secretName);
  const privateKey = data['ssh-privatekey'];
  if (!privateKey) {
    throw new AccessError(
      'SecretInvalid',
      `Secret ${namespace}/${secretName} has no "ssh-privatekey" key: put the SSH private key there`,
    );
  }
  return {
    privateKey,
    ...(data.passphrase ? { passphrase: data.passphrase } : {}),
    ...(data['sudo-password'] ? { sudoPassword: data['sudo-password'] } : {}),
  };
}

type PolicySpec = PoolSpec['hostKeyPolicy'];

async function hostKeyPolicy(
  kc: KubeConfig,
  namespace: string,
  p: PolicySpec,
  host: { address: string; recorded: string | undefined },
): Promise<HostKeyPolicy> {
  const { address, recorded } = host;
  switch (p.type) {
    case 'Pinned': {
      const fingerprints = p.pinned?.[address] ?? [];
      if (!fingerprints.length) {
        throw new AccessError(
          'HostKeyNotPinned',
          `the pool pins host keys but has no fingerprint for ${address}: add it under spec.hostKeyPolicy.pinned["${address}"] (ssh-keyscan ${address} | ssh-keygen -lf - -E sha256)`,
        );
      }
      return { kind: 'pinned', fingerprints };
    }
    case 'KnownHosts': {
      const ref = p.knownHostsSecretRef!;
      const data = await secretData(kc, namespace, ref.name);
      const content = data[ref.key ?? 'known_hosts'];
      if (!content) {
        throw new AccessError(
          'SecretInvalid',
          `Secret ${namespace}/${ref.name} has no "${ref.key ?? 'known_hosts'}" key with known_hosts lines`,
        );
      }
      return { kind: 'known-hosts', content };
    }
    case 'TrustOnFirstUse':
      return { kind: 'trust-on-first-use', ...(recorded ? { recorded } : {}) };
  }
}

const privileges: Record<NonNullable<PoolSpec['ssh']['privilege']>, Privilege> = {
  Root: 'root',
  NoPasswordSudo: 'sudo',
  PasswordSudo: 'sudo-password',
};

/** The SSH target for a host of a pool. Throws AccessError for settings a person must fix. */
export async function hostTarget(kc: KubeConfig, pool: BareMetalHostPool, host: BareMetalHost): Promise<Target> {
  const ns = pool.metadata.namespace;
  const s = pool.spec;
  const target: Target = {
    host: host.spec.address,
    port: s.ssh.port ?? 22,
    user: s.ssh.user ?? 'root',
    credentials: await credentials(kc, ns, s.ssh.secretRef.name),
    hostKey: await hostKeyPolicy(kc, ns, s.hostKeyPolicy, {
      address: host.spec.address,
      recorded: host.status?.hostKeyFingerprint,
    }),
    privilege: privileges[s.ssh.privilege ?? 'Root'],
  };
  if (s.jumpHost) {
    const j = s.jumpHost;
    target.jump = {
      host: j.address,
      port: j.port ?? 22,
      user: j.user ?? 'root',
      credentials: await credentials(kc, ns, j.secretRef.name),
      hostKey: await hostKeyPolicy(kc, ns, j.hostKeyPolicy, {
        address: j.address,
        recorded: pool.status?.jumpHostKeyFingerprint,
      }),
    };
  }
  return target;
}

/** The pool of a host, from the cache; AccessError when it is gone. */
export function poolOf(
  pools: { get(namespace: string, name: string): BareMetalHostPool | undefined },
  host: BareMetalHost,
): BareMetalHostPool {
  const ns = host.metadata.namespace;
  const name = host.spec.poolRef.name;
  const p = pools.get(ns, name);
  if (!p)
    throw new AccessError(
      'PoolNotFound',
      `BareMetalHostPool ${ns}/${name} of host ${host.metadata.name} does not exist: recreate the pool, or delete this machine so it takes a host of an existing pool`,
    );
  return p;
}

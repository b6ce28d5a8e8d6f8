// One server is claimed by one machine, cluster-wide, even while two pools (two teams) briefly
// both have a host for its address (overlap.ts settles which pool keeps it, but caches lag). A
// claim first takes the address's lock: a Lease in the provider's namespace, named after the
// address, whose holder is the host being claimed. Creating it is atomic on the API server (409 for
// the second), so two hosts for one address can never both be claimed. The lock is let go when
// the host is released; a lock whose holder host is no longer claimed (a claimer died between the
// lock and the claim, a pool was deleted) is taken over once it is older than staleAfterMs.
import type { KubeConfig } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type { BareMetalHost } from '../api/host.ts';
import { BareMetalHosts, collectionPath, Leases, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';

export const AddressLockLabel = 'infrastructure.cluster.x-k8s.io/address-lock';
const AddressAnnotation = 'infrastructure.cluster.x-k8s.io/address';
const staleAfterMs = 60_000;

interface Lease {
  metadata: {
    name: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: { holderIdentity?: string; acquireTime?: string; renewTime?: string };
}

export const lockName = (address: string) =>
  `capbm-address-${createHash('sha256').update(address).digest('hex').slice(0, 24)}`;

/** namespace/name/uid of the host: who holds the lock. */
const identity = (h: BareMetalHost) => `${h.metadata.namespace}/${h.metadata.name}/${h.metadata.uid ?? ''}`;

/** MicroTime, as Leases carry it. */
const microTime = (d = new Date()) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

function lease(h: BareMetalHost, name: string, resourceVersion?: string): Lease & { apiVersion: string; kind: string } {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name,
      ...(resourceVersion ? { resourceVersion } : {}),
      labels: { [AddressLockLabel]: 'true' },
      annotations: { [AddressAnnotation]: h.spec.address },
    },
    spec: { holderIdentity: identity(h), acquireTime: microTime(), renewTime: microTime() },
  };
}

async function get<T>(kc: KubeConfig, path: string): Promise<T | undefined> {
  try {
    return await raw<T>(kc, 'GET', path);
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) return undefined;
    throw err;
  }
}

/** Whether the lock's holder is a host still claimed (then the lock stands). */
async function holderClaimed(kc: KubeConfig, holder: string): Promise<boolean> {
  const [ns, name, uid] = holder.split('/');
  if (!ns || !name) return false;
  const h = await get<BareMetalHost>(kc, objectPath(BareMetalHosts, ns, name));
  return h !== undefined && h.metadata.uid === uid && h.spec.consumerRef !== undefined;
}

/** Creates the lock; false when it exists already. */
async function create(kc: KubeConfig, namespace: string, h: BareMetalHost, name: string): Promise<boolean> {
  try {
    await raw(kc, 'POST', collectionPath(Leases, namespace), lease(h, name));
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.code === 409) return false;
    throw err;
  }
}

/** Whether an existing lock may be taken by this host: its own, or stale and its holder let go. */
async function mayTake(kc: KubeConfig, cur: Lease, h: BareMetalHost): Promise<'own' | 'take' | 'held'> {
  const holder = cur.spec?.holderIdentity ?? '';
  if (holder === identity(h)) return 'own';
  const age = Date.now() - Date.parse(cur.spec?.acquireTime ?? '');
  if (!(age > staleAfterMs)) return 'held'; // a claim may be on its way
  return (await holderClaimed(kc, holder)) ? 'held' : 'take';
}

/** Takes the address lock for this host; false when another host of that address holds it. */
export async function lockAddress(kc: KubeConfig, namespace: string, h: BareMetalHost): Promise<boolean> {
  const name = lockName(h.spec.address);
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await create(kc, namespace, h, name)) return true;
    const cur = await get<Lease>(kc, objectPath(Leases, namespace, name));
    if (!cur) continue; // let go meanwhile: create again
    const verdict = await mayTake(kc, cur, h);
    if (verdict !== 'take') return verdict === 'own';
    try {
      await raw(kc, 'PUT', objectPath(Leases, namespace, name), lease(h, name, cur.metadata.resourceVersion));
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.code === 409) return false;
      throw err;
    }
  }
  return false;
}

/** Lets the lock go if this host holds it (its claim was cleared). */
export async function unlockAddress(kc: KubeConfig, namespace: string, h: BareMetalHost): Promise<void> {
  const path = objectPath(Leases, namespace, lockName(h.spec.address));
  const cur = await get<Lease>(kc, path);
  if (cur?.spec?.holderIdentity !== identity(h)) return;
  try {
    await raw(kc, 'DELETE', path, { preconditions: { resourceVersion: cur.metadata.resourceVersion } });
  } catch (err) {
    if (!(err instanceof ApiError && (err.code === 404 || err.code === 409))) throw err;
  }
}

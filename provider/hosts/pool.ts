// The pool reconciler's work: keep one BareMetalHost per address of the pool, stamp the pool's
// labels on them, retire hosts whose address left the pool (deleted only once released), report
// counts and problems (too large, bad address, overlap with another pool) on the pool.
import type { KubeConfig } from '@kubernetes/client-node';
import PQueue from 'p-queue';
import { API_VERSION } from '../api/common.ts';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import { BareMetalHostPools, BareMetalHosts, collectionPath, InvalidName, objectPath } from '../kube/kinds.ts';
import { readSecret, SecretForbidden } from '../kube/secrets.ts';
import { ApiError, raw } from '../kube/raw.ts';
import { PausedAnnotation, setCondition, type ConditionInput } from '../runtime/conditions.ts';
import { EventRecorder } from '../runtime/events.ts';
import { Writer } from '../runtime/writer.ts';
import { WatchFilterLabel } from '../runtime/flags.ts';
import { POOL_LABEL, isAvailable } from './claim.ts';
import { hostKeysCondition, warn } from './host-keys.ts';
import { expandPool, hostName, MAX_POOL_NAME } from './expand.ts';
import { AddressBook } from './address-book.ts';
import { heldElsewhere, overlapCondition, sharedWith } from './overlap.ts';

export interface PoolResult {
  created: number;
  deleted: number;
  retired: number;
  total: number;
  problem?: string;
  /** Another pool lists some of the addresses: looked at again later (that pool may let go). */
  overlapping?: boolean;
  /** The SSH Secret is missing or unusable: looked at again later (Secrets are not watched). */
  credentialsMissing?: boolean;
}

type Cond = ConditionInput & { message: string };

/** Counts and conditions on the pool, in one write, and none when nothing changed (calm at scale). */
async function writeStatus(
  kc: KubeConfig,
  pool: BareMetalHostPool,
  counts: Partial<Pick<NonNullable<BareMetalHostPool['status']>, 'total' | 'available' | 'claimed' | 'quarantined'>>,
  conds: Cond[],
): Promise<void> {
  const w = new Writer(kc, BareMetalHostPools, pool, { owned: conds.map((c) => c.type) });
  w.obj.status = { ...w.obj.status, ...counts, observedGeneration: pool.metadata.generation ?? 0 };
  for (const c of conds) setCondition(w.obj, c);
  await w.save();
}

/**
 * The pool's watch-filter label (its shard), which its hosts carry too: a manager sharded with
 * --watch-filter caches only its own hosts.
 */
function shardOf(pool: BareMetalHostPool): Record<string, string> {
  const v = pool.metadata.labels?.[WatchFilterLabel];
  return v ? { [WatchFilterLabel]: v } : {};
}

/** Moves a host of this pool into the pool's shard (the pool's label changed, or predates sharding). */
function shardHost(kc: KubeConfig, pool: BareMetalHostPool, name: string): Promise<unknown> {
  const v = pool.metadata.labels?.[WatchFilterLabel] ?? null;
  return raw(kc, 'PATCH', objectPath(BareMetalHosts, pool.metadata.namespace, name), {
    metadata: { labels: { [WatchFilterLabel]: v } },
  });
}

function hostObject(pool: BareMetalHostPool, address: string): BareMetalHost {
  return {
    apiVersion: API_VERSION,
    kind: 'BareMetalHost',
    metadata: {
      name: hostName(pool.metadata.name, address),
      namespace: pool.metadata.namespace,
      labels: { ...(pool.spec.hostLabels ?? {}), [POOL_LABEL]: pool.metadata.name, ...shardOf(pool) },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: 'BareMetalHostPool',
          name: pool.metadata.name,
          uid: pool.metadata.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: { address, poolRef: { name: pool.metadata.name } },
  };
}

/** Hosts by address, every namespace: from the cache, or one LIST when called without one. */
async function hostsByAddress(kc: KubeConfig, cache?: PoolCache): Promise<(address: string) => BareMetalHost[]> {
  if (cache) return cache.hostsAt;
  const all = (await raw<{ items: BareMetalHost[] }>(kc, 'GET', collectionPath(BareMetalHosts))).items;
  return (a) => all.filter((h) => h.spec.address === a);
}

/** The overlap with other pools: what this pool leaves to them, and what it keeps that they list too. */
async function overlaps(kc: KubeConfig, pool: BareMetalHostPool, desired: string[], cache?: PoolCache) {
  const all =
    cache?.pools ?? (await raw<{ items: BareMetalHostPool[] }>(kc, 'GET', collectionPath(BareMetalHostPools))).items;
  const book = cache?.book ?? new AddressBook();
  book.sync(all);
  const listing = (a: string) => book.listing(a, pool);
  const held = heldElsewhere(pool, desired, listing, await hostsByAddress(kc, cache));
  const shared = sharedWith(
    desired.filter((a) => !held.has(a)),
    listing,
  );
  return { held, shared };
}

/** Whether the pool's SSH Secret (and its jump host's) can be used: a pool without it is not Ready. */
async function credentials(kc: KubeConfig, pool: BareMetalHostPool): Promise<Cond> {
  const ns = pool.metadata.namespace;
  const refs = [pool.spec.ssh.secretRef.name, ...(pool.spec.jumpHost ? [pool.spec.jumpHost.secretRef.name] : [])];
  for (const name of refs) {
    const s = await readSecret(kc, ns, name).catch((err: unknown) => {
      if (err instanceof InvalidName) return null;
      if (err instanceof SecretForbidden) return err;
      throw err;
    });
    const what = `Secret ${ns}/${name}`;
    if (s instanceof SecretForbidden)
      return { type: 'CredentialsReady', status: 'False', reason: 'SecretForbidden', message: s.message };
    if (!s)
      return {
        type: 'CredentialsReady',
        status: 'False',
        reason: 'SecretNotFound',
        message: `${what} does not exist: create it with the SSH private key under "ssh-privatekey" (kubectl create secret generic ${name} -n ${ns} --from-file=ssh-privatekey=KEYFILE); no host of this pool can be used until then`,
      };
    if (!s.data['ssh-privatekey'])
      return {
        type: 'CredentialsReady',
        status: 'False',
        reason: 'SecretInvalid',
        message: `${what} has no "ssh-privatekey" key: put the SSH private key there`,
      };
  }
  return { type: 'CredentialsReady', status: 'True', reason: 'SecretFound', message: '' };
}

interface Plan {
  pool: BareMetalHostPool;
  desired: string[];
  existing: BareMetalHost[];
  q: PQueue;
  result: PoolResult;
}

const hostPath = (h: BareMetalHost) => objectPath(BareMetalHosts, h.metadata.namespace, h.metadata.name);

/** Creates hosts for new addresses; un-retires hosts whose address came back. */
function addMissing(kc: KubeConfig, { pool, desired, existing, q, result }: Plan): void {
  const byAddress = new Map(existing.map((h) => [h.spec.address, h]));
  for (const address of desired) {
    const h = byAddress.get(address);
    if (h?.spec.retire) void q.add(() => raw(kc, 'PATCH', hostPath(h), { spec: { retire: null } }));
    if (h && (h.metadata.labels?.[WatchFilterLabel] ?? null) !== (pool.metadata.labels?.[WatchFilterLabel] ?? null))
      void q.add(() => shardHost(kc, pool, h.metadata.name));
    if (h) continue;
    void q.add(async () => {
      const made = await raw(
        kc,
        'POST',
        collectionPath(BareMetalHosts, pool.metadata.namespace),
        hostObject(pool, address),
      ).then(
        () => true,
        async (err: unknown) => {
          if (!(err instanceof ApiError && err.code === 409)) throw err;
          // It exists: created meanwhile (a cache that lags), or outside this shard's cache (made
          // before the pool was sharded): it joins the pool's shard and is counted next time.
          await shardHost(kc, pool, hostName(pool.metadata.name, address));
          return false;
        },
      );
      if (made) result.created++;
    });
  }
}

/**
 * Deletes hosts whose address left the pool. A claimed one is retired (deleted once released); so is
 * a quarantined one: its quarantine must survive the pool being edited (an address removed and added
 * back would otherwise come back as a new host, Available, without the reset it was waiting for).
 */
function removeGone(kc: KubeConfig, { desired, existing, q, result }: Plan): void {
  const want = new Set(desired);
  for (const h of existing) {
    if (want.has(h.spec.address)) continue;
    if (h.spec.consumerRef || h.spec.quarantine) {
      if (!h.spec.retire) void q.add(() => raw(kc, 'PATCH', hostPath(h), { spec: { retire: true } }));
      result.retired++;
    } else {
      void q.add(() => raw(kc, 'DELETE', hostPath(h)));
      result.deleted++;
    }
  }
}

/** The pool's addresses, or undefined after reporting why they cannot be had. */
async function desiredAddresses(
  kc: KubeConfig,
  pool: BareMetalHostPool,
  recorder: EventRecorder,
): Promise<string[] | string> {
  try {
    if (pool.metadata.name.length > MAX_POOL_NAME)
      throw Object.assign(
        new Error(
          `the pool's name is ${pool.metadata.name.length} characters; its host names add up to 40 more and must stay within 253: give the pool a name of at most ${MAX_POOL_NAME} characters`,
        ),
        { name: 'PoolNameTooLong' },
      );
    return expandPool(pool.spec.addresses, pool.spec.exclude ?? []);
  } catch (err) {
    const name = (err as Error).name;
    const reason = name === 'PoolTooLarge' || name === 'PoolNameTooLong' ? name : 'InvalidAddresses';
    const message = (err as Error).message;
    await writeStatus(kc, pool, {}, [{ type: 'Ready', status: 'False', reason, message }]);
    recorder.event(pool, 'Warning', reason, message);
    return message;
  }
}

/** What a caller with informer caches already knows; each is fetched from the API server otherwise. */
export interface PoolCache {
  pool: BareMetalHostPool;
  /** The hosts of this pool. */
  hosts: BareMetalHost[];
  /** Every pool (overlap check). */
  pools: BareMetalHostPool[];
  /** The pools' expanded addresses, kept between reconciles; one is made per call without it. */
  book?: AddressBook;
  /** Hosts at an address, every namespace (one server is one host, cluster-wide). */
  hostsAt: (address: string) => BareMetalHost[];
}

/** The pool to reconcile: none when gone, or paused (cluster.x-k8s.io/paused, e.g. around a clusterctl move). */
async function activePool(kc: KubeConfig, ns: string, name: string, cache?: PoolCache) {
  const pool = cache?.pool ?? (await getPool(kc, ns, name));
  return pool?.metadata.annotations?.[PausedAnnotation] === undefined ? pool : undefined;
}

const getPool = (kc: KubeConfig, ns: string, name: string) =>
  raw<BareMetalHostPool>(kc, 'GET', objectPath(BareMetalHostPools, ns, name)).catch((err: unknown) => {
    if (err instanceof ApiError && err.code === 404) return undefined;
    throw err;
  });

export async function reconcilePool(
  kc: KubeConfig,
  namespace: string,
  name: string,
  o: { concurrency?: number; recorder?: EventRecorder; cache?: PoolCache } = {},
): Promise<PoolResult | undefined> {
  const recorder = o.recorder ?? new EventRecorder(kc);
  try {
    return await reconcile(kc, {
      namespace,
      name,
      concurrency: o.concurrency ?? 16,
      recorder,
      ...(o.cache ? { cache: o.cache } : {}),
    });
  } finally {
    if (!o.recorder) await recorder.flush();
  }
}

async function reconcile(
  kc: KubeConfig,
  {
    namespace,
    name,
    concurrency,
    recorder,
    cache,
  }: { namespace: string; name: string; concurrency: number; recorder: EventRecorder; cache?: PoolCache },
): Promise<PoolResult | undefined> {
  const pool = await activePool(kc, namespace, name, cache);
  if (!pool) return undefined;
  const listed = await desiredAddresses(kc, pool, recorder);
  if (typeof listed === 'string') return { created: 0, deleted: 0, retired: 0, total: 0, problem: listed };
  const overlap = await overlaps(kc, pool, listed, cache);
  const desired = listed.filter((a) => !overlap.held.has(a));
  const selector = encodeURIComponent(`${POOL_LABEL}=${name}`);
  const existing =
    cache?.hosts ??
    (
      await raw<{ items: BareMetalHost[] }>(
        kc,
        'GET',
        `${collectionPath(BareMetalHosts, namespace)}?labelSelector=${selector}`,
      )
    ).items;
  const plan: Plan = {
    pool,
    desired,
    existing,
    q: new PQueue({ concurrency }),
    result: { created: 0, deleted: 0, retired: 0, total: desired.length },
  };
  addMissing(kc, plan);
  removeGone(kc, plan);
  await plan.q.onIdle();
  const want = new Set(desired);
  const kept = existing.filter((h) => want.has(h.spec.address));
  const counts = {
    total: desired.length,
    available: kept.filter(isAvailable).length + plan.result.created,
    claimed: kept.filter((h) => !!h.spec.consumerRef).length,
    quarantined: kept.filter((h) => !!h.spec.quarantine).length,
  };
  const clash = overlapCondition(overlap);
  const creds = await credentials(kc, pool);
  const ready: Cond =
    creds.status === 'True'
      ? { type: 'Ready', status: 'True', reason: 'HostsMaterialized', message: `${desired.length} hosts` }
      : { ...creds, type: 'Ready' };
  const keys = hostKeysCondition(pool, kept);
  await writeStatus(kc, pool, counts, [ready, creds, clash, keys]);
  warn(recorder, pool, { clash, creds, keys });
  return {
    ...plan.result,
    ...(clash.status === 'True' ? { overlapping: true } : {}),
    ...(creds.status === 'False' ? { credentialsMissing: true } : {}),
  };
}

// Claiming a host for a machine, safely among any number of claimers (goroutines of one manager,
// or several replicas): the claim is `spec.consumerRef` written with a merge patch that carries the
// host's resourceVersion, so the API server accepts exactly one writer per version and answers
// 409 Conflict to the others, who move on to another host. A claimer that already holds a host
// gets that host back, which is how a claim survives a restart of the claiming process.
import type { KubeConfig } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type { BareMetalHost, ConsumerRef } from '../api/host.ts';
import { BareMetalHosts, collectionPath, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import { lockAddress, unlockAddress } from './address-lock.ts';

export const POOL_LABEL = 'infrastructure.cluster.x-k8s.io/pool';

export interface ClaimRequest {
  namespace: string;
  /** Only hosts of this pool. */
  pool?: string;
  /** Only hosts with these labels. */
  selector?: Record<string, string>;
  consumer: ConsumerRef;
}

export interface ClaimStats {
  requests: number;
  conflicts: number;
}

const hostPath = (h: BareMetalHost) => objectPath(BareMetalHosts, h.metadata.namespace, h.metadata.name);

function selectorOf(r: ClaimRequest): string {
  const all = { ...(r.selector ?? {}), ...(r.pool ? { [POOL_LABEL]: r.pool } : {}) };
  return Object.entries(all)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function isAvailable(h: BareMetalHost): boolean {
  return (
    !h.spec.consumerRef && !h.spec.retire && !h.spec.quarantine && (h.status?.phase ?? 'Available') === 'Available'
  );
}

/** Concurrent claimers spread over at most this many of the longest-idle hosts. */
const claimWindow = 16;

/**
 * Candidates in claim order: hosts idle longest first (never reset, then the oldest reset), so a
 * host just returned (perhaps by a machine that went unhealthy on it) is taken last; the first
 * hosts are rotated by a hash of the consumer, so concurrent claimers rarely collide.
 */
export function claimOrder(hosts: BareMetalHost[], consumerUid: string): BareMetalHost[] {
  const avail = hosts
    .filter(isAvailable)
    .sort(
      (a, b) =>
        (a.status?.lastResetTime ?? '').localeCompare(b.status?.lastResetTime ?? '') ||
        a.metadata.name.localeCompare(b.metadata.name),
    );
  if (avail.length === 0) return [];
  // The older half at most: the most recently returned hosts stay at the end.
  const size = Math.max(1, Math.min(claimWindow, Math.floor(avail.length / 2)));
  const window = avail.slice(0, size);
  const start = createHash('sha256').update(consumerUid).digest().readUInt32BE(0) % size;
  return [...window.slice(start), ...window.slice(0, start), ...avail.slice(size)];
}

async function list(kc: KubeConfig, r: ClaimRequest, stats: ClaimStats): Promise<BareMetalHost[]> {
  stats.requests++;
  const sel = selectorOf(r);
  const res = await raw<{ items: BareMetalHost[] }>(
    kc,
    'GET',
    `${collectionPath(BareMetalHosts, r.namespace)}${sel ? `?labelSelector=${encodeURIComponent(sel)}` : ''}`,
  );
  return res.items;
}

/** Writes consumerRef if the host is still at the version we saw; undefined on a lost race. */
async function tryClaim(
  kc: KubeConfig,
  h: BareMetalHost,
  consumer: ConsumerRef,
  stats: ClaimStats,
): Promise<BareMetalHost | undefined> {
  stats.requests++;
  try {
    return await raw<BareMetalHost>(kc, 'PATCH', hostPath(h), {
      metadata: { resourceVersion: h.metadata.resourceVersion },
      spec: { consumerRef: consumer },
    });
  } catch (err) {
    if (err instanceof ApiError && (err.code === 409 || err.code === 404)) {
      stats.conflicts++;
      return undefined;
    }
    throw err;
  }
}

const keyOf = (h: BareMetalHost) => `${h.metadata.namespace}/${h.metadata.name}`;

/**
 * Takes the next candidate off `order`: the first one no other claimer of this process is trying
 * right now, or (all are) the first one. Two claimers of one process never race for one host while
 * another is free: a lost race is a write the API server refuses, and a retry.
 */
function nextCandidate(order: BareMetalHost[], busy: ReadonlySet<string> | undefined): BareMetalHost | undefined {
  const i = busy ? order.findIndex((h) => !busy.has(keyOf(h))) : 0;
  return order.splice(Math.max(0, i), 1)[0];
}

type TryOptions = Pick<ClaimOptions, 'locks' | 'busy' | 'newest'> & { stats: ClaimStats };

/**
 * The address lock (if any) and the claim of one host, marked busy in this process meanwhile. A
 * host this process has seen claimed since the list was read is skipped without a request.
 */
async function tryHost(
  kc: KubeConfig,
  h: BareMetalHost,
  consumer: ConsumerRef,
  o: TryOptions,
): Promise<BareMetalHost | undefined> {
  if (o.newest && !isAvailable(o.newest(h))) return undefined;
  const key = keyOf(h);
  const busy = o.busy && !o.busy.has(key) ? o.busy : undefined;
  busy?.add(key);
  try {
    if (o.locks && !(await lockAddress(kc, o.locks, h))) {
      o.stats.conflicts++; // the server is held through another pool's host
      return undefined;
    }
    return await tryClaim(kc, h, consumer, o.stats);
  } finally {
    busy?.delete(key);
  }
}

export interface ClaimOptions {
  hosts?: BareMetalHost[];
  stats?: ClaimStats;
  attempts?: number;
  /** The namespace of the address locks (address-lock.ts); without it, no locks are taken. */
  locks?: string;
  /** Hosts (namespace/name) other claimers of this process are trying now; shared by them. */
  busy?: Set<string>;
  /** The newest copy of a host this process knows (its own writes before the cache has them). */
  newest?: (h: BareMetalHost) => BareMetalHost;
}

/**
 * Claims a matching Available host for the consumer, or returns the one it already holds.
 * Undefined when no matching host is Available. `hosts` may come from an informer cache; the API
 * server still decides every race.
 */
export async function claimHost(
  kc: KubeConfig,
  r: ClaimRequest,
  o: ClaimOptions = {},
): Promise<BareMetalHost | undefined> {
  const stats = o.stats ?? { requests: 0, conflicts: 0 };
  let hosts = o.hosts ?? (await list(kc, r, stats));
  for (let attempt = 0; attempt < (o.attempts ?? 5); attempt++) {
    const held = hosts.find((h) => h.spec.consumerRef?.uid === r.consumer.uid);
    if (held) return held;
    const order = claimOrder(hosts, r.consumer.uid);
    if (order.length === 0) return undefined;
    for (let h = nextCandidate(order, o.busy); h; h = nextCandidate(order, o.busy)) {
      const won = await tryHost(kc, h, r.consumer, { ...o, stats });
      if (won) return won;
    }
    hosts = await list(kc, r, stats);
  }
  return undefined;
}

export class ReleaseRefused extends Error {
  override name = 'ReleaseRefused';
}

/**
 * Returns a host to its pool, after it was reset. Refused when another consumer holds it. The
 * status (phase Available, reset time) is written by the caller that did the reset.
 */
export async function releaseHost(
  kc: KubeConfig,
  h: BareMetalHost,
  consumer: Pick<ConsumerRef, 'uid'>,
  locks?: string,
): Promise<BareMetalHost> {
  const holder = h.spec.consumerRef?.uid;
  if (holder && holder !== consumer.uid) {
    throw new ReleaseRefused(
      `host ${h.metadata.name} is held by ${h.spec.consumerRef?.kind} ${h.spec.consumerRef?.name}, not by the releasing machine`,
    );
  }
  const freed = await raw<BareMetalHost>(kc, 'PATCH', hostPath(h), {
    metadata: { resourceVersion: h.metadata.resourceVersion },
    spec: { consumerRef: null },
  });
  if (locks) await unlockAddress(kc, locks, freed);
  return freed;
}

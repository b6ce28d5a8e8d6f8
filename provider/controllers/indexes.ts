// The indexes kept beside the informer caches, so that what a reconcile or an event mapping looks up
// costs what it finds, not the size of the fleet: a machine's candidate hosts come from its pool's
// index entry, a host that becomes Available wakes only the machines waiting for its pool.
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalMachine } from '../api/machine.ts';
import { POOL_LABEL } from '../hosts/claim.ts';
import { getCondition } from '../runtime/conditions.ts';
import type { IndexFunc } from '../runtime/informer.ts';
import { MachineConditions as C } from './machine-plan.ts';

/** Hosts by the uid of the machine holding them. */
export const ConsumerIndex = 'consumer';
export const byConsumer = (h: BareMetalHost): string[] => (h.spec?.consumerRef?.uid ? [h.spec.consumerRef.uid] : []);

/** Hosts by "namespace/name" of the machine holding them (a moved machine's host names the old uid). */
export const ConsumerNameIndex = 'consumer-name';
export const byConsumerName = (h: BareMetalHost): string[] => {
  const c = h.spec?.consumerRef;
  return c?.name ? [`${c.namespace ?? h.metadata.namespace}/${c.name}`] : [];
};

/** Hosts by "namespace/pool" (the pool label every host of a pool carries). */
export const PoolIndex = 'pool';
const poolKey = (namespace: string, pool: string) => `${namespace}/${pool}`;
export const byPool = (h: BareMetalHost): string[] => {
  const p = h.metadata.labels?.[POOL_LABEL];
  return p ? [poolKey(h.metadata.namespace, p)] : [];
};

/** Hosts by address (one server is one host, cluster-wide). */
export const AddressIndex = 'address';

export const hostIndexers: Record<string, IndexFunc<BareMetalHost>> = {
  [ConsumerIndex]: byConsumer,
  [ConsumerNameIndex]: byConsumerName,
  [PoolIndex]: byPool,
  [AddressIndex]: (h) => [h.spec.address],
};

/** Machines waiting for a host, by "namespace/pool", or "namespace/*" when they name no pool. */
export const WaitingIndex = 'waiting-for-host';
const anyPool = '*';
const waitingReasons: ReadonlySet<string> = new Set(['NoHostAvailable', 'HostRefused']);

export const byWaiting = (m: BareMetalMachine): string[] => {
  const reason = getCondition(m, C.HostClaimed)?.reason;
  if (!reason || !waitingReasons.has(reason)) return [];
  return [poolKey(m.metadata.namespace, m.spec?.poolRef?.name ?? anyPool)];
};

/** Index keys of the machines a host may serve: those waiting for its pool, and those naming none. */
export const waitingFor = (h: BareMetalHost): string[] => [...byPool(h), poolKey(h.metadata.namespace, anyPool)];

/** Index keys of the hosts a machine may take: its pool's, or undefined (every host of the namespace). */
export const poolKeyOf = (m: BareMetalMachine): string | undefined =>
  m.spec.poolRef?.name ? poolKey(m.metadata.namespace, m.spec.poolRef.name) : undefined;

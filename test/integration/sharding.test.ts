// Sharding with --watch-filter: a pool's hosts carry its shard label, so a sharded manager caches
// only its own hosts; hosts made before the pool was sharded join its shard; each shard has its
// own leader Lease.
import test from 'ava';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import { BareMetalHostPools, BareMetalHosts, collectionPath, objectPath } from '../../provider/kube/kinds.ts';
import { raw } from '../../provider/kube/raw.ts';
import { defaultFlags, leaderElectionIdOf, WatchFilterLabel } from '../../provider/runtime/flags.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalHostPool } from '../../provider/api/pool.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { Team } from '../harness/machine-world.ts';

let cp: ControlPlane;
test.before(async () => {
  cp = await startControlPlane();
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
});
test.after.always(async () => {
  await cp?.stop();
});

const shardHosts = async (ns: string, shard: string) =>
  (
    await raw<{ items: BareMetalHost[] }>(
      cp.kc,
      'GET',
      `${collectionPath(BareMetalHosts, ns)}?labelSelector=${encodeURIComponent(`${WatchFilterLabel}=${shard}`)}`,
    )
  ).items.map((h) => h.metadata.name);

test('a pool shards its hosts; hosts made before sharding join the shard, even unseen by its cache', async (t) => {
  const team = new Team(cp, 'fleet');
  await team.namespace();
  await team.pool('a', ['192.0.2.1-192.0.2.3']);
  await team.pool('b', ['192.0.2.11-192.0.2.12'], 'b-ssh');
  await reconcilePool(cp.kc, 'fleet', 'a'); // before sharding: no shard label
  t.deepEqual(await shardHosts('fleet', 'shard-a'), []);
  for (const [pool, shard] of [
    ['a', 'shard-a'],
    ['b', 'shard-b'],
  ] as const)
    await raw(cp.kc, 'PATCH', objectPath(BareMetalHostPools, 'fleet', pool), {
      metadata: { labels: { [WatchFilterLabel]: shard } },
    });
  // Shard A's manager: its cache holds pool a and none of the old, unlabelled hosts.
  const a = await raw<BareMetalHostPool>(cp.kc, 'GET', objectPath(BareMetalHostPools, 'fleet', 'a'));
  await reconcilePool(cp.kc, 'fleet', 'a', { cache: { pool: a, hosts: [], pools: [a], hostsAt: () => [] } });
  await reconcilePool(cp.kc, 'fleet', 'b');
  t.deepEqual((await shardHosts('fleet', 'shard-a')).sort(), ['a-192-0-2-1', 'a-192-0-2-2', 'a-192-0-2-3']);
  t.deepEqual((await shardHosts('fleet', 'shard-b')).sort(), ['b-192-0-2-11', 'b-192-0-2-12']);
});

test('each shard has its own leader Lease; an explicit id wins', (t) => {
  t.is(leaderElectionIdOf(defaultFlags), 'capbm-controller-leader-election');
  t.is(leaderElectionIdOf({ ...defaultFlags, watchFilter: 'Shard_A' }), 'capbm-controller-leader-election-shard-a');
  t.is(leaderElectionIdOf({ ...defaultFlags, watchFilter: 'x', leaderElectionId: 'mine' }), 'mine');
});

import test from 'ava';
import type { BareMetalHost } from '../../../provider/api/host.ts';
import type { BareMetalMachine } from '../../../provider/api/machine.ts';
import { byPool, byWaiting, poolKeyOf, waitingFor } from '../../../provider/controllers/indexes.ts';
import { POOL_LABEL } from '../../../provider/hosts/claim.ts';

const machine = (name: string, reason?: string, pool?: string) =>
  ({
    metadata: { name, namespace: 'team' },
    spec: pool ? { poolRef: { name: pool } } : {},
    status: reason ? { conditions: [{ type: 'HostClaimed', status: 'False', reason }] } : {},
  }) as unknown as BareMetalMachine;

const host = (pool?: string) =>
  ({
    metadata: { name: 'h', namespace: 'team', labels: pool ? { [POOL_LABEL]: pool } : {} },
    spec: { address: '10.0.0.1', poolRef: { name: pool ?? 'x' } },
  }) as BareMetalHost;

test('machines waiting for a host are indexed by their pool; others are not indexed', (t) => {
  t.deepEqual(byWaiting(machine('a', 'NoHostAvailable', 'rack1')), ['team/rack1']);
  t.deepEqual(byWaiting(machine('b', 'HostRefused', 'rack1')), ['team/rack1']);
  t.deepEqual(byWaiting(machine('c', 'NoHostAvailable')), ['team/*']);
  t.deepEqual(byWaiting(machine('d', 'HostClaimed', 'rack1')), []);
  t.deepEqual(byWaiting(machine('e')), []);
});

test('a host of a pool wakes the machines waiting for that pool and those naming no pool', (t) => {
  t.deepEqual(waitingFor(host('rack1')), ['team/rack1', 'team/*']);
  t.deepEqual(waitingFor(host()), ['team/*']);
  t.deepEqual(byPool(host('rack1')), ['team/rack1']);
  t.is(poolKeyOf(machine('a', undefined, 'rack1')), 'team/rack1');
  t.is(poolKeyOf(machine('a')), undefined);
});

// The inventory against the real API server: pools materialize hosts, claims never collide.
import test from 'ava';
import { execa } from 'execa';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { POOL_LABEL, claimHost, releaseHost } from '../../provider/hosts/claim.ts';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import { raw } from '../../provider/kube/raw.ts';
import { installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { repoRoot } from '../harness/paths.ts';

let cp: ControlPlane;
const ns = 'default';
const base = `/apis/${API_VERSION}/namespaces/${ns}`;

test.before(async () => {
  cp = await startControlPlane();
  await installProviderCrds(cp.kc);
});
test.after.always(async () => {
  await cp?.stop();
});

async function createPool(name: string, addresses: string[], extra: Record<string, unknown> = {}) {
  await raw(cp.kc, 'POST', `${base}/baremetalhostpools`, {
    apiVersion: API_VERSION,
    kind: 'BareMetalHostPool',
    metadata: { name, namespace: ns },
    spec: { addresses, ssh: { secretRef: { name: 'ssh' } }, hostKeyPolicy: { type: 'TrustOnFirstUse' }, ...extra },
  });
}

const hostsOf = async (pool: string) =>
  (
    await raw<{ items: BareMetalHost[] }>(
      cp.kc,
      'GET',
      `${base}/baremetalhosts?labelSelector=${encodeURIComponent(`${POOL_LABEL}=${pool}`)}`,
    )
  ).items;
const poolOf = (name: string) =>
  raw<{
    status: {
      total: number;
      available: number;
      claimed: number;
      conditions: Array<{ type: string; status: string; reason: string; message: string }>;
    };
  }>(cp.kc, 'GET', `${base}/baremetalhostpools/${name}`);
const consumer = (name: string) => ({
  apiVersion: API_VERSION,
  kind: 'BareMetalMachine',
  namespace: ns,
  name,
  uid: `uid-${name}`,
});

test.serial('a pool materializes one host per address, with its labels, and reports counts', async (t) => {
  await createPool('rack1', ['10.1.0.1-10.1.0.4', '10.1.0.8/30'], { hostLabels: { rack: 'r1' } });
  const r = await reconcilePool(cp.kc, ns, 'rack1');
  t.like(r, { created: 6, total: 6 });
  const hosts = await hostsOf('rack1');
  t.deepEqual(hosts.map((h) => h.spec.address).sort(), [
    '10.1.0.1',
    '10.1.0.10',
    '10.1.0.2',
    '10.1.0.3',
    '10.1.0.4',
    '10.1.0.9',
  ]);
  t.true(hosts.every((h) => h.metadata.labels?.rack === 'r1'));
  t.like((await poolOf('rack1')).status, { total: 6, available: 6, claimed: 0 });
  t.like(await reconcilePool(cp.kc, ns, 'rack1'), { created: 0 }, 'idempotent');
});

test.serial('a pool too large is refused with a condition and an event, and nothing is created', async (t) => {
  await createPool('huge', ['10.0.0.0/8']);
  const r = await reconcilePool(cp.kc, ns, 'huge');
  t.regex(r!.problem!, /more than the 65536/);
  t.is((await hostsOf('huge')).length, 0);
  t.like(
    (await poolOf('huge')).status.conditions.find((c) => c.type === 'Ready'),
    { status: 'False', reason: 'PoolTooLarge' },
  );
  const events = await raw<{ items: Array<{ reason: string; involvedObject: { name: string } }> }>(
    cp.kc,
    'GET',
    `/api/v1/namespaces/${ns}/events`,
  );
  t.true(events.items.some((e) => e.reason === 'PoolTooLarge' && e.involvedObject.name === 'huge'));
});

test.serial('overlapping pools are reported; an address removed while claimed is retired, not deleted', async (t) => {
  await createPool('rack1b', ['10.1.0.4-10.1.0.5']);
  await reconcilePool(cp.kc, ns, 'rack1b');
  t.like(
    (await poolOf('rack1b')).status.conditions.find((c) => c.type === 'AddressesOverlap'),
    { status: 'True' },
  );
  const held = await claimHost(cp.kc, { namespace: ns, pool: 'rack1', consumer: consumer('m-retire') });
  t.truthy(held);
  await raw(cp.kc, 'PATCH', `${base}/baremetalhostpools/rack1`, { spec: { addresses: ['10.1.0.99'] } });
  const r = await reconcilePool(cp.kc, ns, 'rack1');
  t.like(r, { retired: 1, deleted: 5, created: 1 });
  const left = await hostsOf('rack1');
  t.true(left.find((h) => h.metadata.name === held!.metadata.name)!.spec.retire);
});

test.serial(
  '50 concurrent claimers on 20 hosts, 8 rounds: exactly 20 claims a round, never two on one host',
  async (t) => {
    await createPool('race', ['10.2.0.1-10.2.0.20']);
    await reconcilePool(cp.kc, ns, 'race');
    // 8 rounds of 50 claims racing for 20 hosts: 400 claims, 240 of them lost races. 20 rounds took
    // two minutes of the suite and never found more.
    for (let round = 0; round < 8; round++) {
      const got = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          claimHost(cp.kc, { namespace: ns, pool: 'race', consumer: consumer(`r${round}-m${i}`) }),
        ),
      );
      const won = got.filter((h): h is BareMetalHost => !!h);
      t.is(won.length, 20, `round ${round}`);
      t.is(new Set(won.map((h) => h.metadata.name)).size, 20, `round ${round}: a host was claimed twice`);
      const hosts = await hostsOf('race');
      t.is(hosts.filter((h) => h.spec.consumerRef).length, 20);
      await Promise.all(hosts.map((h) => releaseHost(cp.kc, h, { uid: h.spec.consumerRef!.uid })));
    }
  },
);

test.serial('claimers of one process that share what they are trying never race each other for a host', async (t) => {
  await createPool('shared', ['10.5.0.1-10.5.0.20']);
  await reconcilePool(cp.kc, ns, 'shared');
  // One manager: its claimers start from the same cache and tell each other the host they try.
  const hosts = await hostsOf('shared');
  const busy = new Set<string>();
  const stats = { requests: 0, conflicts: 0 };
  const got = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      claimHost(cp.kc, { namespace: ns, pool: 'shared', consumer: consumer(`s-m${i}`) }, { hosts, busy, stats }),
    ),
  );
  t.is(new Set(got.map((h) => h?.metadata.name)).size, 20, 'every claimer got a host of its own');
  t.is(stats.conflicts, 0, 'no claim was refused: no write was wasted');
  t.is(stats.requests, 20);
  t.is(busy.size, 0);
});

test.serial('a claim survives a restart of the claiming process', async (t) => {
  await createPool('restart', ['10.3.0.1-10.3.0.9']);
  await reconcilePool(cp.kc, ns, 'restart');
  const script = `
    import { KubeConfig } from '@kubernetes/client-node';
    import { claimHost } from './provider/hosts/claim.ts';
    const kc = new KubeConfig(); kc.loadFromFile(process.argv[1]);
    const h = await claimHost(kc, { namespace: 'default', pool: 'restart', consumer: { kind: 'BareMetalMachine', namespace: 'default', name: 'survivor', uid: 'uid-survivor' } });
    process.stdout.write(h.metadata.name);`;
  const run = () => execa('node', ['--input-type=module', '-e', script, cp.kubeconfigPath], { cwd: repoRoot });
  const first = (await run()).stdout;
  const second = (await run()).stdout;
  t.truthy(first);
  t.is(second, first);
  t.is((await hostsOf('restart')).filter((h) => h.spec.consumerRef).length, 1);
});

// Two teams, two namespaces, one provider: every way team A could reach team B's hosts, Secrets or
// health is attempted from A and refused, and the refusal shows on A's objects. Against the real
// API server, with the stand-in for SSH (fake-ssh.ts); host-side findings are in test/e2e.
import test from 'ava';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import { claimHost } from '../../provider/hosts/claim.ts';
import { API_VERSION } from '../../provider/api/common.ts';
import { BareMetalHostPools, BareMetalHosts, collectionPath, objectPath } from '../../provider/kube/kinds.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { clusterLabel, cond, Team, until, world, workerData } from '../harness/machine-world.ts';

let cp: ControlPlane;
let a: Team;
let b: Team;
const locks = 'default';

test.before(async () => {
  cp = await startControlPlane();
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
  a = new Team(cp, 'team-a');
  b = new Team(cp, 'team-b');
  await a.namespace();
  await b.namespace();
  await b.pool('rack', ['198.51.100.1-198.51.100.4']);
  await reconcilePool(cp.kc, 'team-b', 'rack');
  // Team B's secrets: an SSH key, and a cluster's bootstrap data (CA keys, a join token).
  await b.secret('x', { value: 'secret of team b' }, clusterLabel('b-cluster'));
});
test.after.always(async () => {
  await cp?.stop();
});

const refused = async (p: Promise<unknown>) => {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err instanceof ApiError ? err : undefined;
  }
};

test.serial('a Secret reference cannot leave the namespace: names are refused by the API and in code', async (t) => {
  // The pool's SSH Secret as a path into team B's namespace: the CRD refuses it.
  const err = await refused(
    raw(cp.kc, 'POST', collectionPath(BareMetalHostPools, 'team-a'), {
      apiVersion: API_VERSION,
      kind: 'BareMetalHostPool',
      metadata: { name: 'sneaky', namespace: 'team-a' },
      spec: {
        addresses: ['203.0.113.1'],
        ssh: { secretRef: { name: '../../team-b/secrets/x' }, user: 'root' },
        hostKeyPolicy: { type: 'TrustOnFirstUse' },
      },
    }),
  );
  t.is(err?.code, 422);
  t.regex(err?.message ?? '', /secretRef\.name/);
  // A bad SSH user name is refused too (it goes into sudoers and paths on the host).
  const user = await refused(
    raw(cp.kc, 'POST', collectionPath(BareMetalHostPools, 'team-a'), {
      apiVersion: API_VERSION,
      kind: 'BareMetalHostPool',
      metadata: { name: 'sneaky', namespace: 'team-a' },
      spec: {
        addresses: ['203.0.113.1'],
        ssh: { secretRef: { name: 'k' }, user: 'root; rm -rf /' },
        hostKeyPolicy: { type: 'TrustOnFirstUse' },
      },
    }),
  );
  t.is(user?.code, 422);

  // A Machine of team A naming team B's bootstrap Secret by a path: refused, said on A's machine.
  await a.pool('rack', ['203.0.113.1-203.0.113.4']);
  await reconcilePool(cp.kc, 'team-a', 'rack');
  const w = await world(cp);
  t.teardown(() => w.stop());
  await a.machine({ name: 'path', dataSecretName: '../../team-b/secrets/x' });
  const m = await until(t, w, a, 'path', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'BootstrapDataInvalid');
  t.regex(cond(m, 'BootstrapSucceeded')?.message ?? '', /not a valid object name/);
  // ... or another cluster's bootstrap data in its own namespace: refused by the cluster label.
  await a.secret('other-cluster-data', { value: workerData, format: 'cloud-config' }, clusterLabel('someone-else'));
  await a.machine({ name: 'foreign', dataSecretName: 'other-cluster-data' });
  const f = await until(t, w, a, 'foreign', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'BootstrapDataInvalid');
  t.regex(cond(f, 'BootstrapSucceeded')?.message ?? '', /belongs to cluster "someone-else"/);
  // Nothing ran anywhere.
  t.true([...w.ssh.hosts.values()].every((h) => h.started === 0));
});

test.serial(
  "one server, one host: team A listing team B's address gets no host for it, and is told who holds it",
  async (t) => {
    await a.pool('overlap', ['198.51.100.3-198.51.100.6']);
    await reconcilePool(cp.kc, 'team-a', 'overlap');
    const hosts = (await a.hosts()).filter((h) => h.spec.poolRef.name === 'overlap').map((h) => h.spec.address);
    t.deepEqual(hosts.sort(), ['198.51.100.5', '198.51.100.6']);
    const pool = await raw<{
      status: { conditions: Array<{ type: string; status: string; reason: string; message: string }> };
    }>(cp.kc, 'GET', objectPath(BareMetalHostPools, 'team-a', 'overlap'));
    const c = pool.status.conditions.find((x) => x.type === 'AddressesOverlap');
    t.like(c, { status: 'True', reason: 'AddressesHeldElsewhere' });
    t.regex(c?.message ?? '', /198\.51\.100\.3, 198\.51\.100\.4 are held by pool team-b\/rack/);
    // Team B's pool says the other side of it.
    await reconcilePool(cp.kc, 'team-b', 'rack');
    const bp = await raw<{ status: { conditions: Array<{ type: string; reason: string }> } }>(
      cp.kc,
      'GET',
      objectPath(BareMetalHostPools, 'team-b', 'rack'),
    );
    t.is(bp.status.conditions.find((x) => x.type === 'AddressesOverlap')?.reason, 'AddressesAlsoListed');
  },
);

test.serial('even with two hosts for one server (pools edited in the same instant), it is claimed once', async (t) => {
  // A host for B's address made in A's namespace behind the pools' back, as a race would.
  const bHost = (await b.hosts()).find((h) => h.spec.address === '198.51.100.1')!;
  await raw(cp.kc, 'POST', collectionPath(BareMetalHosts, 'team-a'), {
    apiVersion: API_VERSION,
    kind: 'BareMetalHost',
    metadata: { name: 'twin', namespace: 'team-a', labels: { 'infrastructure.cluster.x-k8s.io/pool': 'twin' } },
    spec: { address: bHost.spec.address, poolRef: { name: 'twin' } },
  });
  const consumer = (ns: string, name: string) => ({
    apiVersion: API_VERSION,
    kind: 'BareMetalMachine',
    namespace: ns,
    name,
    uid: `${ns}-${name}`,
  });
  const [gotB, gotA] = await Promise.all([
    claimHost(cp.kc, { namespace: 'team-b', consumer: consumer('team-b', 'mb') }, { locks, hosts: [bHost] }),
    claimHost(cp.kc, { namespace: 'team-a', pool: 'twin', consumer: consumer('team-a', 'ma') }, { locks }),
  ]);
  t.is([gotA, gotB].filter(Boolean).length, 1, 'exactly one of the two hosts of that server is claimed');
});

test.serial('a pool whose SSH Secret does not exist is not Ready, and says what to do', async (t) => {
  await raw(cp.kc, 'POST', collectionPath(BareMetalHostPools, 'team-a'), {
    apiVersion: API_VERSION,
    kind: 'BareMetalHostPool',
    metadata: { name: 'nokey', namespace: 'team-a' },
    spec: {
      addresses: ['203.0.113.20'],
      ssh: { secretRef: { name: 'missing' } },
      hostKeyPolicy: { type: 'TrustOnFirstUse' },
    },
  });
  const r = await reconcilePool(cp.kc, 'team-a', 'nokey');
  t.true(r?.credentialsMissing);
  const pool = await raw<{
    status: { conditions: Array<{ type: string; status: string; reason: string; message: string }> };
  }>(cp.kc, 'GET', objectPath(BareMetalHostPools, 'team-a', 'nokey'));
  t.like(
    pool.status.conditions.find((x) => x.type === 'Ready'),
    { status: 'False', reason: 'SecretNotFound' },
  );
  t.regex(
    pool.status.conditions.find((x) => x.type === 'Ready')?.message ?? '',
    /kubectl create secret generic missing -n team-a/,
  );
});

test.serial('a jump host trusted on first use is recorded on the pool, and pinned from then on', async (t) => {
  await a.pool('behind', ['203.0.113.30'], 'behind-ssh', {
    jumpHost: {
      address: '203.0.113.254',
      secretRef: { name: 'behind-ssh' },
      hostKeyPolicy: { type: 'TrustOnFirstUse' },
    },
  });
  await reconcilePool(cp.kc, 'team-a', 'behind');
  const w = await world(cp);
  t.teardown(() => w.stop());
  await a.machine({ name: 'jumped', pool: 'behind' });
  await until(t, w, a, 'jumped', (x) => cond(x, 'HostReady')?.status === 'True');
  const pool = await raw<{ status: { jumpHostKeyFingerprint?: string } }>(
    cp.kc,
    'GET',
    objectPath(BareMetalHostPools, 'team-a', 'behind'),
  );
  t.is(pool.status.jumpHostKeyFingerprint, 'SHA256:fake-jump-host-key');
  t.true((await a.events('behind')).some((e) => e.reason === 'JumpHostKeyRecorded'));
});

test.serial(
  'a quarantine survives the pool being edited: removing the address and adding it back launders nothing',
  async (t) => {
    await a.pool('edit', ['203.0.113.40-203.0.113.41']);
    await reconcilePool(cp.kc, 'team-a', 'edit');
    const h = (await a.hosts()).find((x) => x.spec.address === '203.0.113.41')!;
    const quarantine = {
      reason: 'HostDirty',
      message: 'left dirty by its last machine',
      since: new Date().toISOString(),
    };
    await raw(cp.kc, 'PATCH', objectPath(BareMetalHosts, 'team-a', h.metadata.name), { spec: { quarantine } });
    const edit = (addresses: string[]) =>
      raw(cp.kc, 'PATCH', objectPath(BareMetalHostPools, 'team-a', 'edit'), { spec: { addresses } });
    await edit(['203.0.113.40']);
    await reconcilePool(cp.kc, 'team-a', 'edit');
    const kept = await a.host(h.metadata.name);
    t.true(kept.spec.retire, 'kept, retired, not deleted');
    t.is(kept.spec.quarantine?.reason, 'HostDirty');
    await edit(['203.0.113.40-203.0.113.41']);
    await reconcilePool(cp.kc, 'team-a', 'edit');
    const back = await a.host(h.metadata.name);
    t.is(back.metadata.uid, h.metadata.uid, 'the same host, with its history');
    t.is(back.spec.quarantine?.reason, 'HostDirty');
    t.falsy(back.spec.retire);
    t.is(
      await claimHost(
        cp.kc,
        {
          namespace: 'team-a',
          pool: 'edit',
          consumer: { apiVersion: API_VERSION, kind: 'BareMetalMachine', namespace: 'team-a', name: 'x', uid: 'x1' },
        },
        { hosts: [back] },
      ),
      undefined,
    );
  },
);

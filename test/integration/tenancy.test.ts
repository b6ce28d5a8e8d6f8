// Two teams, two namespaces, one provider: every way team A could reach team B's hosts, Secrets or
// health is attempted from A and refused, and the refusal shows on A's objects. Against the real
// API server, with the stand-in for SSH (fake-ssh.ts); host-side findings are in test/e2e.
import test from 'ava';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import { claimHost } from '../../provider/hosts/claim.ts';
import { API_VERSION } from '../../provider/api/common.ts';
import {
  BareMetalHostPools,
  BareMetalHosts,
  BareMetalMachines,
  collectionPath,
  objectPath,
} from '../../provider/kube/kinds.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { clusterLabel, cond, Team, until, world, workerData } from '../harness/machine-world.ts';
import { AgentService } from '../../provider/health/service.ts';
import { createInformer } from '../../provider/runtime/informer.ts';
import { Channel } from '../../provider/runtime/source.ts';
import { createLogger } from '../../common/log.ts';
import { waitFor } from '../harness/process.ts';
import { FakeSsh } from '../harness/fake-ssh.ts';
import { reconcileHost } from '../../provider/controllers/host.ts';
import { EventRecorder } from '../../provider/runtime/events.ts';
import type { Informer } from '../../provider/runtime/informer.ts';
import { onboardNamespace, providerIdentity } from '../harness/env.ts';
import { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHostPool } from '../../provider/api/pool.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';

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

/** Team A creates pool "sneaky" with the given ssh settings. */
const postPool = (ssh: { secretRef: { name: string }; user: string }) =>
  raw(cp.kc, 'POST', collectionPath(BareMetalHostPools, 'team-a'), {
    apiVersion: API_VERSION,
    kind: 'BareMetalHostPool',
    metadata: { name: 'sneaky', namespace: 'team-a' },
    spec: { addresses: ['203.0.113.1'], ssh, hostKeyPolicy: { type: 'TrustOnFirstUse' } },
  });

test.serial('a Secret reference cannot leave the namespace: names are refused by the API and in code', async (t) => {
  // The pool's SSH Secret as a path into team B's namespace: the CRD refuses it.
  const err = await refused(postPool({ secretRef: { name: '../../team-b/secrets/x' }, user: 'root' }));
  t.is(err?.code, 422);
  t.regex(err?.message ?? '', /secretRef\.name/);
  // A bad SSH user name is refused too (it goes into sudoers and paths on the host).
  const user = await refused(postPool({ secretRef: { name: 'k' }, user: 'root; rm -rf /' }));
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

test.serial('an agent certificate speaks for one host, one claim, and only while it is the newest', async (t) => {
  const hosts = createInformer<BareMetalHost>(cp.kc, BareMetalHosts, { log: createLogger({ level: 'error' }) });
  const machines = createInformer<BareMetalMachine>(cp.kc, BareMetalMachines, {
    log: createLogger({ level: 'error' }),
  });
  hosts.start();
  machines.start();
  t.teardown(() => Promise.all([hosts.stop(), machines.stop()]));
  await Promise.all([hosts.waitForSync(), machines.waitForSync()]);
  const service = new AgentService(
    { kc: cp.kc, log: createLogger({ level: 'error' }), hosts, machines, wake: new Channel() },
    {
      bindHost: '127.0.0.1',
      bindPort: 0,
      reportUrl: 'https://127.0.0.1:1',
      caSecret: { namespace: 'default', name: 'unused' },
      intervalSeconds: 10,
      unknownAfterMs: 60_000,
      disabledChecks: [],
    },
  );
  // Team B's host, provisioned for its machine b-1 (as the reconciler leaves it).
  const name = 'rack-198-51-100-2';
  const path = objectPath(BareMetalHosts, 'team-b', name);
  const hold = async (machineUid: string, serial: string) => {
    await raw(cp.kc, 'PATCH', path, {
      spec: { consumerRef: { kind: 'BareMetalMachine', namespace: 'team-b', name: 'b-1', uid: machineUid } },
    });
    await raw(cp.kc, 'PATCH', `${path}/status`, {
      status: { phase: 'Provisioned', agentCertificate: { serial, notBefore: new Date().toISOString() } },
    });
    await waitFor(
      'the host in the cache',
      () => Promise.resolve(hosts.get('team-b', name)?.status?.agentCertificate?.serial === serial || undefined),
      10_000,
    );
  };
  await hold('uid-b-1', 'aa01');
  const uid = (await b.host(name)).metadata.uid!;
  const presented = { host: `team-b/${name}`, hostUid: uid, machineUid: 'uid-b-1', serial: 'aa01', notBefore: 0 };
  t.is(service.authorize(presented, { namespace: 'team-b', name: 'b-1' }), undefined, 'its own agent reports');

  // Team A's host of the same name (names are per namespace): its certificate names team-a and
  // its own UID, and never speaks for team B's host.
  await raw(cp.kc, 'POST', collectionPath(BareMetalHosts, 'team-a'), {
    apiVersion: API_VERSION,
    kind: 'BareMetalHost',
    metadata: { name, namespace: 'team-a' },
    spec: { address: '203.0.113.9', poolRef: { name: 'rack' } },
  });
  const aUid = (await a.host(name)).metadata.uid!;
  t.is(service.authorize({ ...presented, hostUid: aUid })?.reason, 'UnknownHost');
  t.is(service.authorize({ ...presented, host: `team-a/${name}`, hostUid: aUid })?.reason, 'UnknownHost');
  // A report naming another machine than the host's holder: refused.
  t.is(service.authorize(presented, { namespace: 'team-a', name: 'b-1' })?.reason, 'Forbidden');
  // A renewal or reinstall made a newer certificate: the older one no longer counts.
  const recorded = Date.parse((await b.host(name)).status!.agentCertificate!.notBefore);
  t.is(service.authorize({ ...presented, serial: 'aa00', notBefore: recorded - 1000 })?.reason, 'Superseded');
  // One newer than the recorded one (renewed before a restart, or by another replica) is the newest now.
  t.is(service.authorize({ ...presented, serial: 'aa02', notBefore: recorded + 1000 }), undefined);
  t.is(service.unrecorded(hosts.get('team-b', name)!)?.serial, 'aa02', 'and is recorded on the host next');
  t.is(service.authorize(presented)?.reason, 'Superseded', 'the one before it no longer counts');
  // The host was reset and claimed again (a new machine UID): the former tenant's agent is out.
  service.forget(`team-b/${name}`); // as the reset does
  await hold('uid-b-2', 'bb01');
  t.is(service.authorize({ ...presented, serial: 'bb01' })?.reason, 'Revoked');
  t.is(service.authorize({ ...presented, machineUid: 'uid-b-2', serial: 'bb01' }), undefined);
  // Released (no holder): nobody's certificate counts.
  await raw(cp.kc, 'PATCH', path, { spec: { consumerRef: null } });
  await waitFor(
    'the release in the cache',
    () => Promise.resolve(!hosts.get('team-b', name)?.spec.consumerRef || undefined),
    10_000,
  );
  t.is(service.authorize({ ...presented, machineUid: 'uid-b-2', serial: 'bb01' })?.reason, 'UnknownHost');
});

test.serial(
  'the provider reads no Secret of a namespace that did not grant it, and says how to grant it',
  async (t) => {
    // The shipped RBAC (manifests/rbac/role.yaml) as the provider's ServiceAccount holds it.
    const kc = new KubeConfig();
    kc.loadFromFile(await providerIdentity(cp));
    const c = new Team(cp, 'team-c');
    await c.namespace();
    await c.pool('rack', ['192.0.2.1']);
    await reconcilePool(kc, 'team-c', 'rack');
    const pool = await raw<BareMetalHostPool>(cp.kc, 'GET', objectPath(BareMetalHostPools, 'team-c', 'rack'));
    const creds = cond(pool, 'CredentialsReady');
    t.is(creds?.reason, 'SecretForbidden');
    t.regex(creds?.message ?? '', /kubectl create rolebinding capbm-manager-secrets -n team-c/);
    // Onboarded (the RoleBinding): now it reads them.
    await onboardNamespace(cp.kc, 'team-c');
    await reconcilePool(kc, 'team-c', 'rack');
    const after = await raw<BareMetalHostPool>(cp.kc, 'GET', objectPath(BareMetalHostPools, 'team-c', 'rack'));
    t.not(cond(after, 'CredentialsReady')?.reason, 'SecretForbidden');
  },
);

test.serial('a reset decided on a stale copy of a host does not run: a claim made since wins', async (t) => {
  const name = 'rack-198-51-100-3';
  const path = objectPath(BareMetalHosts, 'team-b', name);
  // An interrupted reset: Deprovisioning, nobody holds it; the host controller would reset it.
  await raw(cp.kc, 'PATCH', `${path}/status`, { status: { phase: 'Deprovisioning' } });
  const stale = await b.host(name);
  // Meanwhile (the cache has not seen it yet) the host was released and claimed by a machine.
  await raw(cp.kc, 'PATCH', path, {
    spec: { consumerRef: { kind: 'BareMetalMachine', namespace: 'team-b', name: 'b-9', uid: 'uid-b-9' } },
  });
  const ssh = new FakeSsh();
  const reconcile = reconcileHost({
    kc: cp.kc,
    recorder: new EventRecorder(cp.kc, { minIntervalMs: 0 }),
    ssh,
    hosts: { get: () => stale } as unknown as Informer<BareMetalHost>,
    pools: { get: () => undefined } as unknown as Informer<BareMetalHostPool>,
  });
  const log = createLogger({ level: 'error' });
  await reconcile({ key: `team-b/${name}`, namespace: 'team-b', name }, { log, signal: new AbortController().signal });
  t.is(ssh.connections, 0, 'nothing ran on the host');
  const now = await b.host(name);
  t.is(now.spec.consumerRef?.name, 'b-9');
  t.is(now.status?.phase, 'Deprovisioning', 'the decision was not written either');
});

// Leader election with two contenders, and a whole manager (informers, controller, probes,
// metrics) against the real API server.
import test from 'ava';
import { raw } from '../../provider/kube/raw.ts';
import { controller, mapOwner } from '../../provider/runtime/controller.ts';
import { createInformer } from '../../provider/runtime/informer.ts';
import { ConfigMaps, Secrets } from '../../provider/kube/kinds.ts';
import { createLeaderElector } from '../../provider/runtime/leaderelection.ts';
import { startManager } from '../../provider/runtime/manager.ts';
import { startCutProxy } from '../harness/proxy.ts';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.ts';

let cp: ControlPlane;
test.before(async () => {
  cp = await startControlPlane({ capi: false });
});
test.after.always(async () => {
  await cp?.stop();
});

async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const fast = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 };
const holder = async (name: string, namespace = 'default') =>
  (
    await raw<{ spec: { holderIdentity?: string } }>(
      cp.kc,
      'GET',
      `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}`,
    )
  ).spec.holderIdentity;

test('two contenders: one leads; after it releases, the other takes over', async (t) => {
  const events: string[] = [];
  const mk = (id: string) =>
    createLeaderElector(cp.kc, {
      namespace: 'default',
      name: 'release-test',
      identity: id,
      ...fast,
      onStartedLeading: () => events.push(`${id} leads`),
      onStoppedLeading: () => events.push(`${id} stopped`),
    });
  const a = mk('a');
  a.start();
  await eventually('a leads', () => a.isLeader());
  const b = mk('b');
  b.start();
  t.teardown(() => b.stop());
  await new Promise((r) => setTimeout(r, 1000));
  t.false(b.isLeader(), 'b stands by while a renews');
  t.is(await holder('release-test'), 'a');
  await a.stop();
  await eventually('b leads', () => b.isLeader(), 10_000);
  t.is(await holder('release-test'), 'b');
  t.deepEqual(events, ['a leads', 'a stopped', 'b leads']);
});

test('a leader cut off from the API server stops leading; the standby takes over after the lease expires', async (t) => {
  // A contender "dies" mid-term: its connections are cut and refused from then on.
  const proxy = await startCutProxy(new URL(cp.server));
  const kcA = proxy.kubeconfig(cp.kubeconfigPath);
  t.teardown(() => proxy.close());
  let aLost = false;
  const a = createLeaderElector(kcA, {
    namespace: 'default',
    name: 'die-test',
    identity: 'a',
    ...fast,
    onStartedLeading: () => {},
    onStoppedLeading: () => (aLost = true),
  });
  a.start();
  await eventually('a leads', () => a.isLeader());
  const b = createLeaderElector(cp.kc, {
    namespace: 'default',
    name: 'die-test',
    identity: 'b',
    ...fast,
    onStartedLeading: () => {},
  });
  b.start();
  t.teardown(() => b.stop());
  await new Promise((r) => setTimeout(r, 800));
  t.false(b.isLeader());
  proxy.refuse(true);
  proxy.cut();
  await eventually('a notices it lost the lease', () => aLost, 10_000);
  t.false(a.isLeader());
  await eventually('b leads', () => b.isLeader(), 15_000);
  t.is(await holder('die-test'), 'b');
  await a.stop();
});

test('manager: caches sync, the controller reconciles primary and mapped secondary events, probes and metrics answer', async (t) => {
  const ns = 'mgr';
  await raw(cp.kc, 'POST', '/api/v1/namespaces', { metadata: { name: ns } });
  const cms = createInformer(cp.kc, ConfigMaps, { namespace: ns });
  const secrets = createInformer(cp.kc, Secrets, { namespace: ns });
  const seen: string[] = [];
  let failOnce = true;
  const c = controller({
    name: 'configmap',
    workers: 2,
    watches: [{ informer: cms }, { informer: secrets, mapToKeys: mapOwner('ConfigMap') }],
    reconcile: ({ key, name }) => {
      seen.push(key);
      if (name === 'flaky' && failOnce) {
        failOnce = false;
        throw new Error('transient');
      }
      return Promise.resolve();
    },
  });
  const m = await startManager(
    {
      kc: cp.kc,
      signals: [],
      metricsBindAddress: '127.0.0.1:0',
      healthProbeBindAddress: '127.0.0.1:0',
      leaderElect: true,
      leaderElectionNamespace: ns,
      leaderElectionId: 'mgr-test',
      ...fast,
    },
    [c],
  );
  t.teardown(() => m.stop());
  await eventually('ready', () => m.ready());
  const readyz = await fetch(`http://127.0.0.1:${m.healthPort}/readyz`);
  t.is(readyz.status, 200);
  t.is((await fetch(`http://127.0.0.1:${m.healthPort}/healthz`)).status, 200);

  const owner = await raw<any>(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'owner' } });
  await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'flaky' } });
  await eventually('owner reconciled', () => seen.includes(`${ns}/owner`));
  await eventually('flaky retried after its error', () => seen.filter((k) => k === `${ns}/flaky`).length >= 2);
  const before = seen.filter((k) => k === `${ns}/owner`).length;
  await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
    metadata: {
      name: 'child',
      ownerReferences: [
        { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid, controller: true },
      ],
    },
  });
  await eventually(
    'a secret event reconciles its owner',
    () => seen.filter((k) => k === `${ns}/owner`).length > before,
  );

  const metrics = await (await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`)).text();
  t.regex(metrics, /controller_runtime_reconcile_total\{controller="configmap",result="success"\} \d+/);
  t.regex(metrics, /controller_runtime_reconcile_errors_total\{controller="configmap"\} 1/);
  t.regex(metrics, /workqueue_adds_total\{name="configmap"\}/);
  t.regex(metrics, /leader_election_master_status\{name="mgr-test"\} 1/);

  await m.stop();
  t.is(await m.done, 'stopped');
  t.falsy(await holder('mgr-test', ns).catch(() => undefined), 'lease released on shutdown');
});

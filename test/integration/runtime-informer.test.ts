// The informer against the real API server: it sees adds, updates and deletes of a core kind and a
// custom kind, honours a label selector, and converges after its connection is cut (events missed
// while cut are recovered by the rewatch/relist, deletes included); adds of the first list are
// marked initial (the controller queues them at low priority), later ones, a relist's too, are not.
import test from 'ava';
import { raw } from '../../provider/kube/raw.ts';
import { byLabel, createInformer, type Informer } from '../../provider/runtime/informer.ts';
import { ConfigMaps, type KubeObject, type ResourceKind } from '../../provider/kube/kinds.ts';
import { startCutProxy } from '../harness/proxy.ts';
import { startControlPlane, waitForCrds, type ControlPlane } from '../harness/controlplane.ts';

let cp: ControlPlane;
const Widgets: ResourceKind = {
  group: 'runtime.test.capbm.dev',
  version: 'v1',
  kind: 'Widget',
  plural: 'widgets',
  namespaced: true,
};

test.before(async () => {
  cp = await startControlPlane({ capi: false });
  await raw(cp.kc, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'widgets.runtime.test.capbm.dev' },
    spec: {
      group: Widgets.group,
      scope: 'Namespaced',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        },
      ],
    },
  });
  await waitForCrds(cp.kc, ['widgets.runtime.test.capbm.dev']);
});
test.after.always(async () => {
  await cp?.stop();
});

async function createNamespace(name: string) {
  await raw(cp.kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
}

/** Polls (bounded) until `check` holds. */
async function eventually(what: string, check: () => boolean, ms = 20_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function record<T extends KubeObject>(inf: Informer<T>) {
  const log: string[] = [];
  inf.addEventHandler({
    add: (o, initial) => log.push(`add ${o.metadata?.name}${initial ? ' (initial list)' : ''}`),
    update: (_a, b) => log.push(`update ${b.metadata?.name}`),
    delete: (o) => log.push(`delete ${o.metadata?.name}`),
  });
  return log;
}

test('informer sees ConfigMap add, update and delete, and indexes by label', async (t) => {
  const ns = 'inf-cm';
  await createNamespace(ns);
  await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, {
    metadata: { name: 'before', labels: { app: 'x' } },
    data: { a: '1' },
  });
  const inf = createInformer(cp.kc, ConfigMaps, { namespace: ns, indexers: { app: byLabel('app') } });
  const log = record(inf);
  inf.start();
  t.teardown(() => inf.stop());
  t.true(await inf.waitForSync());
  t.true(inf.hasSynced());
  t.deepEqual(log, ['add before (initial list)']);
  t.is(inf.get(ns, 'before')?.kind, 'ConfigMap');
  const late: string[] = [];
  inf.addEventHandler({ add: (o, initial) => late.push(`${o.metadata?.name} ${initial}`) });
  t.deepEqual(late, ['before true'], 'a handler that comes late gets the store as the initial list');

  await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, {
    metadata: { name: 'after', labels: { app: 'y' } },
  });
  await raw(cp.kc, 'PATCH', `/api/v1/namespaces/${ns}/configmaps/before`, { data: { a: '2' } });
  await raw(cp.kc, 'DELETE', `/api/v1/namespaces/${ns}/configmaps/after`);
  await eventually('delete event', () => log.includes('delete after'));
  t.deepEqual(log, ['add before (initial list)', 'add after', 'update before', 'delete after']);
  t.is((inf.get(ns, 'before') as { data?: Record<string, string> }).data?.a, '2');
  t.deepEqual(
    inf.byIndex('app', 'x').map((o) => o.metadata?.name),
    ['before'],
  );
  t.deepEqual(inf.byIndex('app', 'y'), []);
  t.is(inf.get(ns, 'after'), undefined);
});

test('informer of a custom kind across namespaces with a watch-filter label selector', async (t) => {
  await createNamespace('inf-w1');
  await createNamespace('inf-w2');
  const inf = createInformer(cp.kc, Widgets, { labelSelector: 'cluster.x-k8s.io/watch-filter=shard-a' });
  const log = record(inf);
  inf.start();
  t.teardown(() => inf.stop());
  await inf.waitForSync();
  const mk = (ns: string, name: string, shard: string) =>
    raw(cp.kc, 'POST', `/apis/${Widgets.group}/v1/namespaces/${ns}/widgets`, {
      apiVersion: `${Widgets.group}/v1`,
      kind: 'Widget',
      metadata: { name, labels: { 'cluster.x-k8s.io/watch-filter': shard } },
      spec: { size: 1 },
    });
  await mk('inf-w1', 'a', 'shard-a');
  await mk('inf-w2', 'b', 'shard-b');
  await mk('inf-w2', 'c', 'shard-a');
  await raw(cp.kc, 'PATCH', `/apis/${Widgets.group}/v1/namespaces/inf-w1/widgets/a`, { spec: { size: 2 } });
  await eventually('update of a', () => log.includes('update a') && log.includes('add c'));
  t.deepEqual(inf.keys().sort(), ['inf-w1/a', 'inf-w2/c']);
  t.false(
    log.some((l) => l.endsWith(' b')),
    'shard-b objects are not seen',
  );
  await raw(cp.kc, 'DELETE', `/apis/${Widgets.group}/v1/namespaces/inf-w2/widgets/c`);
  await eventually('delete of c', () => log.includes('delete c'));
  t.deepEqual(inf.keys(), ['inf-w1/a']);
});

test('after the connection is cut, the informer recovers changes made meanwhile (deletes too)', async (t) => {
  const ns = 'inf-cut';
  await createNamespace(ns);
  const proxy = await startCutProxy(new URL(cp.server));
  t.teardown(() => proxy.close());
  const kc = proxy.kubeconfig(cp.kubeconfigPath);
  for (const n of ['keep', 'gone']) {
    await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: n } });
  }
  const inf = createInformer(kc, ConfigMaps, {
    namespace: ns,
    backoff: { initialMs: 100, maxMs: 1000 },
  });
  const log = record(inf);
  inf.start();
  t.teardown(() => inf.stop());
  await inf.waitForSync();

  proxy.refuse(true);
  proxy.cut();
  await raw(cp.kc, 'DELETE', `/api/v1/namespaces/${ns}/configmaps/gone`);
  await raw(cp.kc, 'PATCH', `/api/v1/namespaces/${ns}/configmaps/keep`, { data: { x: 'y' } });
  await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'new' } });
  await new Promise((r) => setTimeout(r, 500)); // the informer retries against a refusing proxy
  t.false(log.includes('delete gone'), 'nothing seen while disconnected');
  proxy.refuse(false);

  await eventually(
    'recovery',
    () => log.includes('delete gone') && log.includes('add new') && log.includes('update keep'),
  );
  t.deepEqual(inf.keys().sort(), [`${ns}/keep`, `${ns}/new`]);
});

test('a server-ended watch is resumed without losing events or relisting', async (t) => {
  const ns = 'inf-timeout';
  await createNamespace(ns);
  const inf = createInformer(cp.kc, ConfigMaps, { namespace: ns, watchTimeoutSeconds: [1, 1] });
  const log = record(inf);
  inf.start();
  t.teardown(() => inf.stop());
  await inf.waitForSync();
  for (let i = 0; i < 6; i++) {
    await raw(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: `cm-${i}` } });
    await new Promise((r) => setTimeout(r, 400));
  }
  await eventually('all adds', () => log.filter((l) => l.startsWith('add')).length === 6);
  t.is(inf.lists, 1, 'resumed from the resourceVersion, not relisted');
  t.is(inf.keys().length, 6);
});

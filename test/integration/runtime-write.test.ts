// Writes against the real API server: the patch helper sends nothing when nothing changed, keeps a
// concurrent writer's fields and conditions, surfaces real conflicts; events aggregate repeats and
// are found the way `kubectl describe` finds them.
import test from 'ava';
import { raw } from '../../provider/kube/raw.ts';
import { getCondition, setCondition, setV1Beta1Condition } from '../../provider/runtime/conditions.ts';
import { EventRecorder } from '../../provider/runtime/events.ts';
import type { KubeObject, ResourceKind } from '../../provider/kube/kinds.ts';
import { PatchConflict, patchHelper } from '../../provider/runtime/patch.ts';
import { startControlPlane, waitForCrds, type ControlPlane } from '../harness/controlplane.ts';

let cp: ControlPlane;
const Gadgets: ResourceKind = {
  group: 'runtime.test.capbm.dev',
  version: 'v1',
  kind: 'Gadget',
  plural: 'gadgets',
  namespaced: true,
};
const base = `/apis/${Gadgets.group}/v1/namespaces/default/gadgets`;

test.before(async () => {
  cp = await startControlPlane({ capi: false });
  await raw(cp.kc, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `gadgets.${Gadgets.group}` },
    spec: {
      group: Gadgets.group,
      scope: 'Namespaced',
      names: { plural: 'gadgets', singular: 'gadget', kind: 'Gadget', listKind: 'GadgetList' },
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
  await waitForCrds(cp.kc, [`gadgets.${Gadgets.group}`]);
});
test.after.always(async () => {
  await cp?.stop();
});

type Gadget = KubeObject & { spec?: Record<string, unknown>; status?: Record<string, any> };
const create = (name: string, spec: Record<string, unknown> = {}) =>
  raw<Gadget>(cp.kc, 'POST', base, { apiVersion: `${Gadgets.group}/v1`, kind: 'Gadget', metadata: { name }, spec });
const get = (name: string) => raw<Gadget>(cp.kc, 'GET', `${base}/${name}`);

test('no change, no request: the resourceVersion stays', async (t) => {
  const g = await create('unchanged', { a: 1 });
  const h = patchHelper(cp.kc, Gadgets, g);
  const r = await h.patch();
  t.false(r.patchedMain);
  t.false(r.patchedStatus);
  t.is((await get('unchanged')).metadata?.resourceVersion, g.metadata?.resourceVersion);
});

test('spec and status changes land; a concurrent writer of other fields and conditions is kept', async (t) => {
  const fetched = await create('two-writers', { size: 1, color: 'red' });
  // Writer B (e.g. CAPI) changes another spec field, a label and adds its own condition after we fetched.
  await raw(cp.kc, 'PATCH', `${base}/two-writers`, { metadata: { labels: { owner: 'b' } }, spec: { color: 'blue' } });
  await raw(cp.kc, 'PATCH', `${base}/two-writers/status`, {
    status: {
      conditions: [
        {
          type: 'TheirCondition',
          status: 'True',
          reason: 'B',
          message: '',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    },
  });
  const h = patchHelper(cp.kc, Gadgets, fetched);
  h.obj.spec!.size = 2;
  setCondition(h.obj, { type: 'Ready', status: true, reason: 'Done' });
  setV1Beta1Condition(h.obj, { type: 'Ready', status: true });
  (h.obj.status as Record<string, unknown>).phase = 'Provisioned';
  const r = await h.patch();
  t.true(r.patchedMain);
  t.true(r.patchedStatus);
  const now = await get('two-writers');
  t.deepEqual(now.spec, { size: 2, color: 'blue' }, "B's spec change survives");
  t.is(now.metadata?.labels?.owner, 'b');
  t.is(now.status?.phase, 'Provisioned');
  t.deepEqual(
    (now.status?.conditions as Array<{ type: string }>).map((c) => c.type).sort(),
    ['Ready', 'TheirCondition'],
    'conditions merged by type, not replaced',
  );
  t.is(now.status?.deprecated?.v1beta1?.conditions?.[0]?.type, 'Ready');
});

test('a list field written concurrently is a conflict, not a silent overwrite', async (t) => {
  const fetched = await create('finalizers');
  await raw(cp.kc, 'PATCH', `${base}/finalizers`, { metadata: { finalizers: ['other.example.com/keep'] } });
  const h = patchHelper(cp.kc, Gadgets, fetched);
  h.obj.metadata!.finalizers = ['infrastructure.cluster.x-k8s.io/capbm'];
  await t.throwsAsync(h.patch(), { instanceOf: PatchConflict });
  t.deepEqual((await get('finalizers')).metadata?.finalizers, ['other.example.com/keep']);
  // The next pass starts from the fresh object and keeps both.
  const h2 = patchHelper(cp.kc, Gadgets, await get('finalizers'));
  h2.obj.metadata!.finalizers!.push('infrastructure.cluster.x-k8s.io/capbm');
  await h2.patch();
  t.deepEqual((await get('finalizers')).metadata?.finalizers, [
    'other.example.com/keep',
    'infrastructure.cluster.x-k8s.io/capbm',
  ]);
});

test('two writers changing the same condition differently: the second one is told', async (t) => {
  const fetched = await create('same-condition');
  const a = patchHelper(cp.kc, Gadgets, fetched);
  const b = patchHelper(cp.kc, Gadgets, fetched);
  setCondition(a.obj, { type: 'HostReady', status: true, reason: 'Ok' });
  setCondition(b.obj, { type: 'HostReady', status: false, reason: 'Broken' });
  await a.patch();
  await t.throwsAsync(b.patch(), { instanceOf: PatchConflict, message: /HostReady/ });
  t.like(getCondition(await get('same-condition'), 'HostReady'), { status: 'True', reason: 'Ok' });
});

test('repeated events aggregate into one Event with a count, found by involvedObject', async (t) => {
  const g = await create('evented');
  const rec = new EventRecorder(cp.kc, { minIntervalMs: 200 });
  for (let i = 0; i < 20; i++) rec.event(g, 'Warning', 'SSHFailed', 'host 10.0.0.5: auth failed');
  rec.event(g, 'Normal', 'Provisioned', 'host 10.0.0.5 provisioned');
  await new Promise((r) => setTimeout(r, 300));
  await rec.flush();
  const sel = encodeURIComponent(`involvedObject.uid=${g.metadata?.uid},involvedObject.kind=Gadget`);
  const list = await raw<{ items: Array<{ reason: string; count: number; type: string; message: string }> }>(
    cp.kc,
    'GET',
    `/api/v1/namespaces/default/events?fieldSelector=${sel}`,
  );
  const byReason = Object.fromEntries(list.items.map((e) => [e.reason, e]));
  t.is(list.items.length, 2, 'one Event object per distinct event');
  t.like(byReason.SSHFailed, { count: 20, type: 'Warning', message: 'host 10.0.0.5: auth failed' });
  t.like(byReason.Provisioned, { count: 1, type: 'Normal' });
});

test('a DELETE with preconditions carries its body: a stale one is refused, and the next request on the kept connection is fine', async (t) => {
  const ns = 'default';
  const cm = await raw<KubeObject>(cp.kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { generateName: 'precondition-' },
  });
  const path = `/api/v1/namespaces/${ns}/configmaps/${cm.metadata?.name}`;
  const stale = { preconditions: { resourceVersion: '1' } };
  const err = await t.throwsAsync(raw(cp.kc, 'DELETE', path, stale));
  t.regex(err.message, /HTTP 409/);
  // Sequentially on the same kept connection: before Content-Length was set, the body above was
  // read as the start of this request (400 Bad Request).
  for (let i = 0; i < 3; i++) t.is((await raw<KubeObject>(cp.kc, 'GET', path)).metadata?.name, cm.metadata?.name);
  await raw(cp.kc, 'DELETE', path, { preconditions: { resourceVersion: cm.metadata?.resourceVersion } });
  await t.throwsAsync(raw(cp.kc, 'GET', path), { message: /HTTP 404/ });
});

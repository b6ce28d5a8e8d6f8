// HostHealthy on a Node of a real API server, as MachineHealthCheck reads it: our condition is
// added beside the kubelet's, its transition time moves only when the status flips, and an
// unchanged condition is not rewritten until its heartbeat is due.
import test from 'ava';
import { raw } from '../../provider/kube/raw.ts';
import { setNodeCondition, type NodeCondition } from '../../provider/health/node.ts';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.ts';

let cp: ControlPlane;

test.before(async () => {
  cp = await startControlPlane();
  await raw(cp.kc, 'POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
  const ready: NodeCondition = {
    type: 'Ready',
    status: 'True',
    reason: 'KubeletReady',
    message: 'kubelet is posting ready status',
    lastHeartbeatTime: '2026-01-01T00:00:00Z',
    lastTransitionTime: '2026-01-01T00:00:00Z',
  };
  await raw(cp.kc, 'PATCH', '/api/v1/nodes/n1/status', { status: { conditions: [ready] } });
});
test.after.always(async () => {
  await cp?.stop();
});

const conditions = async () =>
  (await raw<{ status: { conditions: NodeCondition[] } }>(cp.kc, 'GET', '/api/v1/nodes/n1')).status.conditions;

test.serial('HostHealthy is added next to Ready and follows the status', async (t) => {
  const t0 = new Date('2026-05-01T12:00:00Z');
  const healthy = { type: 'HostHealthy', status: 'True' as const, reason: 'HostHealthy', message: '' };
  t.truthy(await setNodeCondition(cp.kc, 'n1', healthy, { now: t0 }));
  let cs = await conditions();
  t.deepEqual(cs.map((c) => c.type).sort(), ['HostHealthy', 'Ready']);
  t.like(
    cs.find((c) => c.type === 'HostHealthy'),
    { status: 'True', lastTransitionTime: '2026-05-01T12:00:00Z' },
  );

  // Unchanged and heartbeat young: no write.
  t.is(await setNodeCondition(cp.kc, 'n1', healthy, { now: new Date(t0.getTime() + 10_000) }), undefined);
  // Unchanged but heartbeat due: written, transition time kept.
  const beat = await setNodeCondition(cp.kc, 'n1', healthy, { now: new Date(t0.getTime() + 120_000) });
  t.like(beat, { lastHeartbeatTime: '2026-05-01T12:02:00Z', lastTransitionTime: '2026-05-01T12:00:00Z' });

  const sick = { ...healthy, status: 'False' as const, reason: 'DiskPressure', message: '* disk: / has 2% free' };
  await setNodeCondition(cp.kc, 'n1', sick, { now: new Date(t0.getTime() + 130_000) });
  cs = await conditions();
  t.like(
    cs.find((c) => c.type === 'HostHealthy'),
    { status: 'False', reason: 'DiskPressure', lastTransitionTime: '2026-05-01T12:02:10Z' },
  );
  t.like(
    cs.find((c) => c.type === 'Ready'),
    { status: 'True', reason: 'KubeletReady' },
  );
});

test.serial('a missing Node is a 404 ApiError', async (t) => {
  await t.throwsAsync(
    setNodeCondition(cp.kc, 'nope', { type: 'HostHealthy', status: 'Unknown', reason: 'NoReportYet' }),
    { name: 'ApiError', message: /404/ },
  );
});

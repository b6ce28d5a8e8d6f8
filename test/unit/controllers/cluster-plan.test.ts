import test from 'ava';
import { nextClusterStep, type ClusterFacts } from '../../../provider/controllers/cluster-plan.ts';

const base: ClusterFacts = {
  deleting: false,
  hasFinalizer: true,
  ownerCluster: true,
  paused: false,
  provisioned: false,
  machines: 0,
};

test('a user-set endpoint is kept and the cluster is provisioned', (t) => {
  t.like(nextClusterStep({ ...base, endpoint: { host: '10.0.0.100', port: 6443 } }), { kind: 'set-provisioned' });
  t.like(
    nextClusterStep({
      ...base,
      endpoint: { host: '10.0.0.100', port: 6443 },
      firstControlPlaneHost: '10.0.0.5',
      provisioned: true,
    }),
    {
      kind: 'done',
    },
  );
});

test('without an endpoint, the first control-plane host becomes it, port 6443', (t) => {
  t.like(nextClusterStep(base), { kind: 'wait', reason: 'WaitingForControlPlaneHost' });
  t.deepEqual(nextClusterStep({ ...base, firstControlPlaneHost: '10.0.0.5' }), {
    kind: 'set-endpoint',
    endpoint: { host: '10.0.0.5', port: 6443 },
  });
});

test('owner, pause, finalizer and deletion', (t) => {
  t.like(nextClusterStep({ ...base, ownerCluster: false }), { reason: 'WaitingForOwnerCluster' });
  t.like(nextClusterStep({ ...base, paused: true }), { reason: 'Paused' });
  t.like(nextClusterStep({ ...base, hasFinalizer: false }), { kind: 'add-finalizer' });
  t.like(nextClusterStep({ ...base, deleting: true, machines: 2 }), { reason: 'WaitingForMachines' });
  t.like(nextClusterStep({ ...base, deleting: true }), { kind: 'remove-finalizer' });
});

import test from 'ava';
import { resourceOf } from '../../../provider/kube/raw.ts';

test('the metric names a request by resource and subresource, never by object', (t) => {
  t.is(resourceOf('/api/v1/namespaces/a/secrets/x'), 'secrets');
  t.is(
    resourceOf('/apis/infrastructure.cluster.x-k8s.io/v1beta1/namespaces/a/baremetalmachines/m/status'),
    'baremetalmachines/status',
  );
  t.is(resourceOf('/apis/coordination.k8s.io/v1/namespaces/x/leases'), 'leases');
  t.is(resourceOf('/api/v1/namespaces/foo'), 'namespaces');
  t.is(resourceOf('/apis/g/v/clusterthings/x?watch=1'), 'clusterthings');
});

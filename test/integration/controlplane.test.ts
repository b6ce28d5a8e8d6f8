// The harness is real: a real kube-apiserver and etcd, the genuine CAPI CRDs, and the real CAPI
// core manager and kubeadm bootstrap provider turning a Cluster and a Machine into bootstrap data.
import test from 'ava';
import { request } from 'node:https';
import { firstControlPlaneBootstrap } from '../harness/cabpk.ts';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { CAPI, Objects } from '../harness/capi.ts';

let cp: ControlPlane;

test.before(async () => {
  cp = await startControlPlane({ capi: true });
});

test.after.always(async () => {
  await cp?.stop();
});

test('the real CABPK writes kubeadm init bootstrap data for a first control plane machine', async (t) => {
  const data = await firstControlPlaneBootstrap(cp, 'harness');
  t.is(data.format, 'cloud-config');
  t.true(data.value.startsWith('## template: jinja\n#cloud-config\n'), data.value.slice(0, 80));
  t.regex(data.value, /kubeadm init --config \/run\/kubeadm\/kubeadm\.yaml/);
  t.regex(data.value, /bootstrap-success\.complete/);
  t.regex(data.value, /\{\{ ds\.meta_data\.provider_id \}\}/);

  const o = new Objects(cp.kc);
  // CABPK generated the cluster CA for a cluster without a control plane provider.
  const ca = await o.get('v1', 'Secret', 'harness', 'c1-ca');
  t.truthy(ca.data?.['tls.crt']);
  // The CAPI core controllers accepted the test infrastructure: the Cluster's infrastructure is provisioned.
  const cluster = await o.get(CAPI, 'Cluster', 'harness', 'c1');
  t.true(cluster.status?.initialization?.infrastructureProvisioned);
  t.deepEqual(cluster.spec?.controlPlaneEndpoint, { host: '10.250.0.10', port: 6443 });
});

test('the API server authenticates: an anonymous request to a resource is forbidden', async (t) => {
  const ca = Buffer.from(cp.kc.getCurrentCluster()!.caData!, 'base64');
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${cp.server}/api/v1/namespaces`, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  t.true(status === 401 || status === 403, `status ${status}`);
});

// The harness is real: a real kube-apiserver and etcd, the genuine CAPI CRDs, and the real CAPI
// core manager and kubeadm bootstrap provider turning a Cluster and a Machine into bootstrap data.
import test from 'ava';
import { request } from 'node:https';
import { firstControlPlaneBootstrap, joinBootstraps } from '../harness/cabpk.ts';
import { raw } from '../../provider/kube/raw.ts';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { CAPI, Objects } from '../harness/capi.ts';

let cp: ControlPlane;
let workload: ControlPlane;

test.before(async () => {
  [cp, workload] = await Promise.all([startControlPlane({ capi: true }), startControlPlane()]);
});

test.after.always(async () => {
  await workload?.stop();
  await cp?.stop();
});

test.serial('the real CABPK writes kubeadm init bootstrap data for a first control plane machine', async (t) => {
  const data = await firstControlPlaneBootstrap(cp, 'harness', workload);
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

test.serial(
  'once the first node exists in the workload cluster, CABPK writes kubeadm join data with a bootstrap token',
  async (t) => {
    const cases = await joinBootstraps(cp, workload, 'harness');
    t.deepEqual(
      cases.map((c) => c.name),
      ['join-control-plane', 'worker'],
    );
    for (const c of cases) {
      t.true(c.value.startsWith('## template: jinja\n#cloud-config\n'));
      t.regex(c.value, /kubeadm join --config \/run\/kubeadm\/kubeadm-join-config\.yaml/);
    }
    // The join tokens CABPK minted live in the workload cluster, as bootstrap-token Secrets.
    const tokens = await raw<{ items: unknown[] }>(
      workload.kc,
      'GET',
      '/api/v1/namespaces/kube-system/secrets?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken',
    );
    t.is(tokens.items.length, 2);
  },
);

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

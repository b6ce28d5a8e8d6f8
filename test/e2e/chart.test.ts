// charts/capbm-cluster on the lab, every real part (management plane, CAPI, the provider under its
// ServiceAccount, lab hosts running the real kubeadm): the lab's own values (ci/lab.yaml) installed
// with the real helm make a working cluster.
import test from 'ava';
import { join } from 'node:path';
import { createPool, installCniAddon, startEnv, waitForClusterAvailable, type Env } from '../harness/env.ts';
import { chartDir, helm } from '../harness/helm.ts';

const ns = 'chart';
let env: Env;
test.before(async () => {
  env = await startEnv({ hosts: 3 });
  await createPool(env, ns, 'rack', env.hosts);
  await installCniAddon(env, ns);
  env.startProvider();
});
test.after.always(async () => {
  await env?.stop();
});

const release = (...values: string[]) =>
  helm([
    'upgrade',
    '--install',
    'demo',
    chartDir,
    '-n',
    ns,
    '--kubeconfig',
    env.cp.kubeconfigPath,
    '--set',
    `controlPlane.endpoint.host=${env.lb.address}`,
    ...values.flatMap((v) => ['-f', v]),
  ]);

test.serial('helm install with ci/lab.yaml: the cluster is Available, every Machine Ready', async (t) => {
  t.timeout(20 * 60_000);
  const r = await release(join(chartDir, 'ci', 'lab.yaml'));
  t.is(r.exitCode, 0, r.stderr);
  const h = await waitForClusterAvailable(env, ns, 'demo', 3, 900_000);
  t.is(h.machines.filter((m) => m.ready).length, 3);
});

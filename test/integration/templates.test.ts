// The clusterctl flavor is valid against the genuine CAPI CRDs and ours: every object of
// cluster-template.yaml, with its variables filled in, passes a server-side dry run.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { apply } from '../../provider/kube/raw.ts';
import { installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { plurals, substitute } from '../harness/env.ts';
import { repoRoot } from '../harness/paths.ts';

let cp: ControlPlane;
test.before(async () => {
  cp = await startControlPlane({ capi: ['core'] });
  await installProviderCrds(cp.kc);
});
test.after.always(async () => {
  await cp?.stop();
});

test('cluster-template.yaml: every object passes the API server schema (dry run)', async (t) => {
  const text = substitute(readFileSync(join(repoRoot, 'manifests/templates/cluster-template.yaml'), 'utf8'), {
    CLUSTER_NAME: 'demo',
    NAMESPACE: 'default',
    KUBERNETES_VERSION: 'v1.36.3',
    CONTROL_PLANE_ENDPOINT_HOST: '10.250.0.100',
    BAREMETAL_POOL: 'rack1',
  });
  const docs = parseAllDocuments(text).map(
    (d) => d.toJS() as { apiVersion: string; kind: string; metadata: { name: string } },
  );
  const kinds = ['BareMetalCluster', 'BareMetalMachineTemplate', 'Cluster', 'KubeadmConfigTemplate'];
  kinds.push('KubeadmControlPlane', 'MachineDeployment', 'MachineHealthCheck');
  t.deepEqual([...new Set(docs.map((d) => d.kind))].sort(), kinds);
  for (const d of docs) {
    const path = `/apis/${d.apiVersion}/namespaces/default/${plurals[d.kind]}/${d.metadata.name}?dryRun=All`;
    await t.notThrowsAsync(apply(cp.kc, path, d, 'capbm-test'), d.kind);
  }
});

// hack/bench inventory [ADDRESSES] [CLAIMS] [CONCURRENCY]: against a real API server (this
// machine's harness), materialize a pool of ADDRESSES hosts (default 10,000) and claim CLAIMS of
// them (default 1,000) with CONCURRENCY claimers at once (default 32). Prints wall times, API
// requests per claim and the conflict rate.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { POOL_LABEL, claimHost, type ClaimStats } from '../../provider/hosts/claim.ts';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import { raw } from '../../provider/kube/raw.ts';
import { applyCrds, readYamlDocuments, startControlPlane, waitForCrds } from '../../test/harness/controlplane.ts';
import { repoRoot } from '../../test/harness/paths.ts';

const addresses = Number(process.argv[2] ?? 10_000);
const claims = Number(process.argv[3] ?? 1_000);
const concurrency = Number(process.argv[4] ?? 32);
const ns = 'default';

const cp = await startControlPlane();
try {
  const dir = join(repoRoot, 'manifests', 'crd');
  await waitForCrds(cp.kc, await applyCrds(cp.kc, readYamlDocuments(readdirSync(dir).map((f) => join(dir, f)))));
  const last = 10 * 2 ** 24 + 100 * 2 ** 16 + addresses; // 10.100.0.1 .. 10.100.x.y
  const ip = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
  await raw(cp.kc, 'POST', `/apis/${API_VERSION}/namespaces/${ns}/baremetalhostpools`, {
    apiVersion: API_VERSION,
    kind: 'BareMetalHostPool',
    metadata: { name: 'bench', namespace: ns },
    spec: {
      addresses: [`10.100.0.1-${ip(last)}`],
      ssh: { secretRef: { name: 'ssh' } },
      hostKeyPolicy: { type: 'TrustOnFirstUse' },
    },
  });
  let t0 = performance.now();
  const r = await reconcilePool(cp.kc, ns, 'bench', { concurrency: 32 });
  const materialize = (performance.now() - t0) / 1000;

  // Claimers share one list of hosts, as reconcilers share an informer cache; the API server
  // decides every race.
  const hosts = (
    await raw<{ items: BareMetalHost[] }>(
      cp.kc,
      'GET',
      `/apis/${API_VERSION}/namespaces/${ns}/baremetalhosts?labelSelector=${POOL_LABEL}%3Dbench`,
    )
  ).items;
  const stats: ClaimStats = { requests: 0, conflicts: 0 };
  let next = 0;
  let won = 0;
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < claims) {
        const i = next++;
        const h = await claimHost(
          cp.kc,
          {
            namespace: ns,
            pool: 'bench',
            consumer: { kind: 'BareMetalMachine', namespace: ns, name: `m-${i}`, uid: `uid-${i}` },
          },
          { hosts, stats },
        );
        if (h) won++;
      }
    }),
  );
  const claimWall = (performance.now() - t0) / 1000;
  process.stdout.write(
    [
      `command: ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench inventory ${addresses} ${claims} ${concurrency}`}`,
      `real kube-apiserver + etcd on this machine (2 vCPU); pool of ${addresses} addresses, ${claims} claims at concurrency ${concurrency}`,
      `materialize: ${r?.created} BareMetalHosts in ${materialize.toFixed(1)} s (${((r?.created ?? 0) / materialize).toFixed(0)} hosts/s)`,
      `claims: ${won} of ${claims} in ${claimWall.toFixed(1)} s (${(won / claimWall).toFixed(0)} claims/s)`,
      `API requests per claim: ${(stats.requests / claims).toFixed(2)}; conflicts: ${stats.conflicts} (${((100 * stats.conflicts) / stats.requests).toFixed(1)}% of requests)`,
      '',
    ].join('\n'),
  );
} finally {
  await cp.stop();
}

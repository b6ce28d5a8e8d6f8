// A backup and a restore with the real clusterctl between two real API servers: `clusterctl move
// --to-directory` writes a namespace's CAPBM objects to files (a pool, the hosts the pool reconciler
// made from it, one of them claimed, and the pool's SSH Secret, which its move label takes along),
// and `clusterctl move --from-directory` creates them on a second control plane: the hosts owned by
// the restored pool, the claim as it was, the Secret's key. The source keeps everything (a backup
// moves nothing). docs/clusterctl.md says how a restored machine then adopts its host.
import test from 'ava';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { parse } from 'yaml';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { claimHost, POOL_LABEL } from '../../provider/hosts/claim.ts';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import { raw } from '../../provider/kube/raw.ts';
import { clusterctl, labelCrdsAsClusterctlInit, type RunResult } from '../harness/clusterctl.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { repoRoot } from '../harness/paths.ts';

const ns = 'backup';
const base = `/apis/${API_VERSION}/namespaces/${ns}`;
const MOVE_LABEL = 'clusterctl.cluster.x-k8s.io/move';
let a: ControlPlane | undefined;
let b: ControlPlane | undefined;
let dir = '';

test.before(async () => {
  mkdirSync(join(repoRoot, '.cache', 'tmp'), { recursive: true });
  dir = mkdtempSync(join(repoRoot, '.cache', 'tmp', 'clusterctl-backup-'));
  [a, b] = await Promise.all([startControlPlane(), startControlPlane()]);
  for (const cp of [a, b]) {
    await installCapiCrds(cp.kc);
    await installProviderCrds(cp.kc);
    await labelCrdsAsClusterctlInit(cp.kc);
  }
});
test.after.always(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  // The backup holds the SSH Secret's private key.
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const show = (r: RunResult) => `exit ${r.exitCode}\n${r.stderr}\n${r.stdout}`.slice(0, 4000);
const hostsOf = async (cp: ControlPlane) =>
  (
    await raw<{ items: BareMetalHost[] }>(
      cp.kc,
      'GET',
      `${base}/baremetalhosts?labelSelector=${encodeURIComponent(`${POOL_LABEL}=rack1`)}`,
    )
  ).items.sort((x, y) => x.metadata.name.localeCompare(y.metadata.name));
type Pool = { metadata: { uid: string }; spec: Record<string, unknown> };
type Secret = { metadata: { labels?: Record<string, string> }; data: Record<string, string> };

test.serial(
  'clusterctl move --to-directory writes the pools, hosts and SSH Secret; --from-directory restores them elsewhere',
  async (t) => {
    // Plane A: a namespace with a pool of three addresses, its SSH Secret, and one host claimed.
    const kc = a!.kc;
    await raw(kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const key = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'capbm-backup-test' });
    await raw(kc, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'rack1-ssh', namespace: ns, labels: { [MOVE_LABEL]: '' } },
      stringData: { 'ssh-privatekey': key.private },
    });
    await raw(kc, 'POST', `${base}/baremetalhostpools`, {
      apiVersion: API_VERSION,
      kind: 'BareMetalHostPool',
      metadata: { name: 'rack1', namespace: ns },
      spec: {
        addresses: ['10.9.0.1-10.9.0.3'],
        ssh: { user: 'root', secretRef: { name: 'rack1-ssh' } },
        hostKeyPolicy: { type: 'TrustOnFirstUse' },
        hostLabels: { rack: 'r1' },
      },
    });
    t.like(await reconcilePool(kc, ns, 'rack1'), { created: 3 });
    const consumer = { apiVersion: API_VERSION, kind: 'BareMetalMachine', namespace: ns, name: 'm1', uid: 'uid-m1' };
    const claimed = await claimHost(kc, { namespace: ns, pool: 'rack1', consumer });
    t.truthy(claimed);

    const config = join(dir, 'clusterctl.yaml');
    writeFileSync(config, 'providers: []\n');
    const out = join(dir, 'backup');
    mkdirSync(out);
    const save = await clusterctl(
      ['move', '--kubeconfig', a!.kubeconfigPath, '--namespace', ns, '--to-directory', out],
      {
        config,
      },
    );
    t.is(save.exitCode, 0, show(save));
    const files = readdirSync(out).map(
      (f) => parse(readFileSync(join(out, f), 'utf8')) as { kind: string; metadata: { name: string } },
    );
    const hostsA = await hostsOf(a!);
    t.deepEqual(
      files.map((o) => `${o.kind}/${o.metadata.name}`).sort(),
      ['BareMetalHostPool/rack1', ...hostsA.map((h) => `BareMetalHost/${h.metadata.name}`), 'Secret/rack1-ssh'].sort(),
    );
    t.log(`${files.length} files written by clusterctl move --to-directory`);
    // A backup leaves the source as it was.
    t.is(hostsA.length, 3);
    t.is(hostsA.filter((h) => h.spec.consumerRef).length, 1);

    const restore = await clusterctl(['move', '--from-directory', out, '--to-kubeconfig', b!.kubeconfigPath], {
      config,
    });
    t.is(restore.exitCode, 0, show(restore));
    const [poolA, poolB] = await Promise.all(
      [a!, b!].map((cp) => raw<Pool>(cp.kc, 'GET', `${base}/baremetalhostpools/rack1`)),
    );
    t.deepEqual(poolB!.spec, poolA!.spec);
    const hostsB = await hostsOf(b!);
    t.deepEqual(
      hostsB.map((h) => h.metadata.name),
      hostsA.map((h) => h.metadata.name),
    );
    for (const [i, h] of hostsB.entries()) {
      t.deepEqual(h.spec, hostsA[i]!.spec, `${h.metadata.name}: the spec (and so the claim) as it was`);
      t.is(h.metadata.ownerReferences?.[0]?.uid, poolB!.metadata.uid, `${h.metadata.name} owned by the restored pool`);
    }
    t.deepEqual(hostsB.find((h) => h.metadata.name === claimed!.metadata.name)?.spec.consumerRef, consumer);
    const [secretA, secretB] = await Promise.all(
      [a!, b!].map((cp) => raw<Secret>(cp.kc, 'GET', `/api/v1/namespaces/${ns}/secrets/rack1-ssh`)),
    );
    t.deepEqual(secretB!.data, secretA!.data);
    t.true(MOVE_LABEL in (secretB!.metadata.labels ?? {}), 'the move label is kept for the next move');
  },
);

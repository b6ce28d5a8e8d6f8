// hack/bench gitops [N] [--machines M]: N clusters committed at once to the clusters repository
// (examples/clusters-repo/, team-a; each cluster a copy of clusters/team-a/alpha.yaml), through the
// real Flux (source-, kustomize- and helm-controller), the real helm, Cluster API core, CABPK and
// KubeadmControlPlane. Prints the time from the push to every HelmRelease Ready and to every
// cluster's Cluster API objects existing, and each Flux controller's CPU seconds, resident and
// peak memory (/proc). With N <= M (default 2) the clusters also get machines: each cluster's one
// control-plane machine on a lab host of its own (a one-host pool, a load balancer in front), by
// the provider and the real kubeadm, and the time to every Machine Running is printed. Above that no
// provider and no host runs: the clusters' objects exist, their machines are never made (said in
// the output). Bounded: 20 minutes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseDocument } from 'yaml';
import { raw } from '../../provider/kube/raw.ts';
import {
  bootstrapFlux,
  CLUSTERS_REPO_RELEASE_ACCOUNT,
  createPoolSecrets,
  labImages,
  publishCharts,
  siteFiles,
  type SiteHost,
} from '../../test/harness/clusters-repo.ts';
import { installProviderCrds, startControlPlane, type ControlPlane } from '../../test/harness/controlplane.ts';
import { startEnv, waitForRunning, type Env } from '../../test/harness/env.ts';
import { fluxPath, requestReconcile, startFlux } from '../../test/harness/flux.ts';
import { cloneRepo, startGitServerProcess } from '../../test/harness/git-server.ts';
import { chartDir } from '../../test/harness/helm.ts';
import { startLoadBalancer, type LoadBalancer } from '../../test/harness/loadbalancer.ts';
import { waitFor } from '../../test/harness/process.ts';

const args = process.argv.slice(2);
const flag = args.indexOf('--machines');
const maxMachines = flag >= 0 ? Number(args[flag + 1]) : 2;
const n = Number(args.find((a, i) => /^\d+$/.test(a) && (flag < 0 || i !== flag + 1)) ?? 10);
if (!Number.isInteger(maxMachines) || !Number.isInteger(n) || n < 1) {
  process.stderr.write('usage: hack/bench gitops [N clusters, default 10] [--machines M, default 2]\n');
  process.exit(2);
}
const withMachines = n <= maxMachines;
const limitMs = 20 * 60_000;
const TEAM = 'team-a';
const say = (m: string) => process.stderr.write(`    ${m}\n`);
const names = Array.from({ length: n }, (_, i) => `bench-${i + 1}`);

// A placeholder host for the pool of team-a when no machine is made (the pool must name one).
const noHost: SiteHost = { address: '192.0.2.10', hostKeyFingerprint: `SHA256:${'A'.repeat(43)}` };

let env: Env | undefined;
let cp: ControlPlane;
const lbs: LoadBalancer[] = [];
if (withMachines) {
  env = await startEnv({ hosts: n, log: say });
  cp = env.cp;
} else {
  say('starting the management plane (no provider, no lab hosts: N is above --machines)');
  cp = await startControlPlane({ capi: ['core', 'bootstrap', 'controlplane'], controllerManager: true, log: say });
  await installProviderCrds(cp.kc);
}
const stops: Array<() => Promise<void>> = [];
try {
  const flux = await startFlux(cp, { log: say, defaultServiceAccount: CLUSTERS_REPO_RELEASE_ACCOUNT });
  stops.push(() => flux.stop());
  const git = await startGitServerProcess({ root: join(cp.dir, 'git'), logFile: join(cp.dir, 'git-server.log') });
  stops.push(() => git.stop());
  await publishCharts(git, join(cp.dir, 'work'));
  const lab = parse(readFileSync(join(chartDir, 'ci', 'lab.yaml'), 'utf8')) as Record<string, unknown>;
  const files = siteFiles({
    clustersUrl: git.repoUrl('clusters'),
    chartsUrl: git.repoUrl('capbm-charts'),
    teams: { [TEAM]: env ? env.hosts : [noHost] },
    clusters: { [`${TEAM}/alpha`]: '192.0.2.100' },
    defaults: { kubeadm: lab.kubeadm },
    images: labImages(),
  });
  const alpha = files.get(`clusters/${TEAM}/alpha.yaml`)!;
  const pool = parseDocument(files.get(`teams/${TEAM}/pool.yaml`)!);
  files.delete(`clusters/${TEAM}/alpha.yaml`);
  // With machines, each cluster has a pool of its own host instead (below).
  if (env) files.delete(`teams/${TEAM}/pool.yaml`);
  await git.createRepo('clusters');
  const repo = await cloneRepo(git.repoUrl('clusters'), join(cp.dir, 'work', 'clusters'));
  for (const [p, content] of files) repo.write(p, content);
  const seed = await repo.commitAndPush('the platform');
  if (env) {
    await createPoolSecrets(cp.kc, new Map([['teams/pool.yaml', pool.toString()]]), env.key.private);
    env.startProvider();
  } else {
    await raw(cp.kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: TEAM } });
  }
  await bootstrapFlux(cp.kc, files, seed);

  // N cluster files: control plane only; with machines, each on a one-host pool behind its own load balancer.
  for (const [i, name] of names.entries()) {
    const doc = parseDocument(alpha);
    doc.setIn(['metadata', 'name'], name);
    doc.setIn(['spec', 'values', 'nodeGroups'], doc.createNode([]));
    if (env) {
      const host = env.hosts[i]!;
      const lb = await startLoadBalancer({ backends: [host.address] });
      lbs.push(lb);
      const p = pool.clone();
      p.setIn(['metadata', 'name'], name);
      p.setIn(['spec', 'addresses'], p.createNode([host.address]));
      p.setIn(['spec', 'hostKeyPolicy', 'pinned'], p.createNode({ [host.address]: [host.hostKeyFingerprint] }));
      repo.write(`teams/${TEAM}/pool-${name}.yaml`, p.toString());
      doc.setIn(['spec', 'values', 'controlPlane', 'hosts', 'pool'], name);
      doc.setIn(['spec', 'values', 'controlPlane', 'endpoint', 'host'], lb.address);
    }
    repo.write(`clusters/${TEAM}/${name}.yaml`, doc.toString());
  }
  const cpu = () =>
    Object.fromEntries(
      flux.processes.map((p) => {
        const f = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return [p.name, (Number(f[11]) + Number(f[12])) / 100]; // utime + stime, clock ticks of 10 ms
      }),
    );
  const peak = () =>
    Object.fromEntries(
      flux.processes.map((p) => [
        p.name,
        Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))![1]) / 1024),
      ]),
    );
  const cpu0 = cpu();
  const t0 = performance.now();
  await repo.commitAndPush(`${n} clusters`);
  await requestReconcile(cp.kc, { kind: 'GitRepository', namespace: 'flux-system', name: 'clusters' });

  const capi = (plural: string, gv = 'cluster.x-k8s.io/v1beta2') => `/apis/${gv}/namespaces/${TEAM}/${plural}`;
  const list = async (path: string) =>
    new Set(
      (await raw<{ items: Array<{ metadata: { name: string } }> }>(cp.kc, 'GET', path)).items.map(
        (i) => i.metadata.name,
      ),
    );
  let tReleases = 0;
  const released = async () => {
    const l = await raw<{ items: Array<{ status?: { conditions?: Array<{ type: string; status: string }> } }> }>(
      cp.kc,
      'GET',
      fluxPath('HelmRelease', TEAM),
    );
    return l.items.filter((h) => h.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
  };
  await waitFor(
    `the Cluster API objects of ${n} clusters`,
    async () => {
      if (!tReleases && (await released()) >= n) tReleases = performance.now();
      const [clusters, kcps, bmcs] = await Promise.all([
        list(capi('clusters')),
        list(capi('kubeadmcontrolplanes', 'controlplane.cluster.x-k8s.io/v1beta2')),
        list(capi('baremetalclusters', 'infrastructure.cluster.x-k8s.io/v1alpha1')),
      ]);
      const whole = names.filter((c) => clusters.has(c) && kcps.has(`${c}-control-plane`) && bmcs.has(c));
      return whole.length === n ? true : undefined;
    },
    limitMs,
    500,
  );
  const tObjects = performance.now();
  if (!tReleases)
    await waitFor(`${n} HelmReleases Ready`, async () => ((await released()) >= n ? true : undefined), limitMs, 500);
  tReleases ||= performance.now();
  const cpu1 = cpu();
  let tRunning = 0;
  if (env) {
    for (const name of names) await waitForRunning(env, TEAM, name, 1, limitMs);
    tRunning = performance.now();
  }
  const s = (t: number) => ((t - t0) / 1000).toFixed(1);
  const mem = flux.memory();
  const hwm = peak();
  process.stdout.write(
    [
      `$ ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench gitops ${n}`}`,
      `clusters: ${n} HelmReleases of charts/capbm-cluster (control plane only), committed at once; Flux concurrency 4`,
      `push -> every HelmRelease Ready:            ${s(tReleases)} s`,
      `push -> every cluster's CAPI objects exist:  ${s(tObjects)} s (Cluster, BareMetalCluster, KubeadmControlPlane)`,
      withMachines
        ? `push -> every Machine Running:               ${s(tRunning)} s (${n} control-plane machines on ${n} lab hosts, real kubeadm)`
        : `machines: not made (N ${n} > --machines ${maxMachines}): no provider and no lab host ran; the objects exist, their machines would wait for hosts`,
      `Flux CPU from the push until the objects existed (s): ${Object.entries(cpu1)
        .map(([k, v]) => `${k} ${(v - cpu0[k]!).toFixed(1)}`)
        .join(', ')}`,
      `Flux resident memory after (MiB): ${Object.entries(mem)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}; peak: ${Object.entries(hwm)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
      '',
    ].join('\n'),
  );
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  for (const lb of lbs) await lb.stop().catch(() => {});
  await (env ? env.stop() : cp.stop());
}

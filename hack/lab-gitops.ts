// The lab's GitOps loop (hack/lab runs it unless --no-gitops): Flux's source-, kustomize- and
// helm-controller on the management plane, a Git server on the lab bridge serving the clusters
// repository (examples/clusters-repo/ with the lab's hosts, host keys, endpoint and registry) and the
// chart's repository (this checkout's charts/), and the sample cluster made by a commit to the
// clusters repository. Every process is persistent and recorded in the lab state, so `hack/lab
// down` stops it.
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseDocument } from 'yaml';
import {
  bootstrapFlux,
  CLUSTERS_REPO_RELEASE_ACCOUNT,
  createPoolSecrets,
  labImages,
  publishCharts,
  siteFiles,
  type ClustersRepoSite,
} from '../test/harness/clusters-repo.ts';
import type { Env } from '../test/harness/env.ts';
import { requestReconcile, startFlux, waitForFluxReady, type FluxRef } from '../test/harness/flux.ts';
import { cloneRepo, startGitServerProcess } from '../test/harness/git-server.ts';
import { chartDir } from '../test/harness/helm.ts';
import { BRIDGE_ADDRESS } from '../test/harness/lab.ts';
import type { ManagedProcess } from '../test/harness/process.ts';

/** The example's team and cluster the lab serves. */
export const LAB_TEAM = 'team-a';
export const LAB_CLUSTER = 'alpha';
const clusterFile = `clusters/${LAB_TEAM}/${LAB_CLUSTER}.yaml`;
const release: FluxRef = { kind: 'HelmRelease', namespace: LAB_TEAM, name: LAB_CLUSTER };

export interface LabGitOps {
  processes: ManagedProcess[];
  /** Clone URL of the clusters repository (on the lab bridge). */
  clustersRepo: string;
  chartsRepo: string;
  /** The commit that added the sample cluster. */
  commit: string;
}

/**
 * Starts Flux and the Git server, seeds both repositories, bootstraps Flux on the clusters
 * repository, and commits the sample cluster (the workers of `workers`); resolves once its
 * HelmRelease is Ready, i.e. the chart's objects exist (Cluster API makes the machines after).
 */
export async function startLabGitOps(
  env: Env,
  o: { dir: string; workers: number; log: (m: string) => void; started?: (ps: ManagedProcess[]) => void },
): Promise<LabGitOps> {
  const { log } = o;
  log('starting Flux (source-, kustomize- and helm-controller) on the management plane');
  const flux = await startFlux(env.cp, {
    dir: join(o.dir, 'flux'),
    persistent: true,
    defaultServiceAccount: CLUSTERS_REPO_RELEASE_ACCOUNT,
  });
  const git = await startGitServerProcess({
    root: join(o.dir, 'git'),
    host: BRIDGE_ADDRESS,
    logFile: join(o.dir, 'git-server.log'),
    persistent: true,
  });
  const processes = [...flux.processes, git.process];
  o.started?.(processes);
  log(`Git server on ${git.url}: capbm-charts.git (this checkout's charts/), clusters.git (examples/clusters-repo)`);
  await publishCharts(git, join(o.dir, 'work'));
  const lab = parse(readFileSync(join(chartDir, 'ci', 'lab.yaml'), 'utf8')) as Record<string, unknown>;
  const site: ClustersRepoSite = {
    clustersUrl: git.repoUrl('clusters'),
    chartsUrl: git.repoUrl('capbm-charts'),
    teams: { [LAB_TEAM]: env.hosts },
    clusters: { [`${LAB_TEAM}/${LAB_CLUSTER}`]: env.lb.address },
    defaults: { kubeadm: lab.kubeadm },
    images: labImages(),
  };
  const files = siteFiles(site);
  await git.createRepo('clusters');
  const repo = await cloneRepo(git.repoUrl('clusters'), join(o.dir, 'work', 'clusters'));
  for (const [p, content] of files) if (p !== clusterFile) repo.write(p, content);
  const seed = await repo.commitAndPush('the lab platform: Flux, team-a and its pool of the lab hosts');
  log(`bootstrapping Flux on ${git.repoUrl('clusters')} (the SSH Secret out of band; the pod network comes from Git)`);
  await createPoolSecrets(env.cp.kc, files, env.key.private);
  await bootstrapFlux(env.cp.kc, files, seed);
  const doc = parseDocument(files.get(clusterFile)!);
  doc.setIn(['spec', 'values', 'nodeGroups', 0, 'replicas'], o.workers);
  repo.write(clusterFile, doc.toString());
  const commit = await repo.commitAndPush(
    `${LAB_TEAM}: cluster ${LAB_CLUSTER} (1 control plane, ${o.workers} workers)`,
  );
  log(`committed ${commit.slice(0, 12)} "${LAB_TEAM}: cluster ${LAB_CLUSTER}" (${clusterFile}); Flux applies it`);
  await requestReconcile(env.cp.kc, { kind: 'GitRepository', namespace: 'flux-system', name: 'clusters' });
  await waitForFluxReady(
    env.cp.kc,
    { kind: 'Kustomization', namespace: 'flux-system', name: `clusters-${LAB_TEAM}` },
    {
      revision: commit,
      timeoutMs: 180_000,
    },
  );
  await waitForFluxReady(env.cp.kc, release, { timeoutMs: 300_000 });
  return { processes, clustersRepo: git.repoUrl('clusters'), chartsRepo: git.repoUrl('capbm-charts'), commit };
}

/** The GitOps loop, as commands to copy (printed by hack/lab). */
export function gitopsUsage(clustersRepo: string): string[] {
  return [
    'GitOps: every change to the cluster is a commit to the clusters repository (Flux applies main):',
    `  git clone ${clustersRepo} /tmp/clusters && cd /tmp/clusters     # URL: hack/lab gitops url`,
    `  sed -i 's/replicas: 2/replicas: 3/' ${clusterFile}     # or any value of docs/gitops-values.md`,
    `  git -c user.name=me -c user.email=me@lab commit -am '${LAB_CLUSTER}: three workers' && git push`,
    '  hack/lab gitops                  # Flux: sources, Kustomizations, HelmReleases: readiness and why',
    `  hack/lab kubectl get cluster,machines -n ${LAB_TEAM} -w`,
  ];
}

/** `hack/lab gitops`: what Flux says of the repository, and of the clusters it made. */
export async function gitopsStatus(kubectl: string, kubeconfig: string): Promise<string> {
  const run = async (args: string[]) =>
    (await execa(kubectl, ['--kubeconfig', kubeconfig, ...args], { reject: false })).stdout;
  return [
    await run(['get', 'gitrepositories,kustomizations,helmreleases', '-A']),
    '',
    await run(['get', 'clusters,machinedeployments,machines', '-A']),
  ].join('\n');
}

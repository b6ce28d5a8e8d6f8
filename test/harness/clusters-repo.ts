// The example clusters repository (examples/clusters-repo/) as a site serves it: the same files,
// comments kept, with what differs from one site to another set (where the repositories are served,
// each team's hosts and their keys, each cluster's API endpoint, values the site gives every
// cluster). The GitOps e2e test, the lab and the benchmark seed their Git server with this.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments, parseDocument, type Document } from 'yaml';
import type { KubeConfig } from '@kubernetes/client-node';
import { ApiError, apply, raw } from '../../provider/kube/raw.ts';
import { fluxPath, waitForFluxReady, type FluxKind } from './flux.ts';
import { cloneRepo, type GitServer } from './git-server.ts';
import { repoRoot } from './paths.ts';
import { REGISTRY_NAME } from './registry.ts';

export const exampleRepoDir = join(repoRoot, 'examples', 'clusters-repo');
/**
 * The ServiceAccount of each team's namespace that Helm installs its HelmReleases as (teams/<team>/
 * access.yaml): Flux's helm-controller runs with --default-service-account set to it.
 */
export const CLUSTERS_REPO_RELEASE_ACCOUNT = 'capbm-release';
/** The image of the example's pod network add-on (addons/kube-router). */
export const KUBE_ROUTER_IMAGE = 'docker.io/cloudnativelabs/kube-router';
/** The lab's site: the add-ons' images from the lab registry. */
export const labImages = (): Record<string, string> => ({ [KUBE_ROUTER_IMAGE]: `${REGISTRY_NAME}/kube-router` });

/** Every file of a folder, as relative path -> content, in path order. */
export function filesOf(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

export interface RepoObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, any>;
  data?: Record<string, string>;
}

/**
 * The management cluster's objects of every YAML file of the example, with the file each comes
 * from; addons/ holds what Flux applies to the workload clusters, not these.
 */
export function exampleObjects(): Array<{ file: string; obj: RepoObject }> {
  return [...filesOf(exampleRepoDir)]
    .filter(([f]) => f.endsWith('.yaml') && !f.startsWith('addons/'))
    .flatMap(([file, text]) => parseAllDocuments(text).map((d) => ({ file, obj: d.toJS() as RepoObject })));
}

export interface SiteHost {
  address: string;
  /** SHA256:... as ssh-keygen -l -E sha256 prints it. */
  hostKeyFingerprint: string;
}

export interface ClustersRepoSite {
  /** Where the clusters repository itself is served (GitRepository clusters). */
  clustersUrl: string;
  /** Where the repository holding charts/capbm-cluster is served (GitRepository capbm-charts). */
  chartsUrl: string;
  /** The teams to keep (teams/<team>/, flux/clusters-<team>.yaml, clusters/<team>/) with their pool's hosts. */
  teams: Record<string, SiteHost[]>;
  /** The clusters to keep, "<team>/<name>" -> its API endpoint (a load balancer's address). */
  clusters: Record<string, string>;
  /** Values set in every team's cluster-defaults (deep: a leaf or a list replaces). */
  defaults?: Record<string, unknown>;
  /** Where the site's nodes pull the add-ons' images: image name -> the mirror's name (addons/ kustomization images). */
  images?: Record<string, string>;
}

/** Sets every leaf of `values` into the YAML document at `path`, keeping the document's comments. */
function setLeaves(doc: Document, path: Array<string | number>, values: unknown): void {
  if (values && typeof values === 'object' && !Array.isArray(values)) {
    for (const [k, v] of Object.entries(values)) setLeaves(doc, [...path, k], v);
  } else doc.setIn(path, values);
}

/** A team's file is kept when the site has the team (and, for a cluster, the cluster). */
function kept(site: ClustersRepoSite, path: string): boolean {
  const team = /^(?:teams|clusters)\/([^/]+)\/|^flux\/clusters-(.+)\.yaml$/.exec(path);
  const name = team?.[1] ?? team?.[2];
  if (name && !(name in site.teams)) return false;
  const cluster = /^clusters\/([^/]+)\/([^/]+)\.yaml$/.exec(path);
  return !cluster || `${cluster[1]}/${cluster[2]}` in site.clusters;
}

function adjust(site: ClustersRepoSite, doc: Document): void {
  const o = doc.toJS() as RepoObject;
  const ns = o.metadata?.namespace ?? ''; // a kustomization.yaml of addons/ has no metadata
  if (o.kind === 'GitRepository') {
    const url = { clusters: site.clustersUrl, 'platform-addons': site.clustersUrl, 'capbm-charts': site.chartsUrl }[
      o.metadata.name
    ];
    if (!url) throw new Error(`GitRepository ${o.metadata.name} of the example has no URL in the site`);
    doc.setIn(['spec', 'url'], url);
  } else if (o.apiVersion.startsWith('kustomize.config.k8s.io/')) {
    const images = (o as unknown as { images?: Array<{ name: string }> }).images ?? [];
    for (const [i, image] of images.entries()) {
      const mirror = site.images?.[image.name];
      if (mirror) doc.setIn(['images', i, 'newName'], mirror);
    }
  } else if (o.kind === 'BareMetalHostPool') {
    const hosts = site.teams[ns] ?? [];
    if (hosts.length === 0) throw new Error(`the site gives team ${ns} no hosts for pool ${o.metadata.name}`);
    doc.setIn(
      ['spec', 'addresses'],
      doc.createNode(
        hosts.map((h) => h.address),
        { flow: false },
      ),
    );
    doc.setIn(
      ['spec', 'hostKeyPolicy', 'pinned'],
      doc.createNode(Object.fromEntries(hosts.map((h) => [h.address, [h.hostKeyFingerprint]]))),
    );
  } else if (o.kind === 'ConfigMap' && o.metadata.name === 'cluster-defaults' && site.defaults) {
    const values = parseDocument(o.data?.['values.yaml'] ?? '');
    setLeaves(values, [], site.defaults);
    doc.setIn(['data', 'values.yaml'], values.toString());
  } else if (o.kind === 'HelmRelease') {
    const endpoint = site.clusters[`${ns}/${o.metadata.name}`];
    if (!endpoint) throw new Error(`the site gives cluster ${ns}/${o.metadata.name} no endpoint`);
    doc.setIn(['spec', 'values', 'controlPlane', 'endpoint', 'host'], endpoint);
  }
}

/** The example's files as the site serves them: relative path -> content. */
export function siteFiles(site: ClustersRepoSite): Map<string, string> {
  const out = new Map<string, string>();
  for (const [path, text] of filesOf(exampleRepoDir)) {
    if (!kept(site, path)) continue;
    if (!path.endsWith('.yaml')) {
      out.set(path, text);
      continue;
    }
    const docs = parseAllDocuments(text) as Document[];
    for (const d of docs) adjust(site, d);
    out.set(path, docs.map((d) => d.toString()).join(''));
  }
  for (const c of Object.keys(site.clusters))
    if (!out.has(`clusters/${c}.yaml`)) throw new Error(`the example has no cluster ${c} (clusters/${c}.yaml)`);
  return out;
}

/** The objects of the YAML files under `folder`/ of a set of repository files. */
export function objectsUnder(files: Map<string, string>, folder: string): RepoObject[] {
  return [...files]
    .filter(([p]) => p.startsWith(`${folder}/`) && p.endsWith('.yaml'))
    .flatMap(([, text]) => parseAllDocuments(text).map((d) => d.toJS() as RepoObject | null))
    .filter((o): o is RepoObject => o !== null);
}

/**
 * The repository holding CAPBM's chart (GitRepository capbm-charts): `charts/` of this checkout,
 * committed to a new repository `name` on the Git server. Resolves with the commit.
 */
export async function publishCharts(git: GitServer, workDir: string, name = 'capbm-charts'): Promise<string> {
  await git.createRepo(name);
  const work = await cloneRepo(git.repoUrl(name), join(workDir, name));
  for (const [p, content] of filesOf(join(repoRoot, 'charts'))) work.write(join('charts', p), content);
  return work.commitAndPush('charts from the CAPBM checkout');
}

/**
 * What the platform team does out of band before Flux (examples/clusters-repo/README.md, bootstrap
 * step 2): each team's namespace and its pools' SSH Secrets (the key is never in Git).
 */
export async function createPoolSecrets(kc: KubeConfig, files: Map<string, string>, privateKey: string) {
  for (const pool of objectsUnder(files, 'teams').filter((o) => o.kind === 'BareMetalHostPool')) {
    const ns = pool.metadata.namespace!;
    await raw(kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }).catch(
      (err: unknown) => {
        if (!(err instanceof ApiError && err.code === 409)) throw err;
      },
    );
    await raw(kc, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/ssh-auth',
      metadata: { name: pool.spec!.ssh.secretRef.name, namespace: ns },
      stringData: { 'ssh-privatekey': privateKey },
    });
  }
}

/**
 * Bootstrap step 3: `kubectl apply --server-side -f flux/` (and the flux-system namespace); from
 * then on Flux applies flux/ itself. Resolves once the repository's Kustomizations are Ready at `revision`.
 */
export async function bootstrapFlux(kc: KubeConfig, files: Map<string, string>, revision: string): Promise<void> {
  await raw(kc, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'flux-system' },
  }).catch((err: unknown) => {
    if (!(err instanceof ApiError && err.code === 409)) throw err;
  });
  const objs = objectsUnder(files, 'flux');
  for (const o of objs) {
    const path =
      o.kind === 'ServiceAccount'
        ? `/api/v1/namespaces/${o.metadata.namespace!}/serviceaccounts/${o.metadata.name}`
        : fluxPath(o.kind as FluxKind, o.metadata.namespace!, o.metadata.name);
    await apply(kc, path, o, 'kubectl');
  }
  for (const o of objs.filter((x) => x.kind === 'GitRepository' || x.kind === 'Kustomization')) {
    const ref = { kind: o.kind as FluxKind, namespace: o.metadata.namespace!, name: o.metadata.name };
    // The chart's repository has commits of its own: only the clusters repository's are waited for.
    const mine = o.kind === 'Kustomization' || o.metadata.name === 'clusters';
    await waitForFluxReady(kc, ref, { ...(mine ? { revision } : {}), timeoutMs: 180_000 });
  }
}

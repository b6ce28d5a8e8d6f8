// The example clusters repository (examples/clusters-repo/) as a site serves it: the same files,
// comments kept, with what differs from one site to another set (where the repositories are served,
// each team's hosts and their keys, each cluster's API endpoint, values the site gives every
// cluster). The GitOps e2e test, the lab and the benchmark seed their Git server with this.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments, parseDocument, type Document } from 'yaml';
import { repoRoot } from './paths.ts';

export const exampleRepoDir = join(repoRoot, 'examples', 'clusters-repo');

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

/** The objects of every YAML file of the example, with the file each comes from. */
export function exampleObjects(): Array<{ file: string; obj: RepoObject }> {
  return [...filesOf(exampleRepoDir)]
    .filter(([f]) => f.endsWith('.yaml'))
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
  const ns = o.metadata.namespace ?? '';
  if (o.kind === 'GitRepository') {
    const url = { clusters: site.clustersUrl, 'capbm-charts': site.chartsUrl }[o.metadata.name];
    if (!url) throw new Error(`GitRepository ${o.metadata.name} of the example has no URL in the site`);
    doc.setIn(['spec', 'url'], url);
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

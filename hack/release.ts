// Builds CAPBM's clusterctl provider repository from manifests/ (clusterctl's provider contract,
// cluster-api docs/book/src/developer/providers/contracts/clusterctl.md):
//   <out>/infrastructure-capbm/<version>/infrastructure-components.yaml  Namespace, CRDs, RBAC, manager
//   <out>/infrastructure-capbm/<version>/metadata.yaml                   release series -> contract
//   <out>/infrastructure-capbm/<version>/cluster-template*.yaml          one file per flavor
//   <out>/infrastructure-capbm/<version>/clusterclass-*.yaml             ClusterClasses the flavors use
// The version is package.json's. Usage: node hack/release.ts [--out DIR] (default .cache/release);
// prints the components URL a clusterctl config's `providers:` entry takes.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse, parseAllDocuments, type Document } from 'yaml';
import { repoRoot } from '../test/harness/paths.ts';

export const PROVIDER_NAME = 'capbm';
export const PROVIDER_LABEL = `infrastructure-${PROVIDER_NAME}`;
const LABEL_KEY = 'cluster.x-k8s.io/provider';
/** The Cluster API contract this release implements (provider/api/kinds.ts contractLabels). */
export const CONTRACT = 'v1beta2';
const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);

export class ReleaseError extends Error {
  constructor(what: string, fix: string) {
    super(`${what}; ${fix}`);
    this.name = 'ReleaseError';
  }
}

interface Meta {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: { template?: { spec?: { containers?: Array<{ name?: string; image?: string }> } } };
}

/** package.json's version as a clusterctl version (v-prefixed semver). */
export function releaseVersion(): string {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version)) {
    throw new ReleaseError(`package.json version "${version}" is not semver`, 'set it to MAJOR.MINOR.PATCH');
  }
  return `v${version}`;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => join(dir, f));
}

/** Every document of the files, labelled with the provider label (as clusterctl expects). */
function labelled(files: string[]): Document[] {
  return files.flatMap((f) =>
    parseAllDocuments(readFileSync(f, 'utf8')).filter((d) => {
      if (d.errors.length) throw new ReleaseError(`${f}: ${d.errors[0]!.message}`, 'fix the YAML');
      const o = d.toJS() as Meta | null;
      if (!o?.kind) return false;
      d.setIn(['metadata', 'labels', LABEL_KEY], PROVIDER_LABEL);
      return true;
    }),
  );
}

/** The contract rules clusterctl relies on: one Namespace, everything in it, a `manager` container. */
export function checkComponents(objects: Meta[], version: string): void {
  const namespaces = objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata?.name);
  if (namespaces.length !== 1) {
    throw new ReleaseError(
      `the components hold ${namespaces.length} Namespaces (${namespaces.join(', ')})`,
      'clusterctl needs exactly one: keep the one in manifests/manager/manager.yaml',
    );
  }
  for (const o of objects.filter((x) => !CLUSTER_SCOPED.has(x.kind ?? ''))) {
    if (o.metadata?.namespace !== namespaces[0]) {
      throw new ReleaseError(
        `${o.kind} ${o.metadata?.name} is in namespace "${o.metadata?.namespace ?? ''}", not ${namespaces[0]}`,
        'every namespaced object of the components belongs to the provider namespace',
      );
    }
  }
  const containers = objects.filter((o) => o.kind === 'Deployment').flatMap((o) => o.spec?.template?.spec?.containers);
  const manager = containers.find((c) => c?.name === 'manager');
  if (!manager) throw new ReleaseError('no Deployment has a container named "manager"', 'clusterctl requires one');
  if (!manager.image?.endsWith(`:${version}}`)) {
    throw new ReleaseError(
      `the manager image default "${manager.image}" is not tagged ${version}`,
      `set \${CAPBM_IMAGE:=...:${version}} in manifests/manager/manager.yaml`,
    );
  }
}

/**
 * Every clusterctl variable of the components has a default: `clusterctl init` must work with none
 * set. clusterctl counts an empty default (`${VAR:=}`) as none (yamlprocessor/simple_processor.go),
 * and sees variables in comments too.
 */
export function checkVariables(text: string): void {
  const required = [...text.matchAll(/\$\{\s*([A-Za-z0-9_]+)\s*(?::?[-=]([^}]*))?\}/g)].filter((m) => !m[2]);
  if (required.length) {
    throw new ReleaseError(
      `the components use variables without a default: ${[...new Set(required.map((m) => m[0]))].join(', ')}`,
      'give each a default (${VAR:=value}); a flag that is off unless set takes a space (${VAR:= })',
    );
  }
}

/** metadata.yaml must map this version's release series to the contract. */
export function checkMetadata(text: string, version: string): void {
  const m = parse(text) as { releaseSeries?: Array<{ major: number; minor: number; contract: string }> };
  const [major, minor] = version.slice(1).split('.').map(Number);
  const series = m.releaseSeries?.find((s) => s.major === major && s.minor === minor);
  if (series?.contract !== CONTRACT) {
    throw new ReleaseError(
      `manifests/metadata.yaml has no release series ${major}.${minor} with contract ${CONTRACT}`,
      `add {major: ${major}, minor: ${minor}, contract: ${CONTRACT}} to its releaseSeries`,
    );
  }
}

export function componentsYaml(version: string): string {
  const m = join(repoRoot, 'manifests');
  const docs = labelled([
    join(m, 'manager', 'manager.yaml'),
    ...yamlFiles(join(m, 'crd')),
    ...yamlFiles(join(m, 'rbac')),
  ]);
  checkComponents(
    docs.map((d) => d.toJS() as Meta),
    version,
  );
  const order = (d: Document) => ['Namespace', 'CustomResourceDefinition'].indexOf(String(d.get('kind'))) >>> 0;
  const sorted = docs.map((d, i) => ({ d, i })).sort((a, b) => order(a.d) - order(b.d) || a.i - b.i);
  const text = sorted.map(({ d }) => d.toString({ lineWidth: 0 }).replace(/^---\n/, '')).join('---\n');
  checkVariables(text);
  return text;
}

/** The flavors (cluster-template*.yaml) and the ClusterClasses they use (clusterclass-*.yaml). */
function templates(): string[] {
  const dir = join(repoRoot, 'manifests', 'templates');
  const files = yamlFiles(dir).filter((f) =>
    /\/(cluster-template(-[a-z0-9-]+)?|clusterclass-[a-z0-9-]+)\.yaml$/.test(f),
  );
  for (const f of files.filter((x) => x.includes('/clusterclass-'))) {
    if (readFileSync(f, 'utf8').includes('${')) {
      throw new ReleaseError(
        `${f} uses \${VARIABLES}`,
        'ClusterClass definitions take ClusterClass variables, not clusterctl ones (provider contract)',
      );
    }
  }
  return files;
}

/** Writes the repository; returns the folder of this version. */
export function buildRelease(out: string): string {
  const version = releaseVersion();
  const dir = join(out, PROVIDER_LABEL, version);
  const metadata = readFileSync(join(repoRoot, 'manifests', 'metadata.yaml'), 'utf8');
  checkMetadata(metadata, version);
  const components = componentsYaml(version);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'infrastructure-components.yaml'), components);
  writeFileSync(join(dir, 'metadata.yaml'), metadata);
  for (const f of templates()) copyFileSync(f, join(dir, f.slice(f.lastIndexOf('/') + 1)));
  return dir;
}

function main(argv: string[]): void {
  const i = argv.indexOf('--out');
  if (i >= 0 && !argv[i + 1]) throw new ReleaseError('--out needs a folder', 'usage: hack/release [--out DIR]');
  const out = resolve(i >= 0 ? argv[i + 1]! : join(repoRoot, '.cache', 'release'));
  const dir = buildRelease(out);
  process.stderr.write(`    clusterctl repository of ${PROVIDER_LABEL} ${releaseVersion()} in ${dir}\n`);
  process.stdout.write(`${pathToFileURL(join(dir, 'infrastructure-components.yaml')).href}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

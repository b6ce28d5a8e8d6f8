// The real helm CLI for the chart tests: $CAPBM_HELM, or .cache/helm/bin/helm, installed there from
// the Go module (helm.sh/helm/v4/cmd/helm at HELM_VERSION, hack/versions.env) when it is missing.
import { execa } from 'execa';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot, versions } from './paths.ts';

export const chartDir = join(repoRoot, 'charts', 'capbm-cluster');

let installing: Promise<string> | undefined;

/** The helm binary the tests use (and say they use). */
export function helmBinary(): Promise<string> {
  if (process.env.CAPBM_HELM) return Promise.resolve(process.env.CAPBM_HELM);
  const bin = join(repoRoot, '.cache', 'helm', 'bin');
  const helm = join(bin, 'helm');
  if (existsSync(helm)) return Promise.resolve(helm);
  installing ??= (async () => {
    const version = versions().HELM_VERSION;
    if (!version) throw new Error('HELM_VERSION is not set in hack/versions.env');
    mkdirSync(bin, { recursive: true });
    const r = await execa('go', ['install', '-trimpath', `helm.sh/helm/v4/cmd/helm@${version}`], {
      env: { GOBIN: bin },
      reject: false,
      all: true,
    });
    if (r.exitCode !== 0 || !existsSync(helm)) {
      throw new Error(
        `installing helm ${version} failed:\n${(r.all ?? '').slice(-2000)}\n  fix: GOBIN=${bin} go install helm.sh/helm/v4/cmd/helm@${version}, or set CAPBM_HELM`,
      );
    }
    return helm;
  })();
  return installing;
}

export interface HelmResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with the arguments; never throws on a non-zero exit (the result says). */
export async function helm(args: string[], env: Record<string, string> = {}): Promise<HelmResult> {
  const r = await execa(await helmBinary(), args, {
    reject: false,
    // Helm's own state (repositories, cache) stays in a folder of this checkout.
    env: {
      HELM_CACHE_HOME: join(repoRoot, '.cache', 'helm', 'home', 'cache'),
      HELM_CONFIG_HOME: join(repoRoot, '.cache', 'helm', 'home', 'config'),
      HELM_DATA_HOME: join(repoRoot, '.cache', 'helm', 'home', 'data'),
      ...env,
    },
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export interface Rendered {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: Record<string, any>;
}

/** `helm template` of the chart with a values file: the objects, or the error helm printed. */
export async function renderChart(
  valuesFile: string,
  o: { release?: string; namespace?: string } = {},
): Promise<{ objects: Rendered[]; error?: string }> {
  const r = await helm([
    'template',
    o.release ?? 'demo',
    chartDir,
    '--namespace',
    o.namespace ?? 'default',
    '--values',
    valuesFile,
  ]);
  if (r.exitCode !== 0) return { objects: [], error: r.stderr || `helm exited ${r.exitCode}` };
  const objects = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Rendered | null)
    .filter((d): d is Rendered => d !== null);
  return { objects };
}

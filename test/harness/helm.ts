// The real helm CLI for the chart tests: $CAPBM_HELM, or the helm hack/flux builds beside the Flux
// controllers (one build of helm at HELM_VERSION, hack/versions.env).
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { fluxDir, repoRoot } from './paths.ts';

export const chartDir = join(repoRoot, 'charts', 'capbm-cluster');

/** The helm binary the tests use (and say they use). */
export function helmBinary(): Promise<string> {
  if (process.env.CAPBM_HELM) return Promise.resolve(process.env.CAPBM_HELM);
  const helm = join(fluxDir(), 'bin', 'helm');
  if (existsSync(helm)) return Promise.resolve(helm);
  return Promise.reject(
    new Error(
      `helm is not built (${helm} is missing)\n  fix: run hack/flux build (hack/test and hack/lab do), or set CAPBM_HELM`,
    ),
  );
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

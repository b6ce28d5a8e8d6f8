import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, whatever the working directory. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The pinned versions in hack/versions.env (one file for bash and TypeScript). */
export function versions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(join(repoRoot, 'hack', 'versions.env'), 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Where hack/controlplane puts the built programs and CRDs for the pinned versions. */
export function controlPlaneDir(): string {
  if (process.env.CAPBM_CONTROLPLANE) return process.env.CAPBM_CONTROLPLANE;
  const v = versions();
  const cache = process.env.CAPBM_CACHE ?? join(repoRoot, '.cache');
  return join(
    cache,
    'controlplane',
    `k8s-${v.KUBERNETES_VERSION}_etcd-${v.ETCD_VERSION}_capi-${v.CAPI_VERSION}_b${v.CONTROLPLANE_BUILD}`,
  );
}

/** Where hack/flux puts the Flux controllers, helm and the Flux CRDs for the pinned versions. */
export function fluxDir(): string {
  if (process.env.CAPBM_FLUX) return process.env.CAPBM_FLUX;
  const v = versions();
  const cache = process.env.CAPBM_CACHE ?? join(repoRoot, '.cache');
  return join(
    cache,
    'flux',
    `source-${v.FLUX_SOURCE_VERSION}_kustomize-${v.FLUX_KUSTOMIZE_VERSION}_helm-${v.FLUX_HELM_VERSION}_helmcli-${v.HELM_VERSION}_b${v.FLUX_BUILD}`,
  );
}

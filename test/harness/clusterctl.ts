// The real clusterctl (built by hack/controlplane with the rest of Cluster API) against local
// repositories only: CAPBM's from hack/release, and CAPI core, CABPK and KCP from the release
// manifests hack/controlplane builds (clusterctl/repos). Nothing is fetched from the network:
// clusterctl's own version check is off and its config and state live in a folder of the test.
import { execa } from 'execa';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { KubeConfig } from '@kubernetes/client-node';
import { raw } from '../../provider/kube/raw.ts';
import { applyCrds, readYamlDocuments, waitForCrds } from './controlplane.ts';
import { controlPlaneDir, repoRoot, versions } from './paths.ts';

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Where hack/controlplane put the CAPI providers' clusterctl repositories and cert-manager's CRDs. */
export const clusterctlAssets = () => join(controlPlaneDir(), 'clusterctl');

/** hack/release into `out`; returns the URL of infrastructure-components.yaml it printed. */
export async function release(out: string): Promise<string> {
  const r = await execa(join(repoRoot, 'hack', 'release'), ['--out', out], { reject: false });
  if (r.exitCode !== 0) throw new Error(`hack/release failed (exit ${r.exitCode}):\n${String(r.stderr)}`);
  return String(r.stdout).trim();
}

/**
 * A clusterctl config whose `providers:` point at local repositories: capbm at `capbmUrl`, and the
 * CAPI providers clusterctl init adds on a first run (core cluster-api, kubeadm bootstrap and control
 * plane) at hack/controlplane's. Returns its path.
 */
export function writeClusterctlConfig(dir: string, capbmUrl: string): string {
  const repos = join(clusterctlAssets(), 'repos');
  const v = versions().CAPI_VERSION!;
  const local = (label: string, file: string) => pathToFileURL(join(repos, label, v, file)).href;
  const providers = [
    { name: 'capbm', type: 'InfrastructureProvider', url: capbmUrl },
    { name: 'cluster-api', type: 'CoreProvider', url: local('cluster-api', 'core-components.yaml') },
    { name: 'kubeadm', type: 'BootstrapProvider', url: local('bootstrap-kubeadm', 'bootstrap-components.yaml') },
    {
      name: 'kubeadm',
      type: 'ControlPlaneProvider',
      url: local('control-plane-kubeadm', 'control-plane-components.yaml'),
    },
  ];
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'clusterctl.yaml');
  writeFileSync(path, JSON.stringify({ providers, overridesFolder: join(dir, 'overrides') }, null, 2));
  return path;
}

/** Runs clusterctl; never throws on a non-zero exit (the result says). */
export async function clusterctl(
  args: string[],
  o: { config: string; env?: Record<string, string> },
): Promise<RunResult> {
  const home = join(o.config, '..', 'home');
  mkdirSync(home, { recursive: true });
  const r = await execa(join(controlPlaneDir(), 'bin', 'clusterctl'), [...args, '--config', o.config], {
    reject: false,
    extendEnv: false,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      XDG_CONFIG_HOME: join(home, '.config'),
      CLUSTERCTL_DISABLE_VERSIONCHECK: 'true',
      ...o.env,
    },
    timeout: 180_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Runs the control plane's kubectl with a kubeconfig and stdin; never throws on a non-zero exit. */
export async function kubectl(kubeconfig: string, args: string[], input?: string): Promise<RunResult> {
  const r = await execa(join(controlPlaneDir(), 'bin', 'kubectl'), [`--kubeconfig=${kubeconfig}`, ...args], {
    reject: false,
    ...(input === undefined ? {} : { input }),
    timeout: 120_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/**
 * cert-manager's genuine CRDs: clusterctl init installs providers only once the cert-manager API
 * serves (it creates a test Issuer and Certificate). Installed this way, cert-manager counts as
 * externally managed (no clusterctl labels), so init and upgrade plan never fetch it.
 */
export async function installCertManagerCrds(kc: KubeConfig): Promise<void> {
  const dir = join(clusterctlAssets(), 'cert-manager-crds');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => join(dir, f));
  await waitForCrds(kc, await applyCrds(kc, readYamlDocuments(files)));
}

/** The providers clusterctl init installs beside CAPBM, whose managers the harness runs as processes. */
const capiProviders = ['cluster-api', 'bootstrap-kubeadm', 'control-plane-kubeadm'];

/**
 * After `clusterctl init` on a harness plane: CAPI's managers are the harness's processes, which
 * run without webhooks (controlplane.ts), while init installed the webhook configurations and CRD
 * conversion webhooks of their Deployments, served by Services no pod backs here (no kubelet, no
 * cert-manager). Those are removed so the API serves CAPI's kinds as before; CAPBM's objects (it
 * has no webhooks) are left exactly as init made them. Returns what was changed.
 */
export async function standInForCapiPods(kc: KubeConfig): Promise<string[]> {
  const changed: string[] = [];
  const crds = await raw<{
    items: Array<{ metadata: { name: string }; spec: { conversion?: { strategy?: string } } }>;
  }>(kc, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions');
  for (const c of crds.items.filter((x) => x.spec.conversion?.strategy === 'Webhook')) {
    await raw(kc, 'PATCH', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${c.metadata.name}`, {
      spec: { conversion: { strategy: 'None', webhook: null } },
    });
    changed.push(`crd/${c.metadata.name}`);
  }
  for (const kind of ['validatingwebhookconfigurations', 'mutatingwebhookconfigurations']) {
    const path = `/apis/admissionregistration.k8s.io/v1/${kind}`;
    const list = await raw<{ items: Array<{ metadata: { name: string; labels?: Record<string, string> } }> }>(
      kc,
      'GET',
      path,
    );
    for (const w of list.items.filter((x) =>
      capiProviders.includes(x.metadata.labels?.['cluster.x-k8s.io/provider'] ?? ''),
    )) {
      await raw(kc, 'DELETE', `${path}/${w.metadata.name}`);
      changed.push(`${kind}/${w.metadata.name}`);
    }
  }
  return changed;
}

/**
 * What `clusterctl init` adds to every CRD it installs, for planes whose Cluster API and CAPBM were
 * not installed by init: the label `clusterctl move` discovers the kinds it moves (and backs up) by.
 * Returns how many CRDs were labelled.
 */
export async function labelCrdsAsClusterctlInit(kc: KubeConfig): Promise<number> {
  const crds = await raw<{ items: Array<{ metadata: { name: string } }> }>(
    kc,
    'GET',
    '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
  );
  const ours = crds.items.filter((c) => c.metadata.name.endsWith('cluster.x-k8s.io'));
  for (const c of ours)
    await raw(kc, 'PATCH', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${c.metadata.name}`, {
      metadata: { labels: { 'clusterctl.cluster.x-k8s.io': '' } },
    });
  return ours.length;
}

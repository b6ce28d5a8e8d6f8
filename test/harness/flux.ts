// Real Flux for tests, the lab and benchmarks: source-controller, kustomize-controller and
// helm-controller (built by hack/flux from their Go modules) as processes against the harness's
// kube-apiserver, with their genuine CRDs. source-controller's artifact server listens on
// 127.0.0.1; the other two download the artifacts it advertises there. No leader election, every
// namespace watched, events only as Kubernetes Events (no notification-controller).
import type { KubeConfig } from '@kubernetes/client-node';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apply, raw } from '../../provider/kube/raw.ts';
import { applyCrds, readYamlDocuments, waitForCrds, type ControlPlane } from './controlplane.ts';
import { fluxDir } from './paths.ts';
import { freePort, GiveUp, startProcess, tail, waitFor, type ManagedProcess } from './process.ts';

export type FluxController = 'source-controller' | 'kustomize-controller' | 'helm-controller';
const controllers: FluxController[] = ['source-controller', 'kustomize-controller', 'helm-controller'];

export interface FluxOptions {
  /** Logs (<controller>.log) and source-controller's artifact storage. Default: <cp.dir>/flux. */
  dir?: string;
  /** Reconciles at once, per kind, in each controller. Default 4 (Flux's own default for kustomize and helm). */
  concurrent?: number;
  /** How soon an object waiting for a dependency (dependsOn, a source not ready yet) is retried. Default 5s. */
  requeueDependency?: string;
  /** Leave the processes running when this Node process exits (the lab). */
  persistent?: boolean;
  /** Progress messages. */
  log?: (msg: string) => void;
  /**
   * helm-controller's --default-service-account: a HelmRelease without spec.serviceAccountName is
   * installed as this ServiceAccount of its own namespace (Flux's multi-tenancy lockdown; the
   * clusters repository's is CLUSTERS_REPO_RELEASE_ACCOUNT). Default: none (helm-controller's own rights).
   */
  defaultServiceAccount?: string;
}

export interface Flux {
  dir: string;
  /** source-controller's artifact server: http://127.0.0.1:<port> */
  artifactServer: string;
  /** The helm CLI of the same build. */
  helm: string;
  processes: ManagedProcess[];
  /** Resident memory of each running controller, in MiB (VmRSS). */
  memory(): Record<string, number>;
  stop(): Promise<void>;
}

function bin(name: string): string {
  const p = join(fluxDir(), 'bin', name);
  if (!existsSync(p)) throw new Error(`Flux program ${name} is not built (looked in ${p}); run: hack/flux build`);
  return p;
}

/** Installs the Flux CRDs from the module downloads hack/flux copied, and waits until they are served. */
export async function installFluxCrds(kc: KubeConfig): Promise<void> {
  const root = join(fluxDir(), 'crd');
  if (!existsSync(root)) throw new Error(`the Flux CRDs are not built (looked in ${root}); run: hack/flux build`);
  const files = controllers.flatMap((c) =>
    readdirSync(join(root, c))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => join(root, c, f)),
  );
  await waitForCrds(kc, await applyCrds(kc, readYamlDocuments(files)));
}

interface ControllerSpec {
  cp: ControlPlane;
  dir: string;
  name: FluxController;
  args: string[];
  o: FluxOptions;
}

async function startController({ cp, dir, name, args, o }: ControllerSpec): Promise<ManagedProcess> {
  const [health, metrics] = [await freePort(), await freePort()];
  const proc = startProcess({
    name,
    command: bin(name),
    args: [
      '--watch-all-namespaces=true',
      '--enable-leader-election=false',
      `--health-addr=127.0.0.1:${health}`,
      `--metrics-addr=127.0.0.1:${metrics}`,
      `--concurrent=${o.concurrent ?? 4}`,
      `--requeue-dependency=${o.requeueDependency ?? '5s'}`,
      '--log-encoding=json',
      ...args,
    ],
    // controller-runtime reads KUBECONFIG; RUNTIME_NAMESPACE is where a controller in a cluster runs;
    // scratch files (a chart being built, a release's chart download) stay in the folder, not /tmp.
    env: { KUBECONFIG: cp.kubeconfigPath, RUNTIME_NAMESPACE: 'flux-system', TMPDIR: join(dir, 'tmp') },
    logFile: join(dir, `${name}.log`),
    ...(o.persistent ? { persistent: true } : {}),
  });
  await waitFor(
    `Flux ${name} to become ready`,
    async () => {
      if (!proc.running()) throw new GiveUp(`${name} exited:\n${tail(proc.logFile)}`);
      const res = await fetch(`http://127.0.0.1:${health}/readyz`);
      return res.ok ? true : undefined;
    },
    60_000,
    200,
  );
  return proc;
}

/** VmRSS of a process in MiB, from /proc; 0 when it is gone. */
export function residentMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** Installs the Flux CRDs into the control plane and starts the three controllers against it. */
export async function startFlux(cp: ControlPlane, o: FluxOptions = {}): Promise<Flux> {
  const log = o.log ?? (() => {});
  const dir = o.dir ?? join(cp.dir, 'flux');
  for (const d of ['storage', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  const helm = bin('helm');
  const processes: ManagedProcess[] = [];
  const stop = async () => {
    for (const p of [...processes].reverse()) await p.stop();
  };
  try {
    log('installing the Flux CRDs');
    await installFluxCrds(cp.kc);
    const storage = await freePort();
    const artifactServer = `http://127.0.0.1:${storage}`;
    const extra: Record<FluxController, string[]> = {
      'source-controller': [
        `--storage-path=${join(dir, 'storage')}`,
        `--storage-addr=127.0.0.1:${storage}`,
        `--storage-adv-addr=127.0.0.1:${storage}`,
      ],
      // Kustomizations build only from their source's artifact: nothing is fetched from elsewhere.
      // Flux's multi-tenancy lockdown (the two controllers that follow references): an object names
      // sources, dependencies and Secrets of its own namespace only, never another team's.
      'kustomize-controller': ['--no-remote-bases=true', '--no-cross-namespace-refs=true'],
      'helm-controller': [
        '--no-cross-namespace-refs=true',
        ...(o.defaultServiceAccount ? [`--default-service-account=${o.defaultServiceAccount}`] : []),
      ],
    };
    // One at a time: each start is CPU-heavy for a moment on a small machine.
    for (const name of controllers) {
      log(`starting Flux ${name}`);
      processes.push(await startController({ cp, dir, name, args: extra[name], o }));
    }
    const memory = () => Object.fromEntries(processes.map((p) => [p.name, residentMiB(p.pid)]));
    return { dir, artifactServer, helm, processes, memory, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The Flux kinds the harness speaks of, with their served version and plural. */
export const fluxKinds = {
  GitRepository: { apiVersion: 'source.toolkit.fluxcd.io/v1', plural: 'gitrepositories' },
  HelmRepository: { apiVersion: 'source.toolkit.fluxcd.io/v1', plural: 'helmrepositories' },
  HelmChart: { apiVersion: 'source.toolkit.fluxcd.io/v1', plural: 'helmcharts' },
  Kustomization: { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', plural: 'kustomizations' },
  HelmRelease: { apiVersion: 'helm.toolkit.fluxcd.io/v2', plural: 'helmreleases' },
} as const;
export type FluxKind = keyof typeof fluxKinds;

/** The API path of a Flux object (or of its collection, without a name). */
export function fluxPath(kind: FluxKind, namespace: string, name?: string): string {
  const k = fluxKinds[kind];
  return `/apis/${k.apiVersion}/namespaces/${namespace}/${k.plural}${name ? `/${name}` : ''}`;
}

export interface FluxRef {
  kind: FluxKind;
  namespace: string;
  name: string;
}

type Condition = { type: string; status: string; reason?: string; message?: string };
export interface FluxObject {
  metadata: { generation?: number; annotations?: Record<string, string> };
  status?: {
    observedGeneration?: number;
    conditions?: Condition[];
    artifact?: { revision?: string };
    lastAppliedRevision?: string;
    lastAttemptedRevision?: string;
    history?: Array<{ chartVersion?: string; status?: string }>;
  };
}

/** Creates or updates a Flux object (server-side apply, field manager capbm-harness). */
export async function applyFlux(kc: KubeConfig, ref: FluxRef, spec: Record<string, unknown>): Promise<void> {
  await apply(
    kc,
    fluxPath(ref.kind, ref.namespace, ref.name),
    {
      apiVersion: fluxKinds[ref.kind].apiVersion,
      kind: ref.kind,
      metadata: { name: ref.name, namespace: ref.namespace },
      spec,
    },
    'capbm-harness',
  );
}

/** Asks the controller to reconcile now, as `flux reconcile` does (the requestedAt annotation). */
export async function requestReconcile(kc: KubeConfig, ref: FluxRef): Promise<void> {
  await raw(kc, 'PATCH', fluxPath(ref.kind, ref.namespace, ref.name), {
    metadata: { annotations: { 'reconcile.fluxcd.io/requestedAt': new Date().toISOString() } },
  });
}

/** What Flux reports of an object, in one line: its Ready condition (or that it has none yet). */
export async function describeFlux(kc: KubeConfig, ref: FluxRef): Promise<string> {
  const what = `${ref.kind} ${ref.namespace}/${ref.name}`;
  try {
    const obj = await raw<FluxObject>(kc, 'GET', fluxPath(ref.kind, ref.namespace, ref.name));
    const ready = obj.status?.conditions?.find((c) => c.type === 'Ready');
    if (!ready) return `${what}: no Ready condition yet (the controller has not reconciled it; is it running?)`;
    return `${what}: Ready=${ready.status} ${ready.reason ?? ''}: ${ready.message ?? ''}`;
  } catch (err) {
    return `${what}: ${(err as Error).message}`;
  }
}

/** The revision an object last produced or applied: a source's artifact, a Kustomization's, a release's chart version. */
export function fluxRevision(obj: FluxObject): string {
  const s = obj.status;
  return s?.artifact?.revision ?? s?.lastAppliedRevision ?? s?.history?.[0]?.chartVersion ?? '';
}

/**
 * Waits until the object is Ready for its current generation and, when `revision` is given (a
 * commit SHA, or its first 12 characters as in a chart version), has reached that revision.
 * A timeout says what Flux reported: the Ready condition's reason and message.
 */
export async function waitForFluxReady(
  kc: KubeConfig,
  ref: FluxRef,
  o: { revision?: string; timeoutMs?: number } = {},
): Promise<FluxObject> {
  const want = o.revision?.slice(0, 12);
  try {
    return await waitFor(
      `${ref.kind} ${ref.namespace}/${ref.name} to be Ready${want ? ` at revision ${want}` : ''}`,
      async () => {
        const obj = await raw<FluxObject>(kc, 'GET', fluxPath(ref.kind, ref.namespace, ref.name));
        const ready = obj.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
        const current = obj.status?.observedGeneration === obj.metadata.generation;
        const atRevision = !want || fluxRevision(obj).includes(want);
        return ready && current && atRevision ? obj : undefined;
      },
      o.timeoutMs ?? 120_000,
      500,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\n  Flux reports: ${await describeFlux(kc, ref)}`);
  }
}

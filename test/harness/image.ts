// The manager image (manifests/manager/Dockerfile, built by hack/image with podman) run as the
// provider of a lab environment: `podman run --network host` with the kubeconfig of the provider's
// ServiceAccount mounted read-only, and the Deployment's security settings (manifests/manager/
// manager.yaml: user 65532, read-only root file system, no capabilities, no privilege escalation).
import { execFile, spawnSync } from 'node:child_process';
import { chownSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { raw } from '../../provider/kube/raw.ts';
import type { ControlPlane } from './controlplane.ts';
import { serviceAccountKubeconfig } from './env.ts';
import { repoRoot } from './paths.ts';
import { alive } from './process.ts';

const run = promisify(execFile);
const hackImagePath = join(repoRoot, 'hack/image');
/** The image's user (the Dockerfile's USER): it must be able to read the mounted kubeconfig. */
const IMAGE_UID = 65532;
/** Where the container finds the kubeconfig. */
export const CONTAINER_KUBECONFIG = '/var/run/capbm/kubeconfig';
/** Containers of a test run carry the PID of the Node process that started them. */
const OWNER_LABEL = 'dev.capbm.e2e-owner';

/** Why podman cannot run containers here, or undefined when it can (hack/image installs it when missing). */
export function podmanUnavailable(): string | undefined {
  const r = spawnSync(hackImagePath, ['check'], { encoding: 'utf8', timeout: 300_000 });
  if (r.error) return `hack/image check could not run: ${r.error.message}`;
  if (r.status !== 0) return r.stderr.trim().split('\n').slice(-3).join(' ') || `hack/image check exited ${r.status}`;
  return undefined;
}

/** Builds the manager image when the sources changed (hack/image); its name and what hack/image said. */
export async function buildImage(): Promise<{ name: string; output: string }> {
  const r = await run(hackImagePath, ['build'], { encoding: 'utf8', timeout: 30 * 60_000, maxBuffer: 16 << 20 });
  return { name: r.stdout.trim(), output: r.stderr.trim() };
}

/** `hack/image ARGS...` (e.g. `run ...`: podman run with its flags and limits); its stdout. */
export async function hackImage(args: string[]): Promise<string> {
  return (await run(hackImagePath, args, { encoding: 'utf8', timeout: 120_000 })).stdout.trim();
}

/** podman with hack/image's flags (its store, runc, cgroupfs). */
export const podman = (args: string[]) => hackImage(['podman', ...args]);

/**
 * Removes the provider containers of test runs: `mine` (this process's, on teardown, also when a
 * stop timed out) or `stale` (those of runs that were killed: their owner process is gone).
 */
export async function removeContainers(which: 'mine' | 'stale'): Promise<void> {
  const out = await podman(['ps', '-a', '--filter', `label=${OWNER_LABEL}`, '--format', `{{.ID}} {{.Labels}}`]);
  for (const line of out.split('\n').filter(Boolean)) {
    const [id] = line.split(' ');
    const owner = Number(/e2e-owner:(\d+)/.exec(line)?.[1]);
    const remove = which === 'mine' ? owner === process.pid : !alive(owner);
    if (id && remove) await podman(['rm', '-f', '--time', '2', id]);
  }
}

/**
 * The command that runs the image as the provider: the kubeconfig is copied beside the original,
 * owned by the image's user (mode 0600 stays), and mounted read-only.
 */
export function containerCommand(o: {
  image: string;
  name: string;
  kubeconfig: string;
  args: string[];
  env: Record<string, string>;
}): {
  command: string;
  args: string[];
} {
  const copy = `${o.kubeconfig}.${o.name}`;
  copyFileSync(o.kubeconfig, copy);
  chownSync(copy, IMAGE_UID, IMAGE_UID);
  return {
    command: hackImagePath,
    args: [
      'run',
      '--rm',
      `--name=${o.name}`,
      `--label=${OWNER_LABEL}=${process.pid}`,
      '--network=host',
      '--read-only',
      '--read-only-tmpfs=false',
      '--cap-drop=ALL',
      '--security-opt=no-new-privileges',
      `--volume=${copy}:${CONTAINER_KUBECONFIG}:ro`,
      ...Object.entries(o.env).map(([k, v]) => `--env=${k}=${v}`),
      o.image,
      `--kubeconfig=${CONTAINER_KUBECONFIG}`,
      ...o.args,
    ],
  };
}

interface PodTemplate {
  spec: {
    serviceAccountName?: string;
    containers: Array<{
      name: string;
      image: string;
      args?: string[];
      env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
    }>;
  };
}

/** The flags of manifests/manager/manager.yaml that bind a port. */
const bindFlags = ['--metrics-bind-address', '--health-probe-bind-address', '--agent-bind-address'];

/**
 * What a kubelet would run for one replica of a Deployment installed on the management plane
 * (there is no kubelet on the lab's management side): its container's image, args and env (plain
 * values, and the pod's namespace from the downward API), under a token of its ServiceAccount, with
 * the Deployment's security settings (containerCommand). With the host's network, the ports it
 * binds move to free loopback ports, as a pod's own network namespace would keep them apart.
 */
export async function deploymentReplica(
  cp: ControlPlane,
  ns: string,
  name: string,
): Promise<{ image: string; args: string[]; env: Record<string, string>; kubeconfig: string; serviceAccount: string }> {
  const d = await raw<{ spec: { template: PodTemplate } }>(
    cp.kc,
    'GET',
    `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
  );
  const pod = d.spec.template.spec;
  const c = pod.containers[0]!;
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[e.name] = ns;
    else throw new Error(`deployment ${ns}/${name}: env ${e.name} comes from a source the stand-in does not know`);
  }
  const serviceAccount = pod.serviceAccountName ?? 'default';
  const kubeconfig = await serviceAccountKubeconfig(cp, ns, serviceAccount, join(cp.dir, `${name}-pod.kubeconfig`));
  const args = [
    ...(c.args ?? []).filter((a) => !bindFlags.some((f) => a.startsWith(`${f}=`))),
    ...bindFlags.map((f) => `${f}=127.0.0.1:0`),
  ];
  return { image: c.image, args, env, kubeconfig, serviceAccount };
}

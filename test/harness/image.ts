// The manager image (manifests/manager/Dockerfile, built by hack/image with podman) run as the
// provider of a lab environment: `podman run --network host` with the kubeconfig of the provider's
// ServiceAccount mounted read-only, and the Deployment's security settings (manifests/manager/
// manager.yaml: user 65532, read-only root file system, no capabilities, no privilege escalation).
import { execFile, spawnSync } from 'node:child_process';
import { chownSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
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

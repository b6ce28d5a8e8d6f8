// The lab's air-gapped registry: Debian's docker-registry (distribution v2) serving, read-only, the
// storage folder hack/images filled with images built here from source. It listens on the lab
// bridge; lab hosts reach it under the name registry.capbm.lab through containerd's registry
// host configuration (/etc/containerd/certs.d), as an air-gapped site points its nodes at a mirror.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BRIDGE_ADDRESS } from './lab.ts';
import { freePort, GiveUp, startProcess, tail, waitFor, type ManagedProcess } from './process.ts';

/** The registry name every lab image carries (the template's imageRepository). */
export const REGISTRY_NAME = 'registry.capbm.lab';

export interface Registry {
  process: ManagedProcess;
  /** http://10.250.0.1:<port> */
  endpoint: string;
  /** Files for a lab host: containerd's host configuration for REGISTRY_NAME. */
  hostFiles: Record<string, string>;
}

/** The storage folder hack/images built (CAPBM_REGISTRY, which hack/test and hack/lab export). */
export function registryStorage(): string {
  const dir = process.env.CAPBM_REGISTRY;
  if (!dir || !existsSync(join(dir, '.complete'))) {
    throw new Error(
      'the lab registry needs its images: run hack/images build and export CAPBM_REGISTRY (hack/test and hack/lab do both)',
    );
  }
  return dir;
}

export async function startRegistry(o: { dir: string; persistent?: boolean }): Promise<Registry> {
  const port = await freePort(BRIDGE_ADDRESS);
  const endpoint = `http://${BRIDGE_ADDRESS}:${port}`;
  const config = join(o.dir, 'registry.yml');
  writeFileSync(
    config,
    `version: 0.1
log: {level: warn, formatter: text}
storage:
  filesystem: {rootdirectory: ${registryStorage()}}
  maintenance: {readonly: {enabled: true}, uploadpurging: {enabled: false}}
http: {addr: '${BRIDGE_ADDRESS}:${port}'}
`,
  );
  const proc = startProcess({
    name: 'registry',
    command: '/usr/bin/docker-registry',
    args: ['serve', config],
    logFile: join(o.dir, 'registry.log'),
    ...(o.persistent ? { persistent: true } : {}),
  });
  await waitFor(
    `the registry on ${endpoint}`,
    async () => {
      if (!proc.running()) throw new GiveUp(`the registry exited:\n${tail(proc.logFile)}`);
      return (await fetch(`${endpoint}/v2/`).catch(() => undefined))?.ok ? true : undefined;
    },
    30_000,
    100,
  );
  return {
    process: proc,
    endpoint,
    hostFiles: {
      [`/etc/containerd/certs.d/${REGISTRY_NAME}/hosts.toml`]: `server = "${endpoint}"

[host."${endpoint}"]
  capabilities = ["pull", "resolve"]
`,
    },
  };
}

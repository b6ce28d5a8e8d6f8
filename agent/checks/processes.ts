// Is the kubelet alive, is a container runtime alive? Liveness is read from /proc (cheap, and the
// same with or without systemd), the kubelet's health from its healthz endpoint on loopback.
import { readdirSync, readFileSync } from 'node:fs';
import type { CheckResult } from '../../common/agent-protocol.ts';
import { at, errText, result, type CheckEnv } from './env.ts';

export const runtimeNames = ['containerd', 'crio', 'dockerd', 'cri-dockerd'] as const;

/**
 * Finds processes by their comm name under <root>/proc. Remembers the pid it found and checks
 * only that pid next time; scans the whole table at most once per pass, and only on a miss.
 */
export class ProcessTable {
  readonly #env: Pick<CheckEnv, 'root'>;
  readonly #pids = new Map<string, number>();
  #scanned = false;

  constructor(env: Pick<CheckEnv, 'root'>) {
    this.#env = env;
  }

  /** Starts a new pass: the next miss may scan again. */
  newPass(): void {
    this.#scanned = false;
  }

  #comm(pid: number): string | undefined {
    try {
      return readFileSync(at(this.#env, `proc/${pid}/comm`), 'utf8').trim();
    } catch {
      return undefined;
    }
  }

  #scan(): void {
    this.#scanned = true;
    this.#pids.clear();
    let entries: string[];
    try {
      entries = readdirSync(at(this.#env, 'proc'));
    } catch {
      return;
    }
    for (const e of entries) {
      const pid = Number(e);
      if (!Number.isInteger(pid)) continue;
      const comm = this.#comm(pid);
      if (comm && !this.#pids.has(comm)) this.#pids.set(comm, pid);
    }
  }

  /** The pid of a process with this comm name, or undefined. */
  find(name: string): number | undefined {
    const known = this.#pids.get(name);
    if (known !== undefined && this.#comm(known) === name) return known;
    if (!this.#scanned) this.#scan();
    return this.#pids.get(name);
  }
}

export async function kubeletCheck(env: CheckEnv, procs: ProcessTable, healthzUrl: string): Promise<CheckResult> {
  const name = 'kubelet';
  const pid = procs.find('kubelet');
  if (pid === undefined) return result(name, 'failed', 'KubeletNotRunning', 'no kubelet process is running');
  try {
    const r = await env.httpGet(healthzUrl, 2000);
    if (r.status === 200) return result(name, 'ok', 'KubeletHealthy', `kubelet (pid ${pid}) healthz ok`);
    return result(
      name,
      'failed',
      'KubeletUnhealthy',
      `kubelet healthz answered HTTP ${r.status}: ${r.body.trim().slice(0, 200)}`,
    );
  } catch (err) {
    return result(name, 'failed', 'KubeletUnhealthy', `kubelet (pid ${pid}) healthz unreachable: ${errText(err)}`);
  }
}

export function containerRuntimeCheck(procs: ProcessTable): CheckResult {
  const name = 'container-runtime';
  for (const n of runtimeNames) {
    const pid = procs.find(n);
    if (pid !== undefined) return result(name, 'ok', 'ContainerRuntimeRunning', `${n} (pid ${pid}) is running`);
  }
  return result(
    name,
    'failed',
    'ContainerRuntimeNotRunning',
    `no container runtime process is running (looked for ${runtimeNames.join(', ')})`,
  );
}

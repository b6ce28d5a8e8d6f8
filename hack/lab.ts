// The lab: a local management plane (etcd, kube-apiserver, Cluster API core and kubeadm bootstrap
// managers) that keeps running after this command exits, until `hack/lab down`.
// State lives in .cache/lab/: the control plane's folder (certs, logs, kubeconfig) and state.json.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane } from '../test/harness/controlplane.ts';
import { controlPlaneDir, repoRoot } from '../test/harness/paths.ts';
import { alive, stopPid } from '../test/harness/process.ts';

// CAPBM_LAB_DIR: another lab folder (tests use their own, so a developer's lab is left alone).
const labDir = process.env.CAPBM_LAB_DIR ?? join(repoRoot, '.cache', 'lab');
const stateFile = join(labDir, 'state.json');
const cpDir = join(labDir, 'controlplane');

interface LabState {
  kubeconfig: string;
  server: string;
  processes: Array<{ name: string; pid: number; log: string }>;
}

const say = (m: string) => process.stderr.write(`==> ${m}\n`);
const info = (m: string) => process.stderr.write(`    ${m}\n`);

function readState(): LabState | undefined {
  return existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as LabState) : undefined;
}

async function up(): Promise<void> {
  const state = readState();
  if (state?.processes.every((p) => alive(p.pid))) {
    say('the lab is already up');
    printUsage(state);
    return;
  }
  if (state) {
    say('a previous lab is partly down: cleaning it first');
    await down();
  }
  mkdirSync(cpDir, { recursive: true });
  say('starting the management plane (etcd, kube-apiserver, Cluster API core + kubeadm bootstrap)');
  const cp = await startControlPlane({ capi: true, dir: cpDir, persistent: true, log: info });
  const next: LabState = {
    kubeconfig: cp.kubeconfigPath,
    server: cp.server,
    processes: cp.processes.map((p) => ({ name: p.name, pid: p.pid, log: p.logFile })),
  };
  writeFileSync(stateFile, JSON.stringify(next, null, 2));
  info(`ready in ${cp.timings.capi ?? cp.timings.apiserver} s`);
  printUsage(next);
}

function printUsage(state: LabState): void {
  const kubectl = join(controlPlaneDir(), 'bin', 'kubectl');
  process.stdout.write(
    [
      '',
      `Management cluster API server: ${state.server}`,
      `Kubeconfig: ${state.kubeconfig}`,
      '',
      'Try:',
      `  export KUBECONFIG=${state.kubeconfig}`,
      `  ${kubectl} get crds`,
      `  ${kubectl} get clusters,machines -A`,
      '  (or: hack/lab kubectl get clusters -A)',
      '',
      `Logs: ${cpDir}/*.log`,
      'Stop everything: hack/lab down',
      '',
    ].join('\n'),
  );
}

async function down(): Promise<void> {
  const state = readState();
  if (state) {
    for (const p of [...state.processes].reverse()) {
      info(`stopping ${p.name} (pid ${p.pid})`);
      await stopPid(p.pid);
    }
  }
  rmSync(labDir, { recursive: true, force: true });
  say('the lab is down');
}

function status(): void {
  const state = readState();
  if (!state) {
    say('the lab is down (run: hack/lab)');
    process.exitCode = 1;
    return;
  }
  for (const p of state.processes)
    info(`${p.name.padEnd(16)} pid ${p.pid} ${alive(p.pid) ? 'running' : 'NOT RUNNING'}`);
  printUsage(state);
}

const [cmd = 'up'] = process.argv.slice(2);
const commands: Record<string, () => Promise<void> | void> = { up, down, status };
const run = commands[cmd];
if (!run) {
  process.stderr.write(`error: unknown lab command '${cmd}'\n  usage: hack/lab [up|down|status]\n`);
  process.exit(2);
}
try {
  await run();
} catch (err) {
  process.stderr.write(
    `error: ${(err as Error).message}\n  fix: read the logs under ${cpDir}, then run: hack/lab down && hack/lab\n`,
  );
  process.exit(1);
}

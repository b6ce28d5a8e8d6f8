// The lab: a local management plane (etcd, kube-apiserver, Cluster API core, CABPK and
// KubeadmControlPlane), a workload-cluster stand-in API server, lab hosts (network namespaces with
// OpenSSH), the CAPBM provider under its own ServiceAccount, a sample pool, SSH Secret and cluster
// (cluster-template.yaml: one control plane, a MachineDeployment of two workers). It keeps running
// after this command exits, until `hack/lab down`.
// State lives in .cache/lab/: the control planes' folders (certs, logs, kubeconfig) and state.json.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { applyClusterTemplate, createPool, machines, startEnv } from '../test/harness/env.ts';
import { stopPersistentHosts } from '../test/harness/lab.ts';
import { controlPlaneDir, repoRoot } from '../test/harness/paths.ts';
import { alive, stopPid } from '../test/harness/process.ts';

// CAPBM_LAB_DIR: another lab folder (tests use their own, so a developer's lab is left alone).
const labDir = process.env.CAPBM_LAB_DIR ?? join(repoRoot, '.cache', 'lab');
const stateFile = join(labDir, 'state.json');
const cpDir = join(labDir, 'controlplane');
const workloadDir = join(labDir, 'workload');
const hostCount = Number(process.env.CAPBM_LAB_HOSTS ?? 5);
const namespace = 'lab';
const clusterName = 'demo';

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

const kubectl = () => join(controlPlaneDir(), 'bin', 'kubectl');

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
  mkdirSync(labDir, { recursive: true });
  const t0 = Date.now();
  const env = await startEnv({
    hosts: hostCount,
    persistent: true,
    dirs: { management: cpDir, workload: workloadDir },
    agent: {},
    log: (m) => say(m),
  });
  const provider = env.startProvider();
  const next: LabState = {
    kubeconfig: env.cp.kubeconfigPath,
    server: env.cp.server,
    processes: [...env.cp.processes, ...env.workload.processes, provider].map((p) => ({
      name: p.name,
      pid: p.pid,
      log: p.logFile,
    })),
  };
  writeFileSync(stateFile, JSON.stringify(next, null, 2));
  for (const h of env.hosts) info(`host ${h.name}  ${h.address}  host key ${h.hostKeyFingerprint}`);
  say(`creating pool "rack" (${env.hosts.length} hosts, keys pinned) and its SSH Secret in namespace ${namespace}`);
  await createPool(env, namespace, 'rack', env.hosts);
  say(
    `creating cluster ${namespace}/${clusterName} from manifests/templates/cluster-template.yaml (1 control plane, 2 workers)`,
  );
  await applyClusterTemplate(env, { namespace, name: clusterName, pool: 'rack', controlPlane: 1, workers: 2 });
  let last = '';
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    const ms = await machines(env, namespace, clusterName);
    const line = ms
      .map((m) => `${m.name}=${m.phase || 'Pending'}`)
      .sort()
      .join('  ');
    if (line !== last) info(`machines: ${line || '(none yet)'}`);
    last = line;
    if (ms.length === 3 && ms.every((m) => m.phase === 'Running')) break;
    if (Date.now() > deadline)
      throw new Error(`machines not Running after 10 minutes (${line}); see ${provider.logFile}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  say(`every Machine is Running (${Math.round((Date.now() - t0) / 1000)} s)`);
  const table = await execa(kubectl(), [
    '--kubeconfig',
    env.cp.kubeconfigPath,
    'get',
    'clusters,machines,baremetalmachines,baremetalhosts',
    '-n',
    namespace,
  ]);
  process.stdout.write(`${table.stdout}\n`);
  printUsage(next);
}

function printUsage(state: LabState): void {
  process.stdout.write(
    [
      '',
      `Management cluster API server: ${state.server}`,
      `Kubeconfig: ${state.kubeconfig}`,
      '',
      'Try:',
      `  export KUBECONFIG=${state.kubeconfig}`,
      `  ${kubectl()} get clusters,machines,baremetalmachines,baremetalhosts -A`,
      `  ${kubectl()} get events -n ${namespace} --sort-by=.lastTimestamp`,
      '  (or: hack/lab kubectl get baremetalhostpools -A)',
      `Provider log: ${state.processes.find((p) => p.name === 'capbm-manager')?.log ?? ''}`,
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
  await stopPersistentHosts();
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

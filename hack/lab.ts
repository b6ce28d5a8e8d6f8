// The lab: a local management plane (etcd, kube-apiserver, kube-controller-manager, Cluster API
// core, CABPK and KubeadmControlPlane), the lab's air-gapped registry and control-plane load
// balancer, lab hosts (whole servers: systemd, OpenSSH, containerd, kubelet), the CAPBM provider
// under its own ServiceAccount, a sample pool, SSH Secret and cluster (cluster-template.yaml: one
// control plane, a MachineDeployment of two workers, the kube-router CNI), made by the real
// kubeadm; then the sample application, answering across nodes. It keeps running after this
// command exits, until `hack/lab down`.
// State lives in .cache/lab/: the management plane's folder (certs, logs, kubeconfig), the
// registry's, the workload cluster's kubeconfig and state.json.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import {
  applyClusterTemplate,
  createPool,
  startEnv,
  waitForClusterAvailable,
  workloadKubeconfig,
  type ClusterHealth,
} from '../test/harness/env.ts';
import { hostMemory, stopPersistentHosts } from '../test/harness/lab.ts';
import { crossNodeHttp, deployHello, nodes, waitForCoreDns } from '../test/harness/workload.ts';
import { controlPlaneDir, repoRoot } from '../test/harness/paths.ts';
import { alive, stopPid } from '../test/harness/process.ts';

// CAPBM_LAB_DIR: another lab folder (tests use their own, so a developer's lab is left alone).
const labDir = process.env.CAPBM_LAB_DIR ?? join(repoRoot, '.cache', 'lab');
const stateFile = join(labDir, 'state.json');
const cpDir = join(labDir, 'controlplane');
const ownDir = join(labDir, 'lab');
const workloadKubeconfigPath = join(labDir, 'workload.kubeconfig');
const hostCount = Number(process.env.CAPBM_LAB_HOSTS ?? 5);
const namespace = 'lab';
const clusterName = 'demo';

interface LabState {
  kubeconfig: string;
  server: string;
  workloadKubeconfig?: string;
  processes: Array<{ name: string; pid: number; log: string }>;
  hosts?: Array<{ slot: number; name: string; address: string }>;
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
    dirs: { management: cpDir, lab: ownDir },
    agent: {},
    log: (m) => say(m),
  });
  const provider = env.startProvider();
  const next: LabState = {
    kubeconfig: env.cp.kubeconfigPath,
    server: env.cp.server,
    processes: [...env.cp.processes, env.registry.process, provider].map((p) => ({
      name: p.name,
      pid: p.pid,
      log: p.logFile,
    })),
    hosts: env.hosts.map((h) => ({ slot: h.slot, name: h.name, address: h.address })),
  };
  writeFileSync(stateFile, JSON.stringify(next, null, 2));
  info(`hosts up in ${Math.round((Date.now() - t0) / 1000)} s`);
  for (const h of env.hosts)
    info(`host ${h.name}  ${h.address}  Kubernetes ${h.kubernetesVersion}  host key ${h.hostKeyFingerprint}`);
  say(`creating pool "rack" (${env.hosts.length} hosts, keys pinned) and its SSH Secret in namespace ${namespace}`);
  await createPool(env, namespace, 'rack', env.hosts);
  say(
    `creating cluster ${namespace}/${clusterName} from manifests/templates/cluster-template.yaml (1 control plane, 2 workers, endpoint ${env.lb.address}:6443)`,
  );
  const tCluster = Date.now();
  await applyClusterTemplate(env, { namespace, name: clusterName, pool: 'rack', controlPlane: 1, workers: 2 });
  let last = '';
  const line = (h: ClusterHealth) =>
    [
      `Cluster Available=${h.cluster?.status ?? '?'}`,
      ...h.machines.map((m) => `${m.name}=${m.phase || 'Pending'}${m.ready ? '/Ready' : ''}`).sort(),
    ].join('  ');
  await waitForClusterAvailable(env, namespace, clusterName, 3, 15 * 60_000, (h) => {
    const l = line(h);
    if (l !== last) info(l);
    last = l;
  });
  say(
    `cluster ${namespace}/${clusterName} Available, every Machine Ready (${Math.round((Date.now() - tCluster) / 1000)} s after it was created)`,
  );
  const workload = await workloadKubeconfig(env, namespace, clusterName);
  writeFileSync(workloadKubeconfigPath, workload.yaml, { mode: 0o600 });
  next.workloadKubeconfig = workloadKubeconfigPath;
  writeFileSync(stateFile, JSON.stringify(next, null, 2));
  await waitForCoreDns(workload.kc);
  say('CoreDNS Running; deploying the sample application (manifests/examples/hello.yaml)');
  const hello = await deployHello(workload.kc);
  for (const p of hello) info(`${p.name} on ${p.node} (${p.ip})`);
  const answer = await crossNodeHttp(workload.kc);
  say(
    `a pod on ${answer.clientNode} asked a hello pod on ${answer.targetNode}: "${answer.direct}" by pod IP, "${answer.viaService}" through the Service`,
  );
  const kc = ['--kubeconfig', env.cp.kubeconfigPath];
  const table = await execa(kubectl(), [
    ...kc,
    'get',
    'cluster,kubeadmcontrolplane,machinedeployment,machines',
    '-n',
    namespace,
  ]);
  process.stdout.write(`${table.stdout}\n\n`);
  const ws = await execa(kubectl(), ['--kubeconfig', workloadKubeconfigPath, 'get', 'nodes', '-o', 'wide']);
  process.stdout.write(`${ws.stdout}\n`);
  const mem = env.hosts.map((h) => ({ h, m: hostMemory(h) }));
  const mib = (b: number) => Math.round(b / 2 ** 20);
  const ns = await nodes(workload.kc);
  info(
    `memory: ${mem.map(({ h, m }) => `${ns.find((n) => n.internalIP === h.address)?.name ?? h.name} ${mib(m.usageBytes)} MiB`).join(', ')}; total ${mib(mem.reduce((a, x) => a + x.m.usageBytes, 0))} MiB`,
  );
  say(`the lab is up (${Math.round((Date.now() - t0) / 1000)} s)`);
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
      `The workload cluster ${namespace}/${clusterName}:`,
      '  hack/lab kubectl --workload get nodes -o wide',
      '  hack/lab kubectl --workload get pods -A -o wide',
      '  hack/lab shell <host address>   (a root shell on a lab host)',
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

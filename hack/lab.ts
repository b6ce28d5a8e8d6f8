// The lab: a local management plane (etcd, kube-apiserver, kube-controller-manager, Cluster API
// core, CABPK and KubeadmControlPlane), the lab's air-gapped registry and control-plane load
// balancer, lab hosts (whole servers: systemd, OpenSSH, containerd, kubelet), the CAPBM provider
// under its own ServiceAccount, and a sample cluster (one control plane, a MachineDeployment of two
// workers, the kube-router CNI) made by the real kubeadm; then the sample application, answering
// across nodes. It keeps running after this command exits, until `hack/lab down`.
// By default the cluster is GitOps-made (lab-gitops.ts): Flux and a Git server serving the clusters
// repository (examples/clusters-repo/), the pool from Git, cluster team-a/alpha from a commit.
// `up --no-gitops`: the pool, SSH Secret and cluster lab/demo (cluster-template.yaml) by kubectl apply.
// State lives in .cache/lab/: the management plane's folder (certs, logs, kubeconfig), the
// registry's, Flux's and the Git server's, the workload cluster's kubeconfig and state.json.
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
import { alive, stopPid, type ManagedProcess } from '../test/harness/process.ts';
import { gitopsStatus, gitopsUsage, LAB_CLUSTER, LAB_TEAM, startLabGitOps } from './lab-gitops.ts';

// CAPBM_LAB_DIR: another lab folder (tests use their own, so a developer's lab is left alone).
const labDir = process.env.CAPBM_LAB_DIR ?? join(repoRoot, '.cache', 'lab');
const stateFile = join(labDir, 'state.json');
const cpDir = join(labDir, 'controlplane');
const ownDir = join(labDir, 'lab');
const workloadKubeconfigPath = join(labDir, 'workload.kubeconfig');
const hostCount = Number(process.env.CAPBM_LAB_HOSTS ?? 5);

interface LabState {
  kubeconfig: string;
  server: string;
  workloadKubeconfig?: string;
  processes: Array<{ name: string; pid: number; log: string }>;
  hosts?: Array<{ slot: number; name: string; address: string }>;
  /** The sample cluster. */
  cluster?: { namespace: string; name: string };
  /** Where the GitOps repositories are served (absent with --no-gitops). */
  gitops?: { clustersRepo: string; chartsRepo: string };
}

const recorded = (ps: ManagedProcess[]) => ps.map((p) => ({ name: p.name, pid: p.pid, log: p.logFile }));

const say = (m: string) => process.stderr.write(`==> ${m}\n`);
const info = (m: string) => process.stderr.write(`    ${m}\n`);

function readState(): LabState | undefined {
  return existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as LabState) : undefined;
}

const kubectl = () => join(controlPlaneDir(), 'bin', 'kubectl');

async function up(gitops: boolean): Promise<void> {
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
  const { namespace, name: clusterName } = gitops
    ? { namespace: LAB_TEAM, name: LAB_CLUSTER }
    : { namespace: 'lab', name: 'demo' };
  const next: LabState = {
    kubeconfig: env.cp.kubeconfigPath,
    server: env.cp.server,
    processes: recorded([...env.cp.processes, env.registry.process, provider]),
    hosts: env.hosts.map((h) => ({ slot: h.slot, name: h.name, address: h.address })),
    cluster: { namespace, name: clusterName },
  };
  writeFileSync(stateFile, JSON.stringify(next, null, 2));
  info(`hosts up in ${Math.round((Date.now() - t0) / 1000)} s`);
  for (const h of env.hosts)
    info(`host ${h.name}  ${h.address}  Kubernetes ${h.kubernetesVersion}  host key ${h.hostKeyFingerprint}`);
  const tCluster = Date.now();
  if (gitops) {
    const g = await startLabGitOps(env, {
      dir: ownDir,
      workers: 2,
      log: say,
      started: (ps) => {
        next.processes.push(...recorded(ps));
        writeFileSync(stateFile, JSON.stringify(next, null, 2));
      },
    });
    next.gitops = { clustersRepo: g.clustersRepo, chartsRepo: g.chartsRepo };
    writeFileSync(stateFile, JSON.stringify(next, null, 2));
    say(`HelmRelease ${namespace}/${clusterName} applied the chart; Cluster API makes the machines`);
  } else {
    say(`creating pool "rack" (${env.hosts.length} hosts, keys pinned) and its SSH Secret in namespace ${namespace}`);
    await createPool(env, namespace, 'rack', env.hosts);
    say(
      `creating cluster ${namespace}/${clusterName} from manifests/templates/cluster-template.yaml (1 control plane, 2 workers, endpoint ${env.lb.address}:6443)`,
    );
    await applyClusterTemplate(env, { namespace, name: clusterName, pool: 'rack', controlPlane: 1, workers: 2 });
  }
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
  const { namespace, name } = state.cluster ?? { namespace: 'lab', name: 'demo' };
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
      `The workload cluster ${namespace}/${name}:`,
      '  hack/lab kubectl --workload get nodes -o wide',
      '  hack/lab kubectl --workload get pods -A -o wide',
      '  hack/lab shell <host address>   (a root shell on a lab host)',
      ...(state.gitops ? ['', ...gitopsUsage(state.gitops.clustersRepo)] : []),
      `Provider log: ${state.processes.find((p) => p.name === 'capbm-manager')?.log ?? ''}`,
      '',
      `Logs: ${cpDir}/*.log${state.gitops ? `, ${ownDir}/flux/*.log, ${ownDir}/git-server.log` : ''}`,
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

/** `hack/lab gitops`: Flux's view of the clusters repository, and the clusters it made. */
async function gitops(): Promise<void> {
  const state = readState();
  if (!state?.gitops) {
    say(state ? 'the lab runs without GitOps (it was started with --no-gitops)' : 'the lab is down (run: hack/lab)');
    process.exitCode = 1;
    return;
  }
  if (flags[0] === 'url') {
    process.stdout.write(`${state.gitops.clustersRepo}\n`);
    return;
  }
  process.stdout.write(`${await gitopsStatus(kubectl(), state.kubeconfig)}\n\n`);
  process.stdout.write(`${gitopsUsage(state.gitops.clustersRepo).join('\n')}\n`);
}

const [cmd = 'up', ...flags] = process.argv.slice(2);
const commands: Record<string, () => Promise<void> | void> = {
  up: () => up(!flags.includes('--no-gitops')),
  down,
  status,
  gitops,
};
const run = commands[cmd];
const allowed: Record<string, string[]> = { up: ['--no-gitops'], gitops: ['url'] };
if (!run || flags.some((f) => !allowed[cmd]?.includes(f))) {
  process.stderr.write(
    `error: unknown lab command '${[cmd, ...flags].join(' ')}'\n  usage: hack/lab [up [--no-gitops]|down|status|gitops [url]]\n`,
  );
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

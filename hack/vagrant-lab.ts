// The Vagrant lab (hack/vagrant-lab runs it once the VMs are up): the lab's management plane, the
// pool made by hack/vagrant-pool from the running VMs (host keys pinned), a cluster provisioned on
// them by the provider (kubeadm, the lab registry), scaled down, deleted; then a VM re-created with
// new host keys is refused, the pool's HostKeysMatch condition saying to re-run the pool command.
//   node hack/vagrant-lab.ts up     (VMs already up: hack/vagrant-lab does that first)
//   node hack/vagrant-lab.ts down   (the management plane; hack/vagrant-lab down removes the VMs)
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { raw } from '../provider/kube/raw.ts';
import {
  installCniAddon,
  labClusterObjects,
  onboardNamespace,
  plurals,
  startEnv,
  waitForClusterAvailable,
  type ClusterVars,
  type Env,
  type LabClusterObject,
} from '../test/harness/env.ts';
import { BRIDGE_ADDRESS, netnsOf, stopHost } from '../test/harness/lab.ts';
import { controlPlaneDir, repoRoot } from '../test/harness/paths.ts';
import { stopPid, waitFor } from '../test/harness/process.ts';

const dir = join(repoRoot, '.cache', 'vagrant-lab');
const stateFile = join(dir, 'state.json');
const vagrantDir = join(repoRoot, 'examples', 'vagrant');
const NS = 'vagrant';
const POOL = 'vms';
const CLUSTER = 'vm';
const network = process.env.CAPBM_NETWORK ?? '10.250.160';
const vmCount = Number(process.env.CAPBM_VMS ?? 2);
const addresses = Array.from({ length: vmCount }, (_, i) => `${network}.${11 + i}`);

const say = (m: string) => process.stderr.write(`==> ${m}\n`);
const info = (m: string) => process.stderr.write(`    ${m}\n`);
const secs = (t0: number) => `${Math.round((Date.now() - t0) / 1000)} s`;
const kubectl = (env: Env, args: string[], input?: string) =>
  execa(join(controlPlaneDir(), 'bin', 'kubectl'), ['--kubeconfig', env.cp.kubeconfigPath, ...args], {
    ...(input ? { input } : {}),
  });

/**
 * The VMs reach the lab (registry, load balancer) through this machine, their default route (kubeadm
 * takes the node address from it; Vagrant's isolated network gives none), and pull from its registry.
 */
async function prepareVms(env: Env): Promise<void> {
  const config = join(dir, 'ssh-config');
  writeFileSync(config, (await execa('vagrant', ['ssh-config'], { cwd: vagrantDir })).stdout);
  const files = Object.entries(env.registry.hostFiles)
    .map(([p, c]) => `mkdir -p $(dirname ${p}) && printf '%s' '${c.replace(/'/g, "'\\''")}' > ${p}`)
    .join(' && ');
  const gateway = `${network}.1`;
  for (let i = 1; i <= vmCount; i++) {
    await execa('ssh', [
      '-F',
      config,
      `capbm-${i}`,
      `sudo sh -c "ip route replace default via ${gateway} && ${files.replace(/"/g, '\\"')} && systemctl restart containerd"`,
    ]);
  }
}

async function pool(env: Env): Promise<void> {
  await execa(
    process.execPath,
    [
      join(repoRoot, 'hack', 'vagrant-pool.ts'),
      '--name',
      POOL,
      '--namespace',
      NS,
      '--apply',
      '--kubeconfig',
      env.cp.kubeconfigPath,
      '--kubectl',
      join(controlPlaneDir(), 'bin', 'kubectl'),
    ],
    { stdio: 'inherit' },
  );
}

interface HostView {
  name: string;
  address: string;
  phase: string;
  claimed: boolean;
}

async function hosts(env: Env): Promise<HostView[]> {
  const r = await kubectl(env, ['get', 'baremetalhosts', '-n', NS, '-o', 'json']);
  const items = (JSON.parse(r.stdout) as { items: any[] }).items;
  return items.map((h) => ({
    name: h.metadata.name,
    address: h.spec.address,
    phase: h.status?.phase ?? '',
    claimed: !!h.spec.consumerRef,
  }));
}

const allAvailable = async (env: Env) => {
  const hs = await hosts(env);
  return hs.length === vmCount && hs.every((h) => h.phase === 'Available' && !h.claimed) ? hs : undefined;
};

async function poolCondition(env: Env, type: string) {
  const r = await kubectl(env, ['get', 'baremetalhostpool', POOL, '-n', NS, '-o', 'json']);
  const p = JSON.parse(r.stdout) as {
    status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
  };
  return p.status?.conditions?.find((c) => c.type === type);
}

/**
 * Under QEMU in software mode a VM runs several times slower than a lab host: kubeadm's own waits
 * (4 minutes for the control plane's static pods, 5 for a join's TLS bootstrap) and the
 * MachineHealthCheck's node startup timeout (10 minutes) are too short there, so the VM cluster
 * gets the longer waits a user of slow hosts would set (kubeadm timeouts of CABPK's v1beta2 API).
 */
const SLOW = {
  controlPlaneComponentHealthCheckSeconds: 1800,
  kubeletHealthCheckSeconds: 1800,
  kubernetesAPICallSeconds: 300,
  etcdAPICallSeconds: 600,
  tlsBootstrapSeconds: 1800,
  discoverySeconds: 1800,
};

function slowHosts(d: LabClusterObject): void {
  type Spec = { initConfiguration?: { timeouts?: object }; joinConfiguration?: { timeouts?: object } };
  const set = (k: Spec) => {
    k.initConfiguration = { ...k.initConfiguration, timeouts: { ...SLOW } };
    k.joinConfiguration = { ...k.joinConfiguration, timeouts: { ...SLOW } };
  };
  if (d.kind === 'KubeadmControlPlane') set(d.spec.kubeadmConfigSpec as Spec);
  if (d.kind === 'KubeadmConfigTemplate') {
    const spec = (d.spec.template as { spec: Spec }).spec;
    spec.joinConfiguration = { ...spec.joinConfiguration, timeouts: { ...SLOW } };
  }
  if (d.kind === 'MachineHealthCheck')
    (d.spec.checks as { nodeStartupTimeoutSeconds: number }).nodeStartupTimeoutSeconds = 3600;
}

/** manifests/templates/cluster-template.yaml as the lab makes it, with the VMs' longer waits. */
async function applyVmCluster(env: Env, v: ClusterVars): Promise<void> {
  await installCniAddon(env, v.namespace);
  for (const d of labClusterObjects(env, v)) {
    slowHosts(d);
    await raw(env.cp.kc, 'POST', `/apis/${d.apiVersion}/namespaces/${v.namespace}/${plurals[d.kind]}`, d);
  }
}

async function provision(env: Env, controlPlane: number, workers: number): Promise<void> {
  const t = Date.now();
  say(`cluster ${NS}/${CLUSTER}: ${controlPlane} control plane, ${workers} workers, on the VMs`);
  await applyVmCluster(env, { namespace: NS, name: CLUSTER, pool: POOL, controlPlane, workers });
  let last = '';
  await waitForClusterAvailable(env, NS, CLUSTER, controlPlane + workers, 45 * 60_000, (h) => {
    const l = [
      `Available=${h.cluster?.status ?? '?'}`,
      ...h.machines.map((m) => `${m.name}=${m.phase}${m.ready ? '/Ready' : ''}`),
    ].join(' ');
    if (l !== last) info(l);
    last = l;
  });
  say(`cluster Available, every Machine Ready: provisioned in ${secs(t)}`);
}

async function deleteCluster(env: Env): Promise<void> {
  const t = Date.now();
  await kubectl(env, ['delete', 'cluster', CLUSTER, '-n', NS, '--wait=false']);
  await waitFor('every VM host reset and Available', () => allAvailable(env), 20 * 60_000, 3000);
  say(`cluster deleted; hosts reset and Available in ${secs(t)}`);
}

async function keyChange(env: Env): Promise<void> {
  const vm = `capbm-${vmCount}`;
  say(`re-creating VM ${vm} (new SSH host keys)`);
  await execa('vagrant', ['destroy', '-f', vm], { cwd: vagrantDir, stdio: 'inherit' });
  await execa('vagrant', ['up', vm], { cwd: vagrantDir, stdio: 'inherit' });
  await prepareVms(env);
  say('a cluster claiming every host: the re-created one must be refused');
  await applyVmCluster(env, { namespace: NS, name: CLUSTER, pool: POOL, controlPlane: 1, workers: vmCount - 1 });
  const c = await waitFor(
    'the pool condition HostKeysMatch=False',
    async () => {
      const k = await poolCondition(env, 'HostKeysMatch');
      return k?.status === 'False' ? k : undefined;
    },
    20 * 60_000,
    3000,
  );
  say(`pool ${NS}/${POOL}: HostKeysMatch=False ${c.reason}: ${c.message}`);
  if (!/re-run it/.test(c.message) || !c.message.includes('hack/vagrant-pool'))
    throw new Error(`the pool condition does not tell to re-run hack/vagrant-pool: ${c.message}`);
  await kubectl(env, ['delete', 'cluster', CLUSTER, '-n', NS, '--wait=false']);
  say('re-running the pool command: the new keys pinned');
  await pool(env);
  await waitFor('every VM host Available again', () => allAvailable(env), 20 * 60_000, 3000);
  await waitFor(
    'the pool condition HostKeysMatch=True',
    async () => ((await poolCondition(env, 'HostKeysMatch'))?.status === 'True' ? true : undefined),
    10 * 60_000,
    3000,
  );
  say('HostKeysMatch=True again');
}

async function up(): Promise<void> {
  if (existsSync(stateFile)) await down();
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  const env = await startEnv({
    hosts: 0,
    persistent: true,
    dirs: { management: join(dir, 'controlplane'), lab: join(dir, 'lab') },
    backends: addresses,
    log: say,
  });
  const provider = env.startProvider();
  writeFileSync(
    stateFile,
    JSON.stringify({ pids: [...env.cp.processes, env.registry.process, provider].map((p) => p.pid), lb: env.lb.slot }),
  );
  info(`management plane up in ${secs(t0)}; registry ${env.registry.endpoint}; load balancer ${env.lb.address}:6443`);
  // The load balancer sits on the lab bridge, whose /16 holds the VMs' network too: without this
  // route it looks for the VMs on the bridge itself and the API servers behind it are unreachable.
  await execa('ip', ['-n', netnsOf(env.lb.slot), 'route', 'replace', `${network}.0/24`, 'via', BRIDGE_ADDRESS]);
  await prepareVms(env);
  await onboardNamespace(env.cp.kc, NS);
  say(`pool ${NS}/${POOL} from the running VMs (hack/vagrant-pool --apply)`);
  await pool(env);
  info(`pool: ${JSON.stringify(await poolCondition(env, 'Ready'))}`);
  await waitFor('the VMs as Available hosts', () => allAvailable(env), 5 * 60_000, 2000);
  await provision(env, 1, vmCount - 1);
  if (vmCount > 1) {
    const t = Date.now();
    await kubectl(env, [
      'patch',
      'machinedeployment',
      `${CLUSTER}-md-0`,
      '-n',
      NS,
      '--type',
      'merge',
      '-p',
      '{"spec":{"replicas":0}}',
    ]);
    await waitFor(
      'the scaled-down worker host reset and Available',
      async () =>
        (await hosts(env)).filter((h) => h.phase === 'Available' && !h.claimed).length === vmCount - 1
          ? true
          : undefined,
      20 * 60_000,
      3000,
    );
    say(`scaled down to the control plane: the worker's host reset and Available in ${secs(t)}`);
  }
  await deleteCluster(env);
  await keyChange(env);
  say(`the Vagrant lab passed (${secs(t0)}); hack/vagrant-lab down removes everything`);
}

async function down(): Promise<void> {
  if (existsSync(stateFile)) {
    const s = JSON.parse(readFileSync(stateFile, 'utf8')) as { pids: number[]; lb: number };
    for (const pid of [...s.pids].reverse()) await stopPid(pid);
    await stopHost({ slot: s.lb });
  }
  rmSync(dir, { recursive: true, force: true });
  say("the Vagrant lab's management plane, registry and load balancer are down");
}

const cmd = process.argv[2] ?? 'up';
try {
  if (cmd === 'up') await up();
  else if (cmd === 'down') await down();
  else throw new Error(`unknown command '${cmd}': hack/vagrant-lab [up|down]`);
} catch (err) {
  process.stderr.write(
    `error: ${(err as Error).message}\n  fix: read the logs under ${dir}, then run: hack/vagrant-lab down && hack/vagrant-lab\n`,
  );
  process.exit(1);
}

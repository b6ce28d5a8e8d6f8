// hack/bench peer [N] [--concurrency K] [--kubeadm 10s] [--limit 15m] [--ssh-keep-idle DUR] (the provider's flag)
// A peer and a floor, side by side in one run: the same N lab hosts (real OpenSSH servers, each a
// whole Debian host in its own network namespace: test/harness/lab.ts), the same rendered bootstrap
// script per host, the same concurrency K, three runners one after another, the hosts reset between:
//   CAPBM:   the provider process (its ServiceAccount, --ssh-max-connections=K) provisioning N
//            Machines of one cluster from a pool of the N hosts, against a real kube-apiserver and
//            etcd; the bench creates what CAPI core and CABPK would (Cluster, and per machine the
//            bootstrap data Secret of CABPK's worker fixture, a Machine, its BareMetalMachine), as
//            `hack/bench fleet` does: no CAPI controller runs.
//   Ansible: ansible-playbook (Debian's ansible-core), forks=K, two tasks (copy the host's rendered
//            script, run it as root), key auth as root, host keys pinned in a known_hosts file.
//   OpenSSH: the floor: `xargs -P K` running one `ssh` per host that uploads the script on stdin and
//            runs it, on one connection; the same key and pinned known_hosts.
// Each host's script is the provider's own rendering (cloud-init/render.ts, the metadata the
// provider gives it) of test/fixtures/cabpk/worker.yaml. WHAT IT SIMULATES: kubeadm. On each host
// /usr/local/bin/kubeadm is bench-fake-kubeadm: `join` sleeps --kubeadm and writes the files a join
// writes; the kubelet does not start (a drop-in condition), so N joins fit on 2 cores.
// Prints per runner: wall time for all N, per-host completion p50/p99 (the sentinel's mtime after the
// runner's start) and the script's own time on the host, SSH connections per host (SYNs to port 22
// counted by an iptables rule in each host's namespace), runner CPU and the hosts' CPU; then the
// ratios. Every wait is bounded (--limit per runner); traffic goes to lab netns addresses only.
import { execa } from 'execa';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { render } from '../../cloud-init/index.ts';
import { resetScript } from '../../provider/controllers/host-ops.ts';
import { bootstrapMetaData } from '../../provider/controllers/metadata.ts';
import { hostName } from '../../provider/hosts/expand.ts';
import { BareMetalHosts, BareMetalMachines, collectionPath } from '../../provider/kube/kinds.ts';
import { raw } from '../../provider/kube/raw.ts';
import { installCapiCrds, installProviderCrds, startControlPlane } from '../../test/harness/controlplane.ts';
import { createPool, providerIdentity, startProviderProcess } from '../../test/harness/env.ts';
import {
  ensureBridge,
  hostExec,
  hostMemory,
  netnsOf,
  startHosts,
  stopHost,
  type LabHost,
} from '../../test/harness/lab.ts';
import { Team, workerData } from '../../test/harness/machine-world.ts';
import { repoRoot } from '../../test/harness/paths.ts';
import { waitFor, type ManagedProcess } from '../../test/harness/process.ts';
import { duration, flag, passOn } from '../../test/harness/bench-args.ts';

const positional = process.argv.slice(2).find((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--'));
const N = Number(positional ?? 50);
const K = Number(flag('concurrency', String(Math.min(N, 25))));
const kubeadmMs = duration('kubeadm', '10s');
const limitMs = duration('limit', '15m');
const keepIdle = passOn('ssh-keep-idle');
if (!(Number.isInteger(N) && Number.isInteger(K) && N >= 1 && K >= 1))
  throw new Error('give N hosts and --concurrency K as whole numbers >= 1');
const ns = 'peer';
const POOL = 'peer';
const CLUSTER = 'peer';
const SCRIPT = '/root/capbm-bootstrap.sh';
const SENTINEL = '/run/cluster-api/bootstrap-success.complete';
const say = (m: string) => process.stderr.write(`    ${m}\n`);
const fmt = (x: number, d = 1) => x.toFixed(d);

/** Runs fn for 0..n-1 with at most `width` in flight. */
async function each(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const fakeKubeadm = `#!/bin/sh
# bench-fake-kubeadm: hack/benchmarks/peer.ts puts this on its hosts; not kubeadm.
# join: sleeps ${kubeadmMs / 1000} s, then writes the files a kubeadm join writes; starts no kubelet.
set -e
case "$1" in
  join)
    sleep ${kubeadmMs / 1000}
    mkdir -p /etc/kubernetes/pki /var/lib/kubelet
    head -c 800 /dev/urandom | base64 > /etc/kubernetes/pki/ca.crt
    head -c 1500 /dev/urandom | base64 > /etc/kubernetes/bootstrap-kubelet.conf
    head -c 1500 /dev/urandom | base64 > /etc/kubernetes/kubelet.conf
    head -c 700 /dev/urandom | base64 > /var/lib/kubelet/config.yaml
    echo 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock"' > /var/lib/kubelet/kubeadm-flags.env
    echo "bench-fake-kubeadm: join simulated" ;;
  reset) rm -rf /etc/kubernetes /var/lib/kubelet/* ;;
esac
`;

mkdirSync(join(repoRoot, '.cache', 'tmp'), { recursive: true });
const dir = mkdtempSync(join(repoRoot, '.cache', 'tmp', 'peer-'));
const sshOpts = [
  '-F /dev/null',
  '-o BatchMode=yes',
  `-o UserKnownHostsFile=${join(dir, 'known_hosts')}`,
  '-o GlobalKnownHostsFile=/dev/null',
  '-o StrictHostKeyChecking=yes',
  '-o ConnectTimeout=60',
];
const runCmd = `sh ${SCRIPT} > ${SCRIPT}.log 2>&1; test -e ${SENTINEL}`;
await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'capbm-peer-bench', '-f', join(dir, 'key')]);
const key = { private: readFileSync(join(dir, 'key'), 'utf8'), public: readFileSync(join(dir, 'key.pub'), 'utf8') };

say('starting etcd and kube-apiserver (no Cluster API controllers: the bench creates their objects)');
const cp = await startControlPlane({ log: say });
const hosts: LabHost[] = [];
let provider: ManagedProcess | undefined;
let kubeconfig = '';
let ansibleV = '';
/** The paths the rendered script writes (the same on every host): the reset removes them. */
let written: string[] = [];
try {
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
  kubeconfig = await providerIdentity(cp);
  ansibleV = (await execa('ansible-playbook', ['--version'], { reject: false })).stdout.split('\n')[0] ?? '';
  if (!ansibleV.includes('ansible'))
    throw new Error('ansible-playbook is not installed: hack/bench peer installs it (apt-get install ansible-core)');
  await ensureBridge();
  say(`starting ${N} lab hosts`);
  const h0 = performance.now();
  hosts.push(
    ...(await startHosts(N, {
      authorizedKeys: [key.public.trim()],
      files: {
        '/usr/local/bin/kubeadm': fakeKubeadm,
        // The fake join configures no kubelet: it never starts (and does not restart every 10 s).
        '/etc/systemd/system/kubelet.service.d/99-capbm-peer-bench.conf':
          '[Unit]\nConditionPathExists=/nonexistent/capbm-peer-bench\n',
      },
    })),
  );
  const bootS = (performance.now() - h0) / 1000;
  for (const h of hosts) chmodSync(join(h.root, 'usr/local/bin/kubeadm'), 0o755);
  writeFileSync(join(dir, 'known_hosts'), hosts.map((h) => `${h.address} ${h.hostKeyPublic}\n`).join(''));
  chmodSync(join(dir, 'key'), 0o600);
  // The script per host, rendered as the provider renders it for machine peer-m<i> on that host.
  mkdirSync(join(dir, 'scripts'));
  hosts.forEach((h, i) => {
    const metaData = bootstrapMetaData({
      namespace: ns,
      machineName: `peer-m${i}`,
      hostName: hostName(POOL, h.address),
      address: h.address,
    });
    const r = render(workerData, { metaData: { ...metaData }, format: 'cloud-config' });
    writeFileSync(join(dir, 'scripts', `${h.name}.sh`), r.script);
    written = r.files;
  });
  const scriptBytes = readFileSync(join(dir, 'scripts', `${hosts[0]!.name}.sh`)).length;
  // New SSH connections per host: SYNs to port 22, counted in the host's own network namespace.
  await each(N, 8, (i) =>
    execa('ip', [
      'netns',
      'exec',
      netnsOf(hosts[i]!.slot),
      'iptables',
      '-w',
      '-I',
      'INPUT',
      '-p',
      'tcp',
      '--dport',
      '22',
      '--syn',
      '-m',
      'comment',
      '--comment',
      'capbm-peer-bench',
    ]),
  );

  const results: Result[] = [];
  for (const runner of [capbm, ansible, openssh]) {
    say('resetting every host (the provider reset script, run out of band)');
    await each(N, 8, async (i) => {
      const r = await hostExec(hosts[i]!, resetScript(`rm -f ${SCRIPT} ${SCRIPT}.log ${written.join(' ')}`));
      if (r.exitCode !== 0 || r.stdout.includes('leftover='))
        throw new Error(`reset of ${hosts[i]!.name}: ${r.stdout} ${r.stderr}`);
    });
    say(`running: ${runner.name}`);
    // The runner calls begin() where its timed part starts (CAPBM: after the pool's hosts are Available).
    let c0 = { syn: 0, cpu: 0 };
    let t0 = 0;
    const r = await runner(async () => {
      c0 = await counters();
      t0 = Date.now();
    });
    const wall = (Date.now() - t0) / 1000;
    const c1 = await counters();
    const times = await perHost(t0);
    results.push({ ...r, wall, times, syn: c1.syn - c0.syn, hostCpu: c1.cpu - c0.cpu });
  }
  // What a lab host costs, after the three runs (its cgroup: every process, page cache included).
  const mem = hosts.map((h) => hostMemory(h));
  const mib = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length / 2 ** 20;
  const hostCost = `${fmt(mib(mem.map((m) => m.rssBytes)))} MiB RSS, ${fmt(mib(mem.map((m) => m.usageBytes)))} MiB with page cache`;
  print(results, bootS, scriptBytes, hostCost);
} finally {
  await provider?.stop();
  for (const h of hosts) await stopHost(h).catch(() => {});
  await cp.stop();
  rmSync(dir, { recursive: true, force: true });
}

interface Run {
  name: string;
  /** CPU seconds of the runner's own processes. */
  cpu: number;
  cpuNote: string;
  ok: boolean;
  note: string;
}
interface Result extends Run {
  wall: number;
  times: Array<{ done: number; script: number } | undefined>;
  syn: number;
  hostCpu: number;
}

/** SYNs to port 22 and CPU seconds, summed over the hosts. */
async function counters(): Promise<{ syn: number; cpu: number }> {
  let syn = 0;
  let cpu = 0;
  await each(N, 8, async (i) => {
    const h = hosts[i]!;
    const out = await execa('ip', [
      'netns',
      'exec',
      netnsOf(h.slot),
      'iptables',
      '-w',
      '-L',
      'INPUT',
      '-v',
      '-x',
      '-n',
    ]);
    const line = out.stdout.split('\n').find((l) => l.includes('capbm-peer-bench'));
    syn += Number(line?.trim().split(/\s+/)[0] ?? NaN);
    cpu += Number(readFileSync(`/sys/fs/cgroup/cpuacct/capbm-lab/${h.slot}/cpuacct.usage`, 'utf8')) / 1e9;
  });
  return { syn, cpu };
}

/** Per host: its sentinel's time after t0, and the script's own time (first file written -> sentinel). */
async function perHost(t0: number): Promise<Result['times']> {
  const out: Result['times'] = [];
  await each(N, 8, async (i) => {
    const r = await hostExec(hosts[i]!, `date -r /etc/capbm/role +%s.%N && date -r ${SENTINEL} +%s.%N`);
    const [start, done] = r.stdout.trim().split('\n').map(Number);
    out[i] = r.exitCode === 0 ? { done: done! - t0 / 1000, script: done! - start! } : undefined;
  });
  return out;
}

/** Children's user + system CPU from bash's `times` (its second line), in seconds. */
function childCpu(timesOut: string): number {
  const line = timesOut.trim().split('\n').at(-1) ?? '';
  return [...line.matchAll(/(\d+)m([\d.]+)s/g)].reduce((a, m) => a + Number(m[1]) * 60 + Number(m[2]), 0);
}

function cpuOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

type Begin = () => Promise<void>;

async function capbm(begin: Begin): Promise<Run> {
  provider = startProviderProcess({
    name: 'capbm-manager',
    kubeconfig,
    logFile: join(cp.dir, 'capbm-manager.log'),
    args: [`--ssh-max-connections=${K}`, ...keepIdle],
  });
  await createPool({ cp, key }, ns, POOL, hosts);
  await waitFor(
    `${N} Available BareMetalHosts from the pool`,
    async () => {
      const l = await raw<{ items: Array<{ status?: { phase?: string } }> }>(
        cp.kc,
        'GET',
        collectionPath(BareMetalHosts, ns),
      );
      return l.items.filter((h) => h.status?.phase === 'Available').length >= N ? true : undefined;
    },
    limitMs,
    500,
  );
  const pids = [provider.pid, ...cp.processes.map((p) => p.pid)];
  await begin();
  const cpu0 = pids.map(cpuOf);
  // Timed from here: the CAPI objects, then until every BareMetalMachine is provisioned.
  const team = new Team(cp, ns);
  const c0 = performance.now();
  await each(N, 16, (i) => team.machine({ name: `peer-m${i}`, cluster: CLUSTER, pool: POOL }));
  const createdS = (performance.now() - c0) / 1000;
  const provisioned = () =>
    raw<{ items: Array<{ status?: { initialization?: { provisioned?: boolean } } }> }>(
      cp.kc,
      'GET',
      collectionPath(BareMetalMachines, ns),
    ).then((l) => l.items.filter((m) => m.status?.initialization?.provisioned).length);
  const ok = await waitFor(
    `${N} provisioned BareMetalMachines`,
    async () => ((await provisioned()) >= N ? true : undefined),
    limitMs,
    250,
  ).catch(() => false);
  const cpu = pids.map((p, i) => cpuOf(p) - cpu0[i]!);
  await provider.stop();
  provider = undefined;
  return {
    name: 'CAPBM',
    cpu: cpu[0]!,
    cpuNote: `provider; objects created in ${fmt(createdS)} s; kube-apiserver + etcd ${fmt(
      cpu.slice(1).reduce((a, b) => a + b, 0),
      1,
    )} s more`,
    ok,
    note: ok ? '' : `only ${await provisioned()} of ${N} provisioned within --limit`,
  };
}

/** bash -c `cmd; times` under `timeout` (its whole process group), with the children's CPU. */
async function timed(cmd: string, env: Record<string, string> = {}) {
  const r = await execa('bash', ['-c', `timeout -k 10 ${Math.ceil(limitMs / 1000)} ${cmd}; rc=$?; times; exit $rc`], {
    cwd: dir,
    env: { ...process.env, ...env },
    reject: false,
    timeout: limitMs + 60_000,
  });
  return { rc: r.exitCode ?? -1, cpu: childCpu(r.stdout), out: r.stdout, err: r.stderr };
}

async function ansible(begin: Begin): Promise<Run> {
  mkdirSync(join(dir, 'cp'), { recursive: true });
  writeFileSync(join(dir, 'inventory.ini'), hosts.map((h) => `${h.name} ansible_host=${h.address}\n`).join(''));
  writeFileSync(
    join(dir, 'ansible.cfg'),
    `[defaults]
inventory = ${join(dir, 'inventory.ini')}
forks = ${K}
remote_user = root
private_key_file = ${join(dir, 'key')}
host_key_checking = True
gathering = explicit
interpreter_python = /usr/bin/python3
timeout = 60
retry_files_enabled = False
[ssh_connection]
pipelining = True
ssh_args = ${sshOpts.join(' ')} -o ControlMaster=auto -o ControlPersist=60s
control_path = ${join(dir, 'cp')}/%%C
`,
  );
  writeFileSync(
    join(dir, 'playbook.yml'),
    `- name: the rendered bootstrap (hack/benchmarks/peer.ts)
  hosts: all
  gather_facts: false
  tasks:
    - name: copy this host's rendered bootstrap script
      ansible.builtin.copy:
        src: scripts/{{ inventory_hostname }}.sh
        dest: ${SCRIPT}
        mode: '0600'
    - name: run it as root; the sentinel says it succeeded
      ansible.builtin.shell: ${runCmd}
`,
  );
  await begin();
  const r = await timed('ansible-playbook playbook.yml > ansible.log 2>&1', {
    ANSIBLE_CONFIG: join(dir, 'ansible.cfg'),
    ANSIBLE_HOME: join(dir, 'ansible-home'),
  });
  // ControlPersist masters outlive the play by 60 s: closed now, by their sockets.
  for (const s of readdirSync(join(dir, 'cp')))
    await execa('ssh', ['-F', '/dev/null', '-o', `ControlPath=${join(dir, 'cp', s)}`, '-O', 'exit', 'x'], {
      reject: false,
      timeout: 10_000,
    });
  const recap = readFileSync(join(dir, 'ansible.log'), 'utf8').split('PLAY RECAP').at(-1) ?? '';
  return {
    name: 'Ansible',
    cpu: r.cpu,
    cpuNote: 'ansible-playbook, its forks and ssh processes',
    ok: r.rc === 0,
    note: r.rc === 0 ? '' : `ansible-playbook exited ${r.rc}: ${recap.trim().split('\n').slice(0, 5).join('; ')}`,
  };
}

async function openssh(begin: Begin): Promise<Run> {
  writeFileSync(join(dir, 'targets'), hosts.map((h) => `${h.address} scripts/${h.name}.sh\n`).join(''));
  const one = `ssh ${sshOpts.join(' ')} -i ${join(dir, 'key')} root@"$0" "cat > ${SCRIPT} && ${runCmd}" < "$1"`;
  await begin();
  const r = await timed(`xargs -P ${K} -L 1 sh -c '${one}' < targets > openssh.log 2>&1`);
  return {
    name: 'OpenSSH',
    cpu: r.cpu,
    cpuNote: 'xargs and its ssh processes',
    ok: r.rc === 0,
    note: r.rc === 0 ? '' : `xargs exited ${r.rc}: ${readFileSync(join(dir, 'openssh.log'), 'utf8').slice(0, 300)}`,
  };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

function print(rs: Result[], bootS: number, scriptBytes: number, hostCost: string): void {
  const row = (r: Result) => {
    const t = r.times.filter((x) => x !== undefined);
    const p50p99 = (xs: number[]) => `p50 ${fmt(pct(xs, 50))} s p99 ${fmt(pct(xs, 99))}`;
    const done = t.map((x) => x.done);
    return `${r.name.padEnd(8)} ${fmt(r.wall, 1).padStart(7)} s ${fmt(N / r.wall, 2).padStart(7)}/s   done first ${fmt(Math.min(...done))} s ${p50p99(done)} s; script ${p50p99(t.map((x) => x.script))} s; ${t.length}/${N} sentinels; SSH connections ${fmt(r.syn / N, 2)}/host; CPU ${fmt(r.cpu, 1)} s (${r.cpuNote}), hosts ${fmt(r.hostCpu, 1)} s${r.ok ? '' : `\n         FAILED: ${r.note}`}`;
  };
  const [c, a, o] = rs as [Result, Result, Result];
  const ideal = Math.ceil(N / K) * (kubeadmMs / 1000);
  process.stdout.write(
    [
      `$ ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench peer ${N} --concurrency ${K}`}`,
      `hosts: ${N} lab hosts (real OpenSSH servers, each a Debian host in its own network namespace; started in ${fmt(bootS)} s; each ${hostCost}); concurrency ${K} for all three (CAPBM --ssh-max-connections, Ansible forks, xargs -P); runs one after another, every host reset between (the provider's reset script, out of band)`,
      `script per host: the provider's rendering of CABPK's worker bootstrap (test/fixtures/cabpk/worker.yaml; ${scriptBytes} bytes): write_files (3 files), swapoff -a, kubeadm join, the sentinel. SIMULATED: kubeadm is bench-fake-kubeadm: join sleeps ${kubeadmMs / 1000} s and writes the 5 files a join writes (CA certificate, bootstrap and kubelet kubeconfigs, kubelet config and flags); the kubelet is kept from starting`,
      `CAPBM: the provider as its own process under its ServiceAccount, real kube-apiserver and etcd, no CAPI controllers (the bench creates the Cluster and per machine a bootstrap Secret, Machine and BareMetalMachine, timed); preflight, start, checks every 2-10 s and the end on one kept connection per host while it lasts (--ssh-keep-idle, default 30 s; kept ones count within --ssh-max-connections and give way to new work, so with more hosts in flight than K they are closed and opened again)`,
      `Ansible: ${ansibleV}, forks=${K}, linear strategy, facts off, pipelining on, ControlPersist 60 s, host keys pinned (known_hosts, StrictHostKeyChecking=yes); tasks: copy the script, run it (shell)`,
      `OpenSSH: xargs -P ${K}, one ssh per host: script on stdin, run on the same connection; same key and known_hosts`,
      `runner      wall    hosts/s   (done: sentinel written, after the runner's start; script: first file written -> sentinel, on the host)`,
      ...rs.map(row),
      `ideal at ${K} at once: ceil(${N}/${K}) x ${kubeadmMs / 1000} s = ${fmt(ideal)} s`,
      `throughput CAPBM / Ansible: ${fmt(a.wall / c.wall, 2)}x (target >= 3);  wall CAPBM / OpenSSH floor: ${fmt(c.wall / o.wall, 2)}x (target <= 1.5);  Ansible / floor: ${fmt(a.wall / o.wall, 2)}x`,
      '',
    ].join('\n'),
  );
}

// `hack/lab` brings up the whole lab (management plane, registry, load balancer, hosts, provider,
// Flux and the Git server of the clusters repository, a sample cluster made by a commit to it and the
// real kubeadm, the sample application) and `hack/lab down` leaves nothing behind: no process, port,
// folder or lab host.
import test from 'ava';
import { execa } from 'execa';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { controlPlaneDir, repoRoot } from '../harness/paths.ts';
import { listHosts } from '../harness/lab.ts';
import { alive } from '../harness/process.ts';

/** Listening sockets (local address) of the given processes. Other tests run beside this one. */
async function listening(pids: number[]): Promise<string[]> {
  const { stdout } = await execa('ss', ['-Hltnp']);
  return stdout
    .split('\n')
    .filter((l) => pids.some((pid) => l.includes(`pid=${pid},`)))
    .map((l) => l.trim().split(/\s+/)[3] ?? '');
}

async function stillListening(addrs: string[]): Promise<string[]> {
  const { stdout } = await execa('ss', ['-Hltn']);
  const now = new Set(stdout.split('\n').map((l) => l.trim().split(/\s+/)[3] ?? ''));
  return addrs.filter((a) => now.has(a));
}

test('the lab comes up with a working cluster and goes down without leftovers', async (t) => {
  t.timeout(30 * 60_000);
  const labDir = join(mkdtempSync(join(tmpdir(), 'capbm-lab-test-')), 'lab');
  const env = { CAPBM_LAB_DIR: labDir };

  // Down even when an assertion fails on the way: a failed test leaves nothing running either, but
  // its management plane's logs are kept first (.cache/logs/lab-test-*), since down removes them.
  t.teardown(async () => {
    const logs = join(labDir, 'controlplane');
    if (!t.passed && existsSync(logs)) {
      const to = join(repoRoot, '.cache', 'logs', `lab-test-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      mkdirSync(to, { recursive: true });
      for (const f of readdirSync(logs).filter((x) => x.endsWith('.log'))) copyFileSync(join(logs, f), join(to, f));
      process.stderr.write(`lab test failed: its logs are in ${to}\n`);
    }
    await execa('node', [join(repoRoot, 'hack', 'lab.ts'), 'down'], { env, cwd: repoRoot, reject: false });
    rmSync(dirname(labDir), { recursive: true, force: true });
  });
  const upRun = await execa('node', [join(repoRoot, 'hack', 'lab.ts'), 'up'], { env, cwd: repoRoot });
  t.regex(upRun.stdout, /Kubeconfig: /);
  // The sample cluster came up whole: Cluster API says so, every Node is Ready, the sample
  // application answered a pod on another node.
  t.regex(upRun.stderr, /committed [0-9a-f]{12} "team-a: cluster alpha/, 'the cluster came from a commit');
  t.regex(upRun.stderr, /cluster team-a\/alpha Available, every Machine Ready/);
  t.regex(upRun.stdout, /git clone http:\/\/10\.250\.0\.1:\d+\/clusters\.git/, 'the loop is printed');
  t.regex(upRun.stderr, /a pod on \S+ asked a hello pod on \S+: "hello-/);
  t.is((upRun.stdout.match(/ Ready /g) ?? []).length, 3, upRun.stdout);
  const state = JSON.parse(readFileSync(join(labDir, 'state.json'), 'utf8')) as {
    kubeconfig: string;
    processes: Array<{ name: string; pid: number }>;
  };
  t.deepEqual(
    state.processes.map((p) => p.name),
    [
      'etcd',
      'kube-apiserver',
      'kube-controller-manager',
      'capi-core',
      'capi-bootstrap',
      'capi-controlplane',
      'registry',
      'capbm-manager',
      'source-controller',
      'kustomize-controller',
      'helm-controller',
      'git-server',
    ],
  );
  t.true(state.processes.every((p) => alive(p.pid)));
  const ports = await listening(state.processes.map((p) => p.pid));
  t.true(ports.length >= 4, ports.join(' '));
  // The processes outlive the command that started them, and the API answers.
  const kubectl = join(controlPlaneDir(), 'bin', 'kubectl');
  const ns = await execa(kubectl, ['--kubeconfig', state.kubeconfig, 'get', 'namespaces', '-o', 'name']);
  t.regex(ns.stdout, /namespace\/kube-system/);
  const status = await execa('node', [join(repoRoot, 'hack', 'lab.ts'), 'status'], { env, cwd: repoRoot });
  t.notRegex(status.stderr, /NOT RUNNING/);
  // Flux's view, and the clusters repository answers on the lab bridge.
  const gitops = await execa('node', [join(repoRoot, 'hack', 'lab.ts'), 'gitops'], { env, cwd: repoRoot });
  t.regex(gitops.stdout, /team-a\s+helmrelease\S*\/alpha\s+\S+\s+True/, gitops.stdout);
  const url = (await execa('node', [join(repoRoot, 'hack', 'lab.ts'), 'gitops', 'url'], { env, cwd: repoRoot })).stdout;
  const heads = await execa('git', ['ls-remote', url, 'refs/heads/main']);
  t.regex(heads.stdout, /^[0-9a-f]{40}\trefs\/heads\/main$/);

  await execa('node', [join(repoRoot, 'hack', 'lab.ts'), 'down'], { env, cwd: repoRoot });
  t.false(existsSync(labDir));
  t.true(state.processes.every((p) => !alive(p.pid)));
  t.deepEqual(await stillListening(ports), []);
  t.false(
    listHosts().some((h) => h.persistent),
    'no lab host left',
  );
});

// The BareMetalMachine reconciler against the real API server, with a recording stand-in for SSH
// (test/harness/fake-ssh.ts): every step of the plan, what each leaves on the machine and the host,
// that a bootstrap is followed off the worker, that only a genuinely invalid payload is called
// BootstrapDataInvalid (a missing Secret or a broken connection is retried), and that a new leader
// attaches to a running bootstrap. The real SSH transport, hosts and CAPI controllers: test/e2e.
import test from 'ava';
import { reconcilePool } from '../../provider/hosts/pool.ts';
import { BareMetalMachines, Clusters, objectPath, Secrets } from '../../provider/kube/kinds.ts';
import { apiRequests, raw } from '../../provider/kube/raw.ts';
import { installCapiCrds, installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import { FakeSsh, fakeHost } from '../harness/fake-ssh.ts';
import {
  clusterLabel,
  cond,
  deleteAndReconcile as deleteIt,
  Team,
  until as untilIt,
  workerData,
  world as worldOf,
  type MachineSetup,
  type World,
} from '../harness/machine-world.ts';
import { waitFor } from '../harness/process.ts';
import { startCutProxy, type CutProxy } from '../harness/proxy.ts';

let cp: ControlPlane;
let proxy: CutProxy;
let team: Team;
const ns = 'default';

test.before(async () => {
  cp = await startControlPlane();
  await installCapiCrds(cp.kc);
  await installProviderCrds(cp.kc);
  proxy = await startCutProxy(new URL(cp.server));
  team = new Team(cp, ns);
  await team.pool('rack', ['192.0.2.1-192.0.2.20'], 'ssh');
  await reconcilePool(cp.kc, ns, 'rack');
});
test.after.always(async () => {
  await proxy?.close();
  await cp?.stop();
});

const world = (o: { kc?: typeof cp.kc; ssh?: FakeSsh } = {}) => worldOf(cp, o);
const machine = (m: MachineSetup) => team.machine(m);
const secret = (name: string, data: Record<string, string>, labels: Record<string, string> = {}) =>
  team.secret(name, data, labels);
const getBmm = (name: string) => team.bmm(name);
const getHost = (name: string) => team.host(name);
const events = (name: string) => team.events(name);
const deleteAndReconcile = (w: World, name: string) => deleteIt(w, team, name);
const until = (
  t: Parameters<typeof untilIt>[0],
  w: World,
  name: string,
  done: Parameters<typeof untilIt>[4],
  max?: number,
) => untilIt(t, w, team, name, done, max);

test.serial(
  'a machine walks every step to provisioned: claim, preflight, bootstrap followed off the worker, agent, provisioned, health',
  async (t) => {
    const w = await world();
    t.teardown(() => w.stop());
    await machine({ name: 'walk' });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // Every host of the pool holds its bootstrap until released.
    for (let i = 1; i <= 20; i++) w.ssh.hosts.set(`192.0.2.${i}`, fakeHost({ gate }));
    const claimed = await until(t, w, 'walk', (m) => cond(m, 'HostReady')?.status === 'True');
    const hostName = claimed.status!.hostRef!.name;
    const host = await getHost(hostName);
    t.is(host.spec.consumerRef?.name, 'walk');
    t.is(host.status?.phase, 'Provisioning');
    t.like(host.status?.facts, { os: 'debian 12', cpus: 2 });
    t.is(cond(host, 'PreflightPassed')?.status, 'True');

    // The bootstrap starts and the reconcile returns while it runs: the worker is not held.
    const running = await until(t, w, 'walk', (m) =>
      /^Step 1\/\d+: write_files\.0/.test(cond(m, 'BootstrapSucceeded')?.message ?? ''),
    );
    t.is(cond(running, 'BootstrapSucceeded')?.reason, 'Bootstrapping');
    t.is(w.deps.runs.get(running.metadata.uid!)?.state, 'running');
    release();
    const done = await until(t, w, 'walk', (m) => m.status?.initialization?.provisioned === true);
    t.is(done.spec.providerID, `capbm://${ns}/${hostName}`);
    t.deepEqual(done.status?.addresses, [
      { type: 'InternalIP', address: host.spec.address },
      { type: 'Hostname', address: 'walk' },
    ]);
    t.is(cond(done, 'Ready')?.status, 'True');
    t.is(cond(done, 'AgentInstalled')?.status, 'True');
    t.is((await getHost(hostName)).status?.phase, 'Provisioned');
    const fh = w.ssh.host(host.spec.address);
    t.is(fh.started, 1);
    t.true(
      fh.commands.some((c) => c.includes('bootstrap.sh') && c.startsWith('rm -f')),
      'the used script is scrubbed',
    );
    t.deepEqual(w.agent.installs, [hostName]);
    const healthy = await until(t, w, 'walk', (m) => cond(m, 'HostHealthy')?.status === 'True');
    t.truthy(healthy);
    for (const s of [
      'add-finalizer',
      'claim-host',
      'preflight',
      'start-bootstrap',
      'follow-bootstrap',
      'finish-bootstrap',
      'done',
    ])
      t.true(w.steps.includes(s), `step ${s} in ${w.steps.join(', ')}`);
    // One event for the whole way, naming the host; the claim is told by HostClaimed=True.
    const said = await events('walk');
    t.deepEqual(
      said.map((e) => e.reason),
      ['Provisioned'],
    );
    t.true(said[0]!.message.includes(`host ${hostName} (`), said[0]!.message);
  },
);

/** The provider's own writes (every verb but GET and WATCH) through `host`, by "VERB resource". */
async function writesThrough(host: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const v of (await apiRequests.get()).values) {
    const { method, resource } = v.labels;
    if (v.labels.host !== host || method === 'GET' || method === 'WATCH') continue;
    const k = `${String(method)} ${String(resource)}`;
    out.set(k, (out.get(k) ?? 0) + v.value);
  }
  return out;
}

test.serial('a machine costs at most 10 API writes from claim to provisioned, its events included', async (t) => {
  // The provider talks through its own address (the proxy), so its request metrics are its alone:
  // the test's own requests go to the API server directly. Reconciled every 50 ms (until), more
  // often than events would wake it, so a pass with nothing new must write nothing.
  const w = await worldOf(cp, { kc: proxy.kubeconfig(cp.kubeconfigPath), locks: ns });
  t.teardown(() => w.stop());
  const via = `127.0.0.1:${proxy.port}`;
  await machine({ name: 'frugal' });
  const before = await writesThrough(via);
  const m = await until(t, w, 'frugal', (x) => x.status?.initialization?.provisioned === true);
  await w.deps.recorder.flush();
  const after = await writesThrough(via);
  const per = [...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const).filter(([, v]) => v > 0);
  const total = per.reduce((a, [, v]) => a + v, 0);
  const what = per.map(([k, v]) => `${k} ${v}`).join(', ');
  t.true(total <= 10, `${total} writes: ${what}`);
  // The economy takes nothing from what a user reads: the story is on the machine and the host.
  t.is(cond(m, 'Ready')?.status, 'True');
  t.is((await getHost(m.status!.hostRef!.name)).status?.phase, 'Provisioned');
  t.true((await events('frugal')).some((e) => e.reason === 'Provisioned'));
  t.log(`${total} writes: ${what}`);
});

test.serial('waits say what they wait for, and nothing runs on the host before the data is there', async (t) => {
  const w = await world();
  t.teardown(() => w.stop());
  // A worker holds nothing before it can go on; a control-plane machine holds its host early.
  await machine({ name: 'worker-early', infraReady: false, data: 'none' });
  const wm = await until(
    t,
    w,
    'worker-early',
    (x) => cond(x, 'HostClaimed')?.reason === 'WaitingForClusterInfrastructure',
  );
  t.is(wm.status?.hostRef, undefined);
  await machine({ name: 'early', infraReady: false, data: 'none', controlPlane: true });
  const m = await until(
    t,
    w,
    'early',
    (x) => cond(x, 'BootstrapSucceeded')?.reason === 'WaitingForClusterInfrastructure',
  );
  t.is(cond(m, 'HostClaimed')?.status, 'True', 'the host is held early (the endpoint rule needs it)');
  t.is(w.ssh.connections, 0);
  await raw(cp.kc, 'PATCH', objectPath(Clusters, ns, 'c-early', 'status'), {
    status: { initialization: { infrastructureProvisioned: true } },
  });
  await waitFor(
    'cluster cache',
    () =>
      Promise.resolve(
        w.deps.clusters.get(ns, 'c-early')?.status?.initialization?.infrastructureProvisioned ? true : undefined,
      ),
    10_000,
    20,
  );
  await until(t, w, 'early', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'WaitingForBootstrapData');
  t.is(w.ssh.connections, 0);
});

test.serial(
  'only a genuinely invalid payload is BootstrapDataInvalid; a missing Secret and a cut connection are retried',
  async (t) => {
    const cutKc = proxy.kubeconfig(cp.kubeconfigPath);
    const w = await world({ kc: cutKc });
    t.teardown(() => w.stop());
    // A Secret named but not there yet: a wait, retried.
    await machine({ name: 'nodata', data: { value: workerData } });
    await raw(cp.kc, 'DELETE', objectPath(Secrets, ns, 'nodata-bootstrap'));
    const m = await until(
      t,
      w,
      'nodata',
      (x) =>
        cond(x, 'BootstrapSucceeded')?.reason === 'WaitingForBootstrapData' && cond(x, 'HostReady')?.status === 'True',
    );
    t.regex(cond(m, 'BootstrapSucceeded')?.message ?? '', /does not exist yet; retrying/);
    // The connection to the API server breaks while the data is read: the reconcile fails and is retried.
    await secret('nodata-bootstrap', { value: workerData, format: 'cloud-config' }, clusterLabel('c-nodata'));
    proxy.refuse(true);
    proxy.cut();
    await t.throwsAsync(w.reconcile(ns, 'nodata'));
    proxy.refuse(false);
    t.not(cond(await getBmm('nodata'), 'BootstrapSucceeded')?.reason, 'BootstrapDataInvalid');
    await until(t, w, 'nodata', (x) => x.status?.initialization?.provisioned === true);

    // A payload that cannot be carried out: said once, nothing run.
    await machine({
      name: 'bad',
      data: { value: '#cloud-config\ndisk_setup:\n  /dev/sdb: {}\n', format: 'cloud-config' },
    });
    const bad = await until(t, w, 'bad', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'BootstrapDataInvalid');
    t.regex(cond(bad, 'BootstrapSucceeded')?.message ?? '', /Fix the KubeadmConfig/);
    t.is(w.ssh.host(bad.status?.hostRef ? (await getHost(bad.status.hostRef.name)).spec.address : '').started, 0);
  },
);

test.serial(
  'a failed bootstrap is final, an interrupted one runs again; delete resets and releases, or quarantines a dirty host',
  async (t) => {
    const w = await world();
    t.teardown(() => w.stop());
    await machine({ name: 'fails' });
    // The next free host fails its bootstrap.
    for (const [, h] of w.ssh.hosts) if (h.runState === 'none') h.bootstrap = 'fail';
    for (let i = 1; i <= 20; i++)
      if (!w.ssh.hosts.has(`192.0.2.${i}`)) w.ssh.hosts.set(`192.0.2.${i}`, fakeHost({ bootstrap: 'fail' }));
    const failed = await until(t, w, 'fails', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'BootstrapFailed');
    t.regex(
      cond(failed, 'BootstrapSucceeded')?.message ?? '',
      /step runcmd\.0 exited 1: kubeadm: error execution phase preflight/,
    );
    t.is(failed.status?.phase, 'Failed');
    const host = await getHost(failed.status!.hostRef!.name);
    const fh = w.ssh.host(host.spec.address);
    for (let i = 0; i < 3; i++) await w.reconcile(ns, 'fails');
    t.is(fh.started, 1, 'not run again in place');
    // Its secrets do not wait for the delete: the script, its log and the files it wrote are gone.
    t.true(fh.commands.some((c) => c.includes('bootstrap.sh') && c.includes('while IFS= read -r f')));

    // Deleted: the host is reset; it left something behind, so it is quarantined and the machine goes.
    fh.leftovers = ['/etc/kubernetes/kubelet.conf'];
    await deleteAndReconcile(w, 'fails');
    const q = await getHost(host.metadata.name);
    t.is(q.status?.phase, 'Quarantined');
    t.is(q.spec.quarantine?.reason, 'HostDirty');
    t.is(q.spec.consumerRef, undefined);
    t.true(fh.commands.some((c) => c.includes('kubeadm reset') && c.includes('echo agent-removed')));
    await waitFor(
      'the machine to go',
      async () =>
        await getBmm('fails').then(
          () => undefined,
          () => true,
        ),
      10_000,
      50,
    );

    // An interrupted bootstrap (the host lost power) is run again; step markers skip what finished.
    await machine({ name: 'blip' });
    for (const [, h] of w.ssh.hosts) if (h.runState === 'none' && !h.leftovers.length) h.bootstrap = 'interrupted';
    const hit = await until(t, w, 'blip', (x) => cond(x, 'BootstrapSucceeded')?.reason === 'HostUnreachable');
    const bh = w.ssh.host((await getHost(hit.status!.hostRef!.name)).spec.address);
    bh.bootstrap = 'ok';
    const ok = await until(t, w, 'blip', (x) => x.status?.initialization?.provisioned === true);
    t.is(bh.started, 2);
    // Deleted cleanly: reset, Available, released.
    await deleteAndReconcile(w, 'blip');
    const freed = await getHost(ok.status!.hostRef!.name);
    t.is(freed.status?.phase, 'Available');
    t.is(freed.spec.consumerRef, undefined);
    t.is(cond(freed, 'Clean')?.status, 'True');
    t.true((await events('blip')).some((e) => e.reason === 'HostReleased'));
  },
);

test.serial('a host that refuses the key: said on the machine and the host, nothing run', async (t) => {
  const ssh = new FakeSsh();
  for (let i = 1; i <= 20; i++) ssh.hosts.set(`192.0.2.${i}`, fakeHost({ refuse: 'auth' }));
  const w = await world({ ssh });
  t.teardown(() => w.stop());
  await machine({ name: 'nokey' });
  const m = await until(t, w, 'nokey', (x) => cond(x, 'HostReady')?.reason === 'SSHAuthenticationFailed');
  t.regex(cond(m, 'HostReady')?.message ?? '', /Secret default\/ssh/);
  const h = await getHost(m.status!.hostRef!.name);
  t.is(cond(h, 'Reachable')?.reason, 'SSHAuthenticationFailed');
  t.true([...ssh.hosts.values()].every((x) => x.commands.length === 0));
  await raw(cp.kc, 'DELETE', objectPath(BareMetalMachines, ns, 'nokey'));
});

test.serial('a new leader attaches to the bootstrap the old one started: it runs once', async (t) => {
  const ssh = new FakeSsh();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  for (let i = 1; i <= 20; i++) ssh.hosts.set(`192.0.2.${i}`, fakeHost({ gate }));
  const first = await world({ ssh });
  await machine({ name: 'handover' });
  await until(
    t,
    first,
    'handover',
    (x) =>
      cond(x, 'BootstrapSucceeded')?.reason === 'Bootstrapping' &&
      /Step/.test(cond(x, 'BootstrapSucceeded')?.message ?? ''),
  );
  await first.stop(); // the old leader is gone; its run's connection with it
  const second = await world({ ssh });
  t.teardown(() => second.stop());
  const attach = second.reconcile(ns, 'handover');
  release();
  await attach;
  const m = await until(t, second, 'handover', (x) => x.status?.initialization?.provisioned === true);
  const fh = ssh.host((await getHost(m.status!.hostRef!.name)).spec.address);
  t.is(fh.started, 1);
  t.true((await events('handover')).some((e) => e.reason === 'BootstrapAttached'));
});

// End to end under faults, with every real part (see provision.test.ts): the manager killed in the
// middle of a bootstrap, a host powered off in the middle of one, a wrong SSH key, a changed host
// key, a paused cluster. Hosts are chosen through pools of one host, so each fault hits a known host.
// "In the middle of a bootstrap" is held open the way it happens: the host cannot reach the
// control-plane endpoint for a while (a blackhole route on the host), so the real `kubeadm join`
// waits in its discovery phase until the route comes back.
import test from 'ava';
import { execa } from 'execa';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { raw } from '../../provider/kube/raw.ts';
import {
  applyClusterTemplate,
  createPool,
  machines,
  PROVIDER_NAMESPACE,
  startEnv,
  waitForRunning,
  workloadKubeconfig,
  type Env,
} from '../harness/env.ts';
import { hostExec, powerOff, powerOn, rotateHostKey, type LabHost } from '../harness/lab.ts';
import { waitFor, type ManagedProcess } from '../harness/process.ts';

const ns = 'faults';
const cluster = 'beta';
let env: Env;
let leader: ManagedProcess;
const base = `/apis/${API_VERSION}/namespaces/${ns}`;
const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;

test.before(async (t) => {
  t.timeout(20 * 60_000);
  env = await startEnv({ hosts: 7 });
  const [cpHost, w1, ...rest] = env.hosts;
  await createPool(env, ns, 'cp', [cpHost!]);
  await createPool(env, ns, 'workers', [w1!]);
  for (const [i, h] of rest.entries()) await createPool(env, ns, `solo${i}`, [h]);
  leader = env.startProvider({ name: 'capbm-a' });
  await applyClusterTemplate(env, { namespace: ns, name: cluster, pool: 'cp', workerPool: 'workers', workers: 1 });
  await waitForRunning(env, ns, cluster, 2, 15 * 60_000);
});
test.after.always(async () => {
  await env?.stop();
});

const getBmm = async (name: string) => raw<BareMetalMachine>(env.cp.kc, 'GET', `${base}/baremetalmachines/${name}`);
const getHost = async (name: string) => raw<BareMetalHost>(env.cp.kc, 'GET', `${base}/baremetalhosts/${name}`);
const hostOfPool = async (pool: string) =>
  (
    await raw<{ items: BareMetalHost[] }>(
      env.cp.kc,
      'GET',
      `${base}/baremetalhosts?labelSelector=${encodeURIComponent(`infrastructure.cluster.x-k8s.io/pool=${pool}`)}`,
    )
  ).items[0]!;
const labHostOf = (h: BareMetalHost): LabHost => env.hosts.find((x) => x.address === h.spec.address)!;
const cond = (
  o: { status?: { conditions?: Array<{ type: string; status: string; reason: string; message?: string }> } },
  type: string,
) => o.status?.conditions?.find((c) => c.type === type);

/** A second MachineDeployment of the cluster whose machines take hosts from `pool`. */
async function deployment(name: string, pool: string, replicas: number): Promise<void> {
  await raw(env.cp.kc, 'POST', `${base}/baremetalmachinetemplates`, {
    apiVersion: API_VERSION,
    kind: 'BareMetalMachineTemplate',
    metadata: { name, namespace: ns },
    spec: { template: { spec: { poolRef: { name: pool } } } },
  });
  const md = await raw<{ spec: Record<string, unknown> }>(
    env.cp.kc,
    'GET',
    `${capi}/machinedeployments/${cluster}-md-0`,
  );
  const spec = structuredClone(md.spec) as {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: { infrastructureRef: { name: string } } };
  };
  spec.replicas = replicas;
  // With the cluster label, as CAPI's defaulting webhook would add (the harness registers no
  // webhooks): without it the MachineDeployment and MachineSet controllers rewrite the MachineSet's
  // selector in turn, and a scale-down may not be acted on.
  const labels = { 'cluster.x-k8s.io/cluster-name': cluster, 'cluster.x-k8s.io/deployment-name': name };
  spec.selector.matchLabels = labels;
  spec.template.metadata.labels = { ...labels };
  spec.template.spec.infrastructureRef.name = name;
  await raw(env.cp.kc, 'POST', `${capi}/machinedeployments`, {
    apiVersion: 'cluster.x-k8s.io/v1beta2',
    kind: 'MachineDeployment',
    metadata: { name, namespace: ns },
    spec,
  });
}

/** The BareMetalMachine holding the host of `pool`, once it exists. */
const machineOnPool = (pool: string) =>
  waitFor(
    `a machine on pool ${pool}`,
    async () => {
      const h = await hostOfPool(pool);
      return h.spec.consumerRef ? getBmm(h.spec.consumerRef.name) : undefined;
    },
    60_000,
    250,
  );

/** Whether `kubeadm join` runs on the host now. */
const joining = async (h: LabHost) => (await hostExec(h, 'pgrep -f "[k]ubeadm join" >/dev/null')).exitCode === 0;
const kubeadmStarted = (h: LabHost) =>
  waitFor('the bootstrap to reach kubeadm join', async () => ((await joining(h)) ? true : undefined), 120_000, 200);

/** Holds the host's bootstrap: its route to the control-plane endpoint goes nowhere (or comes back). */
const hold = (h: LabHost) => hostExec(h, `ip route add blackhole ${env.lb.address}/32`);
const release = (h: LabHost) => hostExec(h, `ip route del blackhole ${env.lb.address}/32 2>/dev/null; true`);

/**
 * How many kubelet client certificates were requested for the node: each `kubeadm join` run makes
 * its kubelet ask once (TLS bootstrap), so one means kubeadm ran once.
 */
async function bootstrapCsrs(node: string): Promise<number> {
  const wl = (await workloadKubeconfig(env, ns, cluster)).kc;
  const csrs = await raw<{ items: Array<{ spec: { request: string; username: string } }> }>(
    wl,
    'GET',
    '/apis/certificates.k8s.io/v1/certificatesigningrequests',
  );
  let n = 0;
  for (const c of csrs.items) {
    if (!c.spec.username.startsWith('system:bootstrap:')) continue;
    // The kubelet's key is ECDSA, which node-forge cannot read: openssl prints the subject.
    const subject = await execa('openssl', ['req', '-noout', '-subject'], {
      input: Buffer.from(c.spec.request, 'base64').toString('utf8'),
    });
    if (subject.stdout.includes(`CN = system:node:${node}`)) n++;
  }
  return n;
}

/** The machine once its condition `type` has `reason`. */
const untilCondition = (name: string, type: string, reason: string) =>
  waitFor(
    `${type} with reason ${reason}`,
    async () => {
      const x = await getBmm(name);
      return cond(x, type)?.reason === reason ? x : undefined;
    },
    60_000,
    250,
  );

test.serial(
  'the manager is killed mid-bootstrap: the standby leader attaches to the run; kubeadm runs once',
  async (t) => {
    t.timeout(12 * 60_000);
    env.startProvider({ name: 'capbm-b' }); // the standby that takes over
    const host = labHostOf(await hostOfPool('solo0'));
    await hold(host);
    await deployment('md-kill', 'solo0', 1);
    const bmm = await machineOnPool('solo0');
    await kubeadmStarted(host);
    const lease = `/apis/coordination.k8s.io/v1/namespaces/${PROVIDER_NAMESPACE}/leases/capbm-controller-leader-election`;
    const holder = async () =>
      (await raw<{ spec: { holderIdentity?: string } }>(env.cp.kc, 'GET', lease)).spec.holderIdentity;
    const before = await holder();
    await leader.kill();
    await waitFor(
      'the standby to take the lease',
      async () => ((await holder()) !== before ? true : undefined),
      60_000,
      250,
    );
    // Give the new leader time to look at the machine while kubeadm is still held.
    await new Promise((r) => setTimeout(r, 5000));
    t.true(await joining(host), 'kubeadm join still runs, held at discovery');
    await release(host);
    const m = await waitFor(
      'the machine to be provisioned by the new leader',
      async () => {
        const b = await getBmm(bmm.metadata.name);
        return b.status?.initialization?.provisioned ? b : undefined;
      },
      120_000,
      500,
    );
    t.truthy(m.spec.providerID);
    await waitForRunning(env, ns, cluster, 3, 300_000);
    t.is(await bootstrapCsrs(bmm.metadata.name), 1, 'kubeadm join ran exactly once (one kubelet TLS bootstrap)');
    const events = await raw<{ items: Array<{ reason: string }> }>(
      env.cp.kc,
      'GET',
      `/api/v1/namespaces/${ns}/events?fieldSelector=${encodeURIComponent(`involvedObject.name=${bmm.metadata.name}`)}`,
    );
    t.true(
      events.items.some((e) => e.reason === 'BootstrapAttached'),
      'the new leader attached to the running bootstrap',
    );
  },
);

test.serial('a host powered off mid-bootstrap: a clear condition, no hang; on delete it is quarantined', async (t) => {
  t.timeout(10 * 60_000);
  const host = labHostOf(await hostOfPool('solo1'));
  await hold(host);
  await deployment('md-power', 'solo1', 1);
  const bmm = await machineOnPool('solo1');
  await kubeadmStarted(host);
  const off = Date.now();
  await powerOff(host);
  const b = await untilCondition(bmm.metadata.name, 'BootstrapSucceeded', 'HostUnreachable');
  t.log(`condition after ${Math.round((Date.now() - off) / 1000)} s: ${cond(b, 'BootstrapSucceeded')?.message}`);
  t.regex(cond(b, 'BootstrapSucceeded')!.message ?? '', /powered on|unreachable|ECONNREFUSED|interrupted/i);
  // Policy: replace, never repair: the machine is deleted (a MachineHealthCheck would do it).
  await raw(env.cp.kc, 'PATCH', `${capi}/machinedeployments/md-power`, { spec: { replicas: 0 } });
  const h = await waitFor(
    'the host to be quarantined',
    async () => {
      const x = await hostOfPool('solo1');
      // spec first (it decides), then the status catches up: they are two writes (and the host
      // controller may write the phase before the Clean condition's advice).
      return x.spec.quarantine && x.status?.phase === 'Quarantined' && cond(x, 'Clean')?.message ? x : undefined;
    },
    120_000,
    500,
  );
  t.is(h.status?.phase, 'Quarantined');
  t.falsy(h.spec.consumerRef);
  t.regex(cond(h, 'Clean')?.message ?? '', /remove spec.quarantine/);
  // The operator powers it on (its network as it was, the route fixed) and lets it out: the
  // provider resets it, then returns it.
  await powerOn(host);
  await release(host);
  await raw(env.cp.kc, 'PATCH', `${base}/baremetalhosts/${h.metadata.name}`, { spec: { quarantine: null } });
  await waitFor(
    'the host to be reset and Available',
    async () => ((await getHost(h.metadata.name)).status?.phase === 'Available' ? true : undefined),
    60_000,
    500,
  );
  t.not((await hostExec(host, 'test -e /var/lib/capbm')).exitCode, 0);
});

test.serial('a wrong SSH key: a clear condition on the machine and the host; nothing runs on the host', async (t) => {
  const h0 = await hostOfPool('solo2');
  const host = labHostOf(h0);
  // Point the pool at a Secret holding another key.
  const other = (await import('ssh2')).default.utils.generateKeyPairSync('ed25519').private;
  await raw(env.cp.kc, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'wrong-key', namespace: ns },
    stringData: { 'ssh-privatekey': other },
  });
  await raw(env.cp.kc, 'PATCH', `${base}/baremetalhostpools/solo2`, {
    spec: { ssh: { secretRef: { name: 'wrong-key' } } },
  });
  await deployment('md-key', 'solo2', 1);
  const bmm = await machineOnPool('solo2');
  const b = await untilCondition(bmm.metadata.name, 'HostReady', 'SSHAuthenticationFailed');
  t.regex(cond(b, 'HostReady')!.message ?? '', /wrong-key.*authorized_keys/s);
  t.is(cond(await getHost(h0.metadata.name), 'Reachable')?.reason, 'SSHAuthenticationFailed');
  t.not((await hostExec(host, 'test -e /var/lib/capbm')).exitCode, 0, 'nothing ran on the host');
  await raw(env.cp.kc, 'PATCH', `${capi}/machinedeployments/md-key`, { spec: { replicas: 0 } });
});

test.serial('a changed host key: a clear condition; nothing runs on the host', async (t) => {
  const h0 = await hostOfPool('solo3');
  const host = labHostOf(h0);
  await rotateHostKey(host);
  await powerOff(host);
  await powerOn(host);
  await deployment('md-hostkey', 'solo3', 1);
  const bmm = await machineOnPool('solo3');
  const b = await untilCondition(bmm.metadata.name, 'HostReady', 'HostKeyMismatch');
  t.regex(cond(b, 'HostReady')!.message ?? '', /Nothing was run on the host/);
  t.not((await hostExec(host, 'test -e /var/lib/capbm')).exitCode, 0);
  await raw(env.cp.kc, 'PATCH', `${capi}/machinedeployments/md-hostkey`, { spec: { replicas: 0 } });
});

test.serial('a paused cluster: nothing changes until it is unpaused', async (t) => {
  await raw(env.cp.kc, 'PATCH', `${capi}/clusters/${cluster}`, { spec: { paused: true } });
  const before = await machines(env, ns, cluster);
  const someBmm = (await raw<{ items: BareMetalMachine[] }>(env.cp.kc, 'GET', `${base}/baremetalmachines`)).items[0]!;
  await waitFor(
    'the Paused condition on the machines',
    async () => (cond(await getBmm(someBmm.metadata.name), 'Paused')?.status === 'True' ? true : undefined),
    30_000,
    250,
  );
  const hostsBefore = JSON.stringify(
    (await raw<{ items: BareMetalHost[] }>(env.cp.kc, 'GET', `${base}/baremetalhosts`)).items.map((h) => [
      h.metadata.name,
      h.spec.consumerRef?.name,
    ]),
  );
  await raw(env.cp.kc, 'PATCH', `${capi}/machinedeployments/md-kill`, { spec: { replicas: 0 } });
  await new Promise((r) => setTimeout(r, 5000));
  t.deepEqual(
    (await machines(env, ns, cluster)).map((m) => m.name).sort(),
    before.map((m) => m.name).sort(),
    'no machine came or went while paused',
  );
  const hostsAfter = JSON.stringify(
    (await raw<{ items: BareMetalHost[] }>(env.cp.kc, 'GET', `${base}/baremetalhosts`)).items.map((h) => [
      h.metadata.name,
      h.spec.consumerRef?.name,
    ]),
  );
  t.is(hostsAfter, hostsBefore, 'no host was claimed or released while paused');
  await raw(env.cp.kc, 'PATCH', `${capi}/clusters/${cluster}`, { spec: { paused: false } });
  await waitFor(
    'the solo0 host to be released after unpausing',
    async () => ((await hostOfPool('solo0')).status?.phase === 'Available' ? true : undefined),
    90_000,
    500,
  );
  t.pass();
});

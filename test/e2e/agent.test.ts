// The node agent end to end, with every real part (see provision.test.ts) and the shipped
// cluster-template.yaml's MachineHealthCheck: provisioning installs the agent over SSH (runtime
// included), its reports become HostHealthy on the BareMetalMachine and on the Node; a worker whose
// agent freezes turns Unknown, CAPI deletes the Machine, the MachineSet makes a new one, the
// provider provisions it on a fresh host, and the old host is reset and returned Available.
import test from 'ava';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import type { BareMetalMachine } from '../../provider/api/machine.ts';
import { raw } from '../../provider/kube/raw.ts';
import { applyClusterTemplate, createPool, machines, startEnv, waitForRunning, type Env } from '../harness/env.ts';
import { hostExec } from '../harness/lab.ts';
import { waitFor } from '../harness/process.ts';

const ns = 'agents';
const cluster = 'gamma';
let env: Env;
const base = `/apis/${API_VERSION}/namespaces/${ns}`;
const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;

test.before(async () => {
  env = await startEnv({ hosts: 4, agent: { interval: '2s', unknownAfter: '10s' } });
  await createPool(env, ns, 'cp', env.hosts.slice(0, 1));
  await createPool(env, ns, 'workers', env.hosts.slice(1));
  env.startProvider();
  await applyClusterTemplate(env, { namespace: ns, name: cluster, pool: 'cp', workerPool: 'workers', workers: 1 });
  // Shorter MachineHealthCheck timeouts than the template's production values, for the test.
  await raw(env.cp.kc, 'PATCH', `${capi}/machinehealthchecks/${cluster}-md-0`, {
    spec: {
      checks: {
        unhealthyNodeConditions: [
          { type: 'HostHealthy', status: 'False', timeoutSeconds: 5 },
          { type: 'HostHealthy', status: 'Unknown', timeoutSeconds: 5 },
        ],
      },
    },
  });
});
test.after.always(async () => {
  await env?.stop();
});

type Cond = { type: string; status: string; reason: string };
const condOf = (o: { status?: { conditions?: Cond[] } }, type: string) =>
  o.status?.conditions?.find((c) => c.type === type);
const workerBmm = async () =>
  (await raw<{ items: BareMetalMachine[] }>(env.cp.kc, 'GET', `${base}/baremetalmachines`)).items.find((m) =>
    m.metadata.name.startsWith(`${cluster}-md-0`),
  );

test.serial(
  'a worker whose agent freezes is replaced on a fresh host; the old host is reset and returned',
  async (t) => {
    const t0 = Date.now();
    const at = () => `${Math.round((Date.now() - t0) / 1000)} s`;
    await waitForRunning(env, ns, cluster, 2);
    const first = await waitFor(
      'HostHealthy=True on the worker',
      async () => {
        const m = await workerBmm();
        return m && condOf(m, 'HostHealthy')?.status === 'True' ? m : undefined;
      },
      120_000,
      500,
    );
    t.log(`${at()}: worker ${first.metadata.name} Running, HostHealthy=True`);
    const node = await raw<{ status: { conditions: Cond[] } }>(
      env.workload.kc,
      'GET',
      `/api/v1/nodes/${first.metadata.name}`,
    );
    t.is(condOf(node, 'HostHealthy')?.status, 'True', 'the Node carries HostHealthy too');

    const hostName = first.status!.hostRef!.name;
    const oldHost = await raw<BareMetalHost>(env.cp.kc, 'GET', `${base}/baremetalhosts/${hostName}`);
    const lab = env.hosts.find((h) => h.address === oldHost.spec.address)!;
    const frozen = await hostExec(lab, "pkill -STOP -f '/opt/capbm/[c]apbm-agent.mjs'; echo $?");
    t.is(frozen.stdout.trim(), '0', 'the agent process was found and frozen');
    t.log(`${at()}: froze the agent on ${hostName}`);

    const replacement = await waitFor(
      'a replacement worker Running on another host',
      async () => {
        const ms = await machines(env, ns, cluster);
        const m = await workerBmm();
        return ms.length === 2 &&
          ms.every((x) => x.phase === 'Running') &&
          m &&
          m.metadata.name !== first.metadata.name &&
          m.status?.initialization?.provisioned
          ? m
          : undefined;
      },
      240_000,
      1000,
    );
    t.log(`${at()}: replacement ${replacement.metadata.name} Running on ${replacement.status?.hostRef?.name}`);
    t.not(replacement.status?.hostRef?.name, hostName);
    await waitFor(
      'the old host reset and Available',
      async () => {
        const h = await raw<BareMetalHost>(env.cp.kc, 'GET', `${base}/baremetalhosts/${hostName}`);
        return h.status?.phase === 'Available' && !h.spec.consumerRef ? true : undefined;
      },
      120_000,
      500,
    );
    t.log(`${at()}: ${hostName} reset and Available`);
    t.not(
      (await hostExec(lab, "pgrep -f '/opt/capbm/[c]apbm-agent.mjs' >/dev/null; echo $?")).stdout.trim(),
      '0',
      'no agent left',
    );
    // The timeline is in events: the unhealthy report and the replacement.
    const events = await raw<{ items: Array<{ reason: string; involvedObject: { name: string } }> }>(
      env.cp.kc,
      'GET',
      `/api/v1/namespaces/${ns}/events`,
    );
    const reasons = events.items.filter((e) => e.involvedObject.name === first.metadata.name).map((e) => e.reason);
    t.true(reasons.includes('HostUnhealthy'), reasons.join(','));
    t.true(reasons.includes('HostReleased'), reasons.join(','));
  },
);

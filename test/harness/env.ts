// The whole provider environment on one machine, for e2e tests and hack/lab: the management plane
// (kube-apiserver, etcd, CAPI core, CABPK, KubeadmControlPlane), a second API server on the lab
// bridge that plays the workload cluster (the kubeadm stand-in on the hosts registers Nodes there),
// lab hosts with OpenSSH, our CRDs and RBAC, and the provider itself as a process running under its
// own ServiceAccount with the ClusterRole from manifests/rbac.
import type { KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { parseAllDocuments } from 'yaml';
import { API_VERSION } from '../../provider/api/common.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import { linkWorkloadCluster } from './cabpk.ts';
import { installProviderCrds, startControlPlane, type CapiComponent, type ControlPlane } from './controlplane.ts';
import { BRIDGE_ADDRESS, ensureBridge, startHosts, stopHost, type LabHost } from './lab.ts';
import { repoRoot } from './paths.ts';
import { freePort, startProcess, waitFor, type ManagedProcess } from './process.ts';

export interface EnvOptions {
  hosts: number;
  persistent?: boolean;
  /** Folders for the two control planes (the lab keeps them); default temp folders. */
  dirs?: { management?: string; workload?: string };
  capi?: CapiComponent[];
  /** Install the node agent on provisioned hosts (reports to the provider over the lab bridge). */
  agent?: { unknownAfter?: string; interval?: string };
  log?: (msg: string) => void;
}

export interface SshKey {
  /** OpenSSH private key. Secret. */
  private: string;
  public: string;
}

export interface Env {
  cp: ControlPlane;
  workload: ControlPlane;
  hosts: LabHost[];
  key: SshKey;
  /** Kubeconfig of the provider's ServiceAccount (RBAC from manifests/rbac). */
  providerKubeconfig: string;
  startProvider(o?: { args?: string[]; name?: string }): ManagedProcess;
  stop(): Promise<void>;
}

export const PROVIDER_NAMESPACE = 'capbm-system';
const STANDIN_TOKEN_USER = 'kubeadm-standin';

function newKey(): SshKey {
  const k = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'capbm-e2e' });
  return { private: k.private, public: k.public };
}

async function ensure(kc: KubeConfig, path: string, body: unknown): Promise<void> {
  try {
    await raw(kc, 'POST', path, body);
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 409)) throw err;
  }
}

const rbacPaths: Record<string, string> = {
  ClusterRole: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
  ClusterRoleBinding: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
  Role: `/apis/rbac.authorization.k8s.io/v1/namespaces/${PROVIDER_NAMESPACE}/roles`,
  RoleBinding: `/apis/rbac.authorization.k8s.io/v1/namespaces/${PROVIDER_NAMESPACE}/rolebindings`,
  ServiceAccount: `/api/v1/namespaces/${PROVIDER_NAMESPACE}/serviceaccounts`,
};

/** Installs manifests/rbac and returns a kubeconfig holding a token of the provider's ServiceAccount. */
export async function providerIdentity(cp: ControlPlane): Promise<string> {
  await ensure(cp.kc, '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: PROVIDER_NAMESPACE },
  });
  await ensure(cp.kc, rbacPaths.ServiceAccount!, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: 'capbm-manager', namespace: PROVIDER_NAMESPACE },
  });
  const docs = parseAllDocuments(readFileSync(join(repoRoot, 'manifests/rbac/role.yaml'), 'utf8')).map(
    (d) => d.toJS() as { kind: string },
  );
  for (const d of docs) await ensure(cp.kc, rbacPaths[d.kind]!, d);
  const tr = await raw<{ status: { token: string } }>(
    cp.kc,
    'POST',
    `/api/v1/namespaces/${PROVIDER_NAMESPACE}/serviceaccounts/capbm-manager/token`,
    { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 86400 } },
  );
  const path = join(cp.dir, 'capbm-manager.kubeconfig');
  const ca = Buffer.from(readFileSync(join(cp.dir, 'pki', 'ca.crt'))).toString('base64');
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters: [{name: management, cluster: {server: '${cp.server}', certificate-authority-data: ${ca}}}]
users: [{name: capbm-manager, user: {token: '${tr.status.token}'}}]
contexts: [{name: capbm, context: {cluster: management, user: capbm-manager}}]
current-context: capbm
`,
    { mode: 0o600 },
  );
  return path;
}

function keepLogs(dir: string): void {
  if (!process.env.CAPBM_KEEP_LOGS && !process.env.CI) return;
  const to = join(repoRoot, '.cache', 'logs', `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.log'))) copyFileSync(join(dir, f), join(to, f));
}

export async function startEnv(o: EnvOptions): Promise<Env> {
  const log = o.log ?? (() => {});
  await ensureBridge();
  const token = randomBytes(24).toString('hex');
  log('starting the management plane (kube-apiserver, etcd, Cluster API core, CABPK, KubeadmControlPlane)');
  const cp = await startControlPlane({
    capi: o.capi ?? ['core', 'bootstrap', 'controlplane'],
    ...(o.persistent ? { persistent: true } : {}),
    ...(o.dirs?.management ? { dir: o.dirs.management } : {}),
    log,
  });
  const stops: Array<() => Promise<void>> = [() => cp.stop()];
  // Logs of every part survive the run in .cache/logs/ when CAPBM_KEEP_LOGS is set (or CI is).
  stops.push(() => Promise.resolve(keepLogs(cp.dir)));
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  };
  try {
    log(`starting the workload cluster stand-in API server on ${BRIDGE_ADDRESS}`);
    const workload = await startControlPlane({
      bindAddress: BRIDGE_ADDRESS,
      tokens: { [token]: STANDIN_TOKEN_USER },
      ...(o.persistent ? { persistent: true } : {}),
      ...(o.dirs?.workload ? { dir: o.dirs.workload } : {}),
    });
    stops.push(() => workload.stop());
    log('installing the CAPBM CRDs and RBAC');
    await installProviderCrds(cp.kc);
    const providerKubeconfig = await providerIdentity(cp);
    const key = newKey();
    log(`starting ${o.hosts} lab hosts`);
    const hosts = await startHosts(o.hosts, {
      authorizedKeys: [key.public],
      files: { '/etc/capbm-standin/workload.env': `SERVER=${workload.server}\nTOKEN=${token}\n` },
      ...(o.persistent ? { persistent: true } : {}),
    });
    // Hosts go with the environment: processes, mounts, namespaces, veths (the lab's persist).
    if (!o.persistent)
      stops.push(async () => {
        for (const h of hosts) await stopHost(h);
      });
    const providers: ManagedProcess[] = [];
    const agentPort = o.agent ? await freePort(BRIDGE_ADDRESS) : 0;
    // The lab's kubeadm is a stand-in: there is no kubelet or container runtime to check.
    const agentArgs = o.agent
      ? [
          `--agent-report-url=https://${BRIDGE_ADDRESS}:${agentPort}`,
          `--agent-bind-address=${BRIDGE_ADDRESS}:${agentPort}`,
          `--agent-interval=${o.agent.interval ?? '5s'}`,
          `--agent-unknown-after=${o.agent.unknownAfter ?? '30s'}`,
          '--agent-disabled-checks=kubelet,container-runtime',
        ]
      : [];
    stops.push(async () => {
      for (const p of providers) await p.stop();
    });
    const startProvider = (po: { args?: string[]; name?: string } = {}) => {
      const p = startProcess({
        name: po.name ?? 'capbm-manager',
        command: process.execPath,
        args: [
          join(repoRoot, 'provider/main.ts'),
          `--kubeconfig=${providerKubeconfig}`,
          '--leader-elect',
          `--leader-election-namespace=${PROVIDER_NAMESPACE}`,
          '--leader-elect-lease-duration=4s',
          '--leader-elect-renew-deadline=3s',
          '--leader-elect-retry-period=1s',
          '--metrics-bind-address=127.0.0.1:0',
          '--health-probe-bind-address=127.0.0.1:0',
          ...agentArgs,
          ...(po.args ?? []),
        ],
        logFile: join(cp.dir, `${po.name ?? 'capbm-manager'}-${providers.length}.log`),
        ...(o.persistent ? { persistent: true } : {}),
        env: { ...process.env, CAPBM_LOG_LEVEL: process.env.CAPBM_LOG_LEVEL ?? 'info' },
      });
      providers.push(p);
      return p;
    };
    return { cp, workload, hosts, key, providerKubeconfig, startProvider, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * A team namespace as onboarding makes it: the namespace, and the RoleBinding that lets the
 * provider read its Secrets (manifests/rbac/role.yaml: no Secret is readable cluster-wide).
 */
export async function onboardNamespace(kc: KubeConfig, ns: string): Promise<void> {
  await ensure(kc, '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await ensure(kc, `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: 'capbm-manager-secrets', namespace: ns },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'capbm-manager-secrets' },
    subjects: [{ kind: 'ServiceAccount', name: 'capbm-manager', namespace: PROVIDER_NAMESPACE }],
  });
}

/** The SSH Secret and a pool of the given hosts, host keys pinned as an operator would pin them. */
export async function createPool(env: Env, ns: string, name: string, hosts: LabHost[], extra: object = {}) {
  await onboardNamespace(env.cp.kc, ns);
  await ensure(env.cp.kc, `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/ssh-auth',
    metadata: { name: `${name}-ssh`, namespace: ns },
    stringData: { 'ssh-privatekey': env.key.private },
  });
  await raw(env.cp.kc, 'POST', `/apis/${API_VERSION}/namespaces/${ns}/baremetalhostpools`, {
    apiVersion: API_VERSION,
    kind: 'BareMetalHostPool',
    metadata: { name, namespace: ns },
    spec: {
      addresses: hosts.map((h) => h.address),
      ssh: { user: 'root', secretRef: { name: `${name}-ssh` } },
      hostKeyPolicy: {
        type: 'Pinned',
        pinned: Object.fromEntries(hosts.map((h) => [h.address, [h.hostKeyFingerprint]])),
      },
      hostLabels: { 'lab.capbm.dev/rack': 'lab' },
      ...extra,
    },
  });
}

/** clusterctl's variable syntax: ${VAR} and ${VAR:=default}. */
export function substitute(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\{([A-Z0-9_]+)(?::=([^}]*))?\}/g, (_m, name: string, def?: string) => {
    const v = vars[name] ?? def;
    if (v === undefined) throw new Error(`variable ${name} has no value`);
    return v;
  });
}

const plurals: Record<string, string> = {
  Cluster: 'clusters',
  BareMetalCluster: 'baremetalclusters',
  BareMetalMachineTemplate: 'baremetalmachinetemplates',
  KubeadmControlPlane: 'kubeadmcontrolplanes',
  KubeadmConfigTemplate: 'kubeadmconfigtemplates',
  MachineDeployment: 'machinedeployments',
  MachineHealthCheck: 'machinehealthchecks',
};

export interface ClusterVars {
  namespace: string;
  name: string;
  pool: string;
  /** Another pool for the workers (MachineDeployment md-0); default `pool`. */
  workerPool?: string;
  controlPlane?: number;
  workers?: number;
  /** A VIP in front of the control plane; in the lab nothing listens there (the stand-in has no API server). */
  endpoint?: string;
}

/** Applies manifests/templates/cluster-template.yaml, as `clusterctl generate cluster | kubectl apply` would. */
export async function applyClusterTemplate(env: Env, v: ClusterVars): Promise<void> {
  // CAPI finds the workload cluster through <cluster>-kubeconfig: point it at the stand-in first.
  await linkWorkloadCluster(env.cp, env.workload, v.namespace, v.name);
  const text = substitute(readFileSync(join(repoRoot, 'manifests/templates/cluster-template.yaml'), 'utf8'), {
    CLUSTER_NAME: v.name,
    NAMESPACE: v.namespace,
    KUBERNETES_VERSION: 'v1.36.3',
    CONTROL_PLANE_ENDPOINT_HOST: v.endpoint ?? '10.250.0.254',
    BAREMETAL_POOL: v.pool,
    CONTROL_PLANE_MACHINE_COUNT: String(v.controlPlane ?? 1),
    WORKER_MACHINE_COUNT: String(v.workers ?? 2),
  });
  type Doc = { apiVersion: string; kind: string; metadata: { name: string }; spec: Record<string, unknown> };
  for (const d of parseAllDocuments(text).map((x) => x.toJS() as Doc)) {
    if (v.workerPool && d.kind === 'BareMetalMachineTemplate' && d.metadata.name === `${v.name}-md-0`) {
      d.spec = { template: { spec: { poolRef: { name: v.workerPool } } } };
    }
    await raw(env.cp.kc, 'POST', `/apis/${d.apiVersion}/namespaces/${v.namespace}/${plurals[d.kind]}`, d);
  }
}

export interface MachineView {
  name: string;
  phase: string;
  providerID?: string;
  nodeRef?: string;
}

export async function machines(env: Env, ns: string, cluster: string): Promise<MachineView[]> {
  const list = await raw<{
    items: Array<{
      metadata: { name: string };
      spec: { providerID?: string };
      status?: { phase?: string; nodeRef?: { name: string } };
    }>;
  }>(
    env.cp.kc,
    'GET',
    `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}/machines?labelSelector=${encodeURIComponent(`cluster.x-k8s.io/cluster-name=${cluster}`)}`,
  );
  return list.items.map((m) => ({
    name: m.metadata.name,
    phase: m.status?.phase ?? '',
    ...(m.spec.providerID ? { providerID: m.spec.providerID } : {}),
    ...(m.status?.nodeRef ? { nodeRef: m.status.nodeRef.name } : {}),
  }));
}

/** Waits until the cluster has `count` Machines, all Running. */
export async function waitForRunning(env: Env, ns: string, cluster: string, count: number, timeoutMs = 240_000) {
  return waitFor(
    `${count} Running machines in cluster ${ns}/${cluster}`,
    async () => {
      const ms = await machines(env, ns, cluster);
      return ms.length === count && ms.every((m) => m.phase === 'Running') ? ms : undefined;
    },
    timeoutMs,
    1000,
  );
}

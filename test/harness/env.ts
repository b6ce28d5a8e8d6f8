// The whole provider environment on one machine, for e2e tests and hack/lab: the management plane
// (kube-apiserver, etcd, kube-controller-manager, CAPI core, CABPK, KubeadmControlPlane), the lab's
// air-gapped registry and control-plane load balancer on the lab bridge, lab hosts (whole servers:
// systemd, OpenSSH, containerd, the kubelet and kubeadm of their OS image's Kubernetes version), our
// CRDs and RBAC, and the provider itself as a process running under its own ServiceAccount with the
// ClusterRole from manifests/rbac. Workload clusters are real: kubeadm on the hosts makes them.
import { KubeConfig } from '@kubernetes/client-node';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { API_VERSION } from '../../provider/api/common.ts';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import { exampleRepoDir, KUBE_ROUTER_IMAGE } from './clusters-repo.ts';
import { installProviderCrds, startControlPlane, type CapiComponent, type ControlPlane } from './controlplane.ts';
import {
  BRIDGE_ADDRESS,
  bundleDir,
  ensureBridge,
  kubernetesVersions,
  startHosts,
  stopHost,
  type LabHost,
} from './lab.ts';
import { startLoadBalancer, type LoadBalancer } from './loadbalancer.ts';
import { containerCommand } from './image.ts';
import { repoRoot } from './paths.ts';
import { freePort, startProcess, waitFor, type ManagedProcess } from './process.ts';
import { REGISTRY_NAME, startRegistry, type Registry } from './registry.ts';

export interface EnvOptions {
  /** Lab hosts whose OS image carries the pinned Kubernetes version. */
  hosts: number;
  /** More hosts, after those, whose OS image carries the version before (for upgrades). */
  previousVersionHosts?: number;
  /** More hosts, after those, with nothing of Kubernetes installed (host preparation, docs/hosts.md). */
  stockHosts?: number;
  persistent?: boolean;
  /** Folders for the management plane and the lab's own processes (the lab keeps them); default temp folders. */
  dirs?: { management?: string; lab?: string };
  capi?: CapiComponent[];
  /** Cluster API feature gates, e.g. 'ClusterTopology=true' (ClusterClass topologies). */
  capiFeatureGates?: string;
  /** Install the node agent on provisioned hosts (reports to the provider over the lab bridge). */
  agent?: { unknownAfter?: string; interval?: string };
  /** More servers behind the control-plane load balancer than the lab hosts (Vagrant VMs). */
  backends?: string[];
  log?: (msg: string) => void;
}

export interface SshKey {
  /** OpenSSH private key. Secret. */
  private: string;
  public: string;
}

export interface Env {
  cp: ControlPlane;
  hosts: LabHost[];
  registry: Registry;
  /** In front of every host's :6443: the workload clusters' controlPlaneEndpoint. */
  lb: LoadBalancer;
  key: SshKey;
  /** Kubeconfig of the provider's ServiceAccount (RBAC from manifests/rbac). */
  providerKubeconfig: string;
  /**
   * Starts the provider under the ServiceAccount's kubeconfig: from source (`node provider/main.ts`),
   * or from `image` (the manager image, `podman run --network host`: test/harness/image.ts).
   */
  startProvider(o?: ProviderOptions): ManagedProcess;
  stop(): Promise<void>;
}

export interface ProviderOptions {
  args?: string[];
  name?: string;
  /** Run this manager image (hack/image) instead of the sources. */
  image?: string;
}

export const PROVIDER_NAMESPACE = 'capbm-system';

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
  return serviceAccountKubeconfig(cp, PROVIDER_NAMESPACE, 'capbm-manager', join(cp.dir, 'capbm-manager.kubeconfig'));
}

/** A kubeconfig (mode 0600) holding a day-long token of a ServiceAccount, as its pods get one. */
export async function serviceAccountKubeconfig(
  cp: ControlPlane,
  ns: string,
  sa: string,
  path: string,
): Promise<string> {
  const tr = await raw<{ status: { token: string } }>(
    cp.kc,
    'POST',
    `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`,
    {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 86400 },
    },
  );
  const ca = Buffer.from(readFileSync(join(cp.dir, 'pki', 'ca.crt'))).toString('base64');
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters: [{name: management, cluster: {server: '${cp.server}', certificate-authority-data: ${ca}}}]
users: [{name: ${sa}, user: {token: '${tr.status.token}'}}]
contexts: [{name: ${sa}, context: {cluster: management, user: ${sa}}}]
current-context: ${sa}
`,
    { mode: 0o600 },
  );
  return path;
}

export function keepLogs(dir: string): void {
  if (!process.env.CAPBM_KEEP_LOGS && !process.env.CI) return;
  const to = join(repoRoot, '.cache', 'logs', `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.log'))) copyFileSync(join(dir, f), join(to, f));
}

export async function startEnv(o: EnvOptions): Promise<Env> {
  const log = o.log ?? (() => {});
  await ensureBridge();
  log(
    'starting the management plane (kube-apiserver, etcd, kube-controller-manager, Cluster API core, CABPK, KubeadmControlPlane)',
  );
  const cp = await startControlPlane({
    capi: o.capi ?? ['core', 'bootstrap', 'controlplane'],
    controllerManager: true,
    ...(o.capiFeatureGates ? { capiFeatureGates: o.capiFeatureGates } : {}),
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
    const labDir = o.dirs?.lab ?? mkdtempSync(join(cp.dir, 'lab-'));
    mkdirSync(labDir, { recursive: true });
    log(`starting the lab registry (${REGISTRY_NAME}) on ${BRIDGE_ADDRESS}`);
    // Again: `hack/lab down` beside this run (test/e2e/lab.test.ts) removes the bridge while no host
    // is on it yet, which is the case while the management plane above was starting (seen in CI:
    // the registry could not bind the bridge's address).
    await ensureBridge();
    const registry = await startRegistry({ dir: labDir, ...(o.persistent ? { persistent: true } : {}) });
    stops.push(() => registry.process.stop());
    log('installing the CAPBM CRDs and RBAC');
    await installProviderCrds(cp.kc);
    const providerKubeconfig = await providerIdentity(cp);
    const key = newKey();
    const { current, previous } = kubernetesVersions();
    log(
      `starting ${o.hosts} lab hosts (Kubernetes ${current})${o.previousVersionHosts ? ` and ${o.previousVersionHosts} (Kubernetes ${previous})` : ''}`,
    );
    const common = {
      authorizedKeys: [key.public],
      files: registry.hostFiles,
      ...(o.persistent ? { persistent: true } : {}),
    };
    const hosts: LabHost[] = [];
    // Hosts go with the environment: processes, mounts, namespaces, veths (the lab's persist).
    if (!o.persistent)
      stops.push(async () => {
        for (const h of hosts) await stopHost(h);
      });
    hosts.push(...(await startHosts(o.hosts, { ...common, kubernetesVersion: current })));
    if (o.previousVersionHosts)
      hosts.push(...(await startHosts(o.previousVersionHosts, { ...common, kubernetesVersion: previous })));
    if (o.stockHosts) hosts.push(...(await startHosts(o.stockHosts, { ...common, stock: true })));
    const lb = await startLoadBalancer({
      backends: [...hosts.map((h) => h.address), ...(o.backends ?? [])],
      ...(o.persistent ? { persistent: true } : {}),
    });
    if (!o.persistent) stops.push(() => lb.stop());
    log(`control-plane load balancer on ${lb.address}:${lb.port}`);
    const providers: ManagedProcess[] = [];
    const agentArgs = o.agent ? await agentEndpointArgs(o.agent) : [];
    stops.push(async () => {
      for (const p of providers) await p.stop();
    });
    const startProvider = (po: ProviderOptions = {}) => {
      const p = startProviderProcess({
        name: po.name ?? 'capbm-manager',
        kubeconfig: providerKubeconfig,
        logFile: join(cp.dir, `${po.name ?? 'capbm-manager'}-${providers.length}.log`),
        // Tests fail over in seconds; the lab keeps the provider's defaults (15 s / 10 s / 2 s): it
        // runs for hours on a busy machine, and a replica that misses its renewal exits (non-zero,
        // as controller-runtime's do) with no kubelet here to start it again.
        fastFailover: !o.persistent,
        args: [...agentArgs, ...(o.stockHosts ? [`--bundle-dir=${bundleDir()}`] : []), ...(po.args ?? [])],
        ...(po.image
          ? { image: po.image, containerName: `${po.name ?? 'capbm-manager'}-${process.pid}-${providers.length}` }
          : {}),
        ...(o.persistent ? { persistent: true } : {}),
      });
      providers.push(p);
      return p;
    };
    return { cp, hosts, registry, lb, key, providerKubeconfig, startProvider, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The provider's node-agent flags: its report endpoint on a free port of the lab bridge, where the
 * lab hosts' agents reach it (each provider, of each management plane, its own).
 */
export async function agentEndpointArgs(agent: NonNullable<EnvOptions['agent']>): Promise<string[]> {
  const port = await freePort(BRIDGE_ADDRESS);
  return [
    `--agent-report-url=https://${BRIDGE_ADDRESS}:${port}`,
    `--agent-bind-address=${BRIDGE_ADDRESS}:${port}`,
    `--agent-interval=${agent.interval ?? '5s'}`,
    `--agent-unknown-after=${agent.unknownAfter ?? '30s'}`,
  ];
}

export interface ProviderProcessOptions {
  name: string;
  /** A kubeconfig of the provider's ServiceAccount (providerIdentity). */
  kubeconfig: string;
  logFile: string;
  /** Leader election in seconds (4 s / 3 s / 1 s) instead of the provider's defaults. */
  fastFailover?: boolean;
  /** Flags after the common ones (leader election, metrics and probes on loopback ports). */
  args?: string[];
  /** Node.js options for the provider's process (NODE_OPTIONS in a container). Default: the Deployment's. */
  nodeOptions?: string[];
  /** Run this manager image (hack/image) instead of the sources, as this container. */
  image?: string;
  containerName?: string;
  persistent?: boolean;
}

/**
 * The provider as its own process (or container) under its ServiceAccount, with the flags every
 * management plane here gives it: the one place that says how the harness, the lab, the fleet
 * benchmark and the move e2e start a replica.
 */
/**
 * The Node.js options of the shipped Deployment (manifests/manager/manager.yaml) for its 1Gi memory
 * limit: there the heap is a quarter of the limit, here (no limit) the same size is given outright.
 */
export const PROVIDER_NODE_OPTIONS = ['--max-old-space-size=256', '--max-semi-space-size=16'];
/** The environment of the shipped Deployment beside its Node.js options. */
export const PROVIDER_ENV = { MALLOC_ARENA_MAX: '2' };

export function startProviderProcess(o: ProviderProcessOptions): ManagedProcess {
  const nodeOptions = o.nodeOptions ?? PROVIDER_NODE_OPTIONS;
  const args = [
    '--leader-elect',
    `--leader-election-namespace=${PROVIDER_NAMESPACE}`,
    ...(o.fastFailover
      ? ['--leader-elect-lease-duration=4s', '--leader-elect-renew-deadline=3s', '--leader-elect-retry-period=1s']
      : []),
    '--metrics-bind-address=127.0.0.1:0',
    '--health-probe-bind-address=127.0.0.1:0',
    ...(o.args ?? []),
  ];
  const logLevel = { CAPBM_LOG_LEVEL: process.env.CAPBM_LOG_LEVEL ?? 'info' };
  const run = o.image
    ? containerCommand({
        image: o.image,
        name: o.containerName ?? o.name,
        kubeconfig: o.kubeconfig,
        args,
        env: { ...logLevel, ...PROVIDER_ENV, ...(nodeOptions.length ? { NODE_OPTIONS: nodeOptions.join(' ') } : {}) },
      })
    : {
        command: process.execPath,
        args: [...nodeOptions, join(repoRoot, 'provider/main.ts'), `--kubeconfig=${o.kubeconfig}`, ...args],
      };
  return startProcess({
    name: o.name,
    ...run,
    logFile: o.logFile,
    ...(o.persistent ? { persistent: true } : {}),
    env: { ...process.env, ...logLevel, ...PROVIDER_ENV },
  });
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
/**
 * IPv4 addresses as the pool lists them: runs of consecutive addresses become "first-last" ranges
 * (a pool lists at most 64 entries; hack/bench provision 200 has 200 hosts).
 */
export function addressRanges(addresses: string[]): string[] {
  const num = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const sorted = [...new Set(addresses)].sort((a, b) => num(a) - num(b));
  const out: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && num(sorted[j + 1]!) === num(sorted[j]!) + 1) j++;
    out.push(j === i ? sorted[i]! : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out;
}

export async function createPool(
  env: Pick<Env, 'cp' | 'key'>,
  ns: string,
  name: string,
  hosts: LabHost[],
  extra: object = {},
) {
  await onboardNamespace(env.cp.kc, ns);
  await ensure(env.cp.kc, `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/ssh-auth',
    // Moves with the namespace's pools (docs/clusterctl.md#move): nothing owns it, so the label says.
    metadata: { name: `${name}-ssh`, namespace: ns, labels: { 'clusterctl.cluster.x-k8s.io/move': '' } },
    stringData: { 'ssh-privatekey': env.key.private },
  });
  await raw(env.cp.kc, 'POST', `/apis/${API_VERSION}/namespaces/${ns}/baremetalhostpools`, {
    apiVersion: API_VERSION,
    kind: 'BareMetalHostPool',
    metadata: { name, namespace: ns },
    spec: {
      addresses: addressRanges(hosts.map((h) => h.address)),
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

/** The URL plurals of the kinds a cluster template holds. */
export const plurals: Record<string, string> = {
  Cluster: 'clusters',
  ClusterClass: 'clusterclasses',
  BareMetalClusterTemplate: 'baremetalclustertemplates',
  KubeadmControlPlaneTemplate: 'kubeadmcontrolplanetemplates',
  BareMetalCluster: 'baremetalclusters',
  BareMetalMachineTemplate: 'baremetalmachinetemplates',
  KubeadmControlPlane: 'kubeadmcontrolplanes',
  KubeadmConfigTemplate: 'kubeadmconfigtemplates',
  MachineDeployment: 'machinedeployments',
  MachineHealthCheck: 'machinehealthchecks',
};

/** The URL plurals of the kinds charts/capbm-cluster renders: the template's and the add-ons' Kustomizations. */
export const chartPlurals: Record<string, string> = { ...plurals, Kustomization: 'kustomizations' };

export interface ClusterVars {
  namespace: string;
  name: string;
  pool: string;
  /** Another pool for the workers (MachineDeployment md-0); default `pool`. */
  workerPool?: string;
  controlPlane?: number;
  workers?: number;
  /** Default: the pinned version. Hosts of the pools must carry it, or be prepared (`preparation`). */
  kubernetesVersion?: string;
  /**
   * spec.preparation of both machine templates (stock hosts, docs/hosts.md); for a topology, the
   * ClusterClass variable hostPreparation.
   */
  preparation?: Record<string, unknown>;
}

/** The template variables the lab sets, as a user of this lab would pass them to clusterctl. */
export function labTemplateVars(env: Pick<Env, 'lb'>, v: ClusterVars): Record<string, string> {
  return {
    CLUSTER_NAME: v.name,
    NAMESPACE: v.namespace,
    KUBERNETES_VERSION: v.kubernetesVersion ?? kubernetesVersions().current,
    CONTROL_PLANE_ENDPOINT_HOST: env.lb.address,
    BAREMETAL_POOL: v.pool,
    CONTROL_PLANE_MACHINE_COUNT: String(v.controlPlane ?? 1),
    WORKER_MACHINE_COUNT: String(v.workers ?? 2),
    IMAGE_REPOSITORY: REGISTRY_NAME,
    // Lab hosts run cgroup v1 (this machine's hybrid tree) without systemd's cgroup driver.
    KUBELET_CGROUP_DRIVER: 'cgroupfs',
    KUBELET_FAIL_CGROUP_V1: 'false',
    CNI: 'kube-router',
  };
}

/**
 * The CNI add-on for clusters labelled cni=kube-router in the namespace: a ConfigMap holding the
 * clusters repository's addons/kube-router/kube-router.yaml and a ClusterResourceSet that applies it to each such cluster
 * once its API server answers.
 */
export async function installCniAddon(env: Env, namespace: string): Promise<void> {
  // The clusters repository's add-on, its image from the lab registry (as the lab's site sets it).
  const manifest = readFileSync(join(exampleRepoDir, 'addons', 'kube-router', 'kube-router.yaml'), 'utf8').replaceAll(
    KUBE_ROUTER_IMAGE,
    `${REGISTRY_NAME}/kube-router`,
  );
  await ensure(env.cp.kc, '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
  await ensure(env.cp.kc, `/api/v1/namespaces/${namespace}/configmaps`, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'cni-kube-router', namespace },
    data: { 'kube-router.yaml': manifest },
  });
  await ensure(env.cp.kc, `/apis/addons.cluster.x-k8s.io/v1beta2/namespaces/${namespace}/clusterresourcesets`, {
    apiVersion: 'addons.cluster.x-k8s.io/v1beta2',
    kind: 'ClusterResourceSet',
    metadata: { name: 'cni-kube-router', namespace },
    spec: {
      strategy: 'ApplyOnce',
      clusterSelector: { matchLabels: { cni: 'kube-router' } },
      resources: [{ kind: 'ConfigMap', name: 'cni-kube-router' }],
    },
  });
}

/** The lab's kubelet eviction floors: charts/capbm-cluster/ci/lab.yaml's, so the chart and the template agree. */
const LAB_EVICTION_HARD = (
  parse(readFileSync(join(repoRoot, 'charts/capbm-cluster/ci/lab.yaml'), 'utf8')) as {
    kubeadm: { kubelet: { config: { evictionHard: Record<string, string> } } };
  }
).kubeadm.kubelet.config.evictionHard;

/**
 * What lab hosts need beyond the template's variables, as a user running these hosts would add it:
 * - kubeadm's preflight refuses cgroup v1 hosts (SystemVerification) even with the kubelet's
 *   failCgroupV1 false; lab hosts are cgroup v1 (this machine's tree), so the lab skips that one
 *   check on init and join, as the template's KUBELET_FAIL_CGROUP_V1 comment tells cgroup v1 users;
 * - kube-proxy sets the global nf_conntrack_max, which a network namespace other than the
 *   machine's cannot write: `conntrack.maxPerCore: 0` leaves it alone (what kind sets for its
 *   nested nodes). CABPK has no field for kube-proxy's configuration, so the init configuration
 *   gets the KubeProxyConfiguration document appended before kubeadm runs (kubeadm init uploads it
 *   to the kube-proxy ConfigMap every node uses);
 * - lab hosts share this machine's disk and memory: the kubelet's default eviction thresholds
 *   (nodefs 10 %, imagefs 15 % of the disk free) are of a disk that builds and CI clones fill, and
 *   a lab node evicting pods frees nothing there, so LAB_EVICTION_HARD sets absolute floors.
 */
function labHostAdjustments(d: { kind: string; spec: Record<string, unknown> }): void {
  type Reg = { nodeRegistration?: { ignorePreflightErrors?: string[] } };
  type Files = { files?: Array<{ path: string; content?: string }> };
  const add = (c: Reg | undefined) => {
    if (c?.nodeRegistration) c.nodeRegistration.ignorePreflightErrors = ['SystemVerification'];
  };
  const eviction = (c: Files) => {
    for (const f of c.files ?? []) {
      if (f.path.includes('kubeletconfiguration') && f.content !== undefined) {
        f.content += stringify({ evictionHard: LAB_EVICTION_HARD });
      }
    }
  };
  if (d.kind === 'KubeadmControlPlane') {
    const k = d.spec.kubeadmConfigSpec as Files & {
      initConfiguration?: Reg;
      joinConfiguration?: Reg;
      preKubeadmCommands?: string[];
    };
    add(k.initConfiguration);
    add(k.joinConfiguration);
    eviction(k);
    k.preKubeadmCommands = [
      ...(k.preKubeadmCommands ?? []),
      `if [ -f /run/kubeadm/kubeadm.yaml ]; then printf -- '\\n---\\napiVersion: kubeproxy.config.k8s.io/v1alpha1\\nkind: KubeProxyConfiguration\\nconntrack:\\n  maxPerCore: 0\\n' >> /run/kubeadm/kubeadm.yaml; fi`,
    ];
  }
  if (d.kind === 'ClusterClass') {
    // The class's patches write the kubelet configuration file whole (the kubeletConfiguration
    // patch): the floors go into the text those patches print (a printf format: % doubled).
    const floors = Object.entries(LAB_EVICTION_HARD)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ')
      .replace(/%/g, '%%');
    type Patch = { definitions?: Array<{ jsonPatches?: Array<{ valueFrom?: { template?: string } }> }> };
    const jsonPatches = ((d.spec.patches as Patch[] | undefined) ?? [])
      .flatMap((p) => p.definitions ?? [])
      .flatMap((def) => def.jsonPatches ?? []);
    for (const v of jsonPatches.map((j) => j.valueFrom)) {
      if (v?.template?.includes('kind: KubeletConfiguration'))
        v.template = v.template.replace('failCgroupV1: %t\\n"', `failCgroupV1: %t\\nevictionHard: {${floors}}\\n"`);
    }
  }
  if (d.kind === 'KubeadmControlPlaneTemplate') {
    labHostAdjustments({
      kind: 'KubeadmControlPlane',
      spec: (d.spec.template as { spec: Record<string, unknown> }).spec,
    });
  }
  if (d.kind === 'KubeadmConfigTemplate') {
    const spec = (d.spec.template as { spec: Files & { joinConfiguration?: Reg } }).spec;
    add(spec.joinConfiguration);
    eviction(spec);
  }
}

export interface LabClusterObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown>;
}

/**
 * The objects of manifests/templates/cluster-template.yaml as the lab makes them: the variables
 * filled in as a user of this lab would pass them to clusterctl, plus the lab hosts' adjustments.
 */
export function labClusterObjects(env: Pick<Env, 'lb'>, v: ClusterVars): LabClusterObject[] {
  const text = substitute(
    readFileSync(join(repoRoot, 'manifests/templates/cluster-template.yaml'), 'utf8'),
    labTemplateVars(env, v),
  );
  const docs = parseAllDocuments(text).map((x) => x.toJS() as LabClusterObject);
  for (const d of docs) {
    if (v.workerPool && d.kind === 'BareMetalMachineTemplate' && d.metadata.name === `${v.name}-md-0`) {
      d.spec = { template: { spec: { poolRef: { name: v.workerPool } } } };
    }
    if (v.preparation && d.kind === 'BareMetalMachineTemplate') {
      const spec = d.spec as { template: { spec: Record<string, unknown> } };
      spec.template.spec.preparation = v.preparation;
    }
    labHostAdjustments(d);
  }
  return docs;
}

/**
 * The `clusterclass` flavor as the lab makes it: the ClusterClass capbm and its templates
 * (manifests/templates/clusterclass-capbm.yaml, with the lab hosts' adjustments) and a Cluster of
 * cluster-template-clusterclass.yaml with the lab's variables (`preparation`: the variable
 * hostPreparation, as a user of stock hosts adds it to spec.topology.variables).
 */
export function labTopologyObjects(env: Pick<Env, 'lb'>, v: ClusterVars): LabClusterObject[] {
  const read = (f: string) =>
    parseAllDocuments(
      substitute(readFileSync(join(repoRoot, 'manifests/templates', f), 'utf8'), labTemplateVars(env, v)),
    )
      .map((x) => x.toJS() as LabClusterObject)
      .filter(Boolean);
  const docs = [...read('clusterclass-capbm.yaml'), ...read('cluster-template-clusterclass.yaml')];
  for (const d of docs) {
    labHostAdjustments(d);
    if (v.preparation && d.kind === 'Cluster') {
      const topology = d.spec.topology as { variables: Array<{ name: string; value: unknown }> };
      topology.variables.push({ name: 'hostPreparation', value: v.preparation });
    }
  }
  return docs;
}

/** Applies manifests/templates/cluster-template.yaml, as `clusterctl generate cluster | kubectl apply` would. */
export async function applyClusterTemplate(env: Env, v: ClusterVars): Promise<void> {
  await installCniAddon(env, v.namespace);
  for (const d of labClusterObjects(env, v)) {
    await raw(env.cp.kc, 'POST', `/apis/${d.apiVersion}/namespaces/${v.namespace}/${plurals[d.kind]}`, d);
  }
}

/**
 * Applies the `clusterclass` flavor (labTopologyObjects: the ClusterClass capbm, its templates and a
 * Cluster with spec.topology), as `clusterctl generate cluster --flavor clusterclass | kubectl apply`
 * would. Cluster API's core must run with ClusterTopology=true (startEnv's capiFeatureGates).
 */
export async function applyTopologyTemplate(env: Env, v: ClusterVars): Promise<void> {
  await installCniAddon(env, v.namespace);
  for (const d of labTopologyObjects(env, v)) {
    await raw(env.cp.kc, 'POST', `/apis/${d.apiVersion}/namespaces/${v.namespace}/${plurals[d.kind]}`, d);
  }
}

/** The workload cluster's admin kubeconfig (its <name>-kubeconfig Secret, as clusterctl get kubeconfig reads it). */
export async function workloadKubeconfig(
  env: Env,
  ns: string,
  name: string,
): Promise<{ kc: KubeConfig; yaml: string }> {
  const secret = await waitFor(
    `the kubeconfig Secret of cluster ${ns}/${name}`,
    async () => {
      try {
        return await raw<{ data: { value: string } }>(
          env.cp.kc,
          'GET',
          `/api/v1/namespaces/${ns}/secrets/${name}-kubeconfig`,
        );
      } catch (err) {
        if (err instanceof ApiError && err.code === 404) return undefined;
        throw err;
      }
    },
    300_000,
    1000,
  );
  const yaml = Buffer.from(secret.data.value, 'base64').toString('utf8');
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return { kc, yaml };
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

type Condition = { type: string; status: string; reason?: string; message?: string };
const condition = (o: { status?: { conditions?: Condition[] } }, type: string) =>
  o.status?.conditions?.find((c) => c.type === type);

export interface ClusterHealth {
  cluster: Condition | undefined;
  controlPlane: Condition | undefined;
  workers: Condition | undefined;
  machines: Array<{
    name: string;
    /** A control-plane machine (its label cluster.x-k8s.io/control-plane). */
    controlPlane: boolean;
    phase: string;
    ready: boolean;
    version: string;
    nodeRef?: string;
    providerID?: string;
  }>;
}

type Obj = { metadata: { name: string }; status?: { conditions?: Condition[] } };

/**
 * The cluster's KubeadmControlPlane and its MachineDeployment md-0: `<name>-control-plane` and
 * `<name>-md-0` in the templates; a topology's carry generated names (the Cluster's
 * controlPlaneRef, and the label of the topology's md-0).
 */
async function controlPlaneAndWorkers(
  env: Env,
  ns: string,
  cluster: { metadata: { name: string }; spec?: { topology?: object; controlPlaneRef?: { name?: string } } },
): Promise<[Obj | undefined, Obj | undefined]> {
  const name = cluster.metadata.name;
  const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;
  const kcpName = cluster.spec?.topology ? cluster.spec.controlPlaneRef?.name : `${name}-control-plane`;
  const selector = `cluster.x-k8s.io/cluster-name=${name},topology.cluster.x-k8s.io/deployment-name=md-0`;
  return Promise.all([
    kcpName
      ? raw<Obj>(
          env.cp.kc,
          'GET',
          `/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/${ns}/kubeadmcontrolplanes/${kcpName}`,
        )
      : undefined,
    cluster.spec?.topology
      ? raw<{ items: Obj[] }>(
          env.cp.kc,
          'GET',
          `${capi}/machinedeployments?labelSelector=${encodeURIComponent(selector)}`,
        ).then((l) => l.items[0])
      : raw<Obj>(env.cp.kc, 'GET', `${capi}/machinedeployments/${name}-md-0`),
  ]);
}

/** What Cluster API itself says of a cluster: Available on the Cluster, the KCP and md-0, Ready on every Machine. */
export async function clusterHealth(env: Env, ns: string, name: string): Promise<ClusterHealth> {
  const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;
  const cluster = await raw<Obj & { spec?: { topology?: object; controlPlaneRef?: { name?: string } } }>(
    env.cp.kc,
    'GET',
    `${capi}/clusters/${name}`,
  );
  const [[kcp, md], ms] = await Promise.all([
    controlPlaneAndWorkers(env, ns, cluster),
    raw<{
      items: Array<
        Obj & {
          metadata: { name: string; labels?: Record<string, string> };
          spec: { version?: string; providerID?: string };
          status?: { phase?: string; nodeRef?: { name: string } };
        }
      >;
    }>(
      env.cp.kc,
      'GET',
      `${capi}/machines?labelSelector=${encodeURIComponent(`cluster.x-k8s.io/cluster-name=${name}`)}`,
    ),
  ]);
  return {
    cluster: condition(cluster, 'Available'),
    controlPlane: kcp && condition(kcp, 'Available'),
    workers: md && condition(md, 'Available'),
    machines: ms.items.map((m) => ({
      name: m.metadata.name,
      controlPlane: m.metadata.labels?.['cluster.x-k8s.io/control-plane'] !== undefined,
      phase: m.status?.phase ?? '',
      ready: condition(m, 'Ready')?.status === 'True',
      version: m.spec.version ?? '',
      ...(m.status?.nodeRef ? { nodeRef: m.status.nodeRef.name } : {}),
      ...(m.spec.providerID ? { providerID: m.spec.providerID } : {}),
    })),
  };
}

/**
 * Waits until Cluster API reports the cluster whole: the Cluster, its KubeadmControlPlane and
 * MachineDeployment Available, `machines` Machines, every one Running and Ready (its Node Ready).
 */
export function waitForClusterAvailable(
  env: Env,
  ns: string,
  name: string,
  machineCount: number,
  timeoutMs = 600_000,
  progress?: (h: ClusterHealth) => void,
): Promise<ClusterHealth> {
  const waited = waitFor(
    `cluster ${ns}/${name} Available with ${machineCount} Ready machines`,
    async () => {
      const h = await clusterHealth(env, ns, name);
      progress?.(h);
      const ok =
        h.cluster?.status === 'True' &&
        h.controlPlane?.status === 'True' &&
        h.workers?.status === 'True' &&
        h.machines.length === machineCount &&
        h.machines.every((m) => m.phase === 'Running' && m.ready);
      return ok ? h : undefined;
    },
    timeoutMs,
    2000,
  );
  // A timeout says why, in the provider's words: the conditions of its machines that are not True.
  return waited.catch(async (err: Error) => {
    const why = await Promise.all([
      capiProblems(env, ns, name).catch(() => ''),
      machineProblems(env, ns, name).catch(() => ''),
    ]);
    const text = why.filter(Boolean).join('\n');
    throw new Error(text ? `${err.message}\n${text}` : err.message);
  });
}

/** Cluster API's own words: the Cluster's and each Machine's conditions that are not True. */
async function capiProblems(env: Env, ns: string, name: string): Promise<string> {
  type Obj = { metadata: { name: string }; status?: { phase?: string; conditions?: Condition[] } };
  const capi = `/apis/cluster.x-k8s.io/v1beta2/namespaces/${ns}`;
  const [cluster, machines] = await Promise.all([
    raw<Obj>(env.cp.kc, 'GET', `${capi}/clusters/${name}`),
    raw<{ items: Obj[] }>(
      env.cp.kc,
      'GET',
      `${capi}/machines?labelSelector=${encodeURIComponent(`cluster.x-k8s.io/cluster-name=${name}`)}`,
    ),
  ]);
  const notTrue = (o: Obj) =>
    (o.status?.conditions ?? [])
      .filter((c) => c.status !== 'True' && c.type !== 'Paused' && !c.type.endsWith('Deleting'))
      .map((c) => `${c.type}=${c.status} ${c.reason ?? ''}: ${c.message ?? ''}`)
      .join('; ') || 'every condition True';
  return [cluster, ...machines.items]
    .map(
      (o) =>
        `  ${o === cluster ? 'Cluster' : 'Machine'} ${o.metadata.name} (${o.status?.phase ?? 'no phase'}): ${notTrue(o)}`,
    )
    .join('\n');
}

/** Each BareMetalMachine of the cluster with its conditions that are not True (reason: message). */
async function machineProblems(env: Env, ns: string, name: string): Promise<string> {
  const list = await raw<{
    items: Array<{ metadata: { name: string }; status?: { phase?: string; conditions?: Condition[] } }>;
  }>(
    env.cp.kc,
    'GET',
    `/apis/${API_VERSION}/namespaces/${ns}/baremetalmachines?labelSelector=${encodeURIComponent(`cluster.x-k8s.io/cluster-name=${name}`)}`,
  );
  return list.items
    .map((m) => {
      const bad = (m.status?.conditions ?? []).filter((c) => c.status !== 'True' && c.type !== 'Paused');
      return `  BareMetalMachine ${m.metadata.name} (${m.status?.phase ?? 'no phase'}): ${bad.map((c) => `${c.type}=${c.status} ${c.reason ?? ''}: ${c.message ?? ''}`).join('; ') || 'every condition True'}`;
    })
    .join('\n');
}

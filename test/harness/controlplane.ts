// A real control plane for tests and the lab: etcd + kube-apiserver on 127.0.0.1 with free ports
// and a temporary directory, an admin kubeconfig, the genuine Cluster API CRDs, and the real CAPI
// managers as processes. Built by hack/controlplane (shared/docs/envtest.md); nothing is mocked.
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { createCertificateAuthority, issueCertificate, newRsaKeyPair } from '../../provider/pki/certificate.ts';
import { controlPlaneDir, repoRoot } from './paths.ts';
import { apply, raw } from '../../provider/kube/raw.ts';
import { cleanupStale, freePort, GiveUp, startProcess, tail, waitFor, type ManagedProcess } from './process.ts';

export type CapiComponent = 'core' | 'bootstrap' | 'controlplane';

export interface ControlPlaneOptions {
  /** Which CAPI managers to run: true = core + bootstrap (CABPK); an array to choose. Default false. */
  capi?: boolean | CapiComponent[];
  /** Working directory (certs, etcd data, logs). Default: a new folder under .cache/tmp. */
  dir?: string;
  /** Leave the processes running when this Node process exits (the lab). */
  persistent?: boolean;
  /**
   * Address the API server binds to. Default 127.0.0.1. A second API server (the workload cluster
   * of the CABPK fixture tests) may bind to the lab bridge address, which lab hosts reach.
   */
  bindAddress?: string;
  /** Static bearer tokens (token -> user name, group system:masters). */
  tokens?: Record<string, string>;
  /**
   * Run kube-controller-manager too (garbage collection of owned objects, namespace deletion,
   * service account tokens): what a real management cluster has. Default false (integration
   * tests that need only the API).
   */
  controllerManager?: boolean;
  /** Cluster API feature gates of the CAPI managers (--feature-gates), e.g. 'ClusterTopology=true'. */
  capiFeatureGates?: string;
  /** Progress messages. */
  log?: (msg: string) => void;
}

export interface ControlPlane {
  dir: string;
  /** https://127.0.0.1:<port> */
  server: string;
  kubeconfigPath: string;
  kc: KubeConfig;
  /** The API server's client CA (to mint more client certificates, e.g. for other users). */
  clientCA: { certPem: string; keyPem: string };
  processes: ManagedProcess[];
  /** Start (or restart after kill) a CAPI manager. */
  startCapi(component: CapiComponent): Promise<ManagedProcess>;
  /**
   * Starts etcd or kube-apiserver again after it was killed, on the same ports and data (what a
   * supervisor does for a crashed process), and waits until it answers.
   */
  restart(name: 'etcd' | 'kube-apiserver'): Promise<ManagedProcess>;
  stop(): Promise<void>;
  /** Seconds from start to ready, per phase. */
  timings: Record<string, number>;
}

const binaries = {
  core: 'capi-manager',
  bootstrap: 'capi-bootstrap-kubeadm',
  controlplane: 'capi-controlplane-kubeadm',
} as const;

function bin(name: string): string {
  const p = join(controlPlaneDir(), 'bin', name);
  if (!existsSync(p)) {
    throw new Error(`control plane program ${name} is not built (looked in ${p}); run: hack/controlplane build`);
  }
  return p;
}

async function startEtcd(dir: string, persistent: boolean): Promise<{ proc: ManagedProcess; url: string }> {
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const proc = startProcess({
    name: 'etcd',
    command: bin('etcd'),
    args: [
      '--name=default',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      '--unsafe-no-fsync', // test data: durability is not the point, speed is
      '--log-level=warn',
    ],
    logFile: join(dir, 'etcd.log'),
    persistent,
  });
  await waitFor(
    'etcd to become healthy',
    async () => {
      if (!proc.running()) throw new GiveUp(`etcd exited:\n${tail(proc.logFile)}`);
      const res = await fetch(`${url}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === 'true' ? true : undefined;
    },
    30_000,
  );
  return { proc, url };
}

interface ApiserverPki {
  ca: { certPem: string; keyPem: string };
  admin: { certPem: string; keyPem: string };
}

async function writePki(dir: string, bindAddress: string): Promise<ApiserverPki> {
  const pki = join(dir, 'pki');
  mkdirSync(pki, { recursive: true, mode: 0o700 });
  const ca = await createCertificateAuthority('capbm-test-ca');
  const [serving, admin, sa] = await Promise.all([
    issueCertificate({
      subject: { commonName: 'kube-apiserver' },
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
      ipAddresses: [...new Set(['127.0.0.1', '10.0.0.1', bindAddress])],
      usage: ['server'],
      ca,
    }),
    issueCertificate({
      subject: { commonName: 'capbm-admin', organizations: ['system:masters'] },
      usage: ['client'],
      ca,
    }),
    newRsaKeyPair(),
  ]);
  const files: Record<string, string> = {
    'ca.crt': ca.certPem,
    'serving.crt': serving.certPem,
    'serving.key': serving.keyPem,
    'sa.key': sa.keyPem,
    'sa.pub': sa.publicKeyPem,
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(join(pki, name), content, { mode: 0o600 });
  return { ca, admin };
}

function kubeconfigYaml(server: string, pki: ApiserverPki): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'capbm-test', cluster: { server, 'certificate-authority-data': b64(pki.ca.certPem) } }],
    users: [
      {
        name: 'admin',
        user: { 'client-certificate-data': b64(pki.admin.certPem), 'client-key-data': b64(pki.admin.keyPem) },
      },
    ],
    contexts: [{ name: 'capbm-test', context: { cluster: 'capbm-test', user: 'admin' } }],
    'current-context': 'capbm-test',
  });
}

/** GET an https path with the admin identity; resolves with the status code. */
function probe(server: string, path: string, pki: ApiserverPki): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server}${path}`,
      { ca: pki.ca.certPem, cert: pki.admin.certPem, key: pki.admin.keyPem, timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

interface ApiserverOptions {
  dir: string;
  etcd: string;
  pki: ApiserverPki;
  persistent: boolean;
  bindAddress: string;
  tokens: Record<string, string>;
}

async function startApiserver({ dir, etcd, pki, persistent, bindAddress, tokens }: ApiserverOptions) {
  const port = await freePort(bindAddress);
  const server = `https://${bindAddress}:${port}`;
  const tokenFile = join(dir, 'pki', 'tokens.csv');
  writeFileSync(
    tokenFile,
    Object.entries(tokens)
      .map(([t, user]) => `${t},${user},${user},"system:masters"\n`)
      .join(''),
    { mode: 0o600 },
  );
  const p = (f: string) => join(dir, 'pki', f);
  const proc = startProcess({
    name: 'kube-apiserver',
    command: bin('kube-apiserver'),
    args: [
      `--bind-address=${bindAddress}`,
      `--advertise-address=${bindAddress}`,
      `--token-auth-file=${tokenFile}`,
      `--secure-port=${port}`,
      `--etcd-servers=${etcd}`,
      `--cert-dir=${join(dir, 'pki')}`,
      `--tls-cert-file=${p('serving.crt')}`,
      `--tls-private-key-file=${p('serving.key')}`,
      `--client-ca-file=${p('ca.crt')}`,
      `--service-account-key-file=${p('sa.pub')}`,
      `--service-account-signing-key-file=${p('sa.key')}`,
      `--service-account-issuer=${server}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=RBAC',
      '--allow-privileged=true',
      '--endpoint-reconciler-type=none',
      '--v=1',
    ],
    logFile: join(dir, 'kube-apiserver.log'),
    persistent,
  });
  await waitFor(
    'kube-apiserver to become ready',
    async () => {
      if (!proc.running()) throw new GiveUp(`kube-apiserver exited:\n${tail(proc.logFile)}`);
      return (await probe(server, '/readyz', pki)) === 200 ? true : undefined;
    },
    90_000,
    200,
  );
  return { proc, server };
}

/** Server-side applies CustomResourceDefinitions byte-for-byte (see raw.ts); returns their names. */
export async function applyCrds(
  kc: KubeConfig,
  crds: KubernetesObject[],
  labels: Record<string, string> = {},
): Promise<string[]> {
  const names: string[] = [];
  for (const crd of crds) {
    if (crd.kind !== 'CustomResourceDefinition' || !crd.metadata?.name) continue;
    crd.metadata.labels = { ...crd.metadata.labels, ...labels };
    await apply(
      kc,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`,
      crd,
      'capbm-harness',
    );
    names.push(crd.metadata.name);
  }
  return names;
}

/** Every document of the YAML files given. */
export function readYamlDocuments(files: string[]): KubernetesObject[] {
  return files.flatMap((f) =>
    parseAllDocuments(readFileSync(f, 'utf8'))
      .map((d) => d.toJS() as KubernetesObject | null)
      .filter((o): o is KubernetesObject => !!o?.kind),
  );
}

/** Waits until every named CRD reports Established. */
export async function waitForCrds(kc: KubeConfig, names: string[]): Promise<void> {
  for (const name of names) {
    await waitFor(
      `CRD ${name} to be established`,
      async () => {
        const crd = await raw<{ status?: { conditions?: Array<{ type: string; status: string }> } }>(
          kc,
          'GET',
          `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
        );
        return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ? true : undefined;
      },
      30_000,
    );
  }
}

/**
 * Installs the genuine CAPI CRDs from the module download hack/controlplane copied, with the labels
 * each component's kustomization.yaml adds (the contract version labels CAPI resolves kinds by).
 */
export async function installCapiCrds(kc: KubeConfig): Promise<void> {
  const root = join(controlPlaneDir(), 'crd');
  const names: string[] = [];
  for (const component of readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    const dir = join(root, component.name);
    const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as {
      labels?: Array<{ pairs?: Record<string, string> }>;
    };
    const labels = Object.assign({}, ...(kustomization.labels ?? []).map((l) => l.pairs ?? {})) as Record<
      string,
      string
    >;
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .map((f) => join(dir, f));
    names.push(...(await applyCrds(kc, readYamlDocuments(files), labels)));
  }
  await waitForCrds(kc, names);
}

async function startControllerManager(dir: string, persistent: boolean): Promise<ManagedProcess> {
  const port = await freePort();
  const kubeconfig = join(dir, 'admin.kubeconfig');
  const proc = startProcess({
    name: 'kube-controller-manager',
    command: bin('kube-controller-manager'),
    args: [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      `--cert-dir=${join(dir, 'kcm-certs')}`,
      '--leader-elect=false',
      `--service-account-private-key-file=${join(dir, 'pki', 'sa.key')}`,
      `--root-ca-file=${join(dir, 'pki', 'ca.crt')}`,
      '--use-service-account-credentials=false',
      // No nodes, no cloud: the controllers a management cluster's API objects need.
      '--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ephemeral-volume,-pv-protection,-pvc-protection,-ttl',
      '--v=1',
    ],
    logFile: join(dir, 'kube-controller-manager.log'),
    persistent,
  });
  await waitFor(
    'kube-controller-manager to become healthy',
    async () => {
      if (!proc.running()) throw new GiveUp(`kube-controller-manager exited:\n${tail(proc.logFile)}`);
      const ok = await new Promise<boolean>((resolve) => {
        const req = request(
          `https://127.0.0.1:${port}/healthz`,
          { rejectUnauthorized: false, timeout: 2000 },
          (res) => {
            res.resume();
            resolve(res.statusCode === 200);
          },
        );
        req.on('error', () => resolve(false));
        req.on('timeout', () => req.destroy());
        req.end();
      });
      return ok ? true : undefined;
    },
    60_000,
    200,
  );
  return proc;
}

async function startCapiManager(
  dir: string,
  component: CapiComponent,
  persistent: boolean,
  featureGates?: string,
): Promise<ManagedProcess> {
  const [health, diag, webhook] = [await freePort(), await freePort(), await freePort()];
  const certDir = join(dir, `${component}-webhook-certs`);
  if (!existsSync(join(certDir, 'tls.crt'))) {
    // The webhooks are not registered with the API server in this harness; the manager still
    // refuses to start its webhook server without a serving certificate.
    mkdirSync(certDir, { recursive: true });
    const cert = await issueCertificate({
      subject: { commonName: 'localhost' },
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: ['server'],
    });
    writeFileSync(join(certDir, 'tls.crt'), cert.certPem);
    writeFileSync(join(certDir, 'tls.key'), cert.keyPem, { mode: 0o600 });
  }
  const proc = startProcess({
    name: `capi-${component}`,
    command: bin(binaries[component]),
    args: [
      `--kubeconfig=${join(dir, 'admin.kubeconfig')}`,
      '--leader-elect=false',
      `--health-addr=127.0.0.1:${health}`,
      `--diagnostics-address=127.0.0.1:${diag}`,
      '--insecure-diagnostics',
      `--webhook-port=${webhook}`,
      `--webhook-cert-dir=${certDir}`,
      '--sync-period=10m',
      ...(featureGates ? [`--feature-gates=${featureGates}`] : []),
    ],
    env: { KUBECONFIG: join(dir, 'admin.kubeconfig') },
    logFile: join(dir, `capi-${component}.log`),
    persistent,
  });
  await waitFor(
    `CAPI ${component} manager to become ready`,
    async () => {
      if (!proc.running()) throw new GiveUp(`capi-${component} exited:\n${tail(proc.logFile)}`);
      const res = await fetch(`http://127.0.0.1:${health}/readyz`);
      return res.ok ? true : undefined;
    },
    60_000,
    200,
  );
  return proc;
}

function capiComponents(opt: ControlPlaneOptions['capi']): CapiComponent[] {
  if (opt === true) return ['core', 'bootstrap'];
  return opt || [];
}

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = options.log ?? (() => {});
  const persistent = !!options.persistent;
  cleanupStale();
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const mark = (phase: string) => (timings[phase] = (Date.now() - t0) / 1000);
  const dir = options.dir ?? mkdtempSync(join(mkdirp(join(repoRoot, '.cache', 'tmp')), 'cp-'));
  mkdirSync(dir, { recursive: true });
  const processes: ManagedProcess[] = [];
  const stop = async () => {
    for (const p of [...processes].reverse()) await p.stop();
    if (!options.dir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    log('starting etcd');
    const bindAddress = options.bindAddress ?? '127.0.0.1';
    const pki = await writePki(dir, bindAddress);
    const etcd = await startEtcd(dir, persistent);
    processes.push(etcd.proc);
    mark('etcd');
    log('starting kube-apiserver');
    const api = await startApiserver({
      dir,
      etcd: etcd.url,
      pki,
      persistent,
      bindAddress,
      tokens: options.tokens ?? {},
    });
    processes.push(api.proc);
    mark('apiserver');
    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(api.server, pki), { mode: 0o600 });
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    if (options.controllerManager) {
      log('starting kube-controller-manager');
      processes.push(await startControllerManager(dir, persistent));
      mark('controller-manager');
    }
    const components = capiComponents(options.capi);
    const startCapi = async (c: CapiComponent) => {
      const proc = await startCapiManager(dir, c, persistent, options.capiFeatureGates);
      processes.push(proc);
      return proc;
    };
    if (components.length) {
      log('installing the Cluster API CRDs');
      await installCapiCrds(kc);
      mark('crds');
      for (const c of components) {
        log(`starting the Cluster API ${c} manager`);
        await startCapi(c);
      }
      mark('capi');
    }
    const restart = async (name: 'etcd' | 'kube-apiserver') => {
      const i = processes.findIndex((p) => p.name === name);
      const old = processes[i]!;
      await old.kill();
      const proc = startProcess(old.spec);
      processes[i] = proc;
      await waitFor(
        `${name} to answer again after its restart`,
        async () => {
          if (!proc.running()) throw new GiveUp(`${name} exited after its restart:\n${tail(proc.logFile)}`);
          if (name === 'etcd') return (await fetch(`${etcd.url}/health`)).ok ? true : undefined;
          return (await probe(api.server, '/readyz', pki)) === 200 ? true : undefined;
        },
        90_000,
        200,
      );
      return proc;
    };
    return {
      dir,
      server: api.server,
      kubeconfigPath,
      kc,
      clientCA: pki.ca,
      processes,
      startCapi,
      restart,
      stop,
      timings,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function mkdirp(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}

/** Installs CAPBM's own generated CRDs (manifests/crd) and waits until they are served. */
export async function installProviderCrds(kc: KubeConfig): Promise<void> {
  const dir = join(repoRoot, 'manifests', 'crd');
  await waitForCrds(kc, await applyCrds(kc, readYamlDocuments(readdirSync(dir).map((f) => join(dir, f)))));
}

// Real bootstrap data from the real kubeadm bootstrap provider (CABPK), for tests and fixtures.
// The cases cover what CABPK emits for a first control plane: files (plain, base64, appended),
// users, ntp, boot/pre/post commands and kubelet arguments with cloud-init jinja variables.
import { PatchStrategy } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { raw } from '../../provider/kube/raw.ts';
import { waitFor } from './process.ts';
import type { ControlPlane } from './controlplane.ts';
import {
  CAPI,
  HARNESS,
  Objects,
  createCluster,
  createMachine,
  installHarnessInfraCrds,
  markInfraClusterProvisioned,
  waitForBootstrapData,
} from './capi.ts';

export interface BootstrapCase {
  name: string;
  value: string;
  format: string;
}

/** The KubeadmConfig spec of the first control plane, shaped like a real cluster template's. */
export function initKubeadmSpec(): Record<string, unknown> {
  return {
    clusterConfiguration: {
      apiServer: { certSANs: ['localhost', '127.0.0.1'] },
      controllerManager: { extraArgs: [{ name: 'bind-address', value: '0.0.0.0' }] },
    },
    initConfiguration: {
      nodeRegistration: {
        name: '{{ ds.meta_data.local_hostname }}',
        criSocket: 'unix:///var/run/containerd/containerd.sock',
        kubeletExtraArgs: [
          { name: 'provider-id', value: '{{ ds.meta_data.provider_id }}' },
          { name: 'node-ip', value: '{{ ds.meta_data.local_ipv4 }}' },
        ],
      },
    },
    files: [
      {
        path: '/etc/capbm/plain.conf',
        owner: 'root:root',
        permissions: '0644',
        content: 'key = "value with $dollar and `ticks`"\n',
      },
      {
        path: '/etc/capbm/encoded.bin',
        permissions: '0600',
        encoding: 'base64',
        content: Buffer.from('binary\u0000-free? no: text with ünïcode\n').toString('base64'),
      },
      { path: '/etc/capbm/appended.conf', content: 'line appended\n', append: true },
    ],
    bootCommands: ['echo boot > /run/capbm-boot'],
    preKubeadmCommands: ['echo pre > /run/capbm-pre', 'hostnamectl set-hostname "{{ ds.meta_data.hostname }}" || true'],
    postKubeadmCommands: ['echo post > /run/capbm-post'],
    users: [
      {
        name: 'operator',
        groups: 'sudo',
        shell: '/bin/bash',
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        sshAuthorizedKeys: [
          'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForFixturesOnly0000000000000000000 operator@example',
        ],
        lockPassword: true,
      },
    ],
    ntp: { enabled: true, servers: ['0.pool.ntp.org', '1.pool.ntp.org'] },
  };
}

/** The KubeadmConfig spec of a machine that joins (a worker, or a control plane with `controlPlane`). */
export function joinKubeadmSpec(controlPlane: boolean): Record<string, unknown> {
  return {
    joinConfiguration: {
      ...(controlPlane ? { controlPlane: {} } : {}),
      nodeRegistration: {
        name: '{{ ds.meta_data.local_hostname }}',
        kubeletExtraArgs: [{ name: 'provider-id', value: '{{ ds.meta_data.provider_id }}' }],
      },
    },
    files: [{ path: '/etc/capbm/role', content: controlPlane ? 'control-plane\n' : 'worker\n', permissions: '0644' }],
    preKubeadmCommands: ['swapoff -a'],
    postKubeadmCommands: ['echo joined > /run/capbm-joined'],
  };
}

/**
 * Drives the real CAPI core manager and CABPK to write the bootstrap data for a first control
 * plane machine. Needs a control plane started with { capi: true }.
 */
export async function firstControlPlaneBootstrap(
  cp: ControlPlane,
  namespace = 'cabpk',
  workload?: ControlPlane,
): Promise<BootstrapCase> {
  const o = new Objects(cp.kc);
  await installHarnessInfraCrds(cp.kc);
  await raw(cp.kc, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: namespace },
  });
  if (workload) await linkWorkloadCluster(cp, workload, namespace, 'c1');
  await createCluster(o, { namespace, name: 'c1' });
  await markInfraClusterProvisioned(o, namespace, 'c1');
  await createMachine(o, { namespace, cluster: 'c1', name: 'c1-cp-0', controlPlane: true, kubeadm: initKubeadmSpec() });
  const data = await waitForBootstrapData(o, namespace, 'c1-cp-0', 90_000);
  return { name: 'init-control-plane', value: data.value, format: data.format };
}

/**
 * After firstControlPlaneBootstrap: plays the infrastructure provider and the first node (a Node
 * with the machine's providerID in a second API server that stands for the workload cluster), so
 * CAPI marks the control plane initialized; then returns CABPK's join data for a second control
 * plane machine and a worker. CABPK creates their bootstrap tokens in the workload cluster.
 */
export async function joinBootstraps(
  cp: ControlPlane,
  workload: ControlPlane,
  namespace = 'cabpk',
): Promise<BootstrapCase[]> {
  const o = new Objects(cp.kc);
  const providerID = 'harness:///c1-cp-0';
  const hm = await o.get(HARNESS, 'HarnessMachine', namespace, 'c1-cp-0');
  await o.api.patch(
    { ...hm, spec: { providerID } },
    undefined,
    undefined,
    'capbm-harness',
    undefined,
    PatchStrategy.MergePatch,
  );
  await o.patchStatus(hm, {
    initialization: { provisioned: true },
    ready: true,
    addresses: [{ type: 'InternalIP', address: '10.250.0.11' }],
  });
  await raw(workload.kc, 'POST', '/api/v1/nodes', {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'c1-cp-0', labels: { 'node-role.kubernetes.io/control-plane': '' } },
    spec: { providerID },
  });
  await waitFor(
    'Cluster c1 to report ControlPlaneInitialized',
    async () => {
      const c = await o.get(CAPI, 'Cluster', namespace, 'c1');
      // Without a control plane provider, CAPI reports this as a condition only.
      const conds = (c.status?.conditions ?? []) as Array<{ type: string; status: string }>;
      return conds.some((x) => x.type === 'ControlPlaneInitialized' && x.status === 'True') ? true : undefined;
    },
    90_000,
    250,
  );
  const cases: Array<[string, boolean]> = [
    ['join-control-plane', true],
    ['worker', false],
  ];
  for (const [name, controlPlane] of cases) {
    await createMachine(o, {
      namespace,
      cluster: 'c1',
      name: `c1-${name}`,
      controlPlane,
      kubeadm: joinKubeadmSpec(controlPlane),
    });
  }
  const out: BootstrapCase[] = [];
  for (const [name] of cases) {
    const d = await waitForBootstrapData(o, namespace, `c1-${name}`, 90_000);
    out.push({ name, value: d.value, format: d.format });
  }
  return out;
}

/** Names the workload API server in the `<cluster>-kubeconfig` Secret, before CAPI would write its own. */
export async function linkWorkloadCluster(
  cp: ControlPlane,
  workload: ControlPlane,
  namespace: string,
  cluster: string,
) {
  await raw(cp.kc, 'POST', `/api/v1/namespaces/${namespace}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'cluster.x-k8s.io/secret',
    metadata: { name: `${cluster}-kubeconfig`, labels: { 'cluster.x-k8s.io/cluster-name': cluster } },
    data: { value: Buffer.from(readFileSync(workload.kubeconfigPath)).toString('base64') },
  });
}

const privateKeyBlock = /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g;

const bootstrapToken = /\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g;

/**
 * Replaces secrets before bootstrap data is kept as a fixture: private keys (CABPK embeds the
 * cluster CAs' keys) and bootstrap tokens (replaced by kubeadm's documented example token).
 */
export function redactPrivateKeys(text: string): string {
  return text
    .replace(privateKeyBlock, 'REDACTED: a private key CABPK generated; fixtures never keep key material')
    .replace(bootstrapToken, 'abcdef.0123456789abcdef');
}

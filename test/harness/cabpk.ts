// Real bootstrap data from the real kubeadm bootstrap provider (CABPK), for tests and fixtures.
// The cases cover what CABPK emits for a first control plane: files (plain, base64, appended),
// users, ntp, boot/pre/post commands and kubelet arguments with cloud-init jinja variables.
import { raw } from './raw.ts';
import type { ControlPlane } from './controlplane.ts';
import {
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

/**
 * Drives the real CAPI core manager and CABPK to write the bootstrap data for a first control
 * plane machine. Needs a control plane started with { capi: true }.
 */
export async function firstControlPlaneBootstrap(cp: ControlPlane, namespace = 'cabpk'): Promise<BootstrapCase> {
  const o = new Objects(cp.kc);
  await installHarnessInfraCrds(cp.kc);
  await raw(cp.kc, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: namespace },
  });
  await createCluster(o, { namespace, name: 'c1' });
  await markInfraClusterProvisioned(o, namespace, 'c1');
  await createMachine(o, { namespace, cluster: 'c1', name: 'c1-cp-0', controlPlane: true, kubeadm: initKubeadmSpec() });
  const data = await waitForBootstrapData(o, namespace, 'c1-cp-0', 90_000);
  return { name: 'init-control-plane', value: data.value, format: data.format };
}

const privateKeyBlock = /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g;

/** Replaces private key material (CABPK embeds the cluster CAs' keys) before data is kept as a fixture. */
export function redactPrivateKeys(text: string): string {
  return text.replace(privateKeyBlock, 'REDACTED: a private key CABPK generated; fixtures never keep key material');
}

// The lab's load balancer in front of the workload clusters' control planes: HAProxy in a network
// namespace of its own on the lab bridge (an address like a host's), TCP on :6443 to every lab host
// that could serve an API server, each health-checked on /readyz; hosts without one are simply down.
// This is the external load balancer kubeadm's HA guide describes, and the Cluster's
// controlPlaneEndpoint: control-plane machines come and go (rollouts, replacements), the endpoint
// stays.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { addressOf, createNetwork, netnsOf, reserveSlot, slotDir, stopHost, writeSlot } from './lab.ts';
import { waitFor } from './process.ts';

export interface LoadBalancer {
  slot: number;
  address: string;
  port: number;
  stop(): Promise<void>;
}

export async function startLoadBalancer(o: { backends: string[]; persistent?: boolean }): Promise<LoadBalancer> {
  const slot = reserveSlot(!!o.persistent);
  const dir = slotDir(slot);
  mkdirSync(dir, { recursive: true });
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    `global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
frontend kube-apiserver
  bind :6443
  default_backend control-plane
backend control-plane
  option httpchk GET /readyz
  http-check expect status 200
  default-server check check-ssl verify none inter 1s fall 2 rise 1
${o.backends.map((a, i) => `  server host${i} ${a}:6443`).join('\n')}
`,
  );
  await createNetwork(slot);
  const log = openSync(join(dir, 'haproxy.log'), 'w');
  const child = spawn('ip', ['netns', 'exec', netnsOf(slot), '/usr/sbin/haproxy', '-db', '-f', cfg], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  child.unref();
  writeSlot(slot, { owner: process.pid, persistent: !!o.persistent, pid: child.pid! });
  const address = addressOf(slot);
  await waitFor(
    `the load balancer on ${address}:6443`,
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = connect({ host: address, port: 6443, timeout: 500 });
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(undefined));
        s.once('timeout', () => (s.destroy(), resolve(undefined)));
      }),
    10_000,
    50,
  );
  return { slot, address, port: 6443, stop: () => stopHost({ slot }) };
}

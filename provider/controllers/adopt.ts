// The adopt-host step: a machine moved by `clusterctl move` takes back the host it held on the
// source management cluster (moved.ts says which, and in which phase it resumes). The host's
// consumerRef gets the machine's new uid on the host's version as read (a precondition, so a
// concurrent write wins and the step is decided again), after the address lock of this management
// cluster (hosts/address-lock.ts) is taken for it.
import type { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalMachine } from '../api/machine.ts';
import { lockAddress } from '../hosts/address-lock.ts';
import * as life from '../hosts/lifecycle.ts';
import { BareMetalHosts, objectKey, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import { readMarkers } from './host-ops.ts';
import { MachineConditions as C } from './machine-plan.ts';
import { hostProblem, onHost, writeHost, type MachineDeps, type Step, type StepResult } from './machine-steps.ts';
import { ConsumerNameIndex } from './indexes.ts';
import { adoptedPhase, adoptionMessage, movedHostOf, type RunMarkers } from './moved.ts';

/** The host this machine held before a move, from the caches (none when it holds one already). */
export function movedHost(d: MachineDeps, m: BareMetalMachine): BareMetalHost | undefined {
  const ns = m.metadata.namespace;
  const hosts = d.hosts.byIndex(ConsumerNameIndex, `${ns}/${m.metadata.name}`);
  if (hosts.length === 0) return undefined;
  const live = new Set(d.machines.list(ns).map((x) => x.metadata.uid ?? ''));
  return movedHostOf(m, hosts, live);
}

/** Writes the new uid into the host's consumerRef; undefined when the host changed meanwhile. */
async function takeOver(kc: KubeConfig, h: BareMetalHost, m: BareMetalMachine): Promise<BareMetalHost | undefined> {
  const consumer = { ...h.spec.consumerRef!, apiVersion: m.apiVersion, uid: m.metadata.uid ?? '' };
  try {
    return await raw<BareMetalHost>(kc, 'PATCH', objectPath(BareMetalHosts, h.metadata.namespace, h.metadata.name), {
      metadata: { resourceVersion: h.metadata.resourceVersion },
      spec: { consumerRef: consumer },
    });
  } catch (err) {
    if (err instanceof ApiError && err.code === 409) return undefined;
    throw err;
  }
}

const again: StepResult = { outcome: { kind: 'none' }, result: { requeue: true } };

export async function adopt(s: Step, step: { host: string }): Promise<StepResult> {
  const { d, m } = s;
  const cached = d.hosts.get(m.metadata.namespace, step.host);
  if (!cached) return again;
  const h = d.fresh.hosts.pick(objectKey(cached), cached) ?? cached;
  const at: Step = { ...s, host: h };
  let mk: RunMarkers;
  try {
    mk = await onHost(at, (conn) => readMarkers(conn, m.metadata.name));
  } catch (err) {
    return hostProblem(at, err, C.HostReady);
  }
  if (d.addressLocks && !(await lockAddress(d.kc, d.addressLocks, h))) {
    const message = `The address lock of host ${h.metadata.name} (${h.spec.address}) is held by another host; retrying.`;
    return { outcome: { kind: 'waiting', reason: 'NoHostAvailable', message }, result: { requeueAfter: 30_000 } };
  }
  const taken = await takeOver(d.kc, h, m);
  if (!taken) return again;
  const phase = adoptedPhase(mk);
  const host = await writeHost(at, taken, (x) => life.adopted(x, phase));
  const adopted = { message: adoptionMessage(h.metadata.name, h.spec.address, mk), ran: phase === 'Provisioning' };
  return { outcome: { kind: 'claimed', host: h.metadata.name, address: h.spec.address, adopted }, host };
}

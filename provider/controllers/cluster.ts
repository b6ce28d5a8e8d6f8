// The BareMetalCluster reconciler: finalizer, pause, the control plane endpoint (rule in
// cluster-plan.ts), provisioned/ready, and on delete waiting for the cluster's machines.
import type { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import {
  setCondition,
  setPausedCondition,
  setSummary,
  setV1Beta1Condition,
  setV1Beta1Summary,
} from '../runtime/conditions.ts';
import type { ReconcileContext, Request, Result } from '../runtime/controller.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import { nextClusterStep, type ClusterFacts } from './cluster-plan.ts';
import type { BareMetalCluster, BareMetalMachine } from '../api/machine.ts';
import { BareMetalClusters } from '../kube/kinds.ts';
import { capiOwner, ClusterNameLabel, ControlPlaneLabel, type CapiCluster } from './capi.ts';
import { ConsumerIndex } from './indexes.ts';
import { Writer } from '../runtime/writer.ts';

export const ClusterFinalizer = 'baremetalcluster.infrastructure.cluster.x-k8s.io';
const EndpointCondition = 'ControlPlaneEndpointSet';

export interface ClusterDeps {
  kc: KubeConfig;
  recorder: EventRecorder;
  bmClusters: Informer<BareMetalCluster>;
  clusters: Informer<CapiCluster>;
  machines: Informer<BareMetalMachine>;
  hosts: Informer<BareMetalHost>;
}

function machinesOf(d: ClusterDeps, ns: string, cluster: string): BareMetalMachine[] {
  return d.machines.list(ns).filter((m) => m.metadata.labels?.[ClusterNameLabel] === cluster);
}

/** Address of the earliest claim among the cluster's control-plane machines. */
function firstControlPlaneHost(d: ClusterDeps, machines: BareMetalMachine[]): string | undefined {
  const claims = machines
    .filter((m) => m.metadata.labels?.[ControlPlaneLabel] !== undefined)
    .flatMap((m) => d.hosts.byIndex(ConsumerIndex, m.metadata.uid ?? '').map((h) => ({ m, h })))
    .sort((a, b) => (a.m.metadata.name < b.m.metadata.name ? -1 : 1));
  return claims[0]?.h.spec.address;
}

function cond(obj: BareMetalCluster, c: { type: string; status: boolean; reason: string; message?: string }): void {
  setCondition(obj, c);
  setV1Beta1Condition(obj, { ...c, severity: 'Info' });
}

function endpointOf(o: BareMetalCluster): { endpoint?: { host: string; port: number } } {
  const e = o.spec.controlPlaneEndpoint;
  return e ? { endpoint: { host: e.host ?? '', port: e.port ?? 0 } } : {};
}

function clusterFacts(d: ClusterDeps, o: BareMetalCluster): { facts: ClusterFacts; cluster: CapiCluster | undefined } {
  const ns = o.metadata.namespace;
  const ownerName = capiOwner(o, 'Cluster');
  const cluster = ownerName ? d.clusters.get(ns, ownerName) : undefined;
  const machines = ownerName ? machinesOf(d, ns, ownerName) : [];
  const first = firstControlPlaneHost(d, machines);
  const facts: ClusterFacts = {
    deleting: o.metadata.deletionTimestamp !== undefined,
    hasFinalizer: (o.metadata.finalizers ?? []).includes(ClusterFinalizer),
    ownerCluster: cluster !== undefined,
    paused: setPausedCondition(o, cluster),
    ...endpointOf(o),
    ...(first ? { firstControlPlaneHost: first } : {}),
    provisioned: o.status?.initialization?.provisioned === true,
    machines: machines.length,
  };
  return { facts, cluster };
}

function noEndpoint(o: BareMetalCluster, cluster: CapiCluster | undefined, message: string): void {
  const kcp = cluster?.spec?.controlPlaneRef?.kind === 'KubeadmControlPlane';
  cond(o, {
    type: EndpointCondition,
    status: false,
    reason: 'WaitingForControlPlaneHost',
    message: kcp
      ? 'No controlPlaneEndpoint: KubeadmControlPlane creates machines only after it is set, so set spec.controlPlaneEndpoint to a VIP or load balancer (or one control-plane host address).'
      : message,
  });
  setSummary(o, 'Ready', [EndpointCondition]);
  setV1Beta1Summary(o, [EndpointCondition]);
}

export function reconcileCluster(d: ClusterDeps) {
  return async (req: Request, ctx: ReconcileContext): Promise<Result> => {
    const bmc = d.bmClusters.get(req.namespace, req.name);
    if (!bmc) return;
    const w = new Writer(d.kc, BareMetalClusters, bmc, { owned: ['Ready', 'Paused', EndpointCondition] });
    const o = w.obj;
    const { facts, cluster } = clusterFacts(d, o);
    const step = nextClusterStep(facts);
    ctx.log.debug('step', { step: step.kind });
    switch (step.kind) {
      case 'wait':
        if (step.reason === 'WaitingForControlPlaneHost') noEndpoint(o, cluster, step.message);
        return w.save();
      case 'add-finalizer':
        return w.update((x) => {
          x.metadata.finalizers = [...(x.metadata.finalizers ?? []), ClusterFinalizer];
        });
      case 'set-endpoint':
        await w.update((x) => {
          x.spec.controlPlaneEndpoint = step.endpoint;
        });
        d.recorder.event(
          w.obj,
          'Normal',
          'ControlPlaneEndpointSet',
          `controlPlaneEndpoint set to the first control-plane host: ${step.endpoint.host}:${step.endpoint.port}`,
        );
        return;
      case 'set-provisioned':
        await w.update((x) => {
          x.status = { ...x.status, initialization: { provisioned: true }, ready: true };
          cond(x, { type: EndpointCondition, status: true, reason: 'EndpointSet', message: '' });
          setSummary(x, 'Ready', [EndpointCondition]);
          setV1Beta1Summary(x, [EndpointCondition]);
        });
        d.recorder.event(w.obj, 'Normal', 'Provisioned', 'Cluster infrastructure is provisioned');
        return;
      case 'done':
        return w.save();
      case 'remove-finalizer':
        return w.update((x) => {
          x.metadata.finalizers = (x.metadata.finalizers ?? []).filter((f) => f !== ClusterFinalizer);
        });
    }
  };
}

/** A BareMetalMachine event wakes its cluster's BareMetalCluster (endpoint from the first claim, deletion). */
export function machineToCluster(d: Pick<ClusterDeps, 'clusters'>) {
  return (m: BareMetalMachine): string[] => {
    const name = m.metadata.labels?.[ClusterNameLabel];
    if (!name) return [];
    const c = d.clusters.get(m.metadata.namespace, name);
    const ref = c?.spec?.infrastructureRef;
    return ref?.kind === 'BareMetalCluster' && ref.name ? [`${m.metadata.namespace}/${ref.name}`] : [];
  };
}

// The BareMetalMachine reconciler: gathers facts from the caches (and SSH), asks machine-plan.ts
// for the next step, carries it out, and writes the outcome as conditions, events and status.
// One step per reconcile; the write of its outcome is the event that triggers the next one, so
// waiting is event-driven: a machine waiting for bootstrap data is woken by its Machine's update,
// a machine waiting for a host by a host becoming Available.
import type { KubeConfig } from '@kubernetes/client-node';
import { render, type RenderResult } from '../../cloud-init/index.ts';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalHostPool } from '../api/pool.ts';
import { claimHost, releaseHost } from '../hosts/claim.ts';
import { ApiError, raw } from '../kube/raw.ts';
import type { Logger } from '../log.ts';
import {
  getCondition,
  setCondition,
  setPausedCondition,
  setSummary,
  setV1Beta1Condition,
  setV1Beta1Summary,
  type ConditionInput,
} from '../runtime/conditions.ts';
import type { ReconcileContext, Request, Result } from '../runtime/controller.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import { SshError, type SshConnection, type SshPool } from '../ssh/index.ts';
import { AccessError, hostTarget } from './access.ts';
import type { AgentService } from './agent.ts';
import { runBootstrap, runPreflight, runReset, scrubBootstrap } from './host-ops.ts';
import {
  BareMetalHosts,
  BareMetalMachines,
  capiOwner,
  ClusterNameLabel,
  type BareMetalMachine,
  type CapiCluster,
  type CapiMachine,
} from './kinds.ts';
import { MachineConditions as C, nextMachineStep, type HostFacts, type MachineFacts } from './machine-plan.ts';
import { bootstrapMetaData, providerID } from './metadata.ts';
import { Fresher, Writer } from './writer.ts';

export const MachineFinalizer = 'baremetalmachine.infrastructure.cluster.x-k8s.io';
/** Index of the host cache: the uid of the machine holding the host. */
export const ConsumerIndex = 'consumer';
export const byConsumer = (h: BareMetalHost): string[] => (h.spec?.consumerRef?.uid ? [h.spec.consumerRef.uid] : []);

const ownedConditions = [
  C.Ready,
  C.HostClaimed,
  C.HostReady,
  C.BootstrapSucceeded,
  C.Paused,
  'Deleting',
  'AgentInstalled',
  'HostHealthy',
];
const summaryOf = [C.HostClaimed, C.HostReady, C.BootstrapSucceeded];

/** Reasons of the Deleting condition, in order. */
const Deleting = { Resetting: 'ResettingHost', Reset: 'HostReset', Quarantined: 'HostQuarantined' } as const;

export interface MachineDeps {
  kc: KubeConfig;
  recorder: EventRecorder;
  ssh: SshPool;
  machines: Informer<BareMetalMachine>;
  capiMachines: Informer<CapiMachine>;
  clusters: Informer<CapiCluster>;
  hosts: Informer<BareMetalHost>;
  pools: Informer<BareMetalHostPool>;
  /** The node agent: installed at the end of provisioning, removed by the reset. */
  agent?: AgentService;
  /** What this process wrote last, newer than the caches for a moment. */
  fresh: { machines: Fresher<BareMetalMachine>; hosts: Fresher<BareMetalHost> };
}

export const AgentInstalled = 'AgentInstalled';

function hostFacts(h: BareMetalHost, m: BareMetalMachine, withAgent: boolean): HostFacts {
  const phase = h.spec.quarantine ? 'Quarantined' : (h.status?.phase ?? 'Claimed');
  const p = phase === 'Available' ? 'Claimed' : phase;
  return {
    name: h.metadata.name,
    phase: p,
    preflightPassed: p === 'Provisioning' || p === 'Provisioned',
    bootstrapSucceeded: p === 'Provisioned',
    agentInstalled: !withAgent || getCondition(m, AgentInstalled)?.status === 'True',
    // A host that never went past the claim ran nothing of ours: it is as clean as it came.
    reset: p === 'Claimed' || getCondition(m, 'Deleting')?.reason === Deleting.Reset,
  };
}

function sshReason(err: SshError): string {
  switch (err.reason) {
    case 'AuthFailed':
      return 'SSHAuthenticationFailed';
    case 'HostKeyMismatch':
      return 'HostKeyMismatch';
    case 'Timeout':
    case 'HostUnreachable':
      return 'HostUnreachable';
    default:
      return 'SSHCommandFailed';
  }
}

function sshAdvice(err: SshError, pool: BareMetalHostPool): string {
  const secret = `${pool.metadata.namespace}/${pool.spec.ssh.secretRef.name}`;
  switch (err.reason) {
    case 'AuthFailed':
      return ` The host refused the key in Secret ${secret}: add its public key to ~${pool.spec.ssh.user ?? 'root'}/.ssh/authorized_keys on the host, or fix the Secret. Nothing was run on the host.`;
    case 'HostKeyMismatch':
      return ` Nothing was run on the host. If the host was reinstalled, update spec.hostKeyPolicy of pool ${pool.metadata.name} (or, for trust-on-first-use, remove status.hostKeyFingerprint from the BareMetalHost); otherwise treat it as an attack.`;
    case 'Timeout':
    case 'HostUnreachable':
      return ' The provider retries with backoff; a machine whose host stays unreachable is replaced (MachineHealthCheck), and the host is quarantined when the machine is deleted.';
    default:
      return '';
  }
}

class MachineRun {
  readonly d: MachineDeps;
  readonly w: Writer<BareMetalMachine>;
  readonly log: Logger;
  readonly signal: AbortSignal;
  host: BareMetalHost | undefined;

  constructor(d: MachineDeps, bmm: BareMetalMachine, ctx: ReconcileContext) {
    this.d = d;
    this.w = new Writer(d.kc, BareMetalMachines, bmm, ownedConditions);
    this.log = ctx.log;
    this.signal = ctx.signal;
  }

  /** A writer for the held host whose writes the next reconcile sees even before the cache does. */
  hostWriter(h: BareMetalHost = this.host!): Writer<BareMetalHost> {
    const w = new Writer(this.d.kc, BareMetalHosts, h);
    const key = `${h.metadata.namespace}/${h.metadata.name}`;
    const update = w.update.bind(w);
    w.update = async (fn) => {
      await update(fn);
      this.d.fresh.hosts.remember(key, w.obj);
    };
    return w;
  }

  get m(): BareMetalMachine {
    return this.w.obj;
  }

  get ns(): string {
    return this.m.metadata.namespace;
  }

  event(type: 'Normal' | 'Warning', reason: string, message: string, alsoHost = false): void {
    this.d.recorder.event(this.m, type, reason, message);
    if (alsoHost && this.host) this.d.recorder.event(this.host, type, reason, message);
    if (type === 'Warning') this.log.warn(message, { reason });
    else this.log.info(message, { reason });
  }

  /** Sets a condition and its v1beta1 twin, and the Ready summaries. */
  cond(c: ConditionInput): void {
    setCondition(this.m, c);
    setV1Beta1Condition(this.m, {
      type: c.type,
      status: c.status,
      reason: c.reason,
      ...(c.message ? { message: c.message } : {}),
      severity: c.status === 'False' && /^Waiting|NoHost/.test(c.reason) ? 'Info' : 'Warning',
    });
  }

  summarize(): void {
    setSummary(this.m, C.Ready, summaryOf, { ignoreIfMissing: [] });
    setV1Beta1Summary(this.m, summaryOf);
  }

  setPhase(phase: string): void {
    this.m.status = { ...this.m.status, phase };
  }

  async heldHost(): Promise<BareMetalHost | undefined> {
    const uid = this.m.metadata.uid ?? '';
    const cached = this.d.hosts.byIndex(ConsumerIndex, uid)[0];
    if (cached) {
      const h = this.d.fresh.hosts.pick(`${cached.metadata.namespace}/${cached.metadata.name}`, cached);
      return h?.spec.consumerRef?.uid === uid ? h : undefined;
    }
    // The cache may lag behind our own claim: the hostRef written with it is the record.
    const ref = this.m.status?.hostRef?.name;
    return ref ? this.fetchHost(ref, uid) : undefined;
  }

  async fetchHost(ref: string, uid: string): Promise<BareMetalHost | undefined> {
    try {
      const h = await raw<BareMetalHost>(
        this.d.kc,
        'GET',
        `/apis/${BareMetalHosts.group}/${BareMetalHosts.version}/namespaces/${this.ns}/baremetalhosts/${ref}`,
      );
      return h.spec.consumerRef?.uid === uid ? h : undefined;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return undefined;
      throw err;
    }
  }

  /** The owner Machine and its Cluster, from the caches. */
  owners(): { owner: CapiMachine | undefined; cluster: CapiCluster | undefined } {
    const ownerName = capiOwner(this.m, 'Machine');
    const owner = ownerName ? this.d.capiMachines.get(this.ns, ownerName) : undefined;
    const clusterName = this.m.metadata.labels?.[ClusterNameLabel] ?? owner?.spec?.clusterName;
    return { owner, cluster: clusterName ? this.d.clusters.get(this.ns, clusterName) : undefined };
  }

  async facts(): Promise<{ f: MachineFacts; owner: CapiMachine | undefined }> {
    const m = this.m;
    const { owner, cluster } = this.owners();
    this.host = await this.heldHost();
    const init = cluster?.status?.initialization;
    const f: MachineFacts = {
      deleting: m.metadata.deletionTimestamp !== undefined,
      hasFinalizer: (m.metadata.finalizers ?? []).includes(MachineFinalizer),
      ownerMachine: owner !== undefined && cluster !== undefined,
      paused: setPausedCondition(m, cluster),
      clusterInfraProvisioned: init?.infrastructureProvisioned === true,
      bootstrapDataReady: Boolean(owner?.spec?.bootstrap?.dataSecretName),
      ...(this.host ? { host: hostFacts(this.host, m, this.d.agent !== undefined) } : {}),
      providerIDSet: Boolean(m.spec.providerID),
      provisioned: m.status?.initialization?.provisioned === true,
    };
    return { f, owner };
  }

  async run(): Promise<Result> {
    const { f, owner } = await this.facts();
    const step = nextMachineStep(f);
    this.log.debug('step', { step: step.kind });
    switch (step.kind) {
      case 'wait':
        return this.wait(step.reason, step.message);
      case 'add-finalizer':
        return this.w.update((m) => {
          m.metadata.finalizers = [...(m.metadata.finalizers ?? []), MachineFinalizer];
          this.setPhase('Pending');
        });
      case 'claim-host':
        return this.claim();
      case 'preflight':
        return this.withHost('preflight', (conn) => this.preflight(conn));
      case 'bootstrap':
        return this.withHost('bootstrap', (conn) => this.bootstrap(conn, owner!));
      case 'install-agent':
        return this.withHost('install-agent', (conn) => this.installAgent(conn));
      case 'set-provisioned':
        return this.setProvisioned();
      case 'done':
        this.summarize();
        await this.w.save();
        return this.health(owner);
      case 'reset-host':
        return this.reset();
      case 'release-host':
        return this.release();
      case 'remove-finalizer':
        return this.removeFinalizer();
    }
  }

  async wait(reason: string, message: string): Promise<Result> {
    if (reason === 'Paused') return this.w.save(); // only the Paused condition changes
    if (!this.host) {
      this.cond({ type: C.HostClaimed, status: false, reason, message });
      this.setPhase('Pending');
    } else if (reason === 'HostQuarantined') {
      this.cond({ type: C.HostReady, status: false, reason, message });
    } else {
      this.cond({ type: C.BootstrapSucceeded, status: false, reason, message });
    }
    if (!getCondition(this.m, C.HostReady)) {
      this.cond({ type: C.HostReady, status: 'Unknown', reason: 'PreflightPending', message: '' });
    }
    if (!getCondition(this.m, C.BootstrapSucceeded)) {
      this.cond({ type: C.BootstrapSucceeded, status: false, reason: 'WaitingForHost', message: '' });
    }
    this.summarize();
    await this.w.save();
  }

  async claim(): Promise<Result> {
    const m = this.m;
    const h = await claimHost(this.d.kc, {
      namespace: this.ns,
      ...(m.spec.poolRef?.name ? { pool: m.spec.poolRef.name } : {}),
      ...(m.spec.hostSelector?.matchLabels ? { selector: m.spec.hostSelector.matchLabels } : {}),
      consumer: {
        apiVersion: m.apiVersion,
        kind: m.kind,
        namespace: this.ns,
        name: m.metadata.name,
        uid: m.metadata.uid ?? '',
      },
    });
    if (!h) {
      const where = m.spec.poolRef?.name ? `pool ${m.spec.poolRef.name}` : 'any pool';
      const sel = m.spec.hostSelector?.matchLabels
        ? ` with labels ${JSON.stringify(m.spec.hostSelector.matchLabels)}`
        : '';
      return this.wait(
        'NoHostAvailable',
        `No Available host in ${where}${sel}: add addresses to a pool or free a host; the machine waits for one.`,
      );
    }
    this.host = h;
    const hw = this.hostWriter(h);
    await hw.update((o) => (o.status = { ...o.status, phase: 'Claimed' }));
    this.cond({
      type: C.HostClaimed,
      status: true,
      reason: 'HostClaimed',
      message: `Host ${h.metadata.name} (${h.spec.address})`,
    });
    this.cond({ type: C.HostReady, status: 'Unknown', reason: 'PreflightPending', message: '' });
    this.m.status = { ...this.m.status, hostRef: { name: h.metadata.name } };
    this.setPhase('Claimed');
    this.summarize();
    await this.w.save();
    this.event('Normal', 'HostClaimed', `Claimed host ${h.metadata.name} (${h.spec.address})`, true);
  }

  pool(): BareMetalHostPool {
    const name = this.host!.spec.poolRef.name;
    const p = this.d.pools.get(this.ns, name);
    if (!p)
      throw new AccessError(
        'PoolNotFound',
        `BareMetalHostPool ${this.ns}/${name} of host ${this.host!.metadata.name} does not exist: recreate the pool, or delete this machine so it takes a host of an existing pool`,
      );
    return p;
  }

  /** The condition an SSH problem of this step shows on. */
  stepCondition(step: string): string {
    return step === 'preflight' ? C.HostReady : C.BootstrapSucceeded;
  }

  /** Connects to the held host (recording a first-use host key) and runs fn; reports failures. */
  async withHost(step: string, fn: (conn: SshConnection) => Promise<Result | void>): Promise<Result> {
    const host = this.host!;
    let pool: BareMetalHostPool | undefined;
    try {
      pool = this.pool();
      const target = await hostTarget(this.d.kc, pool, host);
      return await this.d.ssh.withHost(target, async (conn) => {
        const abort = () => conn.close();
        this.signal.addEventListener('abort', abort, { once: true });
        try {
          await this.recordHostKey(conn);
          return await fn(conn);
        } finally {
          this.signal.removeEventListener('abort', abort);
        }
      });
    } catch (err) {
      if (this.signal.aborted) return; // stopping: the next leader picks up from the host's state
      if (err instanceof AccessError) {
        await this.problem(step, err.reason, err.message);
        return { requeue: true };
      }
      if (err instanceof SshError) {
        await this.problem(step, sshReason(err), `${err.message}.${sshAdvice(err, pool!)}`);
        return { requeue: true };
      }
      throw err;
    }
  }

  /** A problem of a step, on the machine's condition for that step and on one condition of the host. */
  async problem(step: string, reason: string, message: string, hostCondition = 'Reachable'): Promise<void> {
    this.cond({ type: this.stepCondition(step), status: false, reason, message });
    this.summarize();
    await this.w.save();
    await this.hostWriter().update((h) => {
      setCondition(h, { type: hostCondition, status: false, reason, message });
    });
    this.event('Warning', reason, message, true);
  }

  async recordHostKey(conn: SshConnection): Promise<void> {
    const h = this.host!;
    const fresh = h.status?.hostKeyFingerprint !== conn.hostKeyFingerprint;
    const unreachable = getCondition(h, 'Reachable')?.status !== 'True';
    if (!fresh && !unreachable) return;
    const hw = this.hostWriter(h);
    await hw.update((o) => {
      o.status = { ...o.status, hostKeyFingerprint: conn.hostKeyFingerprint };
      setCondition(o, { type: 'Reachable', status: true, reason: 'Connected', message: '' });
    });
    this.host = hw.obj;
    if (conn.hostKeyFirstUse) {
      this.event(
        'Normal',
        'HostKeyRecorded',
        `Trusted host key ${conn.hostKeyFingerprint} on first use; it is pinned from now on`,
        true,
      );
    }
  }

  async preflight(conn: SshConnection): Promise<Result> {
    const r = await runPreflight(conn);
    const hw = this.hostWriter();
    const { swapKiB: _swap, ...facts } = r.facts;
    const blocking = r.problems[0];
    if (!blocking) {
      await hw.update((h) => {
        h.status = { ...h.status, phase: 'Provisioning', facts };
        setCondition(h, { type: 'PreflightPassed', status: true, reason: 'PreflightPassed', message: '' });
      });
      this.cond({
        type: C.HostReady,
        status: true,
        reason: 'PreflightPassed',
        message: `${facts.os}, ${facts.arch}, ${facts.cpus} CPUs, ${Math.round(facts.memoryKiB / 1024)} MiB`,
      });
      this.setPhase('Provisioning');
      this.summarize();
      await this.w.save();
      this.event('Normal', 'PreflightPassed', `Host ${this.host!.metadata.name} passed preflight`);
      return;
    }
    const message = r.problems.map((p) => p.message).join(' ');
    if (blocking.quarantine) {
      // Refused for good: the host stays quarantined (no consumer) and this machine takes another.
      await hw.update((h) => {
        h.spec.quarantine = { reason: blocking.reason, message, since: new Date().toISOString() };
        delete h.spec.consumerRef;
        h.status = { ...h.status, phase: 'Quarantined' };
        setCondition(h, { type: 'PreflightPassed', status: false, reason: blocking.reason, message });
      });
      this.event(
        'Warning',
        'HostRefused',
        `Host ${this.host!.metadata.name} refused and quarantined: ${message}`,
        true,
      );
      this.cond({
        type: C.HostClaimed,
        status: false,
        reason: 'HostRefused',
        message: `Host ${this.host!.metadata.name} was refused: ${message}`,
      });
      delete this.m.status!.hostRef;
      this.setPhase('Pending');
      this.summarize();
      await this.w.save();
      return;
    }
    // The host answered: the problem is on PreflightPassed, Reachable stays as it is.
    await this.problem('preflight', blocking.reason, message, 'PreflightPassed');
    return { requeueAfter: 60_000 };
  }

  async bootstrapData(owner: CapiMachine): Promise<{ value: string; format?: string }> {
    const name = owner.spec!.bootstrap!.dataSecretName!;
    const s = await raw<{ data?: Record<string, string> }>(
      this.d.kc,
      'GET',
      `/api/v1/namespaces/${this.ns}/secrets/${name}`,
    );
    const dec = (k: string) => (s.data?.[k] ? Buffer.from(s.data[k], 'base64').toString('utf8') : undefined);
    const value = dec('value');
    if (value === undefined)
      throw new AccessError(
        'BootstrapDataInvalid',
        `bootstrap data Secret ${this.ns}/${name} has no "value" key; the bootstrap provider writes it, so check the KubeadmConfig's status`,
      );
    const format = dec('format');
    return { value, ...(format ? { format } : {}) };
  }

  renderFor(data: { value: string; format?: string }): RenderResult {
    const h = this.host!;
    return render(data.value, {
      metaData: {
        ...bootstrapMetaData({
          namespace: this.ns,
          machineName: this.m.metadata.name,
          hostName: h.metadata.name,
          address: h.spec.address,
        }),
      },
      ...(data.format ? { format: data.format } : {}),
    });
  }

  async bootstrap(conn: SshConnection, owner: CapiMachine): Promise<Result> {
    let rendered: RenderResult;
    try {
      rendered = this.renderFor(await this.bootstrapData(owner));
    } catch (err) {
      const msg = `The bootstrap data cannot be applied: ${(err as Error).message}. Fix the KubeadmConfig(Template); nothing was run on the host.`;
      this.cond({ type: C.BootstrapSucceeded, status: false, reason: 'BootstrapDataInvalid', message: msg });
      this.summarize();
      await this.w.save();
      this.event('Warning', 'BootstrapDataInvalid', msg);
      return;
    }
    for (const warning of rendered.warnings) this.event('Normal', 'BootstrapWarning', warning);
    const total = rendered.steps.length;
    const index = new Map(rendered.steps.map((s, i) => [s.id, i + 1]));
    let lastWrite = 0;
    const progress = (id: string, event: string) => {
      // At most one progress write per 2 s: thousands of bootstraps stay calm on the API server.
      if (event !== 'start' || Date.now() - lastWrite < 2000) return;
      lastWrite = Date.now();
      const s = rendered.steps.find((x) => x.id === id);
      void this.w
        .update(() => {
          this.cond({
            type: C.BootstrapSucceeded,
            status: false,
            reason: 'Bootstrapping',
            message: `Step ${index.get(id) ?? '?'}/${total}: ${id}${s ? ` (${s.description})` : ''}`,
          });
          this.summarize();
        })
        .catch((err: unknown) => this.log.info('progress not written', { err }));
    };
    this.cond({
      type: C.BootstrapSucceeded,
      status: false,
      reason: 'Bootstrapping',
      message: `Starting ${total} steps`,
    });
    this.summarize();
    await this.w.save();
    const out = await runBootstrap(conn, {
      instance: this.m.metadata.name,
      script: rendered.script,
      files: rendered.files,
      onStep: progress,
    });
    this.event(
      'Normal',
      out.started ? 'BootstrapStarted' : 'BootstrapAttached',
      out.started
        ? `Bootstrap ran on host ${this.host!.metadata.name}`
        : `Followed the bootstrap already running on host ${this.host!.metadata.name}`,
    );
    if (out.sentinel) {
      await scrubBootstrap(conn, this.m.metadata.name);
      const hw = this.hostWriter();
      await hw.update((h) => (h.status = { ...h.status, phase: 'Provisioned' }));
      await this.w.update(() => {
        this.cond({ type: C.BootstrapSucceeded, status: true, reason: 'BootstrapSucceeded', message: '' });
        this.summarize();
      });
      this.event(
        'Normal',
        'BootstrapSucceeded',
        `Bootstrap succeeded on host ${this.host!.metadata.name} (${total} steps)`,
      );
      return;
    }
    if (out.exitCode === undefined) {
      // The run died without an exit code: the host went down under it. Run again (markers skip done steps).
      await this.problem(
        'bootstrap',
        'HostUnreachable',
        `The bootstrap on host ${this.host!.metadata.name} was interrupted (the host rebooted or lost power); retrying.`,
      );
      return { requeue: true };
    }
    const failed = out.failedStep
      ? `step ${out.failedStep.id} exited ${out.failedStep.code}`
      : `the script exited ${out.exitCode} without the success sentinel`;
    const msg = `Bootstrap failed on host ${this.host!.metadata.name}: ${failed}${out.tail.length ? `: ${out.tail.join(' | ')}` : ''}. The host is not reused in place: delete the Machine (a MachineHealthCheck does) and a fresh host is provisioned.`;
    await this.w.update(() => {
      this.cond({ type: C.BootstrapSucceeded, status: false, reason: 'BootstrapFailed', message: msg });
      this.setPhase('Failed');
      this.summarize();
    });
    this.event('Warning', 'BootstrapFailed', msg);
  }

  async installAgent(conn: SshConnection): Promise<Result> {
    try {
      await this.d.agent!.install(conn, this.m, this.host!);
    } catch (err) {
      if (err instanceof SshError) throw err;
      const msg = `The node agent could not be installed: ${(err as Error).message}`;
      await this.w.update(() =>
        this.cond({ type: AgentInstalled, status: false, reason: 'AgentInstallFailed', message: msg }),
      );
      this.event('Warning', 'AgentInstallFailed', msg);
      return { requeue: true };
    }
    await this.w.update(() => this.cond({ type: AgentInstalled, status: true, reason: 'AgentInstalled', message: '' }));
    this.event('Normal', 'AgentInstalled', `Node agent installed on host ${this.host!.metadata.name}`);
  }

  /** HostHealthy from the agent's reports, on this machine and on its Node. */
  async health(owner: CapiMachine | undefined): Promise<Result> {
    const r = await this.d.agent?.sync(this.m, this.host!.metadata.name, owner?.status?.nodeRef?.name);
    if (!r?.changed) return;
    const c = r.condition;
    const prev = getCondition(this.m, 'HostHealthy');
    await this.w.update((m) => setCondition(m, c));
    if (prev?.status !== c.status) this.healthEvent(c);
  }

  healthEvent(c: ConditionInput): void {
    const healthy = c.status === 'True' || c.status === true;
    const detail = c.message ? `: ${c.message}` : '';
    this.event(
      healthy ? 'Normal' : 'Warning',
      healthy ? 'HostHealthy' : 'HostUnhealthy',
      `Host ${this.host!.metadata.name}: HostHealthy=${String(c.status)} (${c.reason})${detail}`,
    );
  }

  async setProvisioned(): Promise<Result> {
    const h = this.host!;
    const id = providerID(this.ns, h.metadata.name);
    await this.w.update((m) => {
      m.spec.providerID = id;
      m.status = {
        ...m.status,
        initialization: { provisioned: true },
        ready: true,
        addresses: [
          { type: 'InternalIP', address: h.spec.address },
          { type: 'Hostname', address: m.metadata.name },
        ],
        phase: 'Provisioned',
      };
      this.summarize();
    });
    this.event('Normal', 'Provisioned', `Provisioned on host ${h.metadata.name} as ${id}`);
  }

  async reset(): Promise<Result> {
    const hw = this.hostWriter();
    await hw.update((h) => (h.status = { ...h.status, phase: 'Deprovisioning' }));
    this.host = hw.obj;
    await this.w.update(() => {
      this.cond({
        type: 'Deleting',
        status: true,
        reason: Deleting.Resetting,
        message: `Resetting host ${this.host!.metadata.name}`,
      });
      this.setPhase('Deleting');
    });
    let outcome: Awaited<ReturnType<typeof runReset>> | undefined;
    let failure: string | undefined;
    try {
      const pool = this.pool();
      const target = await hostTarget(this.d.kc, pool, this.host);
      outcome = await this.d.ssh.withHost({ ...target, connectTimeoutMs: 15_000 }, (conn) =>
        runReset(conn, this.d.agent?.removeScript() ?? ''),
      );
      this.d.agent?.forget(this.host.metadata.name);
    } catch (err) {
      if (this.signal.aborted) return;
      if (!(err instanceof SshError || err instanceof AccessError)) throw err;
      failure = `${err.message}`;
    }
    if (outcome?.clean) {
      await hw.update((h) => {
        h.status = { ...h.status, lastResetTime: new Date().toISOString() };
        setCondition(h, { type: 'Clean', status: true, reason: 'Reset', message: '' });
      });
      this.host = hw.obj;
      await this.w.update(() =>
        this.cond({
          type: 'Deleting',
          status: true,
          reason: Deleting.Reset,
          message: `Host ${this.host!.metadata.name} was reset`,
        }),
      );
      this.event('Normal', 'HostReset', `Host ${this.host.metadata.name} was reset`, true);
      return this.release();
    }
    const why = failure
      ? `could not be reset (${failure})`
      : `still has ${outcome!.leftovers.join(', ')} after the reset${outcome!.notes.length ? ` (${outcome!.notes.join('; ')})` : ''}`;
    const message = `Host ${this.host.metadata.name} ${why}. It is quarantined, never reused unclean. To return it: make it reachable and clean (or reinstall it), then remove spec.quarantine from the BareMetalHost; the provider resets it and returns it to the pool.`;
    await hw.update((h) => {
      h.spec.quarantine = { reason: failure ? 'ResetFailed' : 'HostDirty', message, since: new Date().toISOString() };
      delete h.spec.consumerRef;
      h.status = { ...h.status, phase: 'Quarantined' };
      setCondition(h, { type: 'Clean', status: false, reason: failure ? 'ResetFailed' : 'HostDirty', message });
    });
    this.event('Warning', 'HostQuarantined', message, true);
    await this.w.update(() => this.cond({ type: 'Deleting', status: true, reason: Deleting.Quarantined, message }));
    return this.removeFinalizer();
  }

  async release(): Promise<Result> {
    const h = this.host!;
    const released = await releaseHost(this.d.kc, h, { uid: this.m.metadata.uid ?? '' });
    const hw = this.hostWriter(released);
    await hw.update((o) => {
      o.status = { ...o.status, phase: 'Available' };
      for (const t of ['PreflightPassed', 'Reachable']) {
        o.status.conditions = (o.status.conditions ?? []).filter((c) => c.type !== t);
      }
    });
    this.event('Normal', 'HostReleased', `Host ${h.metadata.name} returned to pool ${h.spec.poolRef.name}`, true);
    return this.removeFinalizer();
  }

  async removeFinalizer(): Promise<Result> {
    try {
      await this.w.update((m) => {
        m.metadata.finalizers = (m.metadata.finalizers ?? []).filter((f) => f !== MachineFinalizer);
      });
    } catch (err) {
      // A stale cache entry of a machine that is already gone.
      if (!(err instanceof ApiError && err.code === 404)) throw err;
    }
  }
}

/** The reconcile function of the BareMetalMachine controller. */
export function reconcileMachine(d: MachineDeps) {
  return async (req: Request, ctx: ReconcileContext): Promise<Result> => {
    const bmm = d.fresh.machines.pick(req.key, d.machines.get(req.namespace, req.name));
    if (!bmm) return;
    const run = new MachineRun(d, bmm, ctx);
    try {
      return await run.run();
    } finally {
      if (run.w.obj.metadata.resourceVersion !== bmm.metadata.resourceVersion)
        d.fresh.machines.remember(req.key, run.w.obj);
    }
  };
}

/** Keys of machines to wake for a host event: its holder, or (when it became Available) the waiting ones. */
export function hostToMachines(d: Pick<MachineDeps, 'machines'>) {
  return (h: BareMetalHost): string[] => {
    const c = h.spec?.consumerRef;
    if (c) return [`${c.namespace}/${c.name}`];
    if (h.spec?.quarantine || (h.status?.phase ?? 'Available') !== 'Available') return [];
    return d.machines
      .list(h.metadata.namespace)
      .filter((m) => {
        const r = getCondition(m, C.HostClaimed)?.reason;
        return r === 'NoHostAvailable' || r === 'HostRefused';
      })
      .map((m) => `${m.metadata.namespace}/${m.metadata.name}`);
  };
}

// Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection package:
// - acquire: create the Lease, or take it over when its holder stopped renewing for leaseDuration
//   (judged by our own clock from when we last saw the record change, so clock skew between
//   replicas does not matter);
// - renew every retryPeriod while leading; if no renew succeeds within renewDeadline, we lost the
//   lease: onStoppedLeading runs (the manager stops its controllers and exits);
// - release on shutdown: holderIdentity cleared so a standby takes over at once.
// Every write is an update with the Lease's resourceVersion, so two contenders cannot both win.
import type { KubeConfig } from '@kubernetes/client-node';
import { ApiError, raw } from '../kube/raw.ts';
import { createLogger, type Logger } from '../../common/log.ts';
import { sleep } from './backoff.ts';
import { Leases, objectPath, collectionPath } from '../kube/kinds.ts';
import { leaderGauge } from './metrics.ts';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  /** Unique per process, e.g. `${hostname}_${uuid}`. */
  identity: string;
  /** Default 15 s. */
  leaseDurationMs?: number;
  /** Default 10 s. */
  renewDeadlineMs?: number;
  /** Default 2 s. */
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  /** Called once when leadership is lost or released. */
  onStoppedLeading?: () => void;
  /** Another identity became (or is) the leader. */
  onNewLeader?: (identity: string) => void;
  log?: Logger;
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

const microTime = (d = new Date()) => d.toISOString().replace('Z', '000Z');

export type ElectionState = 'standby' | 'leading' | 'stopped';

export class LeaderElector {
  readonly #kc: KubeConfig;
  readonly #o: Required<Omit<LeaderElectionOptions, 'onStoppedLeading' | 'onNewLeader' | 'log'>> &
    Pick<LeaderElectionOptions, 'onStoppedLeading' | 'onNewLeader'>;
  readonly #log: Logger;
  #state: ElectionState = 'standby';
  #observed: { key: string; at: number } | undefined;
  #lastLeader = '';
  #abort = new AbortController();
  #running: Promise<void> | undefined;
  #lease: Lease | undefined;

  constructor(kc: KubeConfig, o: LeaderElectionOptions) {
    this.#kc = kc;
    this.#o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...o };
    if (this.#o.renewDeadlineMs >= this.#o.leaseDurationMs)
      throw new Error('leader election: renewDeadline must be less than leaseDuration');
    this.#log = (o.log ?? createLogger()).with({ lease: `${o.namespace}/${o.name}`, identity: o.identity });
  }

  get state(): ElectionState {
    return this.#state;
  }
  isLeader(): boolean {
    return this.#state === 'leading';
  }

  start(): void {
    this.#running ??= this.#run(this.#abort.signal);
  }

  /** Stops; releases the lease if held (so a standby takes over without waiting). */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#running;
    if (this.#state === 'leading') {
      await this.#release().catch((err: unknown) => this.#log.warn('lease release failed', { err }));
      this.#stopped();
    }
    this.#state = 'stopped';
  }

  async #run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted && this.#state === 'standby') {
      if (await this.#tryAcquireOrRenew().catch((err: unknown) => this.#failed(err))) {
        this.#state = 'leading';
        leaderGauge.set({ name: this.#o.name }, 1);
        this.#log.info('became leader');
        this.#o.onStartedLeading();
        break;
      }
      await sleep(this.#o.retryPeriodMs * (1 + Math.random() * 0.2), signal);
    }
    let lastRenew = Date.now();
    while (!signal.aborted && this.#state === 'leading') {
      await sleep(this.#o.retryPeriodMs, signal);
      if (signal.aborted) return;
      if (await this.#tryAcquireOrRenew().catch((err: unknown) => this.#failed(err))) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew > this.#o.renewDeadlineMs) {
        this.#log.error('leadership lost: could not renew the lease in time');
        this.#stopped();
        this.#state = 'stopped';
      }
    }
  }

  #failed(err: unknown): false {
    this.#log.warn('lease request failed', { err });
    return false;
  }

  #stopped(): void {
    leaderGauge.set({ name: this.#o.name }, 0);
    this.#o.onStoppedLeading?.();
  }

  async #get(): Promise<Lease | undefined> {
    try {
      return await raw<Lease>(this.#kc, 'GET', objectPath(Leases, this.#o.namespace, this.#o.name));
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return undefined;
      throw err;
    }
  }

  #newSpec(now: Date) {
    return {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
  }

  async #create(spec: Lease['spec']): Promise<boolean> {
    this.#lease = await raw<Lease>(this.#kc, 'POST', collectionPath(Leases, this.#o.namespace), {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.#o.name, namespace: this.#o.namespace },
      spec,
    }).catch((err: unknown) => {
      if (err instanceof ApiError && err.code === 409) return undefined; // someone else created it first
      throw err;
    });
    return this.#lease !== undefined;
  }

  #noteHolder(holder: string): void {
    if (!holder || holder === this.#lastLeader) return;
    this.#lastLeader = holder;
    if (holder !== this.#o.identity) this.#o.onNewLeader?.(holder);
  }

  /** One attempt; true when we hold the lease afterwards. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const spec = this.#newSpec(new Date());
    const lease = await this.#get();
    if (!lease) return this.#create(spec);
    const holder = lease.spec.holderIdentity ?? '';
    this.#observe(lease);
    this.#noteHolder(holder);
    const mine = holder === this.#o.identity;
    const expired = !holder || Date.now() > this.#observed!.at + (lease.spec.leaseDurationSeconds ?? 15) * 1000;
    if (!mine && !expired) return false;
    const next = {
      ...lease,
      spec: mine
        ? { ...lease.spec, renewTime: spec.renewTime, leaseDurationSeconds: spec.leaseDurationSeconds }
        : { ...spec, leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 },
    };
    try {
      this.#lease = await raw<Lease>(this.#kc, 'PUT', objectPath(Leases, this.#o.namespace, this.#o.name), next);
    } catch (err) {
      if (err instanceof ApiError && err.code === 409) return false;
      throw err;
    }
    this.#observe(this.#lease);
    return true;
  }

  #observe(lease: Lease): void {
    const key = `${lease.spec.holderIdentity ?? ''}|${lease.spec.renewTime ?? ''}`;
    if (this.#observed?.key !== key) this.#observed = { key, at: Date.now() };
  }

  async #release(): Promise<void> {
    const lease = await this.#get();
    if (!lease || lease.spec.holderIdentity !== this.#o.identity) return;
    await raw(this.#kc, 'PUT', objectPath(Leases, this.#o.namespace, this.#o.name), {
      ...lease,
      spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, acquireTime: null, renewTime: microTime() },
    });
    this.#log.info('lease released');
  }
}

export function createLeaderElector(kc: KubeConfig, o: LeaderElectionOptions): LeaderElector {
  return new LeaderElector(kc, o);
}

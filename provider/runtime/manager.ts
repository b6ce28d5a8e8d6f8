// The manager: starts the shared informers, waits for their caches, (optionally) wins leader
// election, then starts the controllers; serves /healthz, /readyz and /metrics; stops gracefully
// on SIGTERM/SIGINT or when leadership is lost (in-flight reconciles finish, the Lease is
// released, onExit runs).
// Informers run on every replica (a standby has warm caches and takes over fast); only workers
// wait for leadership, as controller-runtime does.
import { KubeConfig } from '@kubernetes/client-node';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { createLogger, type Logger } from '../../common/log.ts';
import type { Controller } from './controller.ts';
import type { ManagerFlags } from './flags.ts';
import { parseBindAddress } from './flags.ts';
import { startProbeServer, type Check, type ProbeServer } from './health.ts';
import type { Informer } from './informer.ts';
import { createLeaderElector, type LeaderElector } from './leaderelection.ts';
import { collectProcessMetrics } from './metrics.ts';

export interface ManagerOptions extends Partial<ManagerFlags> {
  /** A ready KubeConfig (tests); otherwise loaded from --kubeconfig, $KUBECONFIG or in-cluster. */
  kc?: KubeConfig;
  /** Lease holder identity. Default `${hostname}_${uuid}`. */
  identity?: string;
  /** Signals that stop the manager. Default SIGTERM and SIGINT; [] in tests. */
  signals?: NodeJS.Signals[];
  /** Time allowed for in-flight reconciles at shutdown. Default 30 s. */
  gracefulShutdownMs?: number;
  /** Runs after a stop: leadership lost -> 'lost-leadership' (the process should exit non-zero). */
  onExit?: (reason: StopReason) => void;
  log?: Logger;
}

export type StopReason = 'signal' | 'lost-leadership' | 'stopped';

export interface Manager {
  kc: KubeConfig;
  elector?: LeaderElector;
  /** Bound ports (0 = disabled). */
  metricsPort: number;
  healthPort: number;
  /** True once caches synced and (with leader election) we lead or stand by. */
  ready(): boolean;
  /** Resolves with the reason once the manager has stopped. */
  done: Promise<StopReason>;
  stop(reason?: StopReason): Promise<void>;
}

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

function uniqueInformers(controllers: Controller[]): Informer[] {
  return [...new Set(controllers.flatMap((c) => c.informers))];
}

async function startServers(o: ManagerOptions, healthz: Check[], readyz: Check[]): Promise<ProbeServer[]> {
  const metrics = parseBindAddress(o.metricsBindAddress ?? '0');
  const health = parseBindAddress(o.healthProbeBindAddress ?? '0');
  const servers: ProbeServer[] = [];
  if (metrics && health && metrics.port === health.port && metrics.port !== 0 && metrics.host === health.host) {
    servers.push(await startProbeServer({ ...health, healthz, readyz, metrics: true }));
    return [servers[0]!, servers[0]!];
  }
  servers.push(metrics ? await startProbeServer({ ...metrics, metrics: true }) : undefined!);
  servers.push(health ? await startProbeServer({ ...health, healthz, readyz }) : undefined!);
  return servers;
}

function electLeader(
  kc: KubeConfig,
  o: ManagerOptions,
  hooks: { log: Logger; onStartedLeading: () => void; onStoppedLeading: () => void },
): LeaderElector {
  const namespace = o.leaderElectionNamespace ?? o.namespace ?? process.env.POD_NAMESPACE ?? 'default';
  return createLeaderElector(kc, {
    namespace,
    name: o.leaderElectionId ?? 'capbm-controller-leader-election',
    identity: o.identity ?? `${hostname()}_${randomUUID()}`,
    ...(o.leaseDurationMs ? { leaseDurationMs: o.leaseDurationMs } : {}),
    ...(o.renewDeadlineMs ? { renewDeadlineMs: o.renewDeadlineMs } : {}),
    ...(o.retryPeriodMs ? { retryPeriodMs: o.retryPeriodMs } : {}),
    ...hooks,
  });
}

/**
 * Starts everything; `controllers` are built by the caller on informers made with the same kc
 * (namespace and watch-filter selector applied by the caller, see flags.ts watchFilterSelector).
 */
export async function startManager(o: ManagerOptions, controllers: Controller[]): Promise<Manager> {
  const log = (o.log ?? createLogger()).with({ component: 'manager' });
  const kc = o.kc ?? loadKubeConfig(o.kubeconfig);
  collectProcessMetrics();
  const informers = uniqueInformers(controllers);
  let stopping: Promise<void> | undefined;
  let resolveDone!: (r: StopReason) => void;
  const done = new Promise<StopReason>((r) => (resolveDone = r));
  let elector: LeaderElector | undefined;

  const synced = () => informers.every((i) => i.hasSynced());
  const ready = () => synced() && !stopping && (!elector || elector.state !== 'stopped');
  const [metricsServer, healthServer] = await startServers(
    o,
    [{ name: 'ping', check: () => '' }],
    [
      { name: 'informers', check: () => (synced() ? '' : 'caches not synced yet') },
      { name: 'leader-election', check: () => (elector?.state === 'stopped' ? 'not electing' : '') },
      { name: 'shutdown', check: () => (stopping ? 'shutting down' : '') },
    ],
  );

  const stop = (reason: StopReason = 'stopped'): Promise<void> =>
    (stopping ??= (async () => {
      log.info('stopping', { reason });
      const grace = new Promise<void>((r) => setTimeout(r, o.gracefulShutdownMs ?? 30_000).unref());
      await Promise.race([Promise.all(controllers.map((c) => c.stop())), grace]);
      await elector?.stop();
      await Promise.all(informers.map((i) => i.stop()));
      await Promise.all([...new Set([metricsServer, healthServer])].filter((s) => s).map((s) => s!.close()));
      for (const s of signals) process.off(s, onSignal);
      log.info('stopped', { reason });
      resolveDone(reason);
      o.onExit?.(reason);
    })());
  const onSignal = () => void stop('signal');
  const signals = o.signals ?? ['SIGTERM', 'SIGINT'];
  for (const s of signals) process.once(s, onSignal);

  for (const i of informers) i.start();
  const startControllers = () => {
    if (stopping) return;
    log.info('starting controllers', { controllers: controllers.map((c) => c.name) });
    controllers.forEach((c) => c.start());
  };
  const startWhenSynced = () => void Promise.all(informers.map((i) => i.waitForSync())).then(startControllers);
  if (o.leaderElect) {
    elector = electLeader(kc, o, {
      log,
      onStartedLeading: startWhenSynced,
      onStoppedLeading: () => void stop('lost-leadership'),
    });
    elector.start();
  } else {
    startWhenSynced();
  }

  return {
    kc,
    ...(elector ? { elector } : {}),
    metricsPort: metricsServer?.port ?? 0,
    healthPort: healthServer?.port ?? 0,
    ready,
    done,
    stop,
  };
}

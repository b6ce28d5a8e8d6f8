// The one Prometheus registry of the manager process. Metric names follow controller-runtime and
// client-go's workqueue so existing CAPI dashboards and alerts read them unchanged.
// Other modules (ssh, hosts, health) register their own metrics here:
//   import { registry, counter } from '../runtime/metrics.ts';
//   const sshErrors = counter('capbm_ssh_errors_total', 'SSH operations that failed', ['kind']);
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkQueueMetrics } from './workqueue.ts';

export const registry = new Registry();
let defaultsCollected = false;

/** Process metrics (CPU, memory, event loop lag); called once by the manager. */
export function collectProcessMetrics(): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  collectDefaultMetrics({ register: registry });
}

/** A counter in the shared registry; asking twice for one name returns the same metric. */
export function counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge<L>;
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  buckets?: number[],
): Histogram<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram<L>;
  return new Histogram({ name, help, labelNames, registers: [registry], ...(buckets ? { buckets } : {}) });
}

// Buckets from 5 ms to ~10 min: a reconcile may run an SSH step.
const durationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export const reconcileTotal = counter('controller_runtime_reconcile_total', 'Reconciles per controller and result', [
  'controller',
  'result',
]);
export const reconcileErrors = counter('controller_runtime_reconcile_errors_total', 'Reconcile errors per controller', [
  'controller',
]);
export const reconcileTime = histogram(
  'controller_runtime_reconcile_time_seconds',
  'Reconcile duration per controller',
  ['controller'],
  durationBuckets,
);
export const activeWorkers = gauge('controller_runtime_active_workers', 'Workers reconciling now', ['controller']);
export const maxWorkers = gauge('controller_runtime_max_concurrent_reconciles', 'Workers per controller', [
  'controller',
]);

const wqDepth = gauge('workqueue_depth', 'Keys waiting in the work queue', ['name']);
const wqDepthAt = gauge(
  'capbm_workqueue_depth_by_priority',
  "Keys waiting in the work queue, by priority (-100: an informer's initial list)",
  ['name', 'priority'],
);
const wqAdds = counter('workqueue_adds_total', 'Keys added to the work queue', ['name']);
const wqRetries = counter('workqueue_retries_total', 'Rate-limited re-adds', ['name']);
const wqLatency = histogram(
  'workqueue_queue_duration_seconds',
  'Seconds a key waits before a worker takes it',
  ['name'],
  durationBuckets,
);
const wqWork = histogram('workqueue_work_duration_seconds', 'Seconds a worker holds a key', ['name'], durationBuckets);

/** The hooks a WorkQueue named `name` reports through. */
export function workQueueMetrics(name: string): WorkQueueMetrics {
  return {
    depth: (n) => wqDepth.set({ name }, n),
    depthAt: (priority, n) => wqDepthAt.set({ name, priority: String(priority) }, n),
    added: () => wqAdds.inc({ name }),
    retried: () => wqRetries.inc({ name }),
    queueLatency: (s) => wqLatency.observe({ name }, s),
    workDuration: (s) => wqWork.observe({ name }, s),
  };
}

export const leaderGauge = gauge('leader_election_master_status', '1 while this process holds the lease', ['name']);

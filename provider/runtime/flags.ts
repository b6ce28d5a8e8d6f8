// The manager's command line, parsed by a pure function. Flag names follow CAPI providers
// (cluster-api main.go: --watch-filter, --metrics-bind-address, --health-probe-bind-address,
// --leader-elect, --leader-election-id, --<kind>-concurrency): users and Helm charts know them.

export interface ManagerFlags {
  kubeconfig?: string;
  /** Watch only this namespace; undefined = all namespaces. */
  namespace?: string;
  /** Value of the cluster.x-k8s.io/watch-filter label this replica handles (sharding). */
  watchFilter?: string;
  /** Workers per controller name, from --concurrency name=n,... or --workers-<name>=n. */
  concurrency: Record<string, number>;
  sshMaxConnections: number;
  sshMaxPerHost: number;
  /** How long a connection is kept open after its work for the next one to the same host (0: none). */
  sshKeepIdleMs: number;
  /** A running bootstrap's step is written to its machine at most this often. */
  bootstrapProgressIntervalMs: number;
  /** The longest wait between two checks of one running bootstrap (sooner at its start). */
  bootstrapCheckIntervalMs: number;
  /** Checks of running bootstraps in flight at once, over all of them. */
  bootstrapCheckConcurrency: number;
  /** host:port, or '0' to disable. */
  metricsBindAddress: string;
  healthProbeBindAddress: string;
  leaderElect: boolean;
  leaderElectionNamespace?: string;
  leaderElectionId: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** The URL node agents report to; the agent is installed only when it is set. */
  agentReportUrl?: string;
  agentBindAddress: string;
  agentCaSecret: string;
  agentIntervalMs: number;
  agentUnknownAfterMs: number;
  agentDisabledChecks: string[];
  /** Connections the agents' endpoint holds at once; more are refused. */
  agentMaxConnections: number;
  /** Agent connections kept open between reports; the others close after each answer. */
  agentKeptConnections: number;
  /** Delete labelled machine templates no rollout uses (controllers/template-gc.ts). */
  templateGc: boolean;
  /** How long a template must be unused (and exist) before it is deleted. */
  templateGcGraceMs: number;
  /** Folder of host preparation bundles (hack/bundle), served to hosts over SSH. */
  bundleDir?: string;
}

export const WatchFilterLabel = 'cluster.x-k8s.io/watch-filter';

export const defaultFlags: ManagerFlags = {
  concurrency: {},
  sshMaxConnections: 256,
  sshMaxPerHost: 4,
  sshKeepIdleMs: 30_000,
  bootstrapProgressIntervalMs: 30_000,
  bootstrapCheckIntervalMs: 10_000,
  bootstrapCheckConcurrency: 32,
  // Local only by default: /metrics is not authenticated (scrape through a sidecar, or bind wider on purpose).
  metricsBindAddress: '127.0.0.1:8080',
  healthProbeBindAddress: ':9440',
  leaderElect: false,
  leaderElectionId: 'capbm-controller-leader-election',
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
  agentBindAddress: ':9443',
  agentCaSecret: 'capbm-agent-ca',
  agentIntervalMs: 30_000,
  agentUnknownAfterMs: 180_000,
  agentDisabledChecks: [],
  agentMaxConnections: 5000,
  agentKeptConnections: 2500,
  templateGc: true,
  templateGcGraceMs: 5 * 60_000,
};

export class FlagError extends Error {
  constructor(message: string) {
    super(`${message} (see --help)`);
    this.name = 'FlagError';
  }
}

export const usage = `capbm manager flags:
  --kubeconfig PATH                     kubeconfig (default: in-cluster or $KUBECONFIG)
  --namespace NS                        watch only this namespace (default: all)
  --watch-filter VALUE                  handle only objects labelled ${WatchFilterLabel}=VALUE
  --concurrency name=N[,name=N]         workers per controller, e.g. machine=50,cluster=10
  --workers-<controller> N              the same, one controller at a time
  --ssh-max-connections N               SSH connections in total (default 256)
  --ssh-max-per-host N                  SSH sessions per host (default 4)
  --ssh-keep-idle DUR                   keep a connection open this long after its work, for the next to the
                                        same host as the same user, key and host-key pin (like OpenSSH's
                                        ControlPersist; within --ssh-max-connections; default 30s, 0 closes each)
  --bootstrap-progress-interval DUR     write a running bootstrap's step at most this often (default 30s)
  --bootstrap-check-interval DUR        check a running bootstrap at least this often (one short SSH command
                                        and connection; 2s after its start, then less often; default 10s)
  --bootstrap-check-concurrency N       bootstrap starts and checks in flight at once over all bootstraps
                                        (default 32): with more than that pace allows, each is checked less often
  --metrics-bind-address ADDR           Prometheus /metrics, unauthenticated (default 127.0.0.1:8080; :8080 for
                                        every interface, behind a NetworkPolicy; 0 disables)
  --health-probe-bind-address ADDR      /healthz and /readyz (default :9440, 0 disables)
  --leader-elect[=true|false]           elect a leader among replicas (default false)
  --leader-election-namespace NS        namespace of the Lease (default: --namespace or the pod's)
  --leader-election-id NAME             name of the Lease (default ${defaultFlags.leaderElectionId},
                                        -<filter> appended with --watch-filter: one leader per shard)
  --leader-elect-lease-duration DUR     e.g. 15s; --leader-elect-renew-deadline 10s; --leader-elect-retry-period 2s
  --agent-report-url URL                where node agents report (https://HOST:PORT as hosts reach the
                                        manager); the agent is installed on hosts only when set
  --agent-bind-address ADDR             the agents' mTLS endpoint (default :9443)
  --agent-ca-secret NAME                Secret with the agent CA, in the manager's namespace (default capbm-agent-ca)
  --agent-interval DUR                  how often agents report (default 30s)
  --agent-unknown-after DUR             HostHealthy turns Unknown after this much silence (default 3m)
  --agent-disabled-checks a,b           built-in agent checks to turn off (e.g. kubelet,container-runtime)
  --agent-max-connections N             connections the agents' endpoint holds at once (default 5000)
  --agent-kept-connections N            agent connections kept open between reports, ~80 KiB each;
                                        others reconnect (TLS resumption) per report (default 2500)
  --bundle-dir DIR                      host preparation bundles (hack/bundle) served to hosts over SSH
                                        for machines with spec.preparation (docs/hosts.md)
  --template-gc[=true|false]            delete machine templates labelled infrastructure.cluster.x-k8s.io/capbm-template-gc=true
                                        once nothing references them (default true; needs the kubeadm
                                        bootstrap and control plane CRDs)
  --template-gc-grace DUR               how long a template must be unused before it is deleted (default 5m)`;

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1) throw new FlagError(`${flag} needs a positive integer, got "${v}"`);
  return n;
}

/** Durations as Go writes them: 500ms, 15s, 1m, 1m30s; a bare number means seconds. */
export function parseDuration(flag: string, v: string): number {
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = v;
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new FlagError(`${flag} needs a duration like 15s, got "${v}"`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

function positiveDuration(flag: string, v: string): number {
  const ms = parseDuration(flag, v);
  if (!(ms > 0)) throw new FlagError(`${flag} needs a duration above zero, got "${v}"`);
  return ms;
}

function parseBool(flag: string, v: string | undefined): boolean {
  if (v === undefined || v === 'true') return true;
  if (v === 'false') return false;
  throw new FlagError(`${flag} is true or false, got "${v}"`);
}

function parseConcurrency(v: string, into: Record<string, number>): void {
  for (const part of v.split(',').filter(Boolean)) {
    const [name, n] = part.split('=');
    if (!name || n === undefined) throw new FlagError(`--concurrency wants name=N pairs, got "${part}"`);
    into[name] = positiveInt(`--concurrency ${name}`, n);
  }
}

type Setter = (f: ManagerFlags, v: string, flag: string) => void;
const valued: Record<string, Setter> = {
  '--kubeconfig': (f, v) => (f.kubeconfig = v),
  '--namespace': (f, v) => (f.namespace = v),
  '--watch-filter': (f, v) => (f.watchFilter = v),
  '--concurrency': (f, v) => parseConcurrency(v, f.concurrency),
  '--ssh-max-connections': (f, v, flag) => (f.sshMaxConnections = positiveInt(flag, v)),
  '--ssh-max-per-host': (f, v, flag) => (f.sshMaxPerHost = positiveInt(flag, v)),
  '--ssh-keep-idle': (f, v, flag) => (f.sshKeepIdleMs = parseDuration(flag, v)),
  '--bootstrap-progress-interval': (f, v, flag) => (f.bootstrapProgressIntervalMs = parseDuration(flag, v)),
  '--bootstrap-check-interval': (f, v, flag) => (f.bootstrapCheckIntervalMs = positiveDuration(flag, v)),
  '--bootstrap-check-concurrency': (f, v, flag) => (f.bootstrapCheckConcurrency = positiveInt(flag, v)),
  '--metrics-bind-address': (f, v) => (f.metricsBindAddress = v),
  '--health-probe-bind-address': (f, v) => (f.healthProbeBindAddress = v),
  '--leader-election-namespace': (f, v) => (f.leaderElectionNamespace = v),
  '--leader-election-id': (f, v) => (f.leaderElectionId = v),
  '--leader-elect-lease-duration': (f, v, flag) => (f.leaseDurationMs = parseDuration(flag, v)),
  '--leader-elect-renew-deadline': (f, v, flag) => (f.renewDeadlineMs = parseDuration(flag, v)),
  '--leader-elect-retry-period': (f, v, flag) => (f.retryPeriodMs = parseDuration(flag, v)),
  '--agent-report-url': (f, v) => (f.agentReportUrl = v),
  '--bundle-dir': (f, v) => (f.bundleDir = v),
  '--agent-bind-address': (f, v) => (f.agentBindAddress = v),
  '--agent-ca-secret': (f, v) => (f.agentCaSecret = v),
  '--agent-interval': (f, v, flag) => (f.agentIntervalMs = parseDuration(flag, v)),
  '--agent-unknown-after': (f, v, flag) => (f.agentUnknownAfterMs = parseDuration(flag, v)),
  '--agent-disabled-checks': (f, v) => (f.agentDisabledChecks = v.split(',').filter(Boolean)),
  '--agent-max-connections': (f, v) => (f.agentMaxConnections = positiveInt('--agent-max-connections', v)),
  '--agent-kept-connections': (f, v) => (f.agentKeptConnections = positiveInt('--agent-kept-connections', v)),
  '--template-gc-grace': (f, v, flag) => (f.templateGcGraceMs = parseDuration(flag, v)),
};

/** Flags that are true alone, or take =true / =false. */
const booleans: Record<string, (f: ManagerFlags, v: boolean) => void> = {
  '--leader-elect': (f, v) => (f.leaderElect = v),
  '--template-gc': (f, v) => (f.templateGc = v),
};

/** Parses argv (without node and script). Accepts --flag value and --flag=value. Throws FlagError. */
export function parseFlags(argv: readonly string[]): ManagerFlags {
  const f: ManagerFlags = { ...defaultFlags, concurrency: {}, agentDisabledChecks: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const bool = booleans[flag];
    if (bool) {
      bool(f, parseBool(flag, inline));
      continue;
    }
    const workers = /^--workers-([a-z0-9-]+)$/.exec(flag);
    const set = workers
      ? (g: ManagerFlags, v: string) => (g.concurrency[workers[1]!] = positiveInt(flag, v))
      : valued[flag];
    if (!set) throw new FlagError(`unknown flag ${flag}`);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new FlagError(`${flag} needs a value`);
    set(f, value, flag);
  }
  if (f.leaderElect && f.renewDeadlineMs >= f.leaseDurationMs) {
    throw new FlagError('--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration');
  }
  return f;
}

/** The label selector that restricts informers to this replica's shard, or undefined. */
export const watchFilterSelector = (f: Pick<ManagerFlags, 'watchFilter'>): string | undefined =>
  f.watchFilter ? `${WatchFilterLabel}=${f.watchFilter}` : undefined;

/**
 * The leader Lease's name: one per shard, so managers of different shards each lead their own
 * (an explicit --leader-election-id wins).
 */
export function leaderElectionIdOf(f: Pick<ManagerFlags, 'watchFilter' | 'leaderElectionId'>): string {
  if (!f.watchFilter || f.leaderElectionId !== defaultFlags.leaderElectionId) return f.leaderElectionId;
  const shard = f.watchFilter
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '');
  return `${f.leaderElectionId}-${shard}`.slice(0, 253);
}

/** "host:port" or ":port" -> listen arguments; undefined when disabled ("0" or ""). */
export function parseBindAddress(v: string): { host: string; port: number } | undefined {
  if (v === '0' || v === '') return undefined;
  const i = v.lastIndexOf(':');
  const port = Number(v.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new FlagError(`bad bind address "${v}"`);
  const host = v.slice(0, i).replace(/^\[|\]$/g, '');
  return { host: host || '0.0.0.0', port };
}

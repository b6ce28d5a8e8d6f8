// The manager's command line: what an operator types and what the manager then does.
import test from 'ava';
import {
  FlagError,
  defaultFlags,
  parseBindAddress,
  parseDuration,
  parseFlags,
  watchFilterSelector,
} from '../../../provider/runtime/flags.ts';

test('defaults: metrics on 127.0.0.1:8080 (unauthenticated, so local), probes :9440, no leader election', (t) => {
  t.deepEqual(parseFlags([]), defaultFlags);
});

test('every flag, in both --flag value and --flag=value forms', (t) => {
  const f = parseFlags([
    '--kubeconfig=/etc/kube/config',
    '--namespace',
    'infra',
    '--watch-filter=shard-a',
    '--concurrency',
    'machine=50,cluster=10',
    '--workers-hostpool=3',
    '--ssh-max-connections',
    '500',
    '--ssh-max-per-host=2',
    '--bootstrap-check-interval=15s',
    '--bootstrap-check-concurrency',
    '64',
    '--metrics-bind-address=127.0.0.1:8443',
    '--health-probe-bind-address',
    ':9441',
    '--leader-elect',
    '--leader-election-namespace=capbm-system',
    '--leader-election-id=capbm-leader',
    '--leader-elect-lease-duration=30s',
    '--leader-elect-renew-deadline=20s',
    '--leader-elect-retry-period=1500ms',
  ]);
  t.like(f, {
    kubeconfig: '/etc/kube/config',
    namespace: 'infra',
    watchFilter: 'shard-a',
    concurrency: { machine: 50, cluster: 10, hostpool: 3 },
    sshMaxConnections: 500,
    sshMaxPerHost: 2,
    bootstrapCheckIntervalMs: 15_000,
    bootstrapCheckConcurrency: 64,
    metricsBindAddress: '127.0.0.1:8443',
    healthProbeBindAddress: ':9441',
    leaderElect: true,
    leaderElectionNamespace: 'capbm-system',
    leaderElectionId: 'capbm-leader',
    leaseDurationMs: 30_000,
    renewDeadlineMs: 20_000,
    retryPeriodMs: 1500,
  });
  t.is(watchFilterSelector(f), 'cluster.x-k8s.io/watch-filter=shard-a');
  t.is(watchFilterSelector(parseFlags([])), undefined);
  t.false(parseFlags(['--leader-elect=false']).leaderElect);
});

test('mistakes are reported with the flag named', (t) => {
  t.throws(() => parseFlags(['--bogus']), { instanceOf: FlagError, message: /unknown flag --bogus/ });
  t.throws(() => parseFlags(['--namespace']), { message: /--namespace needs a value/ });
  t.throws(() => parseFlags(['--ssh-max-per-host=0']), { message: /positive integer/ });
  t.throws(() => parseFlags(['--concurrency=machine']), { message: /name=N/ });
  t.throws(() => parseFlags(['--bootstrap-check-interval=0s']), { message: /above zero/ });
  t.throws(() => parseFlags(['--bootstrap-check-concurrency=0']), { message: /positive integer/ });
  t.throws(() => parseFlags(['--leader-elect=yes']), { message: /true or false/ });
  t.throws(() => parseFlags(['--leader-elect', '--leader-elect-renew-deadline=20s']), { message: /shorter/ });
});

test('durations and bind addresses', (t) => {
  t.is(parseDuration('x', '1m30s'), 90_000);
  t.is(parseDuration('x', '15'), 15_000);
  t.throws(() => parseDuration('x', '15 sec'));
  t.deepEqual(parseBindAddress(':8080'), { host: '0.0.0.0', port: 8080 });
  t.deepEqual(parseBindAddress('[::1]:9440'), { host: '::1', port: 9440 });
  t.is(parseBindAddress('0'), undefined);
  t.throws(() => parseBindAddress('localhost'));
});

test('the template garbage collector is on by default, with a 5 minute grace period', (t) => {
  t.like(parseFlags([]), { templateGc: true, templateGcGraceMs: 300_000 });
  t.like(parseFlags(['--template-gc=false', '--template-gc-grace=30s']), {
    templateGc: false,
    templateGcGraceMs: 30_000,
  });
  t.like(parseFlags(['--template-gc']), { templateGc: true });
  t.throws(() => parseFlags(['--template-gc=off']), { message: /--template-gc is true or false/ });
});

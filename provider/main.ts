// The manager command: `node dist/provider/main.js [flags]` (flags.ts lists them, --help prints
// them). Builds the controllers on shared informers and runs them under the manager (leader
// election, probes, metrics, graceful stop on SIGTERM).
import { Bundles } from './preparation/bundles.ts';
import { buildProvider } from './controllers/index.ts';
import type { AgentOptions } from './health/service.ts';
import { createLogger } from '../common/log.ts';
import {
  FlagError,
  parseBindAddress,
  parseFlags,
  usage,
  watchFilterSelector,
  leaderElectionIdOf,
  type ManagerFlags,
} from './runtime/flags.ts';
import { loadKubeConfig, startManager } from './runtime/manager.ts';

/** The manager's own namespace: its Lease, the agent CA, the address locks. */
const ownNamespace = (flags: ManagerFlags) =>
  flags.leaderElectionNamespace ?? flags.namespace ?? process.env.POD_NAMESPACE ?? 'capbm-system';

function agentOptions(flags: ManagerFlags): AgentOptions | undefined {
  if (!flags.agentReportUrl) return undefined;
  const bind = parseBindAddress(flags.agentBindAddress);
  if (!bind) return undefined;
  const namespace = ownNamespace(flags);
  return {
    bindHost: bind.host,
    bindPort: bind.port,
    reportUrl: flags.agentReportUrl,
    caSecret: { namespace, name: flags.agentCaSecret },
    intervalSeconds: Math.max(1, Math.round(flags.agentIntervalMs / 1000)),
    unknownAfterMs: flags.agentUnknownAfterMs,
    disabledChecks: flags.agentDisabledChecks,
    maxConnections: flags.agentMaxConnections,
    keptConnections: flags.agentKeptConnections,
  };
}

const templateGcOf = (flags: ManagerFlags) =>
  flags.templateGc ? { templateGc: { graceMs: flags.templateGcGraceMs } } : {};

function flagsOrUsage(argv: readonly string[]): ManagerFlags | undefined {
  try {
    return parseFlags(argv);
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    process.stderr.write(`capbm: ${err.message}\n`);
    return undefined;
  }
}

export /** The host preparation bundles (--bundle-dir), if given. */
const bundlesOf = (flags: ManagerFlags) => (flags.bundleDir ? { bundles: new Bundles(flags.bundleDir) } : {});

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const log = createLogger();
  const flags = flagsOrUsage(argv);
  if (!flags) return 2;
  const kc = loadKubeConfig(flags.kubeconfig);
  const selector = watchFilterSelector(flags);
  const agent = agentOptions(flags);
  const provider = buildProvider({
    ...(agent ? { agent } : {}),
    kc,
    ...(flags.namespace ? { namespace: flags.namespace } : {}),
    ...(selector ? { labelSelector: selector } : {}),
    concurrency: flags.concurrency,
    sshMaxConnections: flags.sshMaxConnections,
    sshKeepIdleMs: flags.sshKeepIdleMs,
    sshMaxPerHost: flags.sshMaxPerHost,
    addressLocks: ownNamespace(flags),
    bootstrapProgressIntervalMs: flags.bootstrapProgressIntervalMs,
    bootstrapChecks: { maxMs: flags.bootstrapCheckIntervalMs, concurrency: flags.bootstrapCheckConcurrency },
    ...templateGcOf(flags),
    ...bundlesOf(flags),
    log,
  });
  await provider.agent?.start();
  const manager = await startManager(
    { ...flags, leaderElectionId: leaderElectionIdOf(flags), kc, log },
    provider.controllers,
  );
  log.info('manager started', {
    metricsPort: manager.metricsPort,
    healthPort: manager.healthPort,
    leaderElect: flags.leaderElect,
    ...(flags.namespace ? { namespace: flags.namespace } : {}),
    ...(selector ? { watchFilter: selector } : {}),
  });
  const reason = await manager.done;
  provider.ssh.close();
  await provider.agent?.stop();
  await provider.recorder.flush();
  return reason === 'lost-leadership' ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/provider/main.js')) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      createLogger().error('manager failed', { err });
      process.exit(1);
    },
  );
}

// The manager command: `node dist/provider/main.js [flags]` (flags.ts lists them, --help prints
// them). Builds the controllers on shared informers and runs them under the manager (leader
// election, probes, metrics, graceful stop on SIGTERM).
import { buildProvider } from './controllers/index.ts';
import { createLogger } from './log.ts';
import { FlagError, parseFlags, usage, watchFilterSelector } from './runtime/flags.ts';
import { loadKubeConfig, startManager } from './runtime/manager.ts';

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const log = createLogger();
  let flags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`capbm: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const kc = loadKubeConfig(flags.kubeconfig);
  const selector = watchFilterSelector(flags);
  const provider = buildProvider({
    kc,
    ...(flags.namespace ? { namespace: flags.namespace } : {}),
    ...(selector ? { labelSelector: selector } : {}),
    concurrency: flags.concurrency,
    sshMaxConnections: flags.sshMaxConnections,
    sshMaxPerHost: flags.sshMaxPerHost,
    log,
  });
  const manager = await startManager({ ...flags, kc, log }, provider.controllers);
  log.info('manager started', {
    metricsPort: manager.metricsPort,
    healthPort: manager.healthPort,
    leaderElect: flags.leaderElect,
    ...(flags.namespace ? { namespace: flags.namespace } : {}),
    ...(selector ? { watchFilter: selector } : {}),
  });
  const reason = await manager.done;
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

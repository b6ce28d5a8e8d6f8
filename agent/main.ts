// capbm-agent: `node capbm-agent.mjs [--config /etc/capbm/agent.json]`. Exits 0 on SIGTERM/SIGINT,
// 2 on a configuration it cannot use (the installer rewrites it; restarting will not help).
import { createLogger } from '../common/log.ts';
import { ConfigError, defaultPaths, loadConfig } from './config.ts';
import { runAgent } from './daemon.ts';

const args = process.argv.slice(2);
const i = args.indexOf('--config');
const file = i >= 0 ? args[i + 1] : (process.env.CAPBM_AGENT_CONFIG ?? defaultPaths.config);

const stop = new AbortController();
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());

try {
  const cfg = loadConfig(file);
  const log = createLogger({}, { component: 'capbm-agent', host: cfg.host });
  await runAgent(cfg, { log, signal: stop.signal });
} catch (err) {
  createLogger({}, { component: 'capbm-agent' }).error('agent cannot start', { error: err as Error });
  process.exitCode = err instanceof ConfigError ? 2 : 1;
}

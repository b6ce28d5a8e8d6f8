// How the agent lives on a host: where its files go, its systemd unit, and the shell that starts
// and stops it with or without systemd. The provider's installer (provider/health/install.ts)
// uploads these; the reset runs stopScript() through removeAgentScript().
import { shQuote } from './quote.ts';

export const hostPaths = {
  dir: '/opt/capbm',
  /** The Node.js runtime shipped with the agent (hosts need not have Node). */
  runtime: '/opt/capbm/node',
  bundle: '/opt/capbm/capbm-agent.mjs',
  supervisor: '/opt/capbm/capbm-agent-supervise',
  configDir: '/etc/capbm',
  config: '/etc/capbm/agent.json',
  pkiDir: '/etc/capbm/pki',
  cert: '/etc/capbm/pki/agent.crt',
  key: '/etc/capbm/pki/agent.key',
  ca: '/etc/capbm/pki/ca.crt',
  unit: '/etc/systemd/system/capbm-agent.service',
  /** Without systemd: the supervisor's process group id, and the log. */
  pidfile: '/run/capbm-agent.pid',
  log: '/var/log/capbm-agent.log',
} as const;

export const unitName = 'capbm-agent.service';

/** V8 flags that keep an idle agent small (measured in agent/README.md). */
export const runtimeFlags = ['--max-old-space-size=24', '--max-semi-space-size=1'];

const execLine = [hostPaths.runtime, ...runtimeFlags, hostPaths.bundle, '--config', hostPaths.config].join(' ');

/** The systemd unit (capbm-agent.service). */
export const unitText = `# Installed by the CAPBM provider; removed when the host is reset.
[Unit]
Description=CAPBM node agent: host health reports to the Cluster API provider
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=${execLine}
Restart=always
RestartSec=5
Nice=10
MemoryMax=128M
NoNewPrivileges=yes
ProtectSystem=full
ReadWritePaths=${hostPaths.pkiDir}
ProtectHome=read-only
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
`;

const systemdTest = `[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1`;
const q = shQuote;

/** Without systemd: restarts the agent when it exits; records its process group in the pidfile. */
export const supervisorText = `#!/bin/sh
# capbm-agent supervisor, for hosts without systemd as PID 1. Installed by the CAPBM provider.
echo $$ > ${hostPaths.pidfile}
trap 'kill -TERM "$child" 2>/dev/null; exit 0' TERM INT
while :; do
  if [ "$(wc -c 2>/dev/null < ${hostPaths.log} || echo 0)" -gt 1048576 ]; then : > ${hostPaths.log}; fi
  ${execLine} &
  child=$!
  wait "$child"
  sleep 5
done
`;

/** Pids of our processes: argv[0] is our runtime, or argv[1] is our supervisor. */
const agentPids = `capbm_agent_pids() {
  for p in /proc/[0-9]*; do
    set -f; set -- $(tr '\\0' ' ' 2>/dev/null < "$p/cmdline"); set +f
    case "\${1-} \${2-}" in ${q(hostPaths.runtime)}' '*|*' '${q(hostPaths.supervisor)}) echo "\${p#/proc/}" ;; esac
  done
}`;

/**
 * Stops the agent however it was started and waits until it is gone: systemd, the supervisor's
 * process group from the pidfile, then any process that is our runtime or our supervisor (a
 * host's own PID namespace holds only its own agent).
 */
export function stopScript(): string {
  return `# capbm-agent: stop
${agentPids}
if ${systemdTest}; then systemctl disable --now ${unitName} >/dev/null 2>&1 || true; fi
if [ -f ${q(hostPaths.pidfile)} ]; then
  pg=$(cat ${q(hostPaths.pidfile)} 2>/dev/null || true)
  case "$pg" in ''|*[!0-9]*) ;; *) kill -TERM -- "-$pg" 2>/dev/null || true ;; esac
  rm -f ${q(hostPaths.pidfile)}
fi
i=0
while [ $i -lt 50 ]; do
  pids=$(capbm_agent_pids)
  [ -z "$pids" ] && break
  kill -TERM $pids 2>/dev/null || true
  sleep 0.1; i=$((i + 1))
done
[ -n "$(capbm_agent_pids)" ] && kill -KILL $(capbm_agent_pids) 2>/dev/null
true`;
}

/**
 * (Re)starts the agent: through systemd when it is PID 1, else the supervisor in a session of
 * its own (setsid nohup), detached from the SSH session that started it. Prints how it runs.
 */
export function startScript(): string {
  return `# capbm-agent: start
${stopScript()}
if ${systemdTest}; then
  systemctl daemon-reload && systemctl enable ${unitName} >/dev/null 2>&1 && systemctl restart ${unitName}
  echo capbm-agent=systemd
else
  setsid nohup /bin/sh ${q(hostPaths.supervisor)} >> ${q(hostPaths.log)} 2>&1 < /dev/null &
  i=0; while [ ! -s ${q(hostPaths.pidfile)} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  echo "capbm-agent=pid:$(cat ${q(hostPaths.pidfile)} 2>/dev/null)"
fi`;
}

/** Stops the agent and removes everything of it; the runtime stays unless removeRuntime. */
export function removeScript(o: { removeRuntime?: boolean } = {}): string {
  const files = [hostPaths.bundle, hostPaths.supervisor, hostPaths.unit, hostPaths.log, hostPaths.pidfile]
    .map(q)
    .join(' ');
  return `${stopScript()}
rm -f ${files}
rm -rf ${q(hostPaths.configDir)}${o.removeRuntime ? ` ${q(hostPaths.dir)}` : ''}
if ${systemdTest}; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
true`;
}

// Installs the node agent on a host over SSH, and removes it. Idempotent: one probe reads what
// is on the host (sha256 of every file we manage, systemd or not, whether the agent runs); only
// files that differ are uploaded, and the agent is restarted only when something changed or it
// is not running. The Node.js runtime (about 120 MB, 40 MB gzipped) travels once per host and
// stays across resets, so a re-provisioned host costs only the bundle (15 KB) and the config.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gzip as gzipCb, constants as zlib } from 'node:zlib';
import { shQuote } from '../../common/quote.ts';
import type { SshSession } from '../ssh/index.ts';
import { loadAgentBundle } from './bundle.ts';
import type { Thresholds, UserCheck } from '../../common/agent-config.ts';
import { hostPaths, removeScript, startScript, supervisorText, unitText } from '../../common/agent-host.ts';

const gzip = promisify(gzipCb);

export interface AgentInstallConfig {
  hostName: string;
  machine?: { namespace: string; name: string };
  /** The health endpoint as the host reaches it, https://<address>:<port>. */
  reportUrl: string;
  /** Default 30. */
  intervalSeconds?: number;
  /** BareMetalMachine spec.healthChecks. */
  checks?: UserCheck[];
  disabledChecks?: string[];
  thresholds?: Partial<Thresholds>;
  /** The agent's client certificate and key (issueAgentCertificate). The key is a secret. */
  identity: { certPem: string; keyPem: string };
  /** The agent CA certificate (the agent trusts the endpoint only through it). */
  caPem: string;
  /**
   * Node.js runtimes by machine architecture (`uname -m`). Default: this process's own Node
   * (process.execPath) for the architecture it runs on.
   */
  runtimes?: Record<string, string>;
  /** The built agent bundle (provider/health/bundle.ts). Default: dist/agent/capbm-agent.mjs. */
  bundlePath?: string;
}

export interface InstallOutcome {
  /** How the agent runs on the host. */
  mode: 'systemd' | 'supervisor';
  /** Host paths written by this call. */
  uploaded: string[];
  /** Bytes sent over SSH for the uploads. */
  bytes: number;
  restarted: boolean;
}

export class AgentRuntimeUnavailable extends Error {
  constructor(host: string, arch: string) {
    super(
      `no Node.js runtime for the ${arch} architecture of host ${host}; give installAgent a runtimes entry for ${arch}`,
    );
    this.name = 'AgentRuntimeUnavailable';
  }
}

const unameArch: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ppc64: 'ppc64le', s390x: 's390x' };

interface Runtime {
  sha256: string;
  gz: Buffer;
  bytes: number;
}

const runtimeCache = new Map<string, Promise<Runtime>>();

/** The runtime's sha256 and gzip, computed once per path per process. */
function loadRuntime(path: string): Promise<Runtime> {
  let p = runtimeCache.get(path);
  if (!p) {
    p = readFile(path).then(async (b) => ({
      sha256: createHash('sha256').update(b).digest('hex'),
      gz: await gzip(b, { level: zlib.Z_BEST_SPEED }),
      bytes: b.length,
    }));
    runtimeCache.set(path, p);
  }
  return p;
}

const sha256 = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

/** Every managed file with its wanted sha256, after the runtime. */
function files(
  cfg: AgentInstallConfig,
  bundle: Buffer,
): Array<{ path: string; content: string | Buffer; mode: number }> {
  const config = {
    host: cfg.hostName,
    ...(cfg.machine ? { machine: cfg.machine } : {}),
    reportUrl: cfg.reportUrl,
    intervalSeconds: cfg.intervalSeconds ?? 30,
    checks: cfg.checks ?? [],
    disabledChecks: cfg.disabledChecks ?? [],
    thresholds: cfg.thresholds ?? {},
    pki: { cert: hostPaths.cert, key: hostPaths.key, ca: hostPaths.ca },
  };
  return [
    { path: hostPaths.bundle, content: bundle, mode: 0o644 },
    { path: hostPaths.supervisor, content: supervisorText, mode: 0o755 },
    { path: hostPaths.unit, content: unitText, mode: 0o644 },
    { path: hostPaths.config, content: JSON.stringify(config, null, 2) + '\n', mode: 0o600 },
    { path: hostPaths.ca, content: cfg.caPem, mode: 0o600 },
    { path: hostPaths.key, content: cfg.identity.keyPem, mode: 0o600 },
    { path: hostPaths.cert, content: cfg.identity.certPem, mode: 0o600 },
  ];
}

interface Probe {
  arch: string;
  systemd: boolean;
  running: boolean;
  sha: Map<string, string>;
}

function probeScript(paths: string[]): string {
  return `uname -m | sed 's/^/arch=/'
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  echo systemd=yes
  systemctl is-active --quiet capbm-agent.service && echo running=yes
else
  echo systemd=no
  pg=$(cat ${shQuote(hostPaths.pidfile)} 2>/dev/null || true)
  [ -n "$pg" ] && kill -0 "$pg" 2>/dev/null && echo running=yes
fi
for f in ${paths.map(shQuote).join(' ')}; do
  [ -f "$f" ] && echo "sha=$(sha256sum < "$f" | cut -c1-64) $f"
done
true`;
}

function parseProbe(stdout: string): Probe {
  const p: Probe = { arch: '', systemd: false, running: false, sha: new Map() };
  for (const l of stdout.split('\n')) {
    if (l.startsWith('arch=')) p.arch = l.slice(5).trim();
    else if (l === 'systemd=yes') p.systemd = true;
    else if (l === 'running=yes') p.running = true;
    else if (l.startsWith('sha=')) p.sha.set(l.slice(69), l.slice(4, 68));
  }
  return p;
}

/** Decompresses the runtime on the host into place, checking its sha256 before it is used. */
async function uploadRuntime(conn: SshSession, rt: Runtime): Promise<void> {
  const p = shQuote(hostPaths.runtime);
  const script = `set -e
umask 077
mkdir -p ${shQuote(hostPaths.dir)}
t=$(mktemp ${shQuote(`${hostPaths.dir}/.capbm-upload.XXXXXX`)})
trap 'rm -f "$t"' EXIT
gzip -dc > "$t"
echo "${rt.sha256}  $t" | sha256sum -c --quiet
chmod 0755 "$t"
mv -f -- "$t" ${p}
trap - EXIT`;
  await conn.exec(script, { stdin: rt.gz, what: 'the upload of the agent runtime', timeoutMs: 10 * 60_000 });
}

/** Installs (or updates) the agent and makes sure it runs. Safe to repeat. */
export async function installAgent(conn: SshSession, cfg: AgentInstallConfig): Promise<InstallOutcome> {
  const bundle = (await loadAgentBundle(cfg.bundlePath)).code;
  const wanted = files(cfg, bundle);
  const probe = parseProbe(
    (await conn.exec(probeScript([hostPaths.runtime, ...wanted.map((f) => f.path)]), { what: 'the agent probe' }))
      .stdout,
  );
  const runtimes = cfg.runtimes ?? { [unameArch[process.arch] ?? process.arch]: process.execPath };
  const runtimePath = runtimes[probe.arch];
  if (!runtimePath) throw new AgentRuntimeUnavailable(conn.target.host, probe.arch);
  const out: InstallOutcome = {
    mode: probe.systemd ? 'systemd' : 'supervisor',
    uploaded: [],
    bytes: 0,
    restarted: false,
  };
  const rt = await loadRuntime(runtimePath);
  if (probe.sha.get(hostPaths.runtime) !== rt.sha256) {
    await uploadRuntime(conn, rt);
    out.uploaded.push(hostPaths.runtime);
    out.bytes += rt.gz.length;
  }
  for (const f of wanted) {
    if (f.path === hostPaths.unit && !probe.systemd) continue;
    if (probe.sha.get(f.path) === sha256(f.content)) continue;
    await conn.upload(f.path, f.content, { mode: f.mode });
    out.uploaded.push(f.path);
    out.bytes += Buffer.byteLength(f.content);
  }
  if (out.uploaded.length || !probe.running) {
    await conn.exec(startScript(), { what: 'the agent start', timeoutMs: 60_000 });
    out.restarted = true;
  }
  return out;
}

/**
 * Shell that stops the agent (systemd or not) and removes its files, for the host reset
 * (provider/controllers/host-ops.ts resetScript's extra). The runtime stays unless removeRuntime:
 * the next install on this host then skips its upload.
 */
export function removeAgentScript(o: { removeRuntime?: boolean } = {}): string {
  return removeScript(o);
}

export async function removeAgent(conn: SshSession, o: { removeRuntime?: boolean } = {}): Promise<void> {
  await conn.exec(removeAgentScript(o), { what: 'the agent removal', timeoutMs: 60_000 });
}

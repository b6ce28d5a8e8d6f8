// ntp, as cloud-init's cc_ntp does on Debian/Ubuntu, without installing packages: it configures
// the first NTP client the host has, in cloud-init's order for Ubuntu (chrony, systemd-timesyncd,
// ntp), writing the file cloud-init's template would write, then restarts that client. A host
// with no NTP client gets a warning in the output, not a failure (the preflight checks clock skew).
import { InvalidCloudConfig } from './errors.ts';
import { shQuote } from '../common/quote.ts';

export interface Ntp {
  enabled: boolean;
  servers: string[];
  pools: string[];
}

function hosts(v: unknown, at: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || !/^[A-Za-z0-9.:_-]+$/.test(s))) {
    throw new InvalidCloudConfig(at, 'must be a list of host names or addresses');
  }
  return v as string[];
}

export function readNtp(value: unknown): Ntp | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw new InvalidCloudConfig('ntp', 'must be a mapping');
  const o = value as Record<string, unknown>;
  return { enabled: o.enabled !== false, servers: hosts(o.servers, 'ntp.servers'), pools: hosts(o.pools, 'ntp.pools') };
}

/** The shell body; `root` prefixes the configuration paths (tests). */
export function ntpBody(ntp: Ntp, root: string): string {
  const all = [...ntp.servers, ...ntp.pools];
  const timesyncd = `# cloud-init generated file\n# See timesyncd.conf(5) for details.\n\n[Time]\nNTP=${all.map((h) => `${h} `).join('')}\n`;
  const chrony = [
    '# cloud-init generated file',
    ...ntp.pools.map((p) => `pool ${p} iburst`),
    ...ntp.servers.map((s) => `server ${s} iburst`),
    'driftfile /var/lib/chrony/chrony.drift',
    'makestep 1.0 3',
    'rtcsync',
    '',
  ].join('\n');
  const ntpConf = [
    '# cloud-init generated file',
    ...ntp.pools.map((p) => `pool ${p} iburst`),
    ...ntp.servers.map((s) => `server ${s} iburst`),
    '',
  ].join('\n');
  const put = (path: string, content: string) =>
    `mkdir -p "$(dirname ${shQuote(root + path)})" && printf '%s' ${shQuote(content)} > ${shQuote(root + path)}`;
  const restart = (unit: string) => `if [ -d /run/systemd/system ]; then systemctl restart ${unit} || true; fi`;
  return [
    'if command -v chronyd >/dev/null 2>&1; then',
    `  ${put('/etc/chrony/chrony.conf', chrony)}`,
    `  ${restart('chrony')}`,
    'elif [ -x /lib/systemd/systemd-timesyncd ] || [ -x /usr/lib/systemd/systemd-timesyncd ]; then',
    `  ${put('/etc/systemd/timesyncd.conf.d/cloud-init.conf', timesyncd)}`,
    `  ${restart('systemd-timesyncd')}`,
    'elif command -v ntpd >/dev/null 2>&1; then',
    `  ${put('/etc/ntp.conf', ntpConf)}`,
    `  ${restart('ntp')}`,
    'else',
    "  echo 'warning: no NTP client (chrony, systemd-timesyncd, ntp) is installed; the clock is not managed'",
    'fi',
  ].join('\n');
}

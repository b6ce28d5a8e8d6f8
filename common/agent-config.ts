// The agent's configuration (/etc/capbm/agent.json, mode 0600): its shape and defaults, the contract
// between the provider's installer, which writes it, and the agent, which parses it (agent/config.ts).
import { hostPaths } from './agent-host.ts';

/** A check command from BareMetalMachine spec.healthChecks (provider/api/machine.ts healthCheck). */
export interface UserCheck {
  name: string;
  command: string;
  intervalSeconds?: number;
  timeoutSeconds?: number;
}

export interface Thresholds {
  /** Free blocks on / and /var/lib below this percentage: DiskPressure. Default 10. */
  minFreeDiskPercent: number;
  /** Free inodes below this percentage: InodePressure. Default 5. */
  minFreeInodesPercent: number;
  /** MemAvailable below this percentage of MemTotal: MemoryPressure. Default 5. */
  minMemoryAvailablePercent: number;
  /** PSI "full avg60" above this percentage: MemoryPressure. Default 20. */
  maxMemoryPressureFullAvg60: number;
  /** Clock skew against the provider above this: ClockSkew. Default 30 s. */
  maxClockSkewSeconds: number;
  /** A Kubernetes certificate expiring sooner than this: CertificatesExpiring. Default 7 days. */
  certificateExpiryWarningSeconds: number;
}

export interface AgentConfig {
  host: string;
  machine?: { namespace: string; name: string };
  /** https://<provider>:<port>; the agent POSTs <reportUrl>/v1/report. */
  reportUrl: string;
  intervalSeconds: number;
  checks: UserCheck[];
  /** Built-in checks to skip, by name (e.g. "systemd-units"). */
  disabledChecks: string[];
  thresholds: Thresholds;
  pki: { cert: string; key: string; ca: string };
  /** Filesystem root the checks look under. "/" on a host; a temp folder in tests. */
  root: string;
  kubeletHealthzUrl: string;
  /** Renew the agent's certificate after this fraction of its lifetime. Default 2/3. */
  renewFraction: number;
}

export const defaultThresholds: Thresholds = {
  minFreeDiskPercent: 10,
  minFreeInodesPercent: 5,
  minMemoryAvailablePercent: 5,
  maxMemoryPressureFullAvg60: 20,
  maxClockSkewSeconds: 30,
  certificateExpiryWarningSeconds: 7 * 24 * 3600,
};

export const defaultPaths = {
  config: hostPaths.config,
  cert: hostPaths.cert,
  key: hostPaths.key,
  ca: hostPaths.ca,
} as const;

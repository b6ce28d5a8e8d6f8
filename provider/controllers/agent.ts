// The provider's side of the node agent: its CA (a Secret in the manager's namespace), the mTLS
// report endpoint, the install at the end of provisioning, and the HostHealthy condition on the
// BareMetalMachine and on the workload cluster's Node (where a MachineHealthCheck reads it).
//
// Reports are kept in memory; a report that changes a machine's HostHealthy status enqueues the
// machine, and the machine reconciler writes the condition (one writer per object). A sweep
// enqueues machines whose agent fell silent, so HostHealthy turns Unknown (ReportsStopped).
// The endpoint should be reached through a Service routed to the leader; with leader election, a
// standby that receives a report keeps it, but only the leader writes.
import { KubeConfig } from '@kubernetes/client-node';
import type { BareMetalHost } from '../api/host.ts';
import type { Report } from '../../agent/protocol.ts';
import { hostHealthyCondition, HostHealthyCondition } from '../health/condition.ts';
import { installAgent, removeAgentScript } from '../health/install.ts';
import { setNodeCondition } from '../health/node.ts';
import {
  issueAgentCertificate,
  issueHealthServerCertificate,
  loadOrCreateAgentCa,
  type AgentCaData,
} from '../health/pki.ts';
import { startHealthServer, type HealthServer } from '../health/server.ts';
import { ApiError, raw } from '../kube/raw.ts';
import type { Logger } from '../log.ts';
import { getCondition, type ConditionInput } from '../runtime/conditions.ts';
import type { CertificateAuthority } from '../pki/certificate.ts';
import type { SshConnection } from '../ssh/index.ts';
import { ClusterNameLabel, type BareMetalMachine } from './kinds.ts';

export interface AgentOptions {
  /** Where the endpoint listens, e.g. 0.0.0.0:9443. */
  bindHost: string;
  bindPort: number;
  /** The URL agents report to (the endpoint as hosts reach it: a Service, a VIP, the lab bridge). */
  reportUrl: string;
  /** The CA Secret, in the manager's namespace. */
  caSecret: { namespace: string; name: string };
  intervalSeconds: number;
  unknownAfterMs: number;
  /** Built-in checks to turn off (e.g. kubelet on hosts that run none). */
  disabledChecks: string[];
}

interface Seen {
  report: Report;
  at: number;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

async function caFromSecret(kc: KubeConfig, ref: AgentOptions['caSecret']): Promise<CertificateAuthority> {
  const path = `/api/v1/namespaces/${ref.namespace}/secrets/${ref.name}`;
  let data: Partial<AgentCaData> | undefined;
  try {
    const s = await raw<{ data?: Record<string, string> }>(kc, 'GET', path);
    data = Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
    );
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 404)) throw err;
  }
  const r = await loadOrCreateAgentCa(data);
  if (r.created) {
    await raw(kc, 'POST', `/api/v1/namespaces/${ref.namespace}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name: ref.name, namespace: ref.namespace },
      data: { 'ca.crt': b64(r.data['ca.crt']), 'ca.key': b64(r.data['ca.key']) },
    }).catch(async (err: unknown) => {
      // Another replica made it first: use theirs.
      if (!(err instanceof ApiError && err.code === 409)) throw err;
      return caFromSecret(kc, ref);
    });
  }
  return r.ca;
}

export class AgentService {
  readonly o: AgentOptions;
  readonly #kc: KubeConfig;
  readonly #log: Logger;
  #ca: CertificateAuthority | undefined;
  #server: HealthServer | undefined;
  readonly #seen = new Map<string, Seen>();
  readonly #started = Date.now();
  readonly #installed = new Map<string, number>();
  readonly #onNode = new Map<string, string>();
  readonly #workloads = new Map<string, { version: string; kc: KubeConfig }>();
  #sweep: NodeJS.Timeout | undefined;
  /** Set by the wiring (controllers/index.ts): wakes the machine holding a host. */
  onChange: (host: string) => void = () => {};
  /** Set by the wiring: whether a host may report (claimed and provisioned). */
  knownHost: (host: string) => boolean = () => false;
  /** Set by the wiring: hosts whose HostHealthy would change by time alone (silence). */
  silentHosts: () => string[] = () => [];

  constructor(kc: KubeConfig, o: AgentOptions, log: Logger) {
    this.#kc = kc;
    this.o = o;
    this.#log = log.with({ component: 'agent-endpoint' });
  }

  async start(): Promise<void> {
    this.#ca = await caFromSecret(this.#kc, this.o.caSecret);
    const url = new URL(this.o.reportUrl);
    const isIp = /^[\d.]+$|:/.test(url.hostname);
    const serverCert = await issueHealthServerCertificate(this.#ca, {
      ...(isIp ? { ipAddresses: [url.hostname.replace(/^\[|\]$/g, '')] } : { dnsNames: [url.hostname] }),
    });
    this.#server = await startHealthServer({
      host: this.o.bindHost,
      port: this.o.bindPort,
      ca: this.#ca,
      serverCert,
      knownHost: (h) => this.knownHost(h),
      log: this.#log,
      onReport: (report) => this.#onReport(report),
    });
    this.#log.info('agent endpoint listening', { port: this.#server.port, reportUrl: this.o.reportUrl });
    // Silence is noticed by time, not by an event: look every quarter of the allowed silence.
    this.#sweep = setInterval(
      () => this.silentHosts().forEach((h) => this.onChange(h)),
      Math.max(1000, this.o.unknownAfterMs / 4),
    );
    this.#sweep.unref();
  }

  get port(): number {
    return this.#server?.port ?? 0;
  }

  async stop(): Promise<void> {
    if (this.#sweep) clearInterval(this.#sweep);
    await this.#server?.close();
  }

  #onReport(report: Report): void {
    const before = this.condition(report.host);
    this.#seen.set(report.host, { report, at: Date.now() });
    const after = this.condition(report.host);
    if (before?.status !== after?.status || before?.reason !== after?.reason) this.onChange(report.host);
  }

  /**
   * HostHealthy for a host, or undefined while a fresh agent (or a restarted provider) waits for its
   * first report: a host is not called Unknown before it had the allowed silence to report.
   */
  condition(host: string, now = Date.now()): ConditionInput | undefined {
    const s = this.#seen.get(host);
    const since = Math.max(this.#started, this.#installed.get(host) ?? 0);
    if (!s && now - since < this.o.unknownAfterMs) return undefined;
    return hostHealthyCondition(s?.report, s?.at, now, this.o.unknownAfterMs);
  }

  /** Installs (or refreshes) the agent with a fresh client certificate naming the host. */
  async install(conn: SshConnection, m: BareMetalMachine, h: BareMetalHost): Promise<void> {
    if (!this.#ca) throw new Error('the agent endpoint is not started');
    const identity = await issueAgentCertificate(this.#ca, h.metadata.name);
    const out = await installAgent(conn, {
      hostName: h.metadata.name,
      machine: { namespace: m.metadata.namespace, name: m.metadata.name },
      reportUrl: this.o.reportUrl,
      intervalSeconds: this.o.intervalSeconds,
      checks: (m.spec.healthChecks ?? []).map((c) => ({ ...c })),
      disabledChecks: this.o.disabledChecks,
      identity: { certPem: identity.certPem, keyPem: identity.keyPem },
      caPem: this.#ca.certPem,
    });
    this.#installed.set(h.metadata.name, Date.now());
    this.#seen.delete(h.metadata.name);
    this.#log.info('agent installed', { host: h.metadata.name, mode: out.mode, bytes: out.bytes });
  }

  removeScript(): string {
    return removeAgentScript({});
  }

  forget(host: string): void {
    this.#seen.delete(host);
    this.#installed.delete(host);
    this.#onNode.delete(host);
  }

  /** The workload cluster's kubeconfig, from the `<cluster>-kubeconfig` Secret CAPI keeps. */
  async #workload(ns: string, cluster: string): Promise<KubeConfig> {
    const s = await raw<{ metadata: { resourceVersion: string }; data?: { value?: string } }>(
      this.#kc,
      'GET',
      `/api/v1/namespaces/${ns}/secrets/${cluster}-kubeconfig`,
    );
    const key = `${ns}/${cluster}`;
    const cached = this.#workloads.get(key);
    if (cached?.version === s.metadata.resourceVersion) return cached.kc;
    const kc = new KubeConfig();
    kc.loadFromString(Buffer.from(s.data?.value ?? '', 'base64').toString('utf8'));
    this.#workloads.set(key, { version: s.metadata.resourceVersion, kc });
    return kc;
  }

  /**
   * The machine's HostHealthy now, written to its Node when it changed there (the Node write is
   * remembered per host); `changed` says whether the machine's own condition needs a write.
   */
  async sync(
    m: BareMetalMachine,
    host: string,
    node: string | undefined,
  ): Promise<{ condition: ConditionInput; changed: boolean } | undefined> {
    const c = this.condition(host);
    if (!c) return undefined;
    const key = `${String(c.status)}/${c.reason}/${c.message ?? ''}`;
    if (node && this.#onNode.get(host) !== key) {
      await this.writeNode(m, node, c);
      this.#onNode.set(host, key);
    }
    return { condition: c, changed: hostHealthyChanged(m, c) };
  }

  /** Mirrors HostHealthy onto the machine's Node in the workload cluster. */
  async writeNode(m: BareMetalMachine, nodeName: string, c: ConditionInput): Promise<void> {
    const cluster = m.metadata.labels?.[ClusterNameLabel];
    if (!cluster) return;
    const kc = await this.#workload(m.metadata.namespace, cluster);
    await setNodeCondition(kc, nodeName, c);
  }
}

/** Whether HostHealthy on the machine differs from `c` (status, reason, message). */
export function hostHealthyChanged(m: BareMetalMachine, c: ConditionInput): boolean {
  const cur = getCondition(m, HostHealthyCondition);
  return !cur || cur.status !== c.status || cur.reason !== c.reason || (cur.message ?? '') !== (c.message ?? '');
}

// The provider's side of the node agent: its CA (a Secret in the manager's namespace), the mTLS
// report endpoint, the install at the end of provisioning, and the HostHealthy condition on the
// BareMetalMachine and on the workload cluster's Node (where a MachineHealthCheck reads it).
//
// Reports are kept in memory; a report that changes a machine's HostHealthy status sends the
// machine's key on the `wake` channel, and the machine reconciler writes the condition (one writer
// per object). A sweep wakes machines whose agent fell silent, so HostHealthy turns Unknown
// (ReportsStopped). Reports must reach the leader: one replica, or a Service routed to the leader;
// a standby that receives a report keeps it, but only the leader writes.
import { X509Certificate } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../common/log.ts';
import type { Report } from '../../common/agent-protocol.ts';
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalMachine } from '../api/machine.ts';
import type { AgentCertificate, AgentInstall, NodeAgent } from './node-agent.ts';
import { createSecret, readSecret } from '../kube/secrets.ts';
import { getCondition, type ConditionInput } from '../runtime/conditions.ts';
import type { Informer } from '../runtime/informer.ts';
import type { Channel } from '../runtime/source.ts';
import type { CertificateAuthority } from '../pki/certificate.ts';
import { SshError, type SshSession } from '../ssh/index.ts';
import { hostHealthyCondition, HostHealthyCondition } from './condition.ts';
import { installAgent, removeAgentScript } from './install.ts';
import { setNodeCondition } from './node.ts';
import { issueAgentCertificate, issueHealthServerCertificate, loadOrCreateAgentCa } from './pki.ts';
import { startHealthServer, type HealthServer, type Presented, type Refusal } from './server.ts';
import { objectKey } from '../kube/kinds.ts';

const ClusterNameLabel = 'cluster.x-k8s.io/cluster-name';

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
  /** Built-in checks to turn off (e.g. kubelet where no kubelet runs). */
  disabledChecks: string[];
  /** Connections the endpoint holds at once (health/server.ts); default 5000. */
  maxConnections?: number;
  /** Connections kept open between reports (health/connections.ts); default 2500. */
  keptConnections?: number;
  /** The built agent bundle (health/bundle.ts); default dist/agent/capbm-agent.mjs. */
  bundlePath?: string;
}

export interface AgentDeps {
  kc: KubeConfig;
  log: Logger;
  /** Hosts; machines: who holds a host, and their HostHealthy. */
  hosts: Informer<BareMetalHost>;
  machines: Informer<BareMetalMachine>;
  /** Where the keys of machines whose HostHealthy should be written again are sent. */
  wake: Channel;
}

interface Seen {
  report: Report;
  at: number;
}

/**
 * The agent CA from its Secret, creating it when there is none. When two replicas create it at
 * once, the one whose create is refused (409) reads the winner's CA and uses that: every replica
 * signs with the one CA the Secret holds.
 */
export async function loadAgentCa(kc: KubeConfig, ref: AgentOptions['caSecret']): Promise<CertificateAuthority> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const stored = await readSecret(kc, ref.namespace, ref.name);
    const r = await loadOrCreateAgentCa(stored?.data);
    if (!r.created) return r.ca;
    if (await createSecret(kc, ref.namespace, ref.name, { ...r.data })) return r.ca;
  }
  throw new Error(
    `the agent CA Secret ${ref.namespace}/${ref.name} was created and then removed while being read: check who deletes it`,
  );
}

export class AgentService implements NodeAgent {
  readonly o: AgentOptions;
  readonly #kc: KubeConfig;
  readonly #log: Logger;
  readonly #d: AgentDeps;
  #ca: CertificateAuthority | undefined;
  #server: HealthServer | undefined;
  readonly #seen = new Map<string, Seen>();
  readonly #started = Date.now();
  readonly #installed = new Map<string, number>();
  readonly #onNode = new Map<string, string>();
  /** Certificates issued by this process, newer than the hosts' status.agentCertificate for a moment. */
  readonly #issued = new Map<string, AgentCertificate>();
  readonly #workloads = new Map<string, { version: string; kc: KubeConfig }>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(d: AgentDeps, o: AgentOptions) {
    this.#d = d;
    this.#kc = d.kc;
    this.o = o;
    this.#log = d.log.with({ component: 'agent-endpoint' });
  }

  /** The host (<namespace>/<name>) if a machine holds it, and the holder's key. */
  #holder(key: string): { host: BareMetalHost; key: string } | undefined {
    const [ns = '', name = ''] = key.split('/');
    const host = this.#d.hosts.get(ns, name);
    const c = host?.spec.consumerRef;
    return host && c ? { host, key: `${c.namespace}/${c.name}` } : undefined;
  }

  /** Wakes the machine holding the host. */
  #wakeHolder(key: string): void {
    const h = this.#holder(key);
    if (h) this.#d.wake.send(h.key);
  }

  /** The host's newest certificate: issued here since, or recorded on the host. */
  #newest(h: BareMetalHost): AgentCertificate | undefined {
    const mine = this.#issued.get(objectKey(h));
    const recorded = h.status?.agentCertificate;
    if (!mine || !recorded) return mine ?? recorded;
    return Date.parse(mine.notBefore) >= Date.parse(recorded.notBefore) ? mine : recorded;
  }

  /**
   * Who may report and renew: the agent of a host that exists with the certificate's UID, is
   * provisioned for the claim the certificate names (a former tenant's certificate names an older
   * machine), with the newest certificate issued for it; a report names that claim's machine.
   */
  authorize(p: Presented, machine?: { namespace: string; name: string }): Refusal {
    const h = this.#holder(p.host)?.host;
    if (!h || h.metadata.uid !== p.hostUid)
      return { status: 403, reason: 'UnknownHost', message: `host ${p.host} is not one the provider manages` };
    const c = h.spec.consumerRef!;
    if (c.uid !== p.machineUid || h.status?.phase !== 'Provisioned')
      return {
        status: 403,
        reason: 'Revoked',
        message: `the certificate was issued for an earlier claim of host ${p.host}, which was reset since`,
      };
    if (!this.#isNewest(h, p))
      return { status: 403, reason: 'Superseded', message: 'a newer certificate was issued for this host' };
    if (machine && (machine.namespace !== c.namespace || machine.name !== c.name))
      return { status: 403, reason: 'Forbidden', message: `host ${p.host} is held by another machine` };
    return undefined;
  }

  /**
   * Whether the presented certificate is the host's newest. One newer than any this process knows
   * (renewed by a former leader, or before a restart) is ours too (CA-signed, this claim): it
   * becomes the newest and is recorded on the host next.
   */
  #isNewest(h: BareMetalHost, p: Presented): boolean {
    const newest = this.#newest(h);
    if (!newest || newest.serial === p.serial) return true;
    if (p.notBefore <= Date.parse(newest.notBefore)) return false;
    this.#issued.set(p.host, { serial: p.serial, notBefore: new Date(p.notBefore).toISOString() });
    this.#wakeHolder(p.host);
    return true;
  }

  /** A certificate issued since the host's status.agentCertificate was written. */
  unrecorded(h: BareMetalHost): AgentCertificate | undefined {
    const n = this.#newest(h);
    return n && n.serial !== h.status?.agentCertificate?.serial ? n : undefined;
  }

  /** Hosts whose HostHealthy would change by time alone (silence). */
  silentHosts(): string[] {
    return this.#d.hosts
      .list()
      .filter((h) => h.status?.phase === 'Provisioned' && h.spec.consumerRef)
      .filter((h) => {
        const m = this.#d.machines.get(h.spec.consumerRef!.namespace, h.spec.consumerRef!.name);
        const cond = this.condition(objectKey(h));
        return m !== undefined && cond !== undefined && hostHealthyChanged(m, cond);
      })
      .map((h) => objectKey(h));
  }

  async start(): Promise<void> {
    this.#ca = await loadAgentCa(this.#kc, this.o.caSecret);
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
      authorize: (p, machine) => this.authorize(p, machine),
      ...(this.o.maxConnections ? { maxConnections: this.o.maxConnections } : {}),
      ...(this.o.keptConnections ? { keptConnections: this.o.keptConnections } : {}),
      // A kept connection outlives the pause between two reports (their number is capped, not their idle time).
      keepAliveTimeoutMs: 2 * this.o.intervalSeconds * 1000 + 5000,
      onRenewed: (p) => {
        this.#issued.set(p.host, { serial: p.serial, notBefore: new Date(p.notBefore).toISOString() });
        this.#wakeHolder(p.host); // the machine records it on the host
      },
      log: this.#log,
      onReport: (report) => this.#onReport(report),
    });
    this.#log.info('agent endpoint listening', { port: this.#server.port, reportUrl: this.o.reportUrl });
    // Silence is noticed by time, not by an event: look every quarter of the allowed silence.
    this.#sweep = setInterval(
      () => this.silentHosts().forEach((h) => this.#wakeHolder(h)),
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
    if (before?.status !== after?.status || before?.reason !== after?.reason) this.#wakeHolder(report.host);
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

  /**
   * Installs (or refreshes) the agent with a fresh client certificate naming the host and this
   * claim; from then on it is the host's newest (older ones are refused).
   */
  async install(conn: SshSession, m: BareMetalMachine, h: BareMetalHost): Promise<AgentCertificate> {
    if (!this.#ca) throw new Error('the agent endpoint is not started');
    const key = objectKey(h);
    const identity = await issueAgentCertificate(this.#ca, {
      host: key,
      hostUid: h.metadata.uid ?? '',
      machineUid: h.spec.consumerRef?.uid ?? '',
    });
    const x509 = new X509Certificate(identity.certPem);
    const certificate = { serial: x509.serialNumber.toLowerCase(), notBefore: new Date(x509.validFrom).toISOString() };
    this.#issued.set(key, certificate);
    const out = await installAgent(conn, {
      hostName: key,
      machine: { namespace: m.metadata.namespace, name: m.metadata.name },
      reportUrl: this.o.reportUrl,
      intervalSeconds: this.o.intervalSeconds,
      checks: (m.spec.healthChecks ?? []).map((c) => ({ ...c })),
      disabledChecks: this.o.disabledChecks,
      identity: { certPem: identity.certPem, keyPem: identity.keyPem },
      caPem: this.#ca.certPem,
      ...(this.o.bundlePath ? { bundlePath: this.o.bundlePath } : {}),
    });
    this.#installed.set(key, Date.now());
    this.#seen.delete(key);
    this.#log.info('agent installed', { host: key, mode: out.mode, bytes: out.bytes });
    return certificate;
  }

  /**
   * Installs the agent; what stands in the way of running it (no runtime for the host's
   * architecture, no bundle) is a result, an SSH failure is thrown (the connection is gone).
   */
  async installResult(conn: SshSession, m: BareMetalMachine, h: BareMetalHost): Promise<AgentInstall> {
    try {
      return { installed: true, certificate: await this.install(conn, m, h) };
    } catch (err) {
      if (err instanceof SshError) throw err;
      return { installed: false, message: (err as Error).message };
    }
  }

  removeScript(): string {
    return removeAgentScript({});
  }

  forget(host: string): void {
    this.#issued.delete(host);
    this.#seen.delete(host);
    this.#installed.delete(host);
    this.#onNode.delete(host);
  }

  /** The workload cluster's kubeconfig, from the `<cluster>-kubeconfig` Secret CAPI keeps. */
  async #workload(ns: string, cluster: string): Promise<KubeConfig | undefined> {
    const s = await readSecret(this.#kc, ns, `${cluster}-kubeconfig`);
    if (!s?.data.value) return undefined;
    const key = `${ns}/${cluster}`;
    const cached = this.#workloads.get(key);
    if (cached?.version === s.resourceVersion) return cached.kc;
    const kc = new KubeConfig();
    kc.loadFromString(s.data.value);
    this.#workloads.set(key, { version: s.resourceVersion, kc });
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
    if (kc) await setNodeCondition(kc, nodeName, c);
  }
}

/** Whether HostHealthy on the machine differs from `c` (status, reason, message). */
export function hostHealthyChanged(m: BareMetalMachine, c: ConditionInput): boolean {
  const cur = getCondition(m, HostHealthyCondition);
  return !cur || cur.status !== c.status || cur.reason !== c.reason || (cur.message ?? '') !== (c.message ?? '');
}

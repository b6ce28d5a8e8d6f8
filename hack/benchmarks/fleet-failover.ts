// hack/bench fleet --failover-at F: a failover in the middle of provisioning. A standby (same Lease,
// its caches warm) runs beside the leader from the start, as a Deployment with 2 replicas does; at
// F (a fraction of the machines provisioned, or a duration after all were created) the leader is
// killed with SIGKILL, as a crash, while bootstraps are in flight. The bench then times the kill to
// the standby holding the Lease and to steady state, and shows that nothing ran again: from the host
// simulator's counters (bootstraps started, runs attached to, steps started twice, resets) and from
// the claims seen on the BareMetalHosts (ClaimLog: no host claimed by two machines, no machine
// holding two hosts).
import type { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../../common/log.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { BareMetalHosts } from '../../provider/kube/kinds.ts';
import { createInformer } from '../../provider/runtime/informer.ts';
import type { SimStats } from '../../test/harness/host-sim.ts';

/** When the leader is killed: at a fraction of the machines provisioned, or a time after all were created. */
export type FailoverAt = { fraction: number } | { afterMs: number };

/** --failover-at F: a fraction 0 < F < 1, or a duration (500ms, 20s, 2m). */
export function parseFailoverAt(v: string, toMs: (v: string) => number): FailoverAt | undefined {
  if (!v) return undefined;
  if (/(ms|s|m)$/.test(v)) return { afterMs: toMs(v) };
  const f = Number(v);
  if (!(f > 0 && f < 1))
    throw new Error(`--failover-at ${v}: give a fraction of the machines provisioned (0 < F < 1) or a duration (20s)`);
  return { fraction: f };
}

export const describeFailoverAt = (a: FailoverAt): string =>
  'fraction' in a
    ? `${Math.round(a.fraction * 100)}% of the machines provisioned`
    : `${a.afterMs / 1000} s after all were created`;

/** Every claim seen on the BareMetalHosts (consumerRef uid), from a watch kept for the whole run. */
export class ClaimLog {
  readonly #byHost = new Map<string, Set<string>>();
  readonly #byMachine = new Map<string, Set<string>>();
  readonly #informer;

  constructor(kc: KubeConfig) {
    this.#informer = createInformer<BareMetalHost>(kc, BareMetalHosts, { log: createLogger({ level: 'error' }) });
    const note = (h: BareMetalHost) => {
      const uid = h.spec?.consumerRef?.uid;
      if (!uid) return;
      const host = h.metadata.name;
      this.#byHost.set(host, (this.#byHost.get(host) ?? new Set()).add(uid));
      this.#byMachine.set(uid, (this.#byMachine.get(uid) ?? new Set()).add(host));
    };
    this.#informer.addEventHandler({ add: note, update: (_o, h) => note(h) });
  }

  start(): void {
    this.#informer.start();
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }

  /** Hosts claimed (by any machine), hosts claimed by two machines or more, machines seen on two hosts or more. */
  counts(): { claimed: number; hostsTwice: number; machinesTwice: number } {
    const twice = (m: Map<string, Set<string>>) => [...m.values()].filter((s) => s.size > 1).length;
    return { claimed: this.#byHost.size, hostsTwice: twice(this.#byHost), machinesTwice: twice(this.#byMachine) };
  }
}

export interface FailoverFigures {
  at: FailoverAt;
  /** Seconds from all created to the kill (negative: the objects were still being created). */
  killAfterCreatedS: number;
  provisionedAtKill: number;
  /** Runs going on the hosts at the kill (the simulator: started, not ended), and the leader's own count. */
  runningOnHosts: number;
  leaderRuns: number;
  /** Seconds from the kill. */
  toLease: number;
  /** Machines bootstrapping at the kill (as their objects said), and the kill to the last of them provisioned. */
  inFlight: { machines: number; recordedS: number };
  /** The new leader reconciled every machine of its shard once (as a restarted manager's steady state). */
  toCaughtUp: number;
  toProvisioned: number;
  toSteady: number;
  /** Machines provisioned per second: the 30 s before the kill, the 30 s after the Lease was taken. */
  pace: { before: number; afterLease: number };
  /** Seconds from the kill to the new leader's first machine provisioned. */
  firstAfterKill: number;
  leaseDurationS: number;
  holders: { before: string; after: string };
  /** The simulator at the kill and once steady after it; from before the first object to the end. */
  simAtKill: SimStats;
  simSteady: SimStats;
  simBefore: SimStats;
  claims: ReturnType<ClaimLog['counts']>;
  /** The new leader every 5 s after the kill (at most 2 minutes); counts summed over the managers. */
  timeline: Array<{
    /** Seconds after the kill. */
    t: number;
    /** Machines provisioned since the kill. */
    provisioned: number;
    firstPassLeft: number;
    depth: number;
    running: number;
    checksWaiting: number;
  }>;
}

/** The failover's lines of the bench's output. */
export function failoverLines(f: FailoverFigures, machines: number, fmt: (x: number, d?: number) => string): string[] {
  const d = (k: keyof SimStats) => (f.simSteady[k] as number) - (f.simAtKill[k] as number);
  const all = (k: keyof SimStats) => (f.simSteady[k] as number) - (f.simBefore[k] as number);
  const started = all('runsStarted');
  const attached = d('runsAttached') - d('runsFoundEnded');
  const when =
    f.killAfterCreatedS >= 0
      ? `${fmt(f.killAfterCreatedS)} s after all created`
      : `${fmt(-f.killAfterCreatedS)} s before all were created`;
  const rerun = all('runsOnHostAgain') + all('stepsRepeated') + all('resets') + f.claims.hostsTwice;
  return [
    `failover in flight (--failover-at, ${describeFailoverAt(f.at)}): leader SIGKILLed ${when}, ${f.provisionedAtKill} of ${machines} provisioned, ${f.runningOnHosts} bootstraps running on the hosts (the leader followed ${f.leaderRuns}); a standby (same Lease, caches warm) ran beside it from the start`,
    `failover: kill -> standby holds the Lease ${fmt(f.toLease)} s (Lease duration ${f.leaseDurationS} s, the provider's default: the standby takes over once it expires; holder ${f.holders.before} -> ${f.holders.after}); kill -> the dead leader's work in flight recorded ${fmt(f.inFlight.recordedS)} s (the ${f.inFlight.machines} machines bootstrapping at the kill, as their objects said, all provisioned); kill -> caught up ${fmt(f.toCaughtUp)} s (the new leader reconciled every machine once: each host's state known, every run going followed, and the machines the dead leader never started claimed and started); kill -> the new leader's first machine provisioned ${fmt(f.firstAfterKill)} s; machines provisioned per second: ${fmt(f.pace.before)} in the 30 s before the kill, ${fmt(f.pace.afterLease)} in the 30 s after the Lease was taken; kill -> all provisioned ${fmt(f.toProvisioned)} s; kill -> steady state ${fmt(f.toSteady)} s (every machine provisioned, queues empty, no run followed)`,
    `failover timeline, every 5 s after the kill (seconds: machines provisioned since the kill / first-pass keys left / keys queued / runs followed / checks waiting for a slot): ${f.timeline.map((x) => `${x.t}: ${x.provisioned}/${x.firstPassLeft}/${x.depth}/${x.running}/${x.checksWaiting}`).join(', ')}`,
    `failover, nothing run again: bootstraps started ${started} for ${machines} machines (hosts with a second run ${all('runsOnHostAgain')}); after the kill the new leader attached to ${attached} runs going and found ${d('runsFoundEnded')} ended; steps started twice ${all('stepsRepeated')}; resets ${all('resets')}; hosts claimed ${f.claims.claimed}, by two machines ${f.claims.hostsTwice}, machines on two hosts ${f.claims.machinesTwice}${started === machines && rerun === 0 && f.claims.machinesTwice === 0 ? '' : ' (SOMETHING RAN AGAIN)'}`,
  ];
}

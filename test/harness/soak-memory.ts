// The provider's memory over a soak: each replica's resident size sampled every minute, per life
// (a replica killed by a fault and started again is a new life), so a leak shows as growth within
// one long life rather than hiding behind restarts.
import { residentMiB } from './flux.ts';
import type { ManagedProcess } from './process.ts';

export interface MemorySample {
  /** Seconds since the soak started. */
  at: number;
  name: string;
  pid: number;
  mib: number;
}

export interface MemoryLife {
  name: string;
  pid: number;
  from: number;
  to: number;
  firstMiB: number;
  lastMiB: number;
  peakMiB: number;
  /** Median of the first samples after warm-up and of the last ones (lives of 15 minutes or more). */
  earlyMiB?: number;
  lateMiB?: number;
}

/** The manager Deployment's memory limit (manifests/manager): a replica above it would be killed. */
export const LIMIT_MIB = 1024;
/** A life this long is judged for growth: minutes 2-6 against its last five minutes. */
const judgedLifeS = 15 * 60;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export class MemoryTrack {
  readonly samples: MemorySample[] = [];

  sample(at: number, ps: readonly ManagedProcess[]): void {
    for (const p of ps) if (p.running()) this.samples.push({ at, name: p.name, pid: p.pid, mib: residentMiB(p.pid) });
  }

  lives(): MemoryLife[] {
    const by = new Map<string, MemorySample[]>();
    for (const s of this.samples)
      if (s.mib > 0) by.set(`${s.name}/${s.pid}`, [...(by.get(`${s.name}/${s.pid}`) ?? []), s]);
    return [...by.values()].map((xs) => {
      const first = xs[0]!;
      const last = xs.at(-1)!;
      const life: MemoryLife = {
        name: first.name,
        pid: first.pid,
        from: first.at,
        to: last.at,
        firstMiB: first.mib,
        lastMiB: last.mib,
        peakMiB: Math.max(...xs.map((x) => x.mib)),
      };
      if (last.at - first.at >= judgedLifeS) {
        life.earlyMiB = median(xs.filter((x) => x.at - first.at >= 120 && x.at - first.at <= 360).map((x) => x.mib));
        life.lateMiB = median(xs.filter((x) => last.at - x.at <= 300).map((x) => x.mib));
      }
      return life;
    });
  }

  /**
   * What breaks "the provider's memory flat over time", if anything: a sample above the
   * Deployment's limit, or a long life whose last five minutes sit more than half again (and
   * 64 MiB) above its minutes 2-6.
   */
  verdict(): string | undefined {
    const over = this.samples.find((s) => s.mib > LIMIT_MIB);
    if (over)
      return `${over.name} (pid ${over.pid}) at ${over.mib} MiB at ${over.at} s, above the ${LIMIT_MIB} MiB limit`;
    for (const l of this.lives()) {
      if (l.earlyMiB === undefined || l.lateMiB === undefined) continue;
      if (l.lateMiB > l.earlyMiB * 1.5 && l.lateMiB - l.earlyMiB > 64)
        return `${l.name} (pid ${l.pid}) grew from ${l.earlyMiB} MiB (minutes 2-6 of its life) to ${l.lateMiB} MiB (its last 5 minutes) over ${Math.round((l.to - l.from) / 60)} minutes`;
    }
    return undefined;
  }
}

/** Lines for the report: each life of five minutes or more. */
export function describeLives(lives: readonly MemoryLife[]): string[] {
  const long = lives.filter((l) => l.to - l.from >= 300);
  if (!long.length)
    return ['- none (every replica was killed by a fault or the run ended within five minutes of its start)'];
  return long.map(
    (l) =>
      `- ${l.name} (pid ${l.pid}), ${Math.round(l.from / 60)}-${Math.round(l.to / 60)} min: ${l.firstMiB} -> ${l.lastMiB} MiB (peak ${l.peakMiB})` +
      (l.earlyMiB !== undefined ? `; minutes 2-6 ${l.earlyMiB} MiB, last 5 minutes ${l.lateMiB} MiB` : ''),
  );
}

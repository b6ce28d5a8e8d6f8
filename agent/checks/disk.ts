// Free space and free inodes on / and /var/lib (statfs). Inode figures of 0 (filesystems without
// a fixed inode table, e.g. btrfs) mean "not applicable", never "full".
import { statfsSync, statSync } from 'node:fs';
import type { CheckResult } from '../../common/agent-protocol.ts';
import { at, errText, result, type CheckEnv } from './env.ts';

export const diskPaths = ['/', '/var/lib'] as const;

const pct = (part: number, whole: number) => (whole > 0 ? (part / whole) * 100 : 100);

interface Usage {
  path: string;
  freePct: number;
  inodesFreePct: number | undefined;
}

function usage(env: CheckEnv, path: string, seen: Set<number>): Usage | undefined {
  const p = at(env, path);
  const dev = statSync(p).dev;
  if (seen.has(dev)) return undefined;
  seen.add(dev);
  const s = statfsSync(p);
  return {
    path,
    freePct: pct(s.bavail, s.blocks),
    inodesFreePct: s.files > 0 ? pct(s.ffree, s.files) : undefined,
  };
}

export function diskCheck(env: CheckEnv): CheckResult {
  const name = 'disk';
  const t = env.thresholds;
  const seen = new Set<number>();
  const space: string[] = [];
  const inodes: string[] = [];
  const errors: string[] = [];
  let measured = 0;
  for (const path of diskPaths) {
    let u: Usage | undefined;
    try {
      u = usage(env, path, seen);
    } catch (err) {
      if (path !== '/') continue; // no separate /var/lib: / covers it
      errors.push(`${path}: ${errText(err)}`);
      continue;
    }
    if (!u) continue;
    measured++;
    if (u.freePct < t.minFreeDiskPercent) space.push(`${path} has ${u.freePct.toFixed(1)}% free`);
    if (u.inodesFreePct !== undefined && u.inodesFreePct < t.minFreeInodesPercent)
      inodes.push(`${path} has ${u.inodesFreePct.toFixed(1)}% inodes free`);
  }
  if (space.length)
    return result(name, 'failed', 'DiskPressure', `${space.join('; ')} (minimum ${t.minFreeDiskPercent}%)`);
  if (inodes.length)
    return result(name, 'failed', 'InodePressure', `${inodes.join('; ')} (minimum ${t.minFreeInodesPercent}%)`);
  if (measured === 0) return result(name, 'unknown', 'DiskUnreadable', errors.join('; '));
  return result(name, 'ok', 'DiskOk');
}

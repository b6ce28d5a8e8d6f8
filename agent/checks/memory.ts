// Memory pressure: the kernel's pressure stall information (/proc/pressure/memory, "full avg60":
// the share of the last minute in which every task was stalled on memory) and MemAvailable.
import { readFileSync } from 'node:fs';
import type { CheckResult } from '../../common/agent-protocol.ts';
import { at, result, type CheckEnv } from './env.ts';

function read(env: CheckEnv, path: string): string | undefined {
  try {
    return readFileSync(at(env, path), 'utf8');
  } catch {
    return undefined;
  }
}

/** "full avg10=0.00 avg60=1.23 avg300=..." -> 1.23 */
export function psiFullAvg60(text: string): number | undefined {
  const m = /^full .*\bavg60=([0-9.]+)/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** MemAvailable as a percentage of MemTotal, from /proc/meminfo. */
export function availablePercent(text: string): number | undefined {
  const kib = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const total = kib('MemTotal');
  const avail = kib('MemAvailable');
  return total && avail !== undefined ? (avail / total) * 100 : undefined;
}

export function memoryCheck(env: CheckEnv): CheckResult {
  const name = 'memory';
  const t = env.thresholds;
  const psiText = read(env, 'proc/pressure/memory');
  const memText = read(env, 'proc/meminfo');
  const full = psiText === undefined ? undefined : psiFullAvg60(psiText);
  const avail = memText === undefined ? undefined : availablePercent(memText);
  if (full === undefined && avail === undefined)
    return result(name, 'unknown', 'MemoryUnreadable', 'neither /proc/pressure/memory nor /proc/meminfo is readable');
  const problems: string[] = [];
  if (full !== undefined && full > t.maxMemoryPressureFullAvg60)
    problems.push(`tasks stalled on memory ${full}% of the last minute (maximum ${t.maxMemoryPressureFullAvg60}%)`);
  if (avail !== undefined && avail < t.minMemoryAvailablePercent)
    problems.push(`${avail.toFixed(1)}% of memory available (minimum ${t.minMemoryAvailablePercent}%)`);
  if (problems.length) return result(name, 'failed', 'MemoryPressure', problems.join('; '));
  return result(name, 'ok', 'MemoryOk', avail === undefined ? '' : `${avail.toFixed(0)}% available`);
}

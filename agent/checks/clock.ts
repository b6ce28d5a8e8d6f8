// Clock skew against the provider. The agent cannot know it alone: every response of the
// provider carries its time, and the report loop measures skew = provider time - the midpoint of
// the request on the local clock (the error is at most half the round trip).
import type { CheckResult } from '../../common/agent-protocol.ts';
import { result } from './env.ts';
import type { Thresholds } from '../config.ts';

/** Skew in ms (positive: the host is behind the provider) from one exchange. */
export function measureSkew(sentAt: number, receivedAt: number, providerTime: number): number {
  return providerTime - (sentAt + receivedAt) / 2;
}

export function clockCheck(skewMs: number | undefined, t: Pick<Thresholds, 'maxClockSkewSeconds'>): CheckResult {
  const name = 'clock';
  if (skewMs === undefined) return result(name, 'unknown', 'SkewNotMeasured', 'no answer from the provider yet');
  const s = Math.abs(skewMs) / 1000;
  const msg = `clock is ${s.toFixed(1)} s ${skewMs > 0 ? 'behind' : 'ahead of'} the provider`;
  if (s > t.maxClockSkewSeconds)
    return result(name, 'failed', 'ClockSkew', `${msg} (maximum ${t.maxClockSkewSeconds} s)`);
  return result(name, 'ok', 'ClockOk', msg);
}

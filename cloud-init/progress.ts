// The progress protocol of rendered scripts, parsed line by line as the provider streams output:
//   CAPBM-STEP <id> start|done|skip       a step began, succeeded, or was already done
//   CAPBM-STEP <id> fail <exit code>      a step failed
//   CAPBM-RESULT ok | fail <id> <code>    the last line: the whole run, naming the first failed step
//   [capbm <id>] <text>                   output of a step

export type ProgressEvent =
  | { type: 'step'; id: string; event: 'start' | 'done' | 'skip' }
  | { type: 'step'; id: string; event: 'fail'; code: number }
  | { type: 'result'; ok: true }
  | { type: 'result'; ok: false; failedStep: string; code: number }
  | { type: 'output'; step: string; text: string }
  | { type: 'other'; text: string };

export function parseProgressLine(line: string): ProgressEvent {
  let m = /^CAPBM-STEP (\S+) (start|done|skip)$/.exec(line);
  if (m) return { type: 'step', id: m[1]!, event: m[2] as 'start' | 'done' | 'skip' };
  m = /^CAPBM-STEP (\S+) fail (\d+)$/.exec(line);
  if (m) return { type: 'step', id: m[1]!, event: 'fail', code: Number(m[2]) };
  if (line === 'CAPBM-RESULT ok') return { type: 'result', ok: true };
  m = /^CAPBM-RESULT fail (\S+) (\d+)$/.exec(line);
  if (m) return { type: 'result', ok: false, failedStep: m[1]!, code: Number(m[2]) };
  m = /^\[capbm (\S+)\] (.*)$/.exec(line);
  if (m) return { type: 'output', step: m[1]!, text: m[2]! };
  return { type: 'other', text: line };
}

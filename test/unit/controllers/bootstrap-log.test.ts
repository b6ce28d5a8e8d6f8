// The start and check scripts run under the local sh against a temp run directory (as the upload
// scripts do in test/unit/ssh/upload.test.ts), and the follower reads what they print: whole lines
// only, from a byte offset, at most a capped number of bytes per check.
import test from 'ava';
import { execa } from 'execa';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkScript,
  parseCheck,
  parseStart,
  RunLog,
  startScript,
  type CheckAnswer,
} from '../../../provider/controllers/bootstrap-log.ts';

const sh = async (script: string) => (await execa('sh', ['-c', script], { encoding: 'utf8' })).stdout;

function runDir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'capbm-run-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  chmodSync(d, 0o700);
  return d;
}

async function check(d: string, log: RunLog, max?: number): Promise<CheckAnswer> {
  const a = parseCheck(await sh(checkScript(d, log.offset, max)));
  log.take(a.chunk, max);
  return a;
}

/** Checks every 20 ms until the run ended and its log is read; bounded. */
async function follow(d: string, log: RunLog, max?: number): Promise<CheckAnswer> {
  for (let i = 0; i < 500; i++) {
    const a = await check(d, log, max);
    if ((a.rc !== undefined || !a.alive) && log.offset >= a.size) return a;
    if (a.alive) await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the run did not end within 500 checks');
}

const bootstrap = `echo "CAPBM-STEP a start"
echo "[capbm a] héllo wörld"
echo "CAPBM-STEP a done"
sleep 0.3
echo "CAPBM-STEP b start"
i=0; while [ $i -lt 8 ]; do echo "[capbm b] line $i token abcdef.0123456789abcdef"; i=$((i + 1)); done
echo "CAPBM-STEP b fail 7"
exit 7
`;

test('start, attach and check: the steps, the failed step with its last 5 lines redacted, the exit code', async (t) => {
  const d = runDir(t);
  t.is(parseStart(await sh(startScript(d))), 'no-script', 'nothing runs without a script');
  writeFileSync(`${d}/bootstrap.sh.new`, bootstrap, { mode: 0o600 });
  t.is(parseStart(await sh(startScript(d))), 'started');
  writeFileSync(`${d}/bootstrap.sh.new`, bootstrap, { mode: 0o600 });
  t.is(parseStart(await sh(startScript(d))), 'attached', 'a second start attaches to the run going');
  const steps: string[] = [];
  const log = new RunLog((id, e) => steps.push(`${id} ${e}`));
  const end = await follow(d, log);
  t.like(end, { rc: 7, alive: false, sentinel: false });
  t.deepEqual(steps, ['a start', 'a done', 'b start', 'b fail']);
  const out = log.outcome(true, end);
  t.deepEqual(out.failedStep, { id: 'b', code: 7 });
  t.deepEqual(
    out.tail,
    [3, 4, 5, 6, 7].map((i) => `line ${i} token [token]`),
  );
  t.is(log.offset, readFileSync(`${d}/log`).length, 'the whole log, by bytes (UTF-8 included)');
  t.is(parseStart(await sh(startScript(d))), 'ended', 'an ended run is never started again');
});

test('a check takes whole lines only, at most the cap per check, and resumes at the byte offset', async (t) => {
  const d = runDir(t);
  const lines = Array.from({ length: 40 }, (_, i) => `CAPBM-STEP s${i} start`);
  writeFileSync(`${d}/log`, `${lines.join('\n')}\nCAPBM-STEP s40 sta`); // a line being written
  writeFileSync(`${d}/rc`, '0\n');
  const seen: string[] = [];
  const log = new RunLog((id) => seen.push(id));
  const first = await check(d, log, 100);
  t.true(first.chunk.length <= 100);
  t.true(seen.length >= 3 && seen.length <= 5, 'only the whole lines of the first 100 bytes');
  t.is(log.offset, Buffer.byteLength(lines.slice(0, seen.length).join('\n') + '\n'));
  for (let i = 0; i < 100 && log.offset < first.size - 'CAPBM-STEP s40 sta'.length; i++) await check(d, log, 100);
  t.deepEqual(
    seen,
    lines.map((_, i) => `s${i}`),
    'every line once, in order',
  );
  const before = log.offset;
  await check(d, log, 100);
  t.is(log.offset, before, 'the partial last line waits for its newline');
});

test('a line longer than the cap is skipped past, not waited for', async (t) => {
  const d = runDir(t);
  writeFileSync(`${d}/log`, `${'x'.repeat(300)}\nCAPBM-STEP z start\n`);
  const seen: string[] = [];
  const log = new RunLog((id) => seen.push(id));
  for (let i = 0; i < 10 && log.offset < 319; i++) await check(d, log, 100);
  t.deepEqual(seen, ['z']);
});

test('a pid of another boot is not the run: it died without an exit code', async (t) => {
  const d = runDir(t);
  writeFileSync(`${d}/log`, 'CAPBM-STEP a start\n');
  writeFileSync(`${d}/pid`, `${process.pid}\n`); // alive, but ...
  writeFileSync(`${d}/boot`, '00000000-0000-0000-0000-000000000000\n'); // ... of an earlier boot
  const log = new RunLog();
  const a = await check(d, log);
  t.like(a, { rc: undefined, alive: false });
  t.deepEqual(log.outcome(false, a), { started: false, exitCode: undefined, sentinel: false, tail: [] });
  rmSync(`${d}/boot`); // a run started by an older provider (no boot file): its pid decides
  t.true((await check(d, new RunLog())).alive);
  // Started again: the dead run's script was used, so a new one is needed.
  t.is(parseStart(await sh(startScript(d))), 'attached');
  writeFileSync(`${d}/boot`, 'other\n');
  t.is(parseStart(await sh(startScript(d))), 'no-script');
});

test('parseCheck refuses output without its header', (t) => {
  t.throws(() => parseCheck('sudo: a password is required\n'), { message: /no CAPBM-CHECK line/ });
  t.throws(() => parseStart(''), { message: /no CAPBM-RUN line/ });
});

// hack/soak: see the header of hack/soak and test/harness/soak.ts.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { repoRoot } from '../test/harness/paths.ts';
import { FAULTS, runSoak, type FaultKind } from '../test/harness/soak.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    seed: { type: 'string' },
    cells: { type: 'string', default: '2' },
    'hosts-per-cell': { type: 'string', default: '3' },
    faults: { type: 'string' },
    'no-rollouts': { type: 'boolean', default: false },
  },
});
const int = (name: string, v: string | undefined, min: number, max: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`hack/soak: --${name} ${v} is not a whole number from ${min} to ${max}\n`);
    process.exit(2);
  }
  return n;
};
const seed = values.seed === undefined ? Date.now() % 1_000_000 : int('seed', values.seed, 0, 2 ** 31);
const minutes = int('minutes', values.minutes, 1, 24 * 60);
const faults = values.faults?.split(',').map((f) => f.trim()) as FaultKind[] | undefined;
const unknown = faults?.filter((f) => !FAULTS.includes(f) && f !== 'host-rebooted-mid-reset') ?? [];
if (unknown.length || faults?.length === 0) {
  process.stderr.write(
    `hack/soak: --faults ${values.faults}: unknown ${unknown.join(', ') || 'list'}; give a comma-separated list of ${[...FAULTS, 'host-rebooted-mid-reset'].join(', ')}\n`,
  );
  process.exit(2);
}
const reportDir = join(repoRoot, '.cache', 'soak');
mkdirSync(reportDir, { recursive: true });
const command = `${process.env.CAPBM_SOAK_COMMAND ?? 'hack/soak'}${values.seed === undefined ? ` (seed ${seed})` : ''}`;
const t0 = Date.now();
const log = (m: string) => process.stderr.write(`[soak ${Math.round((Date.now() - t0) / 1000)} s] ${m}\n`);
log(`seed ${seed}, ${minutes} minutes; report: ${reportDir}/soak-${seed}.md`);
const report = await runSoak({
  minutes,
  seed,
  cells: int('cells', values.cells, 1, 8),
  hostsPerCell: int('hosts-per-cell', values['hosts-per-cell'], 2, 8),
  ...(faults ? { faults } : {}),
  rollouts: !values['no-rollouts'],
  reportDir,
  command,
  log,
});
process.stdout.write(
  `${command}\n${JSON.stringify({ faults: report.faults, convergence: report.convergence, violations: report.violations.length, providerMemoryMiB: report.providerMemoryMiB, memory: report.memory }, null, 2)}\n`,
);
process.stdout.write(`report: ${reportDir}/soak-${seed}.md\n`);
process.exit(report.violations.length ? 1 : 0);

// The short fault soak (hack/soak is the long one): four minutes of cluster creates, scales and
// deletes on six lab hosts while a fixed seed's schedule kills the provider's leader and standby
// and the Cluster API managers and powers off, freezes and cuts off hosts. Every invariant of
// test/harness/soak.ts holds throughout and at the end: no host held by two machines, no
// Available host claimed or dirty, every Machine Running after the last fault, every deleted
// cluster's hosts Available (nothing of it left on them) or quarantined with a reason.
import test from 'ava';
import { join } from 'node:path';
import { repoRoot } from '../harness/paths.ts';
import { runSoak } from '../harness/soak.ts';

test('a short soak under faults ends with no invariant violated', async (t) => {
  t.timeout(30 * 60_000);
  const report = await runSoak({
    minutes: 4,
    seed: 7,
    reportDir: join(repoRoot, '.cache', 'soak'),
    command: 'hack/test test/e2e/soak.test.ts (seed 7, 4 minutes)',
    log: (m) => process.stderr.write(`    soak: ${m}\n`),
  });
  t.log(`faults ${JSON.stringify(report.faults)}; workload ${JSON.stringify(report.operations)}`);
  t.log(
    `provider memory ${report.providerMemoryMiB.start} -> ${report.providerMemoryMiB.end} MiB; ${report.checks} checks`,
  );
  t.deepEqual(report.violations, []);
  t.true(Object.keys(report.faults).length > 0, 'faults were injected');
});

// The short fault soak (hack/soak is the long one): four minutes of cluster creates, scales and
// deletes on six lab hosts while a fixed seed's schedule injects faults of every kind
// (test/harness/soak.ts: the provider's replicas, the Cluster API managers, kube-apiserver and
// etcd killed; hosts powered off, mid-reset too, with state truncated, frozen, cut off, their state
// disk full). Every invariant holds throughout and at the end: no host held by two machines, a
// claim shown within a minute, no Available host dirty, no once-step of a bootstrap started again
// after it was done, every Machine Running after the last fault, every deleted cluster's hosts
// Available (nothing of it left on them) or quarantined with a reason.
import test from 'ava';
import { join } from 'node:path';
import { repoRoot } from '../harness/paths.ts';
import { runSoak } from '../harness/soak.ts';

test('a short soak under faults ends with no invariant violated', async (t) => {
  t.timeout(30 * 60_000);
  const report = await runSoak({
    minutes: 4,
    seed: 7,
    // Seed 7's schedule is the one measured run after run in CI; rollouts (machines replaced by
    // spec.rollout.after) change it and run in hack/soak, the long soak.
    rollouts: false,
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

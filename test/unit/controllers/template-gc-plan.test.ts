import test from 'ava';
import fc from 'fast-check';
import { nextTemplateGcStep, type TemplateGcFacts } from '../../../provider/controllers/template-gc-plan.ts';

const grace = 300_000;
const t0 = Date.parse('2026-01-01T00:00:00Z');
const base: TemplateGcFacts = {
  deleting: false,
  nowMs: t0 + 3_600_000,
  createdMs: t0,
  graceMs: grace,
  referencedBy: [],
  cluster: 'demo',
  clusterExists: true,
};

test('a referenced template is kept, whatever its age', (t) => {
  t.deepEqual(nextTemplateGcStep({ ...base, referencedBy: ['MachineSet/demo-md-0-abcde'] }), {
    kind: 'keep',
    referencedBy: ['MachineSet/demo-md-0-abcde'],
  });
});

test('an unreferenced template waits the grace period from when it was first seen unused, then goes', (t) => {
  const first = nextTemplateGcStep(base);
  t.deepEqual(first, { kind: 'wait', reason: 'Unreferenced', unusedSinceMs: base.nowMs, requeueAfterMs: grace });
  const later = { ...base, unusedSinceMs: base.nowMs, nowMs: base.nowMs + grace - 1 };
  t.like(nextTemplateGcStep(later), { kind: 'wait', requeueAfterMs: 1 });
  t.like(nextTemplateGcStep({ ...later, nowMs: base.nowMs + grace }), { kind: 'delete', reason: 'Unreferenced' });
});

test('a template younger than the grace period is never deleted (its MachineDeployment may be on its way)', (t) => {
  const young = { ...base, createdMs: base.nowMs - 1000, unusedSinceMs: base.nowMs - 1000 };
  t.deepEqual(nextTemplateGcStep(young), {
    kind: 'wait',
    reason: 'TooNew',
    unusedSinceMs: base.nowMs - 1000,
    requeueAfterMs: grace - 1000,
  });
});

test("a cluster's templates go once the Cluster is gone, even while something still references them", (t) => {
  const gone = { ...base, clusterExists: false, referencedBy: ['MachineDeployment/demo-md-0'] };
  t.like(nextTemplateGcStep(gone), { kind: 'wait', reason: 'ClusterDeleted' });
  const step = nextTemplateGcStep({ ...gone, unusedSinceMs: base.nowMs - grace });
  t.like(step, { kind: 'delete', reason: 'ClusterDeleted' });
  t.regex(step.kind === 'delete' ? step.message : '', /Cluster demo has been gone/);
});

test('without a cluster label only references count', (t) => {
  const { cluster: _c, ...noLabel } = base;
  t.like(nextTemplateGcStep({ ...noLabel, clusterExists: false, referencedBy: ['KubeadmControlPlane/x'] }), {
    kind: 'keep',
  });
});

test('a template being deleted is left alone', (t) => {
  t.deepEqual(nextTemplateGcStep({ ...base, deleting: true }), { kind: 'none' });
});

test('property: nothing is deleted before both the creation and the first unused sighting are a grace period old', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10 * grace }),
      fc.integer({ min: 0, max: 10 * grace }),
      fc.integer({ min: 0, max: 10 * grace }),
      fc.boolean(),
      fc.boolean(),
      (created, since, now, referenced, clusterExists) => {
        const f: TemplateGcFacts = {
          ...base,
          createdMs: created,
          unusedSinceMs: since,
          nowMs: now,
          referencedBy: referenced ? ['MachineDeployment/a'] : [],
          clusterExists,
        };
        const step = nextTemplateGcStep(f);
        if (step.kind === 'delete') {
          return now >= created + grace && now >= since + grace && (!referenced || !clusterExists);
        }
        if (step.kind === 'wait') return step.requeueAfterMs > 0;
        return step.kind === 'keep' && referenced && clusterExists;
      },
    ),
  );
  t.pass();
});

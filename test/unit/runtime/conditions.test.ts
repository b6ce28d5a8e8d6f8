// Conditions as a user reads them with kubectl: v1beta2 and v1beta1 layouts, transition times,
// summaries and the Paused condition.
import test from 'ava';
import {
  getCondition,
  getV1Beta1Condition,
  getV1Beta1Conditions,
  setCondition,
  setPausedCondition,
  setSummary,
  setV1Beta1Condition,
  setV1Beta1Summary,
  deleteCondition,
  observedAt,
  type ConditionedObject,
} from '../../../provider/runtime/conditions.ts';

const t0 = new Date('2026-01-01T00:00:00.123Z');
const t1 = new Date('2026-01-01T00:05:00Z');

test('v1beta2: lastTransitionTime moves only when the status flips; observedGeneration follows the object', (t) => {
  const obj: ConditionedObject = { metadata: { generation: 3 } };
  t.true(
    setCondition(obj, { type: 'HostClaimed', status: false, reason: 'NoHostAvailable', message: 'pool empty' }, t0),
  );
  t.deepEqual(getCondition(obj, 'HostClaimed'), {
    type: 'HostClaimed',
    status: 'False',
    reason: 'NoHostAvailable',
    message: 'pool empty',
    lastTransitionTime: '2026-01-01T00:00:00Z',
    observedGeneration: 3,
  });
  t.true(
    setCondition(obj, { type: 'HostClaimed', status: false, reason: 'NoHostAvailable', message: 'still empty' }, t1),
  );
  t.is(getCondition(obj, 'HostClaimed')?.lastTransitionTime, '2026-01-01T00:00:00Z');
  t.false(
    setCondition(obj, { type: 'HostClaimed', status: false, reason: 'NoHostAvailable', message: 'still empty' }, t1),
  );
  t.true(setCondition(obj, { type: 'HostClaimed', status: true, reason: 'Claimed' }, t1));
  t.is(getCondition(obj, 'HostClaimed')?.lastTransitionTime, '2026-01-01T00:05:00Z');
  t.true(deleteCondition(obj, 'HostClaimed'));
  t.deepEqual(obj.status?.conditions, []);
});

test('v1beta2 Ready summary: issues beat unknowns beat True, negative polarity and missing types respected', (t) => {
  const obj: ConditionedObject = {};
  setCondition(obj, { type: 'A', status: true, reason: 'Ok' }, t0);
  setCondition(obj, { type: 'Paused', status: false, reason: 'NotPaused' }, t0);
  setSummary(obj, 'Ready', ['A', 'Paused', 'B'], { negativePolarity: ['Paused'], ignoreIfMissing: ['B'], now: t0 });
  t.like(getCondition(obj, 'Ready'), { status: 'True', reason: 'InfoReported' });
  setSummary(obj, 'Ready', ['A', 'B'], { now: t1 });
  t.like(getCondition(obj, 'Ready'), {
    status: 'Unknown',
    reason: 'UnknownReported',
    message: '* B: Condition B not yet reported',
  });
  setCondition(obj, { type: 'B', status: false, reason: 'SSHFailed', message: 'auth failed' }, t1);
  setSummary(obj, 'Ready', ['A', 'B'], { now: t1 });
  t.like(getCondition(obj, 'Ready'), { status: 'False', reason: 'IssuesReported', message: '* B: auth failed' });
});

test('Paused condition follows Cluster spec.paused and the paused annotation', (t) => {
  const obj: ConditionedObject = { metadata: { annotations: {} } };
  t.false(setPausedCondition(obj, { spec: { paused: false } }, t0));
  t.like(getCondition(obj, 'Paused'), { status: 'False', reason: 'NotPaused' });
  t.true(setPausedCondition(obj, { spec: { paused: true } }, t0));
  t.like(getCondition(obj, 'Paused'), {
    status: 'True',
    reason: 'Paused',
    message: 'Cluster spec.paused is set to true',
  });
  obj.metadata!.annotations!['cluster.x-k8s.io/paused'] = '';
  t.true(setPausedCondition(obj, undefined, t0));
  t.like(getCondition(obj, 'Paused'), { message: 'Object has cluster.x-k8s.io/paused annotation' });
});

test('v1beta1 conditions live under status.deprecated.v1beta1 with severity, Ready first', (t) => {
  const obj: ConditionedObject = { status: { conditions: [] } };
  setV1Beta1Condition(obj, { type: 'Zeta', status: true }, t0);
  setV1Beta1Condition(obj, { type: 'Alpha', status: false, severity: 'Error', reason: 'Broken', message: 'm' }, t0);
  setV1Beta1Summary(obj, ['Zeta', 'Alpha'], t0);
  t.deepEqual(
    getV1Beta1Conditions(obj).map((c) => c.type),
    ['Ready', 'Alpha', 'Zeta'],
  );
  t.deepEqual(getV1Beta1Condition(obj, 'Ready'), {
    type: 'Ready',
    status: 'False',
    severity: 'Error',
    reason: 'Broken',
    message: 'm',
    lastTransitionTime: '2026-01-01T00:00:00Z',
  });
  t.deepEqual(obj.status?.conditions, [], 'v1beta2 list untouched');
  // v1beta1 moves lastTransitionTime when the message changes (setter.go HasSameState).
  setV1Beta1Condition(obj, { type: 'Alpha', status: false, severity: 'Error', reason: 'Broken', message: 'm2' }, t1);
  t.is(getV1Beta1Condition(obj, 'Alpha')?.lastTransitionTime, '2026-01-01T00:05:00Z');
  setV1Beta1Condition(obj, { type: 'Alpha', status: true }, t1);
  setV1Beta1Summary(obj, ['Zeta', 'Alpha'], t1);
  t.deepEqual(getV1Beta1Condition(obj, 'Ready'), {
    type: 'Ready',
    status: 'True',
    lastTransitionTime: '2026-01-01T00:05:00Z',
  });
});

test('conditions set with our own spec change are observed at the generation it made; others keep theirs', (t) => {
  const o: ConditionedObject = { metadata: { generation: 1 }, status: {} };
  setCondition(o, { type: 'Ready', status: true, reason: 'Done' }, t0);
  o.status!.conditions!.push({
    type: 'Old',
    status: 'True',
    reason: 'X',
    lastTransitionTime: '',
    observedGeneration: 0,
  });
  const moved = observedAt(o, 1, 2);
  t.is(getCondition(moved, 'Ready')?.observedGeneration, 2);
  t.is(getCondition(moved, 'Old')?.observedGeneration, 0);
  t.is(getCondition(o, 'Ready')?.observedGeneration, 1, 'a copy: the working copy is untouched');
  t.is(observedAt(o, 1, 1), o, 'no new generation: nothing to move');
});

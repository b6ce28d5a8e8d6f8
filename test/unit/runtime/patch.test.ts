// The patch helper's pure core: merge-patch diffs, and condition changes merged by type.
import test from 'ava';
import fc from 'fast-check';
import { applyConditionOps, diffConditions, mergePatch } from '../../../provider/runtime/patch.ts';

/** RFC 7386 apply, to check diffs round-trip. */
function applyMerge(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else
      Object.defineProperty(out, k, {
        value: applyMerge(Object.hasOwn(out, k) ? out[k] : undefined, v),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return out;
}

test('mergePatch: nothing for equal objects, only changed fields otherwise, null for removed keys', (t) => {
  t.is(mergePatch({ a: 1, b: { c: [1] } }, { a: 1, b: { c: [1] } }), undefined);
  // "__proto__" is a JSON key like any other (found by the property below)
  const withProto = JSON.parse('{"a":{"__proto__":"x"}}') as object;
  t.is(JSON.stringify(mergePatch({ a: {} }, withProto)), '{"a":{"__proto__":"x"}}');
  t.is(JSON.stringify(mergePatch(withProto, { a: {} })), '{"a":{"__proto__":null}}');
  t.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { a: 1, b: { c: 4 } }), { b: { c: 4, d: null } });
  t.deepEqual(mergePatch({ l: [1, 2] }, { l: [1] }), { l: [1] });
});

/**
 * The value as JSON would carry it: plain objects (fast-check makes some with a null prototype), own
 * keys only, 0 for -0. Not JSON.parse(JSON.stringify(v)): Node 24.21's JSON.parse now and then read
 * a key "\"" as "\\" (this property failed so in 2 of some 300 runs; reproduced in a loop with
 * fast-check seed 453693827, 422,510 cases in one process).
 */
const plain = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(plain)
    : typeof v === 'object' && v !== null
      ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
      : v === 0
        ? 0
        : v;

test('property: applying mergePatch(before, after) to before gives after (null-free JSON)', (t) => {
  const json = fc.jsonValue().filter((v) => !JSON.stringify(v).includes('null') && !JSON.stringify(v).includes('-0'));
  // Keys Object.prototype also has are keys like any other in JSON.
  const key = fc.oneof(fc.string({ maxLength: 3 }), fc.constantFrom('__proto__', 'constructor', 'toString'));
  const obj = fc.dictionary(key, json, { maxKeys: 5 });
  fc.assert(
    fc.property(obj, obj, (a, b) => {
      const p = mergePatch(a, b);
      const result = p === undefined ? a : applyMerge(a, p);
      t.deepEqual(plain(result), plain(b));
    }),
    { numRuns: 1000 },
  );
});

const c = (type: string, status: 'True' | 'False', reason = 'R', ltt = '2026-01-01T00:00:00Z') => ({
  type,
  status,
  reason,
  message: '',
  lastTransitionTime: ltt,
});

test('our condition change is applied onto a list another writer changed elsewhere', (t) => {
  const before = [c('A', 'False')];
  const after = [c('A', 'True'), c('Mine', 'True')];
  const latest = [c('A', 'False'), c('Theirs', 'False')];
  const merged = applyConditionOps(latest, diffConditions(before, after));
  t.deepEqual(
    merged.map((x) => `${x.type}=${x.status}`),
    ['A=True', 'Theirs=False', 'Mine=True'],
  );
});

test('a conflicting change of the same condition type is surfaced, unless owned', (t) => {
  const ops = diffConditions([c('A', 'False')], [c('A', 'True', 'Ok')]);
  t.throws(() => applyConditionOps([c('A', 'Unknown' as 'True', 'Other')], ops), {
    message: /changed by another writer/,
  });
  t.deepEqual(applyConditionOps([c('A', 'Unknown' as 'True', 'Other')], ops, ['A']), [c('A', 'True', 'Ok')]);
  t.deepEqual(
    applyConditionOps([c('A', 'True', 'Ok', 'later')], ops),
    [c('A', 'True', 'Ok', 'later')],
    'same state: keep theirs',
  );
  t.throws(() => applyConditionOps([], ops), { message: /deleted by another writer/ });
});

test('removing a condition removes only that type', (t) => {
  const ops = diffConditions([c('A', 'True'), c('B', 'True')], [c('B', 'True')]);
  t.deepEqual(applyConditionOps([c('A', 'True'), c('B', 'True'), c('C', 'True')], ops), [
    c('B', 'True'),
    c('C', 'True'),
  ]);
});

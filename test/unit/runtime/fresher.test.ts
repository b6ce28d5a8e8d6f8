import test from 'ava';
import type { KubeObject } from '../../../provider/kube/kinds.ts';
import type { EventHandlers } from '../../../provider/runtime/informer.ts';
import { Fresher } from '../../../provider/runtime/writer.ts';

const obj = (rv: number): KubeObject => ({ metadata: { namespace: 'ns', name: 'o', resourceVersion: String(rv) } });

/** The part of an informer Fresher.follow uses: it registers handlers the test calls. */
function source() {
  const handlers: EventHandlers<KubeObject>[] = [];
  return { addEventHandler: (h: EventHandlers<KubeObject>) => void handlers.push(h), handlers };
}

test('a written copy is served until the cache catches up, then let go', (t) => {
  const src = source();
  const f = new Fresher<KubeObject>().follow(src);
  const written = obj(7);
  f.remember('ns/o', written);
  t.is(f.pick('ns/o', obj(6)), written); // the cache lags: the write wins
  for (const h of src.handlers) h.update?.(obj(6), obj(6)); // an older event: still held
  t.is(f.size, 1);
  for (const h of src.handlers) h.update?.(obj(6), obj(7)); // the cache has it: let go
  t.is(f.size, 0);
  const cached = obj(7);
  t.is(f.pick('ns/o', cached), cached);
});

test('a deleted object is let go', (t) => {
  const src = source();
  const f = new Fresher<KubeObject>().follow(src);
  f.remember('ns/o', obj(9));
  for (const h of src.handlers) h.delete?.(obj(8));
  t.is(f.size, 0);
});

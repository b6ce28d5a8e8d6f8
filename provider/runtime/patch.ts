// "Patch once per loop, only if changed" (cluster-api docs/book/src/developer/core/tuning.md):
// a reconciler takes a working copy of the object, changes it freely, and at the end
// patchObject() sends at most one patch for metadata/spec and one for status, each only if
// something changed.
//
// Why JSON merge patch of the diff (and not server-side apply): it is what cluster-api's own
// patch helper does (util/patch/patch.go), so we cooperate with CAPI, which writes labels, owner
// references and annotations on our objects with merge patches; SSA would make us send our full
// intent every time and silently remove fields we stopped sending, and it only merges conditions
// by type where the schema says `x-kubernetes-list-type: map`, which the v1beta1 condition lists
// of CAPI objects do not.
// How no concurrent change is lost:
// - A merge patch carries only the fields we changed, so other writers' fields survive.
// - Lists are replaced whole by a merge patch (finalizers, ownerReferences, addresses, ...), so a
//   patch that contains a list also carries metadata.resourceVersion: if someone wrote in between,
//   the API server answers 409 and we throw PatchConflict (the controller requeues and the next pass
//   starts from the fresh object). Patches without lists stay optimistic-lock free (fewer conflicts
//   at scale).
// - Conditions are merged by type as util/conditions/patch.go does: we compute which condition
//   types we added, changed or removed, apply exactly those to the latest list on the server and
//   send that list with the latest resourceVersion, retrying on 409; only if another writer changed
//   the same condition type differently do we give up with PatchConflict (unless the type is owned).
import type { KubeConfig } from '@kubernetes/client-node';
import { ApiError, raw } from '../kube/raw.ts';
import { observedAt, type Condition, type V1Beta1Condition } from './conditions.ts';
import { objectPath, type KubeObject, type ResourceKind } from '../kube/kinds.ts';
import { deepEqual, isObject, own, put, type Json, type JsonObject } from './json.ts';

export { deepEqual } from './json.ts';

type AnyCondition = Condition | V1Beta1Condition;

export class PatchConflict extends Error {
  readonly object: string;
  constructor(object: string, detail: string) {
    super(`${object}: ${detail}; another writer changed it, reconcile again from the fresh object`);
    this.name = 'PatchConflict';
    this.object = object;
  }
}

/** RFC 7386 merge patch turning `before` into `after`; undefined when they are equal. */
export function mergePatch(before: unknown, after: unknown): Json | undefined {
  if (deepEqual(before, after)) return undefined;
  if (!isObject(before) || !isObject(after)) return (after ?? null) as Json;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(after)) {
    if (v === undefined) continue;
    const d = mergePatch(own(before, k), v);
    if (d !== undefined) put(out, k, d);
  }
  for (const k of Object.keys(before)) if (before[k] !== undefined && own(after, k) === undefined) put(out, k, null);
  return Object.keys(out).length ? out : undefined;
}

function containsList(v: Json | undefined): boolean {
  if (Array.isArray(v)) return true;
  return isObject(v) && Object.values(v).some(containsList);
}

export type ConditionOp =
  | { op: 'add'; after: AnyCondition }
  | { op: 'change'; before: AnyCondition; after: AnyCondition }
  | { op: 'remove'; before: AnyCondition };

/** The condition types we added, changed or removed (util/conditions/patch.go NewPatch). */
export function diffConditions(before: AnyCondition[] = [], after: AnyCondition[] = []): ConditionOp[] {
  const ops: ConditionOp[] = [];
  for (const a of after) {
    const b = before.find((c) => c.type === a.type);
    if (!b) ops.push({ op: 'add', after: a });
    else if (!deepEqual(a, b)) ops.push({ op: 'change', before: b, after: a });
  }
  for (const b of before) if (!after.some((c) => c.type === b.type)) ops.push({ op: 'remove', before: b });
  return ops;
}

const sameState = (a: AnyCondition, b: AnyCondition) =>
  a.status === b.status &&
  (a.reason ?? '') === (b.reason ?? '') &&
  (a.message ?? '') === (b.message ?? '') &&
  ((a as V1Beta1Condition).severity ?? '') === ((b as V1Beta1Condition).severity ?? '');

/**
 * Applies our condition changes to the latest list (util/conditions/patch.go Apply). Throws a
 * message when another writer changed the same type to something else, unless the type is owned.
 */
function applyOwned(out: AnyCondition[], o: ConditionOp): void {
  const i = out.findIndex((c) => c.type === opType(o));
  if (o.op === 'remove') {
    if (i >= 0) out.splice(i, 1);
  } else if (i < 0) out.push(o.after);
  else out[i] = o.after;
}

const opType = (o: ConditionOp) => (o.op === 'remove' ? o.before.type : o.after.type);

/** One op on a condition another writer may also have touched; throws what went wrong. */
function applyShared(out: AnyCondition[], o: ConditionOp): void {
  const type = opType(o);
  const i = out.findIndex((c) => c.type === type);
  const current = out[i];
  if (o.op === 'add') {
    if (current && !sameState(current, o.after)) throw new Error(`condition ${type} was added by another writer`);
    if (!current) out.push(o.after);
  } else if (o.op === 'change') {
    if (!current) throw new Error(`condition ${type} was deleted by another writer`);
    if (deepEqual(current, o.before)) out[i] = o.after;
    else if (!sameState(current, o.after)) throw new Error(`condition ${type} was changed by another writer`);
  } else if (current) {
    if (!sameState(current, o.before)) throw new Error(`condition ${type} was changed by another writer`);
    out.splice(i, 1);
  }
}

/**
 * Applies our condition changes to the latest list (util/conditions/patch.go Apply). Throws a
 * message when another writer changed the same type to something else, unless the type is owned.
 */
export function applyConditionOps(
  latest: AnyCondition[] = [],
  ops: ConditionOp[],
  owned: string[] = [],
): AnyCondition[] {
  const out = [...latest];
  for (const o of ops) {
    if (owned.includes(opType(o))) applyOwned(out, o);
    else applyShared(out, o);
  }
  return out;
}

/** Where condition lists live (conditions.ts): v1beta2 and the deprecated v1beta1 list. */
export const conditionPaths: string[][] = [
  ['status', 'conditions'],
  ['status', 'deprecated', 'v1beta1', 'conditions'],
];

function getPath(obj: unknown, path: string[]): unknown {
  let cur = obj;
  for (const p of path) cur = isObject(cur) ? cur[p] : undefined;
  return cur;
}

function setPath(obj: JsonObject, path: string[], value: Json): void {
  let cur = obj;
  for (const p of path.slice(0, -1)) {
    if (!isObject(cur[p])) cur[p] = {};
    cur = cur[p];
  }
  cur[path[path.length - 1]!] = value;
}

/** A copy of obj without the condition lists (they are merged by type, not diffed). */
function withoutConditions(obj: unknown): unknown {
  const copy = structuredClone(obj) as JsonObject;
  for (const path of conditionPaths) {
    const parent = getPath(copy, path.slice(0, -1));
    if (isObject(parent)) delete parent[path[path.length - 1]!];
  }
  return copy;
}

const ignoredMeta = ['resourceVersion', 'managedFields', 'generation', 'creationTimestamp', 'uid', 'selfLink'];

function mainPart(obj: KubeObject): JsonObject {
  const { status: _status, ...rest } = obj;
  const metadata = { ...(rest.metadata ?? {}) } as JsonObject;
  for (const k of ignoredMeta) delete metadata[k];
  return { ...(rest as JsonObject), metadata };
}

export interface PatchOptions {
  /** Condition types this controller owns: our change wins even if another writer changed them. */
  ownedConditions?: string[];
  /** Whether the kind has a status subresource. Default true. */
  statusSubresource?: boolean;
  /** Retries of the status patch after 409. Default 5. */
  maxRetries?: number;
  /**
   * The newest copy this process has (an informer cache), used for the status patch's
   * resourceVersion and condition merge when it is newer than the one read: a change another
   * controller made meanwhile (CAPI's to metadata) then costs no 409 and no GET.
   */
  newest?: () => KubeObject | undefined;
}

export interface PatchResult<T> {
  /** The object as the server returned it after the last patch (or `after` unchanged). */
  object: T;
  patchedMain: boolean;
  patchedStatus: boolean;
}

/**
 * Sends the changes from `before` (as fetched) to `after` (as modified): at most one patch of
 * metadata/spec and one of status. Throws PatchConflict when a concurrent change forbids ours.
 */
export async function patchObject<T extends KubeObject>(
  kc: KubeConfig,
  kind: ResourceKind,
  change: { before: T; after: T },
  options: PatchOptions = {},
): Promise<PatchResult<T>> {
  const { before, after } = change;
  const name = after.metadata?.name ?? '';
  const ns = after.metadata?.namespace;
  const id = `${kind.kind} ${ns ? `${ns}/` : ''}${name}`;
  const main = await patchMain(kc, kind, { id, before, after, latest: before });
  const latest = newer(main ?? before, options.newest?.() as T | undefined);
  // Conditions set in the same pass as our spec change describe it: observed at its generation
  // (otherwise the next pass writes the status again only to move observedGeneration).
  const observed = main ? observedAt(after, before.metadata?.generation, main.metadata?.generation) : after;
  const patchedStatus = await patchStatus(kc, kind, { id, before, after: observed, latest }, options);
  return {
    object: patchedStatus ?? latest,
    patchedMain: main !== undefined,
    patchedStatus: patchedStatus !== undefined,
  };
}

const rv = (o: KubeObject | undefined) => Number(o?.metadata?.resourceVersion ?? NaN);

/** The newer of two copies of one object, by resourceVersion (etcd revisions); `a` when unsure. */
function newer<T extends KubeObject>(a: T, b: T | undefined): T {
  return b && rv(b) > rv(a) ? b : a;
}

async function patchMain<T extends KubeObject>(
  kc: KubeConfig,
  kind: ResourceKind,
  { id, before, after }: StatusInput<T>,
): Promise<T | undefined> {
  const main = mergePatch(mainPart(before), mainPart(after));
  if (main === undefined) return undefined;
  const body = main as JsonObject;
  if (containsList(main)) setPath(body, ['metadata', 'resourceVersion'], before.metadata?.resourceVersion ?? null);
  try {
    return await raw<T>(kc, 'PATCH', objectPath(kind, after.metadata?.namespace, after.metadata?.name ?? ''), body);
  } catch (err) {
    if (err instanceof ApiError && err.code === 409) throw new PatchConflict(id, 'metadata/spec changed meanwhile');
    throw err;
  }
}

interface StatusInput<T> {
  id: string;
  before: T;
  after: T;
  latest: T;
}

function statusChange(before: KubeObject, after: KubeObject) {
  const plain = mergePatch(
    getPath(withoutConditions(before), ['status']),
    getPath(withoutConditions(after), ['status']),
  );
  const ops = conditionPaths.map((p) =>
    diffConditions(getPath(before, p) as AnyCondition[] | undefined, getPath(after, p) as AnyCondition[] | undefined),
  );
  return { plain, ops };
}

function statusTarget(kind: ResourceKind, obj: KubeObject, options: PatchOptions) {
  const name = obj.metadata?.name ?? '';
  const ns = obj.metadata?.namespace;
  return {
    path: objectPath(kind, ns, name, options.statusSubresource === false ? undefined : 'status'),
    getPath: objectPath(kind, ns, name),
    maxRetries: options.maxRetries ?? 5,
  };
}

async function patchStatus<T extends KubeObject>(
  kc: KubeConfig,
  kind: ResourceKind,
  { id, before, after, latest }: StatusInput<T>,
  options: PatchOptions,
): Promise<T | undefined> {
  const { plain, ops } = statusChange(before, after);
  if (plain === undefined && ops.every((o) => o.length === 0)) return undefined;
  const { path, getPath: freshPath, maxRetries } = statusTarget(kind, after, options);
  let current = latest;
  for (let attempt = 0; ; attempt++) {
    const body = statusBody(id, current, { plain, ops, owned: options.ownedConditions });
    try {
      return await raw<T>(kc, 'PATCH', path, body);
    } catch (err) {
      if (isGoneWhileDeleting(err, before)) return undefined; // finalizer removed: gone
      if (!(err instanceof ApiError) || err.code !== 409) throw err;
      if (attempt >= maxRetries) throw new PatchConflict(id, 'status kept changing');
      current = await raw<T>(kc, 'GET', freshPath);
    }
  }
}

const isGoneWhileDeleting = (err: unknown, obj: KubeObject) =>
  err instanceof ApiError && err.code === 404 && obj.metadata?.deletionTimestamp !== undefined;

interface StatusChange {
  plain: Json | undefined;
  ops: ConditionOp[][];
  owned: string[] | undefined;
}

function statusBody(id: string, current: KubeObject, { plain, ops, owned }: StatusChange): JsonObject {
  const body: JsonObject = { status: isObject(plain) ? structuredClone(plain) : {} };
  let needsLock = containsList(plain);
  conditionPaths.forEach((p, i) => {
    if (!ops[i]!.length) return;
    try {
      setPath(
        body,
        p,
        applyConditionOps(getPath(current, p) as AnyCondition[] | undefined, ops[i]!, owned) as unknown as Json,
      );
    } catch (err) {
      throw new PatchConflict(id, (err as Error).message);
    }
    needsLock = true;
  });
  if (needsLock) body.metadata = { resourceVersion: current.metadata?.resourceVersion ?? null };
  return body;
}

/**
 * The usual shape in a reconciler: `const h = patchHelper(kc, kind, fetched); mutate h.obj; await h.patch();`
 * h.obj is a deep copy, so the cached object stays untouched.
 */
export function patchHelper<T extends KubeObject>(
  kc: KubeConfig,
  kind: ResourceKind,
  fetched: T,
  options: PatchOptions = {},
) {
  const before = structuredClone(fetched);
  const obj = structuredClone(fetched);
  return { obj, patch: () => patchObject(kc, kind, { before, after: obj }, options) };
}

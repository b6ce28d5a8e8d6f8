// Conditions for both CAPI contract generations, laid out as the Docker provider does
// (cluster-api test/infrastructure/docker/api/v1beta2/dockermachine_types.go):
//   status.conditions                       []metav1.Condition   (v1beta2 contract)
//   status.deprecated.v1beta1.conditions    []clusterv1.Condition (v1beta1 contract, with severity)
// Pure functions on plain objects: the reconciler mutates its copy, the patch helper (patch.ts)
// sends the difference and merges condition lists by type.
// Semantics follow cluster-api util/conditions (v1beta2: lastTransitionTime changes only when
// status flips, as meta.SetStatusCondition) and util/conditions/deprecated/v1beta1/setter.go
// (v1beta1: it changes when status, reason, severity or message change; Ready sorts first).

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** metav1.Condition */
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message?: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export type Severity = 'Error' | 'Warning' | 'Info' | '';

/** clusterv1beta1.Condition */
export interface V1Beta1Condition {
  type: string;
  status: ConditionStatus;
  severity?: Severity;
  reason?: string;
  message?: string;
  lastTransitionTime: string;
}

export interface ConditionedObject {
  metadata?: { generation?: number; annotations?: Record<string, string> };
  status?: {
    conditions?: Condition[];
    deprecated?: { v1beta1?: { conditions?: V1Beta1Condition[]; [k: string]: unknown }; [k: string]: unknown };
    [k: string]: unknown;
  };
}

export const ReadyCondition = 'Ready';
export const PausedCondition = 'Paused';
export const DeletingCondition = 'Deleting';
// cluster-api api/core/v1beta2/condition_consts.go
export const PausedReason = 'Paused';
export const NotPausedReason = 'NotPaused';
export const PausedAnnotation = 'cluster.x-k8s.io/paused';

/** Conditions use second precision on the wire (metav1.Time). */
export const nowRfc3339 = (d = new Date()): string =>
  new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');

// ---------- v1beta2: status.conditions ----------

export function getCondition(obj: ConditionedObject, type: string): Condition | undefined {
  return obj.status?.conditions?.find((c) => c.type === type);
}

export const isTrue = (obj: ConditionedObject, type: string): boolean => getCondition(obj, type)?.status === 'True';
export const isFalse = (obj: ConditionedObject, type: string): boolean => getCondition(obj, type)?.status === 'False';

export interface ConditionInput {
  type: string;
  status: ConditionStatus | boolean;
  reason: string;
  message?: string;
}

const toStatus = (s: ConditionStatus | boolean): ConditionStatus => (s === true ? 'True' : s === false ? 'False' : s);

/**
 * Sets a v1beta2 condition; observedGeneration is the object's generation; lastTransitionTime is
 * kept unless the status flips. Returns true if anything changed.
 */
function newCondition(obj: ConditionedObject, input: ConditionInput, now: Date): Condition {
  const generation = obj.metadata?.generation;
  return {
    type: input.type,
    status: toStatus(input.status),
    reason: input.reason,
    message: input.message ?? '',
    lastTransitionTime: nowRfc3339(now),
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
}

/** A copy of obj whose v1beta2 conditions observed at generation `was` are observed at `now`. */
export function observedAt<T extends object>(obj: T, was: number | undefined, now: number | undefined): T {
  if (was === undefined || now === undefined || was === now) return obj;
  const copy = structuredClone(obj);
  for (const c of (copy as ConditionedObject).status?.conditions ?? [])
    if (c.observedGeneration === was) c.observedGeneration = now;
  return copy;
}

const sameCondition = (a: Condition, b: Condition) =>
  a.status === b.status &&
  a.reason === b.reason &&
  (a.message ?? '') === (b.message ?? '') &&
  a.observedGeneration === b.observedGeneration;

export function setCondition(obj: ConditionedObject, input: ConditionInput, now: Date = new Date()): boolean {
  const list = ((obj.status ??= {}).conditions ??= []);
  const next = newCondition(obj, input, now);
  const i = list.findIndex((c) => c.type === input.type);
  const existing = list[i];
  if (!existing) {
    list.push(next);
    return true;
  }
  if (existing.status === next.status) next.lastTransitionTime = existing.lastTransitionTime;
  if (sameCondition(existing, next)) return false;
  list[i] = next;
  return true;
}

export function deleteCondition(obj: ConditionedObject, type: string): boolean {
  const list = obj.status?.conditions;
  const i = list?.findIndex((c) => c.type === type) ?? -1;
  if (i < 0) return false;
  list!.splice(i, 1);
  return true;
}

export interface SummaryOptions {
  /** Conditions that are fine when False (e.g. Paused, Deleting). */
  negativePolarity?: string[];
  /** Types that may be missing without making the summary Unknown. */
  ignoreIfMissing?: string[];
  /** Reasons, defaults after cluster-api util/conditions/merge_strategies.go. */
  issueReason?: string;
  unknownReason?: string;
  trueReason?: string;
}

function classify(obj: ConditionedObject, types: string[], o: SummaryOptions) {
  const issues: string[] = [];
  const unknown: string[] = [];
  for (const type of types) {
    const c = getCondition(obj, type);
    if (!c) {
      if (!o.ignoreIfMissing?.includes(type)) unknown.push(`* ${type}: Condition ${type} not yet reported`);
      continue;
    }
    const good = o.negativePolarity?.includes(type) ? 'False' : 'True';
    const line = `* ${type}: ${c.message || c.reason}`;
    if (c.status === 'Unknown') unknown.push(line);
    else if (c.status !== good) issues.push(line);
  }
  return { issues, unknown };
}

/**
 * Computes a summary condition (usually Ready) from the given types: False if any reports an issue,
 * else Unknown if any is Unknown or missing, else True; the message lists the issues as CAPI does
 * ("* Type: message").
 */
export function summarize(
  obj: ConditionedObject,
  target: string,
  types: string[],
  o: SummaryOptions = {},
): ConditionInput {
  const { issues, unknown } = classify(obj, types, o);
  if (issues.length)
    return {
      type: target,
      status: 'False',
      reason: o.issueReason ?? 'IssuesReported',
      message: [...issues, ...unknown].join('\n'),
    };
  if (unknown.length)
    return {
      type: target,
      status: 'Unknown',
      reason: o.unknownReason ?? 'UnknownReported',
      message: unknown.join('\n'),
    };
  return { type: target, status: 'True', reason: o.trueReason ?? 'InfoReported', message: '' };
}

export function setSummary(
  obj: ConditionedObject,
  target: string,
  types: string[],
  o: SummaryOptions & { now?: Date } = {},
): boolean {
  return setCondition(obj, summarize(obj, target, types, o), o.now);
}

/** Whether the object or its Cluster is paused (Cluster spec.paused or the paused annotation). */
export function isPaused(cluster: { spec?: { paused?: boolean } } | undefined, obj: ConditionedObject): boolean {
  return cluster?.spec?.paused === true || obj.metadata?.annotations?.[PausedAnnotation] !== undefined;
}

/**
 * Sets the v1beta2 Paused condition as cluster-api util/paused/paused.go does and returns whether
 * the object is paused (the reconciler returns early then, before any delete handling).
 */
export function setPausedCondition(
  obj: ConditionedObject,
  cluster: { spec?: { paused?: boolean } } | undefined,
  now?: Date,
): boolean {
  const clusterPaused = cluster?.spec?.paused === true;
  const annotated = obj.metadata?.annotations?.[PausedAnnotation] !== undefined;
  const messages = [
    ...(clusterPaused ? ['Cluster spec.paused is set to true'] : []),
    ...(annotated ? [`Object has ${PausedAnnotation} annotation`] : []),
  ];
  const paused = messages.length > 0;
  setCondition(
    obj,
    {
      type: PausedCondition,
      status: paused,
      reason: paused ? PausedReason : NotPausedReason,
      message: messages.join(', '),
    },
    now,
  );
  return paused;
}

// ---------- v1beta1: status.deprecated.v1beta1.conditions ----------

export function getV1Beta1Conditions(obj: ConditionedObject): V1Beta1Condition[] {
  return obj.status?.deprecated?.v1beta1?.conditions ?? [];
}

export function getV1Beta1Condition(obj: ConditionedObject, type: string): V1Beta1Condition | undefined {
  return getV1Beta1Conditions(obj).find((c) => c.type === type);
}

export interface V1Beta1Input {
  type: string;
  status: ConditionStatus | boolean;
  /** Only for False conditions; Error, Warning or Info. */
  severity?: Severity;
  reason?: string;
  message?: string;
}

const sameV1Beta1 = (a: V1Beta1Condition, b: V1Beta1Condition) =>
  a.status === b.status &&
  (a.severity ?? '') === (b.severity ?? '') &&
  (a.reason ?? '') === (b.reason ?? '') &&
  (a.message ?? '') === (b.message ?? '');

/** Ready first, then by type (deprecated/v1beta1/setter.go lexicographicLess). */
const v1beta1Less = (a: V1Beta1Condition, b: V1Beta1Condition) =>
  a.type === ReadyCondition ? -1 : b.type === ReadyCondition ? 1 : a.type < b.type ? -1 : a.type > b.type ? 1 : 0;

function v1beta1List(obj: ConditionedObject): V1Beta1Condition[] {
  const st = (obj.status ??= {});
  const dep = (st.deprecated ??= {});
  const v1 = (dep.v1beta1 ??= {});
  return (v1.conditions ??= []);
}

export function setV1Beta1Condition(obj: ConditionedObject, input: V1Beta1Input, now: Date = new Date()): boolean {
  const status = toStatus(input.status);
  const next: V1Beta1Condition = {
    type: input.type,
    status,
    ...(status === 'False' ? { severity: input.severity ?? 'Warning' } : {}),
    ...(input.reason ? { reason: input.reason } : {}),
    ...(input.message ? { message: input.message } : {}),
    lastTransitionTime: nowRfc3339(now),
  };
  const list = v1beta1List(obj);
  const i = list.findIndex((c) => c.type === input.type);
  const existing = list[i];
  if (existing && sameV1Beta1(existing, next)) return false;
  if (existing) list[i] = next;
  else list.push(next);
  list.sort(v1beta1Less);
  return true;
}

const rank = (c: V1Beta1Condition): number =>
  c.status === 'False'
    ? ({ Error: 0, Warning: 1, Info: 2, '': 2 } as const)[c.severity ?? '']
    : c.status === 'Unknown'
      ? 3
      : 4;

/**
 * v1beta1 Ready summary (deprecated/v1beta1/merge.go): True if all given conditions are True,
 * else the status, severity, reason and message of the worst one (False Error > Warning > Info > Unknown).
 */
export function setV1Beta1Summary(obj: ConditionedObject, types: string[], now?: Date): boolean {
  const conds = types.map((t) => getV1Beta1Condition(obj, t)).filter((c): c is V1Beta1Condition => c !== undefined);
  if (conds.length === 0) return false;
  const worst = [...conds].sort((a, b) => rank(a) - rank(b))[0]!;
  if (worst.status === 'True') return setV1Beta1Condition(obj, { type: ReadyCondition, status: 'True' }, now);
  return setV1Beta1Condition(obj, { ...worst, type: ReadyCondition }, now);
}

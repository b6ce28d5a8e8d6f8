// A small schema builder: each kind is described once, and from that one description come its
// TypeScript type (Infer<>), a runtime check (validate) and the OpenAPI v3 structural schema of its
// CRD, with CEL rules where a pattern cannot say it. Generated CRDs live in manifests/crd.

export type JSONSchema = Record<string, unknown>;

export interface Rule {
  /** CEL expression, evaluated by the API server at apply time. */
  rule: string;
  /** What is wrong and what to do, shown to the user who applied the object. */
  message: string;
}

interface Common {
  description?: string;
  /** x-kubernetes-validations */
  rules?: Rule[];
}

export interface Schema<T> {
  /** Phantom: the TypeScript type this schema describes. */
  readonly __type?: T;
  openAPI(): JSONSchema;
  /** Appends "path: problem" for every way v does not fit; structural checks only (not CEL). */
  check(v: unknown, path: string, problems: string[]): void;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

function base(c: Common, s: JSONSchema): JSONSchema {
  return {
    ...(c.description ? { description: c.description } : {}),
    ...s,
    ...(c.rules?.length ? { 'x-kubernetes-validations': c.rules } : {}),
  };
}

export interface StringOptions extends Common {
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  format?: string;
  default?: string;
}

export function string(o: StringOptions = {}): Schema<string> {
  const { description: _d, rules: _r, ...rest } = o;
  return {
    openAPI: () => base(o, { type: 'string', ...rest }),
    check(v, path, p) {
      if (typeof v !== 'string') return void p.push(`${path}: must be a string`);
      if (o.pattern && !new RegExp(o.pattern).test(v)) p.push(`${path}: must match ${o.pattern}`);
      if (o.maxLength !== undefined && v.length > o.maxLength) p.push(`${path}: longer than ${o.maxLength}`);
      if (o.minLength !== undefined && v.length < o.minLength) p.push(`${path}: shorter than ${o.minLength}`);
    },
  };
}

export function enumeration<const E extends readonly string[]>(
  values: E,
  o: Common & { default?: E[number] } = {},
): Schema<E[number]> {
  return {
    openAPI: () => base(o, { type: 'string', enum: [...values], ...(o.default ? { default: o.default } : {}) }),
    check(v, path, p) {
      if (typeof v !== 'string' || !values.includes(v)) p.push(`${path}: must be one of ${values.join(', ')}`);
    },
  };
}

export interface IntOptions extends Common {
  minimum?: number;
  maximum?: number;
  default?: number;
}

export function int(o: IntOptions = {}): Schema<number> {
  const { description: _d, rules: _r, ...rest } = o;
  return {
    openAPI: () => base(o, { type: 'integer', format: 'int32', ...rest }),
    check(v, path, p) {
      if (typeof v !== 'number' || !Number.isInteger(v)) return void p.push(`${path}: must be an integer`);
      if (o.minimum !== undefined && v < o.minimum) p.push(`${path}: must be at least ${o.minimum}`);
      if (o.maximum !== undefined && v > o.maximum) p.push(`${path}: must be at most ${o.maximum}`);
    },
  };
}

export function bool(o: Common & { default?: boolean } = {}): Schema<boolean> {
  return {
    openAPI: () => base(o, { type: 'boolean', ...(o.default !== undefined ? { default: o.default } : {}) }),
    check(v, path, p) {
      if (typeof v !== 'boolean') p.push(`${path}: must be true or false`);
    },
  };
}

/** An RFC 3339 time, as Kubernetes serializes metav1.Time. */
export function time(o: Common = {}): Schema<string> {
  return string({ ...o, format: 'date-time' });
}

export function array<T>(
  item: Schema<T>,
  o: Common & { minItems?: number; maxItems?: number; listType?: 'atomic' | 'set' | 'map'; mapKeys?: string[] } = {},
): Schema<T[]> {
  return {
    openAPI: () =>
      base(o, {
        type: 'array',
        items: item.openAPI(),
        ...(o.minItems !== undefined ? { minItems: o.minItems } : {}),
        ...(o.maxItems !== undefined ? { maxItems: o.maxItems } : {}),
        ...(o.listType ? { 'x-kubernetes-list-type': o.listType } : {}),
        ...(o.mapKeys ? { 'x-kubernetes-list-map-keys': o.mapKeys } : {}),
      }),
    check(v, path, p) {
      if (!Array.isArray(v)) return void p.push(`${path}: must be a list`);
      if (o.minItems !== undefined && v.length < o.minItems) p.push(`${path}: needs at least ${o.minItems} items`);
      if (o.maxItems !== undefined && v.length > o.maxItems) p.push(`${path}: at most ${o.maxItems} items`);
      v.forEach((x, i) => item.check(x, `${path}[${i}]`, p));
    },
  };
}

export function map<T>(value: Schema<T>, o: Common & { maxProperties?: number } = {}): Schema<Record<string, T>> {
  return {
    openAPI: () =>
      base(o, {
        type: 'object',
        additionalProperties: value.openAPI(),
        ...(o.maxProperties ? { maxProperties: o.maxProperties } : {}),
      }),
    check(v, path, p) {
      if (!v || typeof v !== 'object' || Array.isArray(v)) return void p.push(`${path}: must be a mapping`);
      for (const [k, x] of Object.entries(v)) value.check(x, `${path}.${k}`, p);
    },
  };
}

type Props = Record<string, Schema<unknown>>;
type ObjectType<P extends Props, R extends keyof P> = { [K in R]: Infer<P[K]> } & {
  [K in Exclude<keyof P, R>]?: Infer<P[K]>;
};

export function object<P extends Props, R extends keyof P = never>(
  props: P,
  o: Common & { required?: readonly R[]; preserveUnknownFields?: boolean } = {},
): Schema<{ [K in keyof ObjectType<P, R>]: ObjectType<P, R>[K] }> {
  return {
    openAPI: () =>
      base(o, {
        type: 'object',
        ...(Object.keys(props).length
          ? { properties: Object.fromEntries(Object.entries(props).map(([k, s]) => [k, s.openAPI()])) }
          : {}),
        ...(o.required?.length ? { required: [...o.required] } : {}),
        ...(o.preserveUnknownFields ? { 'x-kubernetes-preserve-unknown-fields': true } : {}),
      }),
    check(v, path, p) {
      if (!v || typeof v !== 'object' || Array.isArray(v)) return void p.push(`${path}: must be a mapping`);
      const obj = v as Record<string, unknown>;
      for (const r of o.required ?? []) if (obj[r as string] === undefined) p.push(`${path}.${String(r)}: required`);
      for (const [k, s] of Object.entries(props)) if (obj[k] !== undefined) s.check(obj[k], `${path}.${k}`, p);
    },
  };
}

/** Problems with v, or an empty list. */
export function validate<T>(schema: Schema<T>, v: unknown, path = ''): string[] {
  const problems: string[] = [];
  schema.check(v, path || '(object)', problems);
  return problems;
}

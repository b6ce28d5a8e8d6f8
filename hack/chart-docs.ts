// Writes docs/gitops-values.md, the values reference of charts/capbm-cluster, from the chart's
// values.schema.json (types, rules, descriptions) and values.yaml (defaults): one source for what
// helm enforces and what the docs say.
//   node hack/chart-docs.ts           write it
//   node hack/chart-docs.ts --check   exit 1 when it is stale (test/unit/chart-docs.test.ts too)
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../test/harness/paths.ts';

export interface Schema {
  type?: string | string[];
  description?: string;
  properties?: Record<string, Schema | boolean>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  $ref?: string;
  allOf?: Schema[];
  anyOf?: Schema[];
  enum?: unknown[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  required?: string[];
  definitions?: Record<string, Schema>;
  not?: Schema;
}

export const chart = join(repoRoot, 'charts', 'capbm-cluster');
export const output = join(repoRoot, 'docs', 'gitops-values.md');

/** The schema with its $ref and allOf members folded in (the outer description wins). */
function resolve(s: Schema, root: Schema): Schema {
  let out: Schema = { ...s };
  const parts: Schema[] = [];
  if (s.$ref) parts.push(root.definitions![s.$ref.replace('#/definitions/', '')]!);
  parts.push(...(s.allOf ?? []));
  for (const p of parts) {
    const r = resolve(p, root);
    const properties = r.properties || out.properties ? { properties: { ...r.properties, ...out.properties } } : {};
    const required = r.required || out.required ? { required: [...(r.required ?? []), ...(out.required ?? [])] } : {};
    out = { ...r, ...out, ...properties, ...required };
  }
  delete out.$ref;
  delete out.allOf;
  return out;
}

const typeOf = (s: Schema): string => {
  const t = Array.isArray(s.type) ? s.type.join(' or ') : (s.type ?? '');
  if (t === 'array') return `list of ${typeof s.items?.type === 'string' ? s.items.type : 'value'}s`;
  if (t === 'object' && !s.properties && typeof s.additionalProperties === 'object') return 'map of strings';
  return t;
};

function rules(s: Schema, required: boolean): string {
  const r: string[] = [];
  if (required) r.push('**required**');
  if (s.anyOf?.every((a) => a.required?.length)) r.push(`needs ${s.anyOf.map((a) => a.required!.join()).join(' or ')}`);
  if (s.enum) r.push(`one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`);
  if (s.minimum !== undefined && s.maximum !== undefined) r.push(`${s.minimum}..${s.maximum}`);
  else if (s.minimum !== undefined) r.push(`at least ${s.minimum}`);
  if (s.minLength) r.push(`length ${s.minLength}..${s.maxLength ?? ''}`);
  else if (s.maxLength) r.push(`at most ${s.maxLength} characters`);
  if (s.minItems) r.push(`${s.minItems}..${s.maxItems ?? ''} items`);
  else if (s.maxItems) r.push(`at most ${s.maxItems} items`);
  if (s.maxProperties) r.push(`at most ${s.maxProperties} entries`);
  if (s.pattern) r.push(`\`${s.pattern}\``);
  const items = s.items && !s.items.properties ? s.items : undefined;
  if (items?.pattern) r.push(`each \`${items.pattern}\``);
  return r.join('; ');
}

/** Where defaults live in values.yaml ("controlPlane.replicas"); lists' items have none. */
function defaultAt(values: unknown, path: string): string {
  if (path.includes('[]')) return '';
  let v: unknown = values;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v === undefined ? '' : `\`${JSON.stringify(v)}\``;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function rows(path: string, raw: Schema, root: Schema, values: unknown, required: boolean): string[] {
  const s = resolve(raw, root);
  // An object's default is in the rows of its fields.
  const def = s.properties ? '' : defaultAt(values, path);
  const line = `| \`${path}\` | ${typeOf(s)} | ${def} | ${cell(rules(s, required))} | ${cell(s.description ?? '')} |`;
  const out = [line];
  const props = s.properties ?? (s.items ? resolve(s.items, root).properties : undefined);
  const inner = s.properties ? s : s.items ? resolve(s.items, root) : undefined;
  for (const [name, p] of Object.entries(props ?? {})) {
    if (typeof p === 'boolean' || (p.not && Object.keys(p.not).length === 0)) continue;
    const sub = s.properties ? `${path}.${name}` : `${path}[].${name}`;
    out.push(...rows(sub, p, root, values, inner?.required?.includes(name) ?? false));
  }
  return out;
}

/** The reference as Markdown. */
export function valuesReference(): string {
  const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as Schema;
  const values = parse(readFileSync(join(chart, 'values.yaml'), 'utf8')) as unknown;
  const body = Object.entries(schema.properties ?? {})
    .filter(([name]) => name !== 'global')
    .flatMap(([name, p]) => rows(name, p as Schema, schema, values, schema.required?.includes(name) ?? false));
  return [
    '<!-- Generated by hack/chart-docs.ts from charts/capbm-cluster/values.schema.json and values.yaml: do not edit. Run `node hack/chart-docs.ts`. -->',
    '# capbm-cluster values',
    '',
    'Every value the chart `charts/capbm-cluster` takes: the values of one cluster, all a platform team writes in its',
    'HelmRelease. helm refuses values that break a rule below (the message names the value, e.g.',
    "`at '/controlPlane/replicas': value must be one of 1, 3, 5`). A default comes from the chart's `values.yaml`;",
    'every field of a `nodeGroups[]` entry but `name` defaults from `nodeGroupDefaults`.',
    '',
    '| value | type | default | rules | what it is |',
    '| --- | --- | --- | --- | --- |',
    ...body,
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const want = valuesReference();
  let have = '';
  try {
    have = readFileSync(output, 'utf8');
  } catch {
    // not written yet
  }
  if (process.argv.includes('--check')) {
    if (have !== want) {
      process.stderr.write('docs/gitops-values.md is stale\n  fix: node hack/chart-docs.ts\n');
      process.exit(1);
    }
  } else {
    writeFileSync(output, want);
    process.stderr.write(`wrote ${output}\n`);
  }
}

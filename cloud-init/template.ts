// The subset of cloud-init's jinja templating that bootstrap data uses: `{{ dotted.name }}`
// substitution, as cloud-init does for user data whose first line is `## template: jinja`.
// Anything else jinja can express ({% %} blocks, filters, expressions) is refused with the line
// number rather than passed through: a half-rendered kubeadm config is worse than a clear error.
import { TemplateError } from './errors.ts';

export const jinjaHeader = /^## template: *jinja[ \t]*\r?\n/;

export type TemplateVars = Record<string, unknown>;

const variable = /\{\{-?\s*([^{}]*?)\s*-?\}\}/g;
const name = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/;

function lookup(vars: TemplateVars, path: string): unknown {
  let v: unknown = vars;
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object' || !(part in v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function renderValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

function renderLine(text: string, lineNo: number, vars: TemplateVars): string {
  if (/\{%|\{#/.test(text)) {
    throw new TemplateError(
      lineNo,
      'jinja blocks and comments ({% %}, {# #}) are not supported; only {{ variable }} is',
    );
  }
  return text.replace(variable, (_m, expr: string) => {
    if (!name.test(expr)) {
      throw new TemplateError(
        lineNo,
        `unsupported jinja expression {{ ${expr} }}: only a dotted variable name is supported`,
      );
    }
    const v = lookup(vars, expr);
    if (v === undefined || v === null) {
      throw new TemplateError(lineNo, `undefined variable ${expr}: the provider supplies ${describe(vars)}`);
    }
    return renderValue(v);
  });
}

function describe(vars: TemplateVars, prefix = ''): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(vars)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      out.push(describe(v as TemplateVars, `${prefix}${k}.`));
    else out.push(`${prefix}${k}`);
  }
  return out.join(', ');
}

/** Renders a jinja user-data payload (header line included, as cloud-init receives it). */
export function renderJinja(payload: string, vars: TemplateVars): string {
  const body = payload.replace(jinjaHeader, '');
  const offset = payload.length === body.length ? 0 : 1;
  return body
    .split('\n')
    .map((line, i) => renderLine(line, i + 1 + offset, vars))
    .join('\n');
}

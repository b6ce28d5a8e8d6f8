// Recognising bootstrap data and reading it as cloud-config, the way cloud-init would.
import { parse as parseYaml, YAMLParseError, type ScalarTag, type Tags } from 'yaml';
import { InvalidCloudConfig, UnsupportedFormat } from './errors.ts';
import { jinjaHeader, renderJinja, type TemplateVars } from './template.ts';

export type CloudConfig = Record<string, unknown>;

function refuseDeclared(declared: string | undefined): void {
  if (!declared || declared === 'cloud-config') return;
  throw new UnsupportedFormat(
    declared,
    `bootstrap data format "${declared}" is not supported: CAPBM runs cloud-config; set the KubeadmConfig format to cloud-config`,
  );
}

/** What the payload is, from its first bytes (and the Secret's `format` key when known). */
export function detectFormat(payload: string, declared?: string): 'cloud-config' | 'jinja-cloud-config' {
  refuseDeclared(declared);
  const head = payload.trimStart().slice(0, 200);
  if (head.startsWith('{') && /"ignition"\s*:/.test(payload.slice(0, 4000))) {
    throw new UnsupportedFormat(
      'ignition',
      'ignition bootstrap data is not supported: use format cloud-config in the KubeadmConfig',
    );
  }
  if (/^(MIME-Version:|Content-Type:\s*multipart\/)/im.test(head)) {
    throw new UnsupportedFormat(
      'mime-multipart',
      'multipart MIME user data is not supported: give a single #cloud-config document',
    );
  }
  if (jinjaHeader.test(payload)) {
    if (!/^## template: *jinja[ \t]*\r?\n#cloud-config/.test(payload)) {
      throw new UnsupportedFormat(
        'jinja',
        'a jinja template must be cloud-config: the line after "## template: jinja" must be #cloud-config',
      );
    }
    return 'jinja-cloud-config';
  }
  if (payload.startsWith('#cloud-config')) return 'cloud-config';
  const first = payload.split('\n', 1)[0]?.slice(0, 40) ?? '';
  const kind = first.startsWith('#!')
    ? 'a shell script'
    : first.startsWith('#')
      ? `"${first}"`
      : 'no #cloud-config header';
  throw new UnsupportedFormat(
    'unknown',
    `bootstrap data is ${kind}; CAPBM runs cloud-config (first line #cloud-config)`,
  );
}

/**
 * Parses bootstrap data into a cloud-config object: templating first when the payload asks for it
 * (as cloud-init does), then YAML 1.1, the dialect of cloud-init's PyYAML (0644 is octal there).
 */
// Where the yaml package's YAML 1.1 differs from PyYAML's (cloud-init's), found by the property
// tests: ".", "-." and "+." are floats (NaN) there, y/Y/n/N booleans, "0:0" a base-60 integer, "0_"
// NaN; PyYAML reads the first three as strings and "0_" as 0. The tests below are PyYAML's resolver
// rules; a number that still comes out NaN keeps its text (never "NaN" in a file).
const pyTests: Array<{ tag: string; format?: string; from: RegExp; test: RegExp }> = [
  { tag: 'float', from: /\[0-9_\]\*\$/, test: /^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)$/ },
  { tag: 'bool', from: /\|y\|/, test: /^(?:[Yy]es|YES|[Tt]rue|TRUE|[Oo]n|ON)$/ },
  { tag: 'bool', from: /\|n\|/, test: /^(?:[Nn]o|NO|[Ff]alse|FALSE|[Oo]ff|OFF)$/ },
  { tag: 'int', format: 'TIME', from: /:/, test: /^[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+$/ },
];

function numberOrText(t: ScalarTag): ScalarTag {
  if (!t.resolve || /nan/i.test(t.test?.source ?? '')) return t;
  const original = t;
  return {
    ...t,
    resolve: (str, onError, opts) => {
      const v: unknown = original.resolve(str, onError, opts);
      if (typeof v !== 'number' || !Number.isNaN(v)) return v;
      return /^[-+]?0_*$/.test(str) ? 0 : str;
    },
  };
}

function pyYamlTag(t: ScalarTag): ScalarTag {
  const o = pyTests.find(
    (p) => t.tag === `tag:yaml.org,2002:${p.tag}` && t.format === p.format && p.from.test(t.test?.source ?? ''),
  );
  const fixed = o ? { ...t, test: o.test } : t;
  return /:(int|float)$/.test(t.tag) ? numberOrText(fixed) : fixed;
}

const pyYamlTags = (tags: Tags): Tags =>
  tags.map((t) => (typeof t === 'object' && !('collection' in t && t.collection) ? pyYamlTag(t) : t));

export function parseBootstrapData(payload: string, vars: TemplateVars, declared?: string): CloudConfig {
  const format = detectFormat(payload, declared);
  const text = format === 'jinja-cloud-config' ? renderJinja(payload, vars) : payload;
  let doc: unknown;
  try {
    doc = parseYaml(text, { version: '1.1', uniqueKeys: false, maxAliasCount: 100, customTags: pyYamlTags });
  } catch (err) {
    const where = err instanceof YAMLParseError ? ` at line ${err.linePos?.[0]?.line ?? '?'}` : '';
    throw new InvalidCloudConfig('(document)', `not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InvalidCloudConfig('(document)', 'cloud-config must be a mapping of module names to settings');
  }
  return doc as CloudConfig;
}

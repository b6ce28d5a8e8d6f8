// The instance data bootstrap templates may read: cloud-init exposes the datasource's meta data as
// ds.meta_data.* and standardized aliases as v1.* (cloud-init docs: instance-data, "v1" keys).
import type { TemplateVars } from './template.ts';

export interface MetaData {
  instance_id: string;
  local_hostname: string;
  hostname?: string;
  local_ipv4?: string;
  local_ipv6?: string;
  provider_id?: string;
  availability_zone?: string;
  region?: string;
  [key: string]: string | undefined;
}

/** ds.meta_data.* as given, and the v1.* aliases cloud-init derives from it. */
export function templateVars(meta: MetaData): TemplateVars {
  const md = Object.fromEntries(Object.entries(meta).filter(([, v]) => v !== undefined));
  const v1: Record<string, string> = {
    instance_id: meta.instance_id,
    local_hostname: meta.local_hostname,
    cloud_name: 'capbm',
    platform: 'capbm',
    subplatform: 'ssh',
  };
  if (meta.availability_zone) v1.availability_zone = meta.availability_zone;
  if (meta.region) v1.region = meta.region;
  return { ds: { meta_data: md }, v1 };
}

/**
 * Keys a NoCloud meta-data file may hold that cloud-init or CAPBM give a meaning to (NoCloud writes
 * them with hyphens; CAPBM's own meta data uses underscores).
 */
export const KNOWN_META_DATA_KEYS = [
  'instance-id',
  'local-hostname',
  'hostname',
  'local-ipv4',
  'local-ipv6',
  'provider-id',
  'availability-zone',
  'region',
  'public-keys',
  'network-interfaces',
  'dsmode',
] as const;

/**
 * cloud-init's Jinja alias of a key: characters that are operators in Jinja (such as `-`) become
 * underscores, so `local-hostname` is also `local_hostname` (cloud-init
 * cloudinit/handlers/jinja_template.py, get_jinja_variable_alias and convert_jinja_instance_data).
 */
export function jinjaAlias(key: string): string {
  return key.replace(/[^A-Za-z0-9_]/g, '_');
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function unknownKeyWarning(key: string): string {
  const want = jinjaAlias(key);
  const near = KNOWN_META_DATA_KEYS.find((k) => distance(jinjaAlias(k), want) <= 2);
  const hint = near ? `; did you mean "${near}"?` : `; known keys: ${KNOWN_META_DATA_KEYS.join(', ')}`;
  return `meta data key "${key}" is not one cloud-init or CAPBM knows${hint} (templates can still read it as ds.meta_data.${want})`;
}

/**
 * Meta data as cloud-init reads a NoCloud meta-data file: every key is kept as written, and a key
 * that is not a Jinja name is also exposed under its alias (`instance-id` -> `instance_id`), which
 * is how templates read it. Values that are not scalars are left out of the template variables
 * (CAPBM's templates only substitute text). Unknown keys are kept, with a warning each.
 */
export function readMetaData(doc: Record<string, unknown>, defaults: MetaData): { meta: MetaData; warnings: string[] } {
  const warnings: string[] = [];
  const known = new Set(KNOWN_META_DATA_KEYS.map(jinjaAlias));
  const meta: MetaData = { ...defaults };
  for (const [key, value] of Object.entries(doc)) {
    if (!known.has(jinjaAlias(key))) warnings.push(unknownKeyWarning(key));
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') continue;
    const text = String(value);
    meta[key] = text;
    meta[jinjaAlias(key)] = text;
  }
  return { meta, warnings };
}

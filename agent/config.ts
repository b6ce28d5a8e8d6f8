// The agent's configuration file (/etc/capbm/agent.json, mode 0600, written by the provider's
// installer). Parsed strictly: an agent with a wrong config says so and exits, it does not guess.
import { readFileSync } from 'node:fs';
import {
  defaultPaths,
  defaultThresholds,
  type AgentConfig,
  type Thresholds,
  type UserCheck,
} from '../common/agent-config.ts';

export { defaultPaths, defaultThresholds, type AgentConfig, type Thresholds, type UserCheck };

export class ConfigError extends Error {
  constructor(file: string, problem: string) {
    super(`agent config ${file}: ${problem}; the provider rewrites it on the next install`);
    this.name = 'ConfigError';
  }
}

type Json = Record<string, unknown>;

function str(o: Json, k: string, file: string, fallback?: string): string {
  const v = o[k] ?? fallback;
  if (typeof v !== 'string' || v === '') throw new ConfigError(file, `${k} must be a non-empty string`);
  return v;
}

function num(o: Json, k: string, file: string, fallback: number): number {
  const v = o[k] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ConfigError(file, `${k} must be a number >= 0`);
  return v;
}

function userChecks(v: unknown, file: string): UserCheck[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ConfigError(file, 'checks must be a list');
  return v.map((c: Json, i) => {
    const name = str(c, 'name', `${file} checks[${i}]`);
    const command = str(c, 'command', `${file} checks[${i}]`);
    return {
      name,
      command,
      intervalSeconds: num(c, 'intervalSeconds', file, 30),
      timeoutSeconds: num(c, 'timeoutSeconds', file, 10),
    };
  });
}

function thresholds(v: unknown, file: string): Thresholds {
  const o = (v ?? {}) as Json;
  const out = { ...defaultThresholds };
  for (const k of Object.keys(defaultThresholds) as Array<keyof Thresholds>) out[k] = num(o, k, file, out[k]);
  return out;
}

function machine(v: unknown, file: string): AgentConfig['machine'] {
  if (v === undefined) return undefined;
  const o = v as Json;
  return { namespace: str(o, 'namespace', file), name: str(o, 'name', file) };
}

/** Validates a parsed config object and fills in the defaults. */
export function parseConfig(o: Json, file = 'agent.json'): AgentConfig {
  const url = str(o, 'reportUrl', file);
  if (!url.startsWith('https://')) throw new ConfigError(file, 'reportUrl must be an https:// URL');
  const pki = (o.pki ?? {}) as Json;
  const m = machine(o.machine, file);
  return {
    host: str(o, 'host', file),
    ...(m ? { machine: m } : {}),
    reportUrl: url.replace(/\/+$/, ''),
    intervalSeconds: Math.max(1, num(o, 'intervalSeconds', file, 30)),
    checks: userChecks(o.checks, file),
    disabledChecks: Array.isArray(o.disabledChecks) ? o.disabledChecks.map(String) : [],
    thresholds: thresholds(o.thresholds, file),
    pki: {
      cert: str(pki, 'cert', file, defaultPaths.cert),
      key: str(pki, 'key', file, defaultPaths.key),
      ca: str(pki, 'ca', file, defaultPaths.ca),
    },
    root: str(o, 'root', file, '/'),
    kubeletHealthzUrl: str(o, 'kubeletHealthzUrl', file, 'http://127.0.0.1:10248/healthz'),
    renewFraction: num(o, 'renewFraction', file, 2 / 3),
  };
}

export function loadConfig(file: string = defaultPaths.config): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new ConfigError(file, 'is not valid JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ConfigError(file, 'must be a JSON object');
  return parseConfig(o as Json, file);
}

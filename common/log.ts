// One structured JSON logger for the whole process. Every line is one JSON object on stderr with
// time, level, msg and the bound context (controller, namespace/name, host, ...).
// Never pass secrets or bootstrap data to it: redact() below is a last line of defence, not a licence.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds these fields to every line. */
  with(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  /** Lowest level written. Default: $CAPBM_LOG_LEVEL or 'info'. */
  level?: Level;
  /** Where lines go. Default: process.stderr. */
  write?: (line: string) => void;
}

// Any field that names a credential; not a bare 'key' (work-queue keys, Secret data keys are fine to log).
const secretKeys = /(password|passphrase|private_?key|sshkey|apikey|token|secret|^value|bootstrapdata|credentials?)$/i;

/** Replaces values of secret-looking fields, and serializes errors, so they can be logged as data. */
export function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) out[k] = { name: v.name, message: v.message };
    else if (secretKeys.test(k) && typeof v === 'string') out[k] = '[redacted]';
    else out[k] = v;
  }
  return out;
}

export function createLogger(options: LoggerOptions = {}, bound: Record<string, unknown> = {}): Logger {
  const envLevel = process.env.CAPBM_LOG_LEVEL as Level | undefined;
  const min = order[options.level ?? (envLevel && envLevel in order ? envLevel : 'info')];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (order[level] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...bound, ...redact(fields ?? {}) }));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    with: (fields) => createLogger(options, { ...bound, ...redact(fields) }),
  };
}

// write_files, as cloud-init's cc_write_files does it: decode the content in the provider (so the
// host needs only base64), write to a temp file in the target's directory, set owner and mode on
// the temp file, then rename it into place: the file never exists with the wrong mode or half
// written. Content reaches the host as a base64 here-document with a quoted delimiter, so nothing
// in it is ever expanded or executed.
import { posix } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { InvalidCloudConfig } from './errors.ts';
import { shQuote } from '../common/quote.ts';

export interface WriteFile {
  path: string;
  content: Buffer;
  /** Numeric mode, e.g. 0o644 (cloud-init's default). */
  mode: number;
  owner: string;
  append: boolean;
  /** Written in cloud-init's final stage (write_files_deferred), after users exist. */
  defer: boolean;
}

const encodings: Record<string, 'plain' | 'b64' | 'gz' | 'gz+b64'> = {
  '': 'plain',
  text: 'plain',
  'text/plain': 'plain',
  b64: 'b64',
  base64: 'b64',
  'application/base64': 'b64',
  gz: 'gz',
  gzip: 'gz',
  'application/x-gzip': 'gz',
  'gz+b64': 'gz+b64',
  'gz+base64': 'gz+b64',
  'gzip+b64': 'gz+b64',
  'gzip+base64': 'gz+b64',
};

function decodeMode(v: unknown, at: string): number {
  if (v === undefined || v === null) return 0o644;
  // YAML 1.1 reads an unquoted 0644 as octal already; a string is octal text (cloud-init decode_perms).
  const n =
    typeof v === 'number'
      ? v
      : typeof v === 'string' && /^(0o)?[0-7]{1,4}$/.test(v.trim())
        ? parseInt(v.trim().replace(/^0o/, ''), 8)
        : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 0o7777)
    throw new InvalidCloudConfig(`${at}.permissions`, `${JSON.stringify(v)} is not a file mode such as '0644'`);
  return n;
}

function rawBytes(v: unknown, at: string): Buffer {
  if (v === undefined || v === null) return Buffer.alloc(0);
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (typeof v === 'number' || typeof v === 'boolean') return Buffer.from(String(v), 'utf8');
  throw new InvalidCloudConfig(`${at}.content`, 'content must be a string');
}

function decodeContent(entry: Record<string, unknown>, at: string, warn: (w: string) => void): Buffer {
  const raw = rawBytes(entry.content, at);
  const name = typeof entry.encoding === 'string' ? entry.encoding.trim().toLowerCase() : '';
  let enc = encodings[name];
  if (!enc) {
    warn(`${at}.encoding "${String(entry.encoding)}" is unknown: written as plain text, as cloud-init does`);
    enc = 'plain';
  }
  try {
    if (enc === 'b64') return Buffer.from(raw.toString('utf8'), 'base64');
    if (enc === 'gz') return gunzipSync(raw);
    if (enc === 'gz+b64') return gunzipSync(Buffer.from(raw.toString('utf8'), 'base64'));
  } catch (err) {
    throw new InvalidCloudConfig(`${at}.content`, `cannot decode ${enc} content: ${(err as Error).message}`);
  }
  return raw;
}

const ownerPattern = /^[A-Za-z0-9_][A-Za-z0-9._-]*(:[A-Za-z0-9_][A-Za-z0-9._-]*)?$|^[0-9]+(:[0-9]+)?$/;

function readPath(p: unknown, at: string): string {
  if (typeof p !== 'string' || p === '') throw new InvalidCloudConfig(`${at}.path`, 'a path is required');
  if (!p.startsWith('/')) throw new InvalidCloudConfig(`${at}.path`, `"${p}" must be an absolute path`);
  if (p.includes('\0')) throw new InvalidCloudConfig(`${at}.path`, 'a path cannot contain NUL');
  return p;
}

function readEntry(e: unknown, at: string, warn: (w: string) => void): WriteFile {
  if (!e || typeof e !== 'object' || Array.isArray(e))
    throw new InvalidCloudConfig(at, 'each write_files entry must be a mapping');
  const entry = e as Record<string, unknown>;
  const path = readPath(entry.path, at);
  if (entry.source !== undefined)
    throw new InvalidCloudConfig(`${at}.source`, 'fetching content from a URL is not supported; inline the content');
  const owner =
    entry.owner === undefined || entry.owner === null
      ? 'root:root'
      : typeof entry.owner === 'string'
        ? entry.owner
        : JSON.stringify(entry.owner);
  if (!ownerPattern.test(owner)) throw new InvalidCloudConfig(`${at}.owner`, `"${owner}" is not user:group`);
  return {
    path,
    content: decodeContent(entry, at, warn),
    mode: decodeMode(entry.permissions, at),
    owner,
    append: entry.append === true,
    defer: entry.defer === true,
  };
}

export function readWriteFiles(value: unknown, warn: (w: string) => void): WriteFile[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new InvalidCloudConfig('write_files', 'must be a list');
  return value.map((e, i) => readEntry(e, `write_files[${i}]`, warn));
}

function heredoc(content: Buffer): string {
  const b64 = content.toString('base64').replace(/.{1,76}/g, '$&\n');
  return `<<'CAPBM_EOF'\n${b64}CAPBM_EOF`;
}

/**
 * The shell body writing one file. `root` prefixes the path (tests); `orig` is where an append
 * keeps the file as it was before the first attempt, so a retried step appends exactly once.
 */
export function writeFileBody(f: WriteFile, root: string, orig: string): string {
  const target = posix.join(root, f.path);
  const dir = posix.dirname(target);
  const q = shQuote(target);
  const lines = [`mkdir -p ${shQuote(dir)}`, `tmp=$(mktemp ${shQuote(posix.join(dir, '.capbm-write.XXXXXX'))})`];
  if (f.append) {
    const o = shQuote(orig);
    lines.push(
      `if [ ! -e ${o} ]; then if [ -e ${q} ]; then cat ${q} > ${o}.tmp; else : > ${o}.tmp; fi; mv -f ${o}.tmp ${o}; fi`,
      `cat ${o} > "$tmp"`,
      `base64 -d >> "$tmp" ${heredoc(f.content)}`,
    );
  } else {
    lines.push(`base64 -d > "$tmp" ${heredoc(f.content)}`);
  }
  lines.push(
    `chown ${shQuote(f.owner)} "$tmp"`,
    `chmod ${f.mode.toString(8).padStart(4, '0')} "$tmp"`,
    `mv -f "$tmp" ${q}`,
  );
  return lines.join('\n');
}

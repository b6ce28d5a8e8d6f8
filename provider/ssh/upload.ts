// Atomic uploads over one SSH session. The content goes into a temp file in the target's folder
// (created 0600 before any byte is written) and is renamed into place only once the host holds
// exactly the bytes that were sent: a cut connection or a failing input never leaves a partial
// file under the target name. (Closing a channel does not stop the remote command: sshd closes its
// stdin, `cat` sees an ordinary end of input, so "the copy ended" alone proves nothing.)
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { shQuote } from '../../common/quote.ts';
import type { ExecOptions, ExecResult, Input } from './target.ts';

interface Exec {
  exec(command: string, o?: ExecOptions): Promise<ExecResult>;
}

export interface UploadOptions {
  mode?: number;
  owner?: string;
}

/** The step that checks the size the host received, then gives the file its mode and name. */
function finish(tmp: string, path: string, bytes: number, o: UploadOptions): string {
  const mode = (o.mode ?? 0o600).toString(8).padStart(4, '0');
  return [
    `t=${shQuote(tmp)}`,
    `n=$(wc -c < "$t")`,
    `if ! [ "$n" -eq ${bytes} ] 2>/dev/null; then rm -f -- "$t"; echo "the host received $n of ${bytes} bytes" >&2; exit 1; fi`,
    `if chmod ${mode} "$t"${o.owner ? ` && chown ${shQuote(o.owner)} "$t"` : ''} && mv -f -- "$t" ${shQuote(path)}; then exit 0; fi`,
    `rm -f -- "$t"; exit 1`,
  ].join('\n');
}

/**
 * Writes content to path atomically, through the session's privilege (root-owned paths work for
 * sudo users too); the content travels on stdin, never on a command line. Content of known size
 * (a string or Buffer) takes one command; a stream is counted as it goes, and a second command
 * checks the count and renames (or removes the temp file when the input failed).
 */
export async function upload(conn: Exec, path: string, content: Input, o: UploadOptions = {}): Promise<void> {
  if (!path.startsWith('/')) throw new Error(`upload path must be absolute: ${path}`);
  const what = `upload to ${path}`;
  const dir = posix.dirname(path);
  const tmp = `${dir}/.capbm-upload.${randomBytes(6).toString('hex')}`;
  // noclobber (set -C) makes the create exclusive: an old temp file of that name is never reused.
  const open = [
    `t=${shQuote(tmp)}`,
    'umask 077',
    `mkdir -p -- ${shQuote(dir)}`,
    'set -C',
    'if ! cat > "$t"; then rm -f -- "$t"; exit 1; fi',
    'set +C',
  ];
  if (!(content instanceof Readable)) {
    const bytes = Buffer.byteLength(content);
    await conn.exec([...open, finish(tmp, path, bytes, o)].join('\n'), { stdin: content, what });
    return;
  }
  let bytes = 0;
  async function* counted(r: Readable) {
    for await (const chunk of r) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      bytes += b.length;
      yield b;
    }
  }
  try {
    await conn.exec(open.join('\n'), { stdin: Readable.from(counted(content)), what });
  } catch (err) {
    // The remote `cat` may still run after the channel closed; removing the name is enough (what it
    // still writes goes to an unlinked file). Best effort: a lost connection loses this step too.
    await conn
      .exec(`rm -f -- ${shQuote(tmp)}`, { what: `the cleanup of ${what}`, check: false })
      .catch(() => undefined);
    throw err;
  }
  await conn.exec(finish(tmp, path, bytes, o), { what });
}

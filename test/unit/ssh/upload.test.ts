import test from 'ava';
import { execa } from 'execa';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { upload } from '../../../provider/ssh/upload.ts';
import type { ExecOptions, ExecResult } from '../../../provider/ssh/target.ts';

// The upload scripts run under the local sh. `cut` stands for what sshd does when a channel
// closes part-way: the command's stdin just ends (after `cut` bytes), and `cat` sees no error.
function localHost(cut?: number) {
  const scripts: string[] = [];
  return {
    scripts,
    async exec(command: string, o: ExecOptions = {}): Promise<ExecResult> {
      scripts.push(command);
      let input: Buffer | undefined;
      if (o.stdin !== undefined) {
        const chunks: Buffer[] = [];
        if (o.stdin instanceof Readable) for await (const c of o.stdin) chunks.push(c as Buffer);
        else chunks.push(Buffer.from(o.stdin));
        input = Buffer.concat(chunks);
        if (cut !== undefined) input = input.subarray(0, cut);
      }
      const r = await execa('sh', ['-c', command], { input, reject: false, encoding: 'utf8' });
      if ((o.check ?? true) && r.exitCode !== 0) throw new Error(`${o.what}: exit ${r.exitCode}: ${r.stderr}`);
      return { exitCode: r.exitCode ?? 0, stdout: r.stdout, stderr: r.stderr };
    },
  };
}

function dir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'capbm-upload-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('content of known size lands whole with its mode; no temp file is left', async (t) => {
  const d = dir(t);
  const host = localHost();
  await upload(host, `${d}/sub dir/a "b" $c`, Buffer.from([0, 1, 255, 10]), { mode: 0o640 });
  await upload(host, `${d}/s.txt`, 'héllo\n');
  t.deepEqual(readFileSync(`${d}/sub dir/a "b" $c`), Buffer.from([0, 1, 255, 10]));
  t.is(statSync(`${d}/sub dir/a "b" $c`).mode & 0o777, 0o640);
  t.is(readFileSync(`${d}/s.txt`, 'utf8'), 'héllo\n');
  t.is(statSync(`${d}/s.txt`).mode & 0o777, 0o600);
  t.deepEqual(readdirSync(`${d}/sub dir`), ['a "b" $c']);
  t.is(host.scripts.length, 2, 'one command per upload of known size');
});

test('a stream is counted and renamed only when the host holds every byte', async (t) => {
  const d = dir(t);
  await upload(localHost(), `${d}/big`, Readable.from([Buffer.alloc(70_000, 1), Buffer.alloc(5, 2)]));
  t.is(statSync(`${d}/big`).size, 70_005);
  t.deepEqual(readdirSync(d), ['big']);
});

test('an input cut short (the channel closed, cat saw a plain end) never becomes the file', async (t) => {
  const d = dir(t);
  for (const content of ['0123456789', Readable.from([Buffer.from('0123456789')])]) {
    const err = await t.throwsAsync(upload(localHost(4), `${d}/f`, content));
    t.regex(err.message, /the host received 4 of 10 bytes/);
    t.deepEqual(readdirSync(d), [], 'neither the file nor a temp file');
  }
});

test('a failing input stream fails the upload and removes the temp file', async (t) => {
  const d = dir(t);
  async function* failing() {
    yield await Promise.resolve(Buffer.from('part'));
    throw new Error('disk read error');
  }
  const host = localHost();
  await t.throwsAsync(upload(host, `${d}/f`, Readable.from(failing())), { message: /disk read error/ });
  t.deepEqual(readdirSync(d), []);
  t.regex(host.scripts.at(-1)!, /^rm -f -- /);
});

test('a relative path is refused before anything runs', async (t) => {
  const host = localHost();
  await t.throwsAsync(upload(host, 'etc/x', 'x'), { message: /upload path must be absolute: etc\/x/ });
  t.is(host.scripts.length, 0);
});

// Properties, run for real under sh in a temporary root: whatever a path or content holds, the file
// lands byte-exact with its mode, and nothing in it is ever executed; list commands reach the
// program as the exact argv.
import test from 'ava';
import { execa } from 'execa';
import fc from 'fast-check';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

/** As cloud-init (PyYAML) reads it: YAML 1.1, where ON, yes, y and friends are booleans unless quoted. */
const yaml11 = (o: unknown) => stringify(o, { version: '1.1' });
import { render } from '../../../cloud-init/index.ts';

const meta = { instance_id: 'prop', local_hostname: 'prop' };

// Text that would run something if a shell ever interpreted it.
const hostile = (marker: string) =>
  fc.constantFrom(
    `$(touch ${marker})`,
    `\`touch ${marker}\``,
    `'; touch ${marker}; '`,
    `"; touch ${marker}; "`,
    `\ntouch ${marker}\n`,
    '-rf',
    '--',
    'é€😀',
    '\\',
    '*',
    '$HOME',
  );

const segment = (marker: string) =>
  fc
    .oneof(fc.string({ minLength: 1, maxLength: 12, unit: 'binary' }), hostile(marker))
    .map((s) => s.replaceAll('/', '_').replaceAll('\0', '_'))
    .filter((s) => s !== '.' && s !== '..' && s.length > 0 && Buffer.byteLength(s) < 200);

test('any path and content is written byte-exact with its mode, and never executed', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'capbm-prop-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const marker = join(base, 'pwned');
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(segment(marker), { minLength: 1, maxLength: 3 }),
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s.replaceAll('\0', ''))),
        hostile(marker).map((s) => Buffer.from(s)),
      ),
      fc.constantFrom(0o600, 0o640, 0o644, 0o755, 0o400),
      async (segments, content, mode) => {
        const root = join(base, String(n++));
        const path = '/' + segments.join('/');
        const data =
          '#cloud-config\n' +
          yaml11({
            write_files: [
              {
                path,
                encoding: 'b64',
                content: Buffer.from(content).toString('base64'),
                permissions: `0${mode.toString(8)}`,
              },
            ],
          });
        const out = await execa('sh', ['-c', render(data, { metaData: meta, root }).script], { reject: false });
        const file = join(root, ...segments);
        const ok =
          out.exitCode === 0 &&
          Buffer.compare(readFileSync(file), Buffer.from(content)) === 0 &&
          (statSync(file).mode & 0o7777) === mode;
        rmSync(root, { recursive: true, force: true });
        return ok && !existsSync(marker);
      },
    ),
    { numRuns: 60 },
  );
  t.false(existsSync(marker));
});

test('plain (non-base64) text content is written byte-exact, including quotes, $() and newlines', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'capbm-prop-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const marker = join(base, 'pwned');
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), hostile(marker)), async (text) => {
      const clean = text.replaceAll('\0', '').replaceAll('\r', '');
      const root = join(base, String(n++));
      const data = '#cloud-config\n' + yaml11({ write_files: [{ path: '/etc/x.conf', content: clean }] });
      const out = await execa('sh', ['-c', render(data, { metaData: meta, root }).script], { reject: false });
      const ok = out.exitCode === 0 && readFileSync(join(root, 'etc/x.conf'), 'utf8') === clean;
      rmSync(root, { recursive: true, force: true });
      return ok && !existsSync(marker);
    }),
    { numRuns: 60 },
  );
  t.pass();
});

test('a runcmd list reaches the program as the exact argv, unexpanded', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'capbm-prop-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const marker = join(base, 'pwned');
  const dump = join(base, 'dump-argv');
  writeFileSync(dump, `#!/bin/sh\nout="$1"; shift\nfor a in "$@"; do printf '%s\\000' "$a"; done > "$out"\n`, {
    mode: 0o755,
  });
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(fc.string({ maxLength: 30 }), hostile(marker)).map((s) => s.replaceAll('\0', '')),
        { maxLength: 6 },
      ),
      async (args) => {
        const out = join(base, `argv-${n++}`);
        const data = '#cloud-config\n' + yaml11({ runcmd: [[dump, out, ...args]] });
        const r = await execa('sh', ['-c', render(data, { metaData: meta, root: join(base, `r-${n}`) }).script], {
          reject: false,
        });
        const got = readFileSync(out, 'utf8').split('\0').slice(0, -1);
        return r.exitCode === 0 && JSON.stringify(got) === JSON.stringify(args) && !existsSync(marker);
      },
    ),
    { numRuns: 60 },
  );
  t.pass();
});

import test from 'ava';
import { execa } from 'execa';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  InvalidCloudConfig,
  TemplateError,
  UnsupportedFormat,
  UnsupportedModule,
  parseBootstrapData,
  parseProgressLine,
  render,
  stepsRunAgain,
} from '../../../cloud-init/index.ts';

const meta = {
  instance_id: 'm1',
  local_hostname: 'm1',
  hostname: 'm1',
  local_ipv4: '10.0.0.5',
  provider_id: 'capbm://ns/h1',
};

const roots: string[] = [];
function root(): string {
  const r = mkdtempSync(join(tmpdir(), 'capbm-ci-'));
  roots.push(r);
  return r;
}
test.after.always(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

async function run(script: string) {
  return execa('sh', ['-c', script], { reject: false });
}

test('templating: ds.meta_data and v1 variables are substituted only under the jinja header', (t) => {
  const data =
    '## template: jinja\n#cloud-config\nruncmd:\n- echo {{ ds.meta_data.provider_id }} {{v1.local_hostname}}\n';
  const r = render(data, { metaData: meta });
  t.regex(r.script, /sh -c 'echo capbm:\/\/ns\/h1 m1'/);
  const plain = render('#cloud-config\nruncmd:\n- echo {{ ds.meta_data.provider_id }}\n', { metaData: meta });
  t.regex(plain.script, /\{\{ ds\.meta_data\.provider_id \}\}/);
});

test('templating: an undefined variable is an error naming it and its line, never an empty string', (t) => {
  const data = '## template: jinja\n#cloud-config\nruncmd:\n- echo {{ ds.meta_data.nope }}\n';
  const err = t.throws(() => render(data, { metaData: meta }), { instanceOf: TemplateError });
  t.regex(err.message, /line 4: undefined variable ds\.meta_data\.nope/);
  t.throws(() => render('## template: jinja\n#cloud-config\n{% if x %}\n', { metaData: meta }), {
    message: /not supported/,
  });
  t.throws(
    () => render('## template: jinja\n#cloud-config\nruncmd: ["{{ v1.instance_id | upper }}"]\n', { metaData: meta }),
    {
      message: /unsupported jinja expression/,
    },
  );
});

test('formats other than cloud-config are refused with what to do', (t) => {
  t.throws(() => render('{"ignition":{"version":"2.3.0"}}', { metaData: meta }), {
    instanceOf: UnsupportedFormat,
    message: /ignition/,
  });
  t.throws(() => render('#cloud-config\n', { metaData: meta, format: 'ignition' }), { instanceOf: UnsupportedFormat });
  t.throws(() => render('Content-Type: multipart/mixed; boundary="x"\nMIME-Version: 1.0\n', { metaData: meta }), {
    message: /multipart/,
  });
  t.throws(() => render('#!/bin/sh\necho hi\n', { metaData: meta }), { message: /shell script/ });
  t.throws(() => render('#cloud-config\nwrite_files: [ {path: /a\n', { metaData: meta }), {
    instanceOf: InvalidCloudConfig,
    message: /not valid YAML/,
  });
});

test('disks and mounts are refused before anything runs; unknown keys are warned about', (t) => {
  t.throws(() => render('#cloud-config\nmounts:\n- [/dev/sdb, /data]\n', { metaData: meta }), {
    instanceOf: UnsupportedModule,
    message: /mounts/,
  });
  const r = render('#cloud-config\npackages: [jq]\nhostname: x\nruncmd: ["true"]\n', { metaData: meta });
  t.deepEqual(r.warnings, ['cloud-config keys not applied by CAPBM (cloud-init would): hostname, packages']);
});

test('bad fields name their path', (t) => {
  t.throws(() => render('#cloud-config\nwrite_files:\n- path: /a\n  permissions: rwx\n', { metaData: meta }), {
    message: /write_files\[0\]\.permissions/,
  });
  t.throws(() => render('#cloud-config\nwrite_files:\n- content: x\n', { metaData: meta }), {
    message: /write_files\[0\]\.path: a path is required/,
  });
  t.throws(() => render('#cloud-config\nwrite_files:\n- path: rel/a\n', { metaData: meta }), { message: /absolute/ });
  t.throws(() => render('#cloud-config\nruncmd:\n- {a: 1}\n', { metaData: meta }), { message: /runcmd\[0\]/ });
});

test('steps follow cloud-init module order', (t) => {
  const data = `#cloud-config
runcmd: [echo run]
ntp: {servers: [ntp.example]}
users: [{name: alice}]
write_files:
- {path: /late, content: x, defer: true}
- {path: /early, content: y}
bootcmd: [echo boot]
`;
  t.deepEqual(
    render(data, { metaData: meta }).steps.map((s) => s.id),
    ['bootcmd.0', 'write_files.1', 'users.0', 'ntp', 'write_files_deferred.0', 'runcmd.0'],
  );
});

test('write_files: encodings, modes and owners land byte-exact, and the run reports progress', async (t) => {
  const r0 = root();
  const bin = Buffer.from([0, 1, 2, 255, 10, 13, 39, 36]);
  const data = `#cloud-config
write_files:
- {path: /a/plain, content: "hello\\n", permissions: '0600'}
- {path: /a/b64, encoding: b64, content: ${bin.toString('base64')}, permissions: 0640}
- {path: /a/gzb64, encoding: gzip+base64, content: ${gzipSync(Buffer.from('zipped')).toString('base64')}}
- {path: /a/num, content: n, permissions: 384}
`;
  const r = render(data, { metaData: meta, root: r0 });
  const out = await run(r.script);
  t.is(out.exitCode, 0, out.stdout);
  t.is(readFileSync(join(r0, 'a/plain'), 'utf8'), 'hello\n');
  t.deepEqual(readFileSync(join(r0, 'a/b64')), bin);
  t.is(readFileSync(join(r0, 'a/gzb64'), 'utf8'), 'zipped');
  t.is(statSync(join(r0, 'a/plain')).mode & 0o7777, 0o600);
  t.is(statSync(join(r0, 'a/b64')).mode & 0o7777, 0o640);
  t.is(statSync(join(r0, 'a/gzb64')).mode & 0o7777, 0o644);
  t.is(statSync(join(r0, 'a/num')).mode & 0o7777, 0o600);
  const events = out.stdout.split('\n').map(parseProgressLine);
  t.deepEqual(events.at(-1), { type: 'result', ok: true });
  t.true(events.some((e) => e.type === 'step' && e.id === 'write_files.3' && e.event === 'done'));
});

test('re-running skips completed steps: an append is applied once; bootcmd runs every time', async (t) => {
  const r0 = root();
  writeFileSync(join(r0, 'log'), 'start\n');
  const data = `#cloud-config
bootcmd: ["echo boot >> ${r0}/boots"]
write_files:
- {path: /log, content: "appended\\n", append: true}
runcmd: ["echo ran >> ${r0}/runs"]
`;
  const r = render(data, { metaData: meta, root: r0 });
  t.is((await run(r.script)).exitCode, 0);
  const second = await run(r.script);
  t.is(second.exitCode, 0);
  t.regex(second.stdout, /CAPBM-STEP write_files\.0 skip/);
  t.is(readFileSync(join(r0, 'log'), 'utf8'), 'start\nappended\n');
  t.is(readFileSync(join(r0, 'runs'), 'utf8'), 'ran\n');
  t.is(readFileSync(join(r0, 'boots'), 'utf8'), 'boot\nboot\n');
  const journal = readFileSync(join(r0, 'var/lib/capbm', meta.instance_id, 'steps', 'journal'), 'utf8');
  t.is(journal.match(/^bootcmd\.0 always start$/gm)?.length, 2, 'the journal has both runs of bootcmd');
  t.is(journal.match(/^runcmd\.0 once start$/gm)?.length, 1);
  t.deepEqual(stepsRunAgain(journal), [], 'no once-step started again after it was done');
});

test('the steps journal tells a once-step that started again after it was done', (t) => {
  const j = [
    'bootcmd.0 always start',
    'bootcmd.0 always done',
    'runcmd.0 once start',
    'runcmd.1 once start',
    'runcmd.1 once fail',
    'bootcmd.0 always start',
    'bootcmd.0 always done',
    'runcmd.1 once start',
    'runcmd.1 once done',
    'runcmd.0 once start',
    'runcmd.1 once start',
    '',
  ].join('\n');
  // runcmd.0 started twice but never finished the first time (a host that died mid-step): allowed.
  t.deepEqual(stepsRunAgain(j), [{ step: 'runcmd.1', line: 11 }]);
});

test('a failed command is reported by step id; the run goes on (as cloud-init) and resumes after a fix', async (t) => {
  const r0 = root();
  const flag = join(r0, 'fixed');
  const data = `#cloud-config
runcmd:
- echo one >> ${r0}/out
- test -e ${flag}
- echo three >> ${r0}/out
`;
  const r = render(data, { metaData: meta, root: r0 });
  const first = await run(r.script);
  t.is(first.exitCode, 1);
  t.regex(first.stdout, /CAPBM-STEP runcmd\.1 fail 1/);
  t.deepEqual(parseProgressLine(first.stdout.trim().split('\n').at(-1)!), {
    type: 'result',
    ok: false,
    failedStep: 'runcmd.1',
    code: 1,
  });
  t.is(readFileSync(join(r0, 'out'), 'utf8'), 'one\nthree\n');
  writeFileSync(flag, '');
  const second = await run(r.script);
  t.is(second.exitCode, 0, second.stdout);
  t.is(readFileSync(join(r0, 'out'), 'utf8'), 'one\nthree\n');
});

test('a failed write_files step stops the run before any command', async (t) => {
  const r0 = root();
  const data = `#cloud-config
write_files: [{path: /x, content: x, owner: "no-such-user-capbm:root"}]
runcmd: ["touch ${r0}/ran"]
`;
  const out = await run(render(data, { metaData: meta, root: r0 }).script);
  t.is(out.exitCode, 1);
  t.regex(out.stdout, /CAPBM-RESULT fail write_files\.0/);
  t.false(existsSync(join(r0, 'ran')));
  t.false(existsSync(join(r0, 'x')));
});

test('every output line of a step carries its id', async (t) => {
  const out = await run(
    render('#cloud-config\nruncmd: ["echo a; echo b >&2"]\n', { metaData: meta, root: root() }).script,
  );
  t.regex(out.stdout, /^\[capbm runcmd\.0\] a$/m);
  t.regex(out.stdout, /^\[capbm runcmd\.0\] b$/m);
});

test('commands do not read the script from stdin', async (t) => {
  const r0 = root();
  const script = render(`#cloud-config\nruncmd: ["cat > ${r0}/stdin", "echo after > ${r0}/after"]\n`, {
    metaData: meta,
    root: r0,
  }).script;
  const out = await execa('sh', ['-s'], { input: script, reject: false });
  t.is(out.exitCode, 0, out.stdout);
  t.is(readFileSync(join(r0, 'stdin'), 'utf8'), '');
  t.is(readFileSync(join(r0, 'after'), 'utf8'), 'after\n');
});

test('CLI: prints the script, and says what is wrong with bad input', async (t) => {
  const dir = root();
  const data = join(dir, 'data');
  writeFileSync(data, '## template: jinja\n#cloud-config\nruncmd: ["echo {{ ds.meta_data.local_hostname }}"]\n');
  const md = join(dir, 'md');
  writeFileSync(md, 'instance_id: i1\nlocal_hostname: node-7\n');
  const ok = await execa('node', ['cloud-init/cli.ts', 'render', '--bootstrap-data', data, '--meta-data', md]);
  t.regex(ok.stdout, /^#!\/bin\/sh/);
  t.regex(ok.stdout, /echo node-7/);
  const missing = await execa('node', ['cloud-init/cli.ts', 'render', '--bootstrap-data', join(dir, 'nope')], {
    reject: false,
  });
  t.is(missing.exitCode, 1);
  t.regex(missing.stderr, /cannot read bootstrap data .*ENOENT/);
  writeFileSync(data, '## template: jinja\n#cloud-config\nruncmd: ["echo {{ ds.meta_data.zone }}"]\n');
  const undef = await execa('node', ['cloud-init/cli.ts', 'render', '--bootstrap-data', data], { reject: false });
  t.is(undef.exitCode, 1);
  t.regex(undef.stderr, /undefined variable ds\.meta_data\.zone/);
  const usage = await execa('node', ['cloud-init/cli.ts'], { reject: false });
  t.is(usage.exitCode, 2);
  t.regex(usage.stderr, /usage: capbm render/);
  chmodSync(dir, 0o755);
});

test("capbm command: the launcher runs on the machine's own Node too, and reads NoCloud meta-data as cloud-init does", async (t) => {
  const dir = root();
  const data = join(dir, 'data');
  writeFileSync(
    data,
    '## template: jinja\n#cloud-config\nruncmd: ["echo {{ ds.meta_data.local_hostname }} {{ v1.instance_id }} {{ ds.meta_data.instance_id }}"]\n',
  );
  const md = join(dir, 'md');
  writeFileSync(md, 'instance-id: i-42\nlocal-hostname: node-42\nlocal_hostnme: typo\nrack: r7\n');
  // /usr/bin/node is the machine's default Node (20 on Debian 12), which cannot run .ts files itself.
  const system = existsSync('/usr/bin/node') ? '/usr/bin/node' : process.execPath;
  const r = await execa(system, ['bin/capbm.js', 'render', '--bootstrap-data', data, '--meta-data', md]);
  t.regex(r.stdout, /echo node-42 i-42 i-42/);
  t.regex(
    r.stderr,
    /meta data key "local_hostnme" is not one cloud-init or CAPBM knows; did you mean "local-hostname"\?/,
  );
  t.regex(r.stderr, /meta data key "rack" is not one .*ds\.meta_data\.rack/);
  t.notRegex(r.stderr, /key "instance-id"|key "local-hostname"/);
  chmodSync(dir, 0o755);
});

test('YAML 1.1 as PyYAML reads it: ".", "-.", y and n are strings; yes/off are booleans (found by the property test)', (t) => {
  const cfg = parseBootstrapData(
    '#cloud-config\nwrite_files:\n- {path: /a, content: .}\n- {path: /b, content: -.}\n- {path: /c, content: 1.5}\n- {path: /d, content: n}\n- {path: /e, content: Y}\n- {path: /f, content: yes}\n- {path: /g, content: off}\n- {path: /h, content: 0:0}\n- {path: /i, content: 0_}\n',
    {
      ds: { meta_data: {} },
      v1: {},
    },
  ) as { write_files: Array<{ content: unknown }> };
  t.deepEqual(
    cfg.write_files.map((f) => f.content),
    ['.', '-.', 1.5, 'n', 'Y', true, false, '0:0', 0],
  );
});

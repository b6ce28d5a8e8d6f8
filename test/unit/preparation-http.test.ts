// bundle.source HTTP's pure parts (preparation/http.ts: the URL order, redaction, what goes on
// stdin) and its scripts run under the local sh against a web server and a forward proxy on
// 127.0.0.1, with each downloader this machine has (curl, GNU wget, busybox wget): what a host
// does, without a host. Real hosts: test/integration/preparation-http.test.ts.
import test from 'ava';
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { httpBundle, type Downloading, type Refused } from '../../provider/preparation/download.ts';
import {
  baseOrder,
  downloadScript,
  downloadStdin,
  fetchToStdoutScript,
  parseDownloader,
  redact,
  secretsOf,
  unavailableMessage,
  urlOf,
  type Downloader,
} from '../../provider/preparation/http.ts';
import { digestOf, type BundleManifest } from '../../provider/preparation/manifest.ts';
import { prepareOn } from '../../provider/preparation/prepare.ts';
import type { ExecOptions, ExecResult, SshSession } from '../../provider/ssh/target.ts';

test('base URLs: the main one, then the mirrors in order; the one that served last goes first', (t) => {
  const src = { url: 'http://a/b/', mirrors: ['http://m1/b', 'http://a/b', 'http://m2/b//'] };
  t.deepEqual(baseOrder(src), ['http://a/b', 'http://m1/b', 'http://m2/b']);
  t.deepEqual(baseOrder(src, 'http://m2/b'), ['http://m2/b', 'http://a/b', 'http://m1/b']);
  t.deepEqual(baseOrder(src, 'http://elsewhere'), ['http://a/b', 'http://m1/b', 'http://m2/b']);
  t.is(urlOf('http://a/b'), 'http://a/b/manifest.json');
  t.is(urlOf('http://a/b', '/usr/lib/x@1+2'), 'http://a/b/files/usr/lib/x%401%2B2');
});

test('credentials in a URL are never shown: userinfo and its parts are redacted', (t) => {
  const proxy = 'http://alice:s3cret-pw@proxy.example:3128';
  const url = 'https://bob:t0ken@mirror.example/b';
  const secrets = secretsOf([proxy, url, 'http://plain/b', undefined]);
  t.deepEqual(secrets, ['alice:s3cret-pw', 's3cret-pw', 's3cret-pw', 'bob:t0ken', 't0ken', 't0ken']);
  const text = `via ${proxy}: 407 for user alice (password s3cret-pw); ${url}/manifest.json failed`;
  const shown = redact(text, secrets);
  t.false(/s3cret|t0ken|bob/.test(shown), shown);
  t.true(shown.includes('407 for user alice (password ***)'), 'a user name is no secret; its password is');
  t.true(shown.includes('http://***@proxy.example:3128'));
  t.true(shown.includes('https://***@mirror.example/b/manifest.json'));
  const msg = unavailableMessage('/usr/bin/kubeadm', { url, proxy, sha256: '0'.repeat(64) }, [
    { url: `${url}/files/usr/bin/kubeadm`, error: 'curl: (56) CONNECT tunnel failed, response 407' },
    { url: 'http://m/b/files/usr/bin/kubeadm', error: '' },
  ]);
  t.false(/s3cret|t0ken/.test(msg), msg);
  t.regex(msg, /kubeadm through the proxy http:\/\/\*\*\*@proxy.example:3128: https:\/\/\*\*\*@mirror.example\//);
  t.regex(msg, /response 407; http:\/\/m\/b\/files\/usr\/bin\/kubeadm: failed\./);
});

test("what goes on the download's stdin: curl's config (quoted) or the proxy and URL lines", (t) => {
  t.is(downloadStdin('curl', 'http://h/a"b\\c', 'http://p:1'), 'url = "http://h/a\\"b\\\\c"\nproxy = "http://p:1"\n');
  t.is(downloadStdin('curl', 'http://h/a'), 'url = "http://h/a"\n');
  t.is(downloadStdin('busybox', 'http://h/a'), '\nhttp://h/a\n');
  t.is(downloadStdin('gnu-wget', 'http://h/a', 'http://p:1'), 'http://p:1\nhttp://h/a\n');
  t.is(parseDownloader('x\ndownloader=gnu-wget\n'), 'gnu-wget');
  t.is(parseDownloader('downloader=aria2\n'), undefined);
  t.is(parseDownloader(''), undefined);
  // Nothing of the URL or proxy is on a command line.
  for (const d of ['curl', 'gnu-wget', 'busybox', 'wget'] as const)
    t.false(/https?:\/\//.test(downloadScript(d, '/var/lib/capbm/bundle/x/files/usr/bin/kubeadm')));
});

// ---- the scripts under the local sh, against servers on 127.0.0.1 ----

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'capbm-http-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** An SshSession that runs each command under the local sh, with PATH as given. */
function localHost(path = process.env.PATH ?? ''): SshSession {
  const env = { PATH: path, http_proxy: '', https_proxy: '', no_proxy: '', HTTP_PROXY: '', NO_PROXY: '' };
  return {
    target: { host: '127.0.0.1', user: 'root', credentials: { privateKey: '' }, hostKey: { kind: 'insecure' } },
    hostKeyFingerprint: '',
    hostKeyFirstUse: false,
    async exec(command: string, o: ExecOptions = {}): Promise<ExecResult> {
      const input = typeof o.stdin === 'string' ? o.stdin : '';
      const r = await execa('/bin/sh', ['-c', command], {
        input,
        reject: false,
        env,
        extendEnv: false,
        stripFinalNewline: false,
        timeout: 60_000,
      });
      if ((o.check ?? true) && r.exitCode !== 0) throw new Error(`${o.what}: exit ${r.exitCode}: ${r.stderr}`);
      return { exitCode: r.exitCode ?? null, stdout: r.stdout, stderr: r.stderr };
    },
    upload: () => Promise.reject(new Error('not used')),
    close: () => {},
  } as unknown as SshSession;
}

async function listen(s: Server): Promise<string> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(s.address() as { port: number }).port}`;
}

/** A static server of a folder, and a forward proxy that records what went through it. */
async function servers(t: { teardown(fn: () => void): void }, root: string) {
  const web = createServer((req: IncomingMessage, res: ServerResponse) => {
    try {
      res.end(readFileSync(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname))));
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  const seen: string[] = [];
  const proxy = createServer((req, res) => {
    seen.push(`${req.headers['proxy-authorization'] ? 'auth ' : ''}${req.url}`);
    const up = request(req.url ?? '', { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  const closed = createServer();
  const [w, p, c] = [await listen(web), await listen(proxy), await listen(closed)];
  await new Promise((r) => closed.close(r));
  t.teardown(() => {
    web.close();
    proxy.close();
  });
  return { web: `http://${w}`, proxy: `http://${p}`, closed: `http://${c}`, seen };
}

const have = (cmd: string) => execa('sh', ['-c', `command -v ${cmd}`], { reject: false }).then((r) => r.exitCode === 0);

for (const d of ['curl', 'gnu-wget', 'busybox'] as Downloader[]) {
  test(`${d}: fetches to stdout and to a file through a proxy; a failure leaves no partial file`, async (t) => {
    if (!(await have(d === 'gnu-wget' ? 'wget' : d))) return t.pass(`${d} is not on this machine`);
    const root = tmp(t);
    writeFileSync(join(root, 'manifest.json'), '{"a":1}\n');
    mkdirSync(join(root, 'files/usr/bin'), { recursive: true });
    writeFileSync(join(root, 'files/usr/bin/tool'), Buffer.alloc(100_000, 7));
    const s = await servers(t, root);
    const host = localHost();
    const out = await host.exec(fetchToStdoutScript(d), { stdin: downloadStdin(d, urlOf(s.web)) });
    t.is(out.stdout, '{"a":1}\n');
    const dest = join(root, 'staged/files/usr/bin/tool');
    const viaProxy = s.proxy.replace('//', '//user:pw@');
    await host.exec(downloadScript(d, dest), { stdin: downloadStdin(d, urlOf(s.web, '/usr/bin/tool'), viaProxy) });
    t.deepEqual(readFileSync(dest), Buffer.alloc(100_000, 7));
    t.deepEqual(
      s.seen,
      [`auth ${s.web}/files/usr/bin/tool`],
      'the download went through the proxy, with its credentials',
    );
    const bad = await host.exec(downloadScript(d, `${dest}2`), {
      stdin: downloadStdin(d, `${s.closed}/files/usr/bin/tool`),
      check: false,
    });
    t.not(bad.exitCode, 0);
    t.deepEqual(readdirSync(dirname(dest)), ['tool'], 'no .part left');
  });
}

function bundleFolder(root: string): { manifest: BundleManifest; digest: string } {
  const files = { '/usr/bin/tool': 'binary', '/etc/tool.conf': 'config' };
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(dirname(join(root, 'files', p)), { recursive: true });
    writeFileSync(join(root, 'files', p), c);
  }
  const manifest: BundleManifest = {
    apiVersion: 'capbm.dev/bundle/v1',
    name: 'kubernetes-v1.36.3-b1',
    kubernetesVersion: 'v1.36.3',
    arch: 'x86_64',
    files: Object.entries(files).map(([path, c]) => ({ path, sha256: digestOf(c), size: c.length, mode: '0644' })),
    units: ['containerd.service'],
    modules: ['overlay'],
    sysctls: { 'net.ipv4.ip_forward': '1' },
  };
  const text = JSON.stringify(manifest);
  writeFileSync(join(root, 'manifest.json'), text);
  return { manifest, digest: digestOf(text) };
}

const refused = (r: Downloading | Refused) => ('reason' in r ? r : undefined);

test('httpBundle: a refusing mirror is skipped, the pinned manifest is checked, files come from the mirror that served', async (t) => {
  const root = tmp(t);
  const { manifest, digest } = bundleFolder(join(root, 'b'));
  const s = await servers(t, join(root, 'b'));
  const src = { url: s.closed, mirrors: [s.web], sha256: digest };
  const r = await httpBundle(localHost(), { version: 'v1.36.3', http: src });
  if ('reason' in r) return t.fail(r.message);
  t.deepEqual(r.manifest, manifest);
  const dest = join(root, 'staged/etc/tool.conf');
  await r.send(manifest.files[1]!, dest);
  t.is(readFileSync(dest, 'utf8'), 'config');
  // A wrong pin: refused before anything is staged, saying what was served and what is pinned.
  const wrong = refused(
    await httpBundle(localHost(), { version: 'v1.36.3', http: { ...src, sha256: '0'.repeat(64) } }),
  );
  t.is(wrong?.reason, 'ChecksumMismatch');
  t.regex(wrong?.message ?? '', new RegExp(`manifest.json: its sha256 is ${digest}, bundle.sha256 pins 0{64}`));
  // Another version than the machine's.
  const other = refused(await httpBundle(localHost(), { version: 'v1.35.4', http: src }));
  t.is(other?.reason, 'BundleUnavailable');
  t.regex(other?.message ?? '', /is for Kubernetes v1.36.3, the machine is v1.35.4/);
});

test('httpBundle: every URL failing names each URL and its error, credentials redacted; no downloader is refused', async (t) => {
  const s = await servers(t, tmp(t));
  const src = {
    url: `${s.closed}/b`,
    mirrors: [`${s.web}/nothing`],
    proxy: 'http://u:pw-secret@127.0.0.1:9',
    sha256: '1'.repeat(64),
  };
  const { proxy: _, ...direct } = src;
  const r = refused(await httpBundle(localHost(), { version: 'v1.36.3', http: direct }));
  t.is(r?.reason, 'BundleUnavailable');
  t.regex(r?.message ?? '', new RegExp(`${s.closed}/b/manifest.json: .*; ${s.web}/nothing/manifest.json: .*404`));
  const p = refused(await httpBundle(localHost(), { version: 'v1.36.3', http: src }));
  t.is(p?.reason, 'BundleUnavailable');
  t.false((p?.message ?? '').includes('pw-secret'), p?.message);
  t.regex(p?.message ?? '', /through the proxy http:\/\/\*\*\*@127.0.0.1:9/);
  // A host without curl, wget or busybox (only the shell's builtins and what /nonexistent holds).
  const none = refused(await httpBundle(localHost('/nonexistent'), { version: 'v1.36.3', http: src }));
  t.is(none?.reason, 'NoDownloader');
  t.regex(none?.message ?? '', /neither curl nor wget .* Install curl .* or use bundle.source: Provider/);
});

test('httpBundle: a host with only busybox gets no URL with credentials (its wget shows URLs to every user)', async (t) => {
  if (!(await have('busybox'))) return t.pass('busybox is not on this machine');
  const root = tmp(t);
  const { digest } = bundleFolder(join(root, 'b'));
  const s = await servers(t, join(root, 'b'));
  mkdirSync(join(root, 'bin'));
  symlinkSync((await execa('sh', ['-c', 'command -v busybox'])).stdout, join(root, 'bin/busybox'));
  const host = localHost(join(root, 'bin'));
  const secret = refused(
    await httpBundle(host, { version: 'v1.36.3', http: { url: s.web.replace('//', '//u:pw@'), sha256: digest } }),
  );
  t.is(secret?.reason, 'NoDownloader');
  t.regex(secret?.message ?? '', /only busybox wget/);
  // The proxy's credentials go in its environment, not on its command line: that one is fine.
  const viaProxy = await httpBundle(host, {
    version: 'v1.36.3',
    http: { url: s.web, proxy: s.proxy.replace('//', '//u:pw@'), sha256: digest },
  });
  t.false('reason' in viaProxy, 'reason' in viaProxy ? viaProxy.message : '');
  t.deepEqual(s.seen, [`auth ${s.web}/manifest.json`]);
});

/** A host that answers the preparation probe with `probe` and has nothing to download with; records each command. */
function probedHost(probe: string): { host: SshSession; ran: string[] } {
  const ran: string[] = [];
  const host = {
    exec(command: string): Promise<ExecResult> {
      ran.push(command.includes('/etc/os-release') ? 'probe' : command);
      return Promise.resolve({ exitCode: 0, stdout: command.includes('/etc/os-release') ? probe : '', stderr: '' });
    },
    upload: () => Promise.reject(new Error('not used')),
  } as unknown as SshSession;
  return { host, ran };
}

test('prepareOn, HTTP: a host prepared with the pinned bundle or by its OS image is left alone without curl or wget; only an install needs one', async (t) => {
  const pin = '7'.repeat(64);
  const bundle = { version: 'v1.36.3', http: { url: 'http://u:pw@10.250.0.1:1/b', sha256: pin } };
  const policy = { onVersionMismatch: 'Refuse' as const, minFreeDiskMiB: 256 };
  const stock = 'os=debian 12\narch=x86_64\nsystemd=1\nfree_kib=99999999\n';
  const record = (v: string, digest: string) =>
    `record_stock=1\nrecord_version=${v}\nrecord_bundle=kubernetes-${v}-b1\nrecord_digest=${digest}\n`;
  const cases: Array<[string, string, object]> = [
    ['recorded', stock + record('v1.36.3', pin), { ok: true, how: 'recorded', uploadedBytes: 0 }],
    ['image', `${stock}kubeadm=v1.36.3\n`, { ok: true, how: 'image', uploadedBytes: 0 }],
    ['another version', stock + record('v1.35.4', '1'.repeat(64)), { ok: false, reason: 'VersionMismatch' }],
    ['an OS image of another version', `${stock}kubeadm=v1.35.4\n`, { ok: false, reason: 'VersionMismatch' }],
  ];
  for (const [what, probe, want] of cases) {
    const { host, ran } = probedHost(probe);
    const r = await prepareOn(host, { bundle, policy });
    t.like(r, want, what);
    t.deepEqual(ran, ['probe'], `${what}: the probe alone ran, nothing looked for a downloader or downloaded`);
    t.false(r.message.includes('pw'), r.message);
  }
  // A stock host: something must be installed, so the downloader is needed (and missing here).
  const { host, ran } = probedHost(stock);
  t.like(await prepareOn(host, { bundle, policy }), { ok: false, reason: 'NoDownloader' });
  t.is(ran[0], 'probe');
  t.regex(ran[1] ?? '', /command -v curl/);
});

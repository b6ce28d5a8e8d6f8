// bundle.source HTTP against real lab hosts: each stock host downloads the bundle hack/bundle built
// from a web server this test starts on the lab bridge (any static server would do), past a first
// mirror that refuses connections, or through a forward proxy this test starts (which must see
// every download); a wrong pin, a host without curl or wget, and URLs that all fail are refused
// with what to do and nothing installed.
import test, { type ExecutionContext } from 'ava';
import { createServer, type Server } from 'node:http';
import ssh2 from 'ssh2';
import { runReset } from '../../provider/controllers/host-ops.ts';
import { Bundles, type Bundle } from '../../provider/preparation/bundles.ts';
import type { HttpSource } from '../../provider/preparation/http.ts';
import { RECORD } from '../../provider/preparation/plan.ts';
import { prepareOn } from '../../provider/preparation/prepare.ts';
import type { SshConnection } from '../../provider/ssh/index.ts';
import { bundleDir, hostExec, kubernetesVersions, startHost, stopStartedHosts, type LabHost } from '../harness/lab.ts';
import { asRoot, preparationLeftovers } from '../harness/preparation.ts';
import { closeServer, forwardProxy, listenOnBridge, staticServer } from '../harness/web.ts';

const key = ssh2.utils.generateKeyPairSync('ed25519');
const { current } = kubernetesVersions();
const policy = { onVersionMismatch: 'Refuse' as const, minFreeDiskMiB: 256 };
let one: LabHost;
let two: LabHost;
let bundle: Bundle;
const servers: Server[] = [];
let web: string; // the bundle folder, served on the lab bridge
let closed: string; // a port on the bridge where nothing listens
let proxy: string;
const proxied: string[] = []; // what went through the proxy

async function listen(s: Server): Promise<string> {
  servers.push(s);
  return listenOnBridge(s);
}

test.before(async () => {
  const authorizedKeys = [key.public];
  [one, two] = [await startHost({ authorizedKeys, stock: true }), await startHost({ authorizedKeys, stock: true })];
  bundle = await new Bundles(bundleDir()).find(current);
  // After the hosts: the bridge exists once a host is on it.
  web = await listen(staticServer(bundle.dir));
  proxy = await listen(forwardProxy(proxied));
  closed = await listen(createServer());
  await new Promise((r) => servers.pop()!.close(r));
});
test.after.always(async () => {
  await Promise.all(servers.map(closeServer));
  await stopStartedHosts();
});

const on = <T>(h: LabHost, fn: (c: SshConnection) => Promise<T>) => asRoot(h, key.private, fn);

const prepare = (h: LabHost, http: Partial<HttpSource> = {}) =>
  on(h, (c) =>
    prepareOn(c, { bundle: { version: current, http: { url: web, sha256: bundle.digest, ...http } }, policy }),
  );

async function untouched(t: ExecutionContext, h: LabHost) {
  t.is(await preparationLeftovers(h), '', 'nothing installed or staged');
}

test.serial('past a mirror that refuses, the host downloads the bundle, verifies and installs it', async (t) => {
  t.timeout(10 * 60_000);
  t.is((await hostExec(one, 'command -v kubeadm containerd; true')).stdout.trim(), '', 'stock: nothing there');
  const r = await prepare(one, { url: closed, mirrors: [web] });
  t.log(`prepared in ${Math.round(r.ms / 1000)} s: ${r.message}`);
  t.like(r, { ok: true, how: 'installed' });
  t.regex(r.message, /MiB downloaded by the host\) sha256-verified on the host/);
  const h = await hostExec(one, `kubeadm version -o short; systemctl is-active containerd; grep -c '^file=' ${RECORD}`);
  t.is(h.stdout.trim().split('\n').join(' '), `${current} active ${bundle.manifest.files.length}`);
  // Prepared with this bundle: left alone before anything is downloaded, so no downloader is needed.
  await hostExec(one, 'mv /usr/bin/curl /usr/bin/curl.away');
  const again = await prepare(one, { url: closed, mirrors: [web] }).finally(() =>
    hostExec(one, 'mv /usr/bin/curl.away /usr/bin/curl'),
  );
  t.like(again, { ok: true, how: 'recorded', uploadedBytes: 0 });
  t.deepEqual((await on(one, (c) => runReset(c))).leftovers, []);
  await untouched(t, one);
});

test.serial('through a proxy: every download goes through it', async (t) => {
  t.timeout(10 * 60_000);
  proxied.length = 0;
  const r = await prepare(two, { proxy });
  t.like(r, { ok: true, how: 'installed' });
  const want = [`${web}/manifest.json`, ...bundle.manifest.files.map((f) => `${web}/files${f.path}`)];
  t.deepEqual(proxied.map(decodeURIComponent).sort(), want.sort());
  t.deepEqual((await on(two, (c) => runReset(c))).leftovers, []);
  await untouched(t, two);
});

test.serial(
  'a wrong pin, URLs that all fail, and a host without curl or wget are refused; nothing installed',
  async (t) => {
    t.timeout(5 * 60_000);
    const wrong = await prepare(two, { sha256: '0'.repeat(64) });
    t.like(wrong, { ok: false, reason: 'ChecksumMismatch' });
    t.regex(wrong.message, new RegExp(`manifest.json: its sha256 is ${bundle.digest}, bundle.sha256 pins 0{64}`));
    await untouched(t, two);
    const secret = 'pr0xy-pw';
    const gone = await prepare(two, {
      url: closed,
      mirrors: [`${web}/nothing`],
      proxy: `http://u:${secret}@${proxy.slice(7)}`,
    });
    t.like(gone, { ok: false, reason: 'BundleUnavailable' });
    t.regex(gone.message, new RegExp(`${closed}/manifest.json: .*; ${web}/nothing/manifest.json: .*404`));
    t.false(gone.message.includes(secret), 'the proxy password is never shown');
    await untouched(t, two);
    // The stock image has curl and nothing else to download with: take it away.
    t.is((await hostExec(two, 'command -v wget busybox; true')).stdout.trim(), '');
    await hostExec(two, 'mv /usr/bin/curl /usr/bin/curl.away');
    const none = await prepare(two).finally(() => hostExec(two, 'mv /usr/bin/curl.away /usr/bin/curl'));
    t.like(none, { ok: false, reason: 'NoDownloader' });
    t.regex(none.message, /Install curl on the host .* or use bundle.source: Provider/);
    await untouched(t, two);
  },
);

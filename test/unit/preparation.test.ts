// Host preparation's pure parts: the manifest (parsing, verifying digests) and the decision made
// from what the probe printed (preparation/plan.ts).
import test from 'ava';
import {
  BundleInvalid,
  digestOf,
  parseManifest,
  parseSha256sum,
  verifyDigests,
  type BundleManifest,
} from '../../provider/preparation/manifest.ts';
import {
  decidePreparation,
  parseProbe,
  type Decision,
  type ProbeFacts,
  type Wanted,
} from '../../provider/preparation/plan.ts';

const refusal = (d: Decision) => (d.kind === 'refuse' ? `${d.reason}: ${d.message}` : d.kind);

const sha = (s: string) => digestOf(s);
const manifest: BundleManifest = {
  apiVersion: 'capbm.dev/bundle/v1',
  name: 'kubernetes-v1.36.3-b1',
  kubernetesVersion: 'v1.36.3',
  arch: 'x86_64',
  files: [
    { path: '/usr/bin/kubeadm', sha256: sha('kubeadm'), size: 7, mode: '0755' },
    { path: '/etc/containerd/config.toml', sha256: sha('config'), size: 6, mode: '0644' },
  ],
  units: ['containerd.service', 'kubelet.service'],
  modules: ['overlay', 'br_netfilter'],
  sysctls: { 'net.ipv4.ip_forward': '1' },
};

test('a manifest is parsed, and every problem with a bad one is named with what to do', (t) => {
  t.deepEqual(parseManifest(JSON.stringify(manifest)), manifest);
  const bad = {
    ...manifest,
    files: [
      { path: '../etc/passwd', sha256: 'xyz', size: -1, mode: '755' },
      { path: '/usr/bin/a b', sha256: sha('a'), size: 1, mode: '0755' },
    ],
    units: ['rm -rf /'],
  };
  const err = t.throws(() => parseManifest(JSON.stringify(bad)), { instanceOf: BundleInvalid });
  for (const part of ['files[0].path', 'files[0].sha256', 'files[0].size', 'files[0].mode', 'files[1].path', 'units'])
    t.true(err.message.includes(part), part);
  t.regex(err.message, /hack\/bundle/);
  t.throws(() => parseManifest('{'), { instanceOf: BundleInvalid, message: /not JSON/ });
  const twice = { ...manifest, files: [manifest.files[0], manifest.files[0]] };
  t.throws(() => parseManifest(JSON.stringify(twice)), { message: /listed twice/ });
});

test('digests computed on a host are checked against the manifest: a changed or missing file is a mismatch', (t) => {
  const out = `${sha('kubeadm')}  /var/lib/capbm/bundle/x/files/usr/bin/kubeadm\n${sha('other')}  /var/lib/capbm/bundle/x/files/etc/containerd/config.toml\n`;
  const computed = parseSha256sum(out, '/var/lib/capbm/bundle/x/files');
  t.is(computed.get('/usr/bin/kubeadm'), sha('kubeadm'));
  t.deepEqual(verifyDigests(manifest, computed), [
    { path: '/etc/containerd/config.toml', want: sha('config'), got: sha('other') },
  ]);
  t.deepEqual(
    verifyDigests(manifest, new Map()).map((m) => m.got),
    ['missing', 'missing'],
  );
  t.deepEqual(verifyDigests(manifest, new Map(manifest.files.map((f) => [f.path, f.sha256]))), []);
});

const want: Wanted = {
  version: 'v1.36.3',
  bundle: 'kubernetes-v1.36.3-b1',
  digest: 'd1',
  arch: 'x86_64',
  bytes: 400 * 2 ** 20,
};
const policy = { onVersionMismatch: 'Refuse' as const, minFreeDiskMiB: 2048 };
const stock: ProbeFacts = { os: 'debian 12', arch: 'x86_64', systemd: true, freeKiB: 40 * 2 ** 20, existing: [] };

test('the probe output is parsed into facts', (t) => {
  const f = parseProbe(
    'os=debian 12\narch=x86_64\nsystemd=1\nfree_kib=1000\nrecord_stock=1\nrecord_version=v1.35.4\nrecord_bundle=b\nrecord_digest=d0\nexists=/usr/bin/kubeadm\n',
  );
  t.deepEqual(f, {
    os: 'debian 12',
    arch: 'x86_64',
    systemd: true,
    freeKiB: 1000,
    record: { stock: true, version: 'v1.35.4', bundle: 'b', digest: 'd0' },
    existing: ['/usr/bin/kubeadm'],
  });
  t.is(parseProbe('garbage'), undefined);
});

test('a stock host is installed; a host prepared with the same bundle or an OS image of the version is left alone', (t) => {
  t.deepEqual(decidePreparation(stock, want, policy), { kind: 'install', replace: false });
  const recorded = {
    ...stock,
    record: { stock: true, version: 'v1.36.3', bundle: want.bundle, digest: 'd1' },
    existing: ['/usr/bin/kubeadm'],
  };
  t.like(decidePreparation(recorded, want, policy), { kind: 'prepared', how: 'recorded' });
  t.like(decidePreparation({ ...stock, kubeadm: 'v1.36.3', existing: ['/usr/bin/kubeadm'] }, want, policy), {
    kind: 'prepared',
    how: 'image',
  });
});

test('another version is never mixed: refused, or replaced when the policy says so (never an OS image)', (t) => {
  const old = { ...stock, record: { stock: true, version: 'v1.35.4', bundle: 'kubernetes-v1.35.4-b1', digest: 'd0' } };
  t.like(decidePreparation(old, want, policy), { kind: 'refuse', reason: 'VersionMismatch' });
  t.deepEqual(decidePreparation(old, want, { ...policy, onVersionMismatch: 'Replace' }), {
    kind: 'install',
    replace: true,
  });
  const image = { ...stock, kubeadm: 'v1.35.4', existing: ['/usr/bin/kubeadm'] };
  for (const p of ['Refuse', 'Replace'] as const)
    t.regex(
      refusal(decidePreparation(image, want, { ...policy, onVersionMismatch: p })),
      /^VersionMismatch: .*OS image/,
    );
});

test('a host that cannot take the bundle is refused before anything is installed, saying what to do', (t) => {
  const cases: Array<[Partial<ProbeFacts>, RegExp]> = [
    [{ os: 'centos 7' }, /^UnsupportedOS: .*supports debian 12/],
    [{ arch: 'aarch64' }, /^UnsupportedArch: .*Build a bundle for aarch64/],
    [{ systemd: false }, /^NoSystemd: .*systemd/],
    [{ freeKiB: 1024 * 1024 }, /^InsufficientDisk: .*needs 2848 MiB/],
    [{ existing: ['/usr/bin/containerd'] }, /^PackageConflict: .*\/usr\/bin\/containerd, not installed by CAPBM/],
  ];
  for (const [f, want_] of cases) t.regex(refusal(decidePreparation({ ...stock, ...f }, want, policy)), want_);
  // Replacing an earlier preparation is checked the same way.
  const old = { ...stock, systemd: false, record: { stock: true, version: 'v1.35.4', bundle: 'b', digest: 'd0' } };
  t.like(decidePreparation(old, want, { ...policy, onVersionMismatch: 'Replace' }), {
    kind: 'refuse',
    reason: 'NoSystemd',
  });
});

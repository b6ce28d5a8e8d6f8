// Host preparation against real lab hosts (real sshd and systemd in their own namespaces): a stock
// host prepared from a bundle over SSH, found prepared the next time, emptied again by the reset;
// an OS image of the version left alone, one of another version refused; and the bad inputs:
// a wrong checksum, an unsupported OS, no systemd, no disk space, each refused with what to do
// and nothing installed.
import test from 'ava';
import ssh2 from 'ssh2';
import { runReset } from '../../provider/controllers/host-ops.ts';
import { Bundles, type Bundle } from '../../provider/preparation/bundles.ts';
import { RECORD } from '../../provider/preparation/plan.ts';
import { prepareOn, type PrepareInput } from '../../provider/preparation/prepare.ts';
import type { SshConnection } from '../../provider/ssh/index.ts';
import { bundleDir, hostExec, kubernetesVersions, startHost, stopStartedHosts, type LabHost } from '../harness/lab.ts';
import { asRoot, preparationLeftovers } from '../harness/preparation.ts';

const key = ssh2.utils.generateKeyPairSync('ed25519');
const { current, previous } = kubernetesVersions();
const policy = { onVersionMismatch: 'Refuse' as const, minFreeDiskMiB: 256 };
let stock: LabHost;
let other: LabHost; // stock, for the bad inputs
let image: LabHost; // an OS image with the pinned version
let bundle: Bundle;

test.before(async () => {
  const authorizedKeys = [key.public];
  [stock, other, image] = [
    await startHost({ authorizedKeys, stock: true }),
    await startHost({ authorizedKeys, stock: true }),
    await startHost({ authorizedKeys }),
  ];
  bundle = await new Bundles(bundleDir()).find(current);
});
test.after.always(async () => {
  await stopStartedHosts();
});

const on = <T>(h: LabHost, fn: (c: SshConnection) => Promise<T>) => asRoot(h, key.private, fn);

const prepare = (h: LabHost, o: Partial<PrepareInput> = {}) => on(h, (c) => prepareOn(c, { bundle, policy, ...o }));
const untouched = async (t: { is: (a: unknown, b: unknown, m?: string) => void }, h: LabHost) => {
  t.is(await preparationLeftovers(h), '', 'nothing installed or staged');
};

test.serial('a stock host is prepared from the bundle, found prepared again, and emptied by the reset', async (t) => {
  t.timeout(10 * 60_000);
  t.is((await hostExec(stock, 'command -v kubeadm containerd runc; true')).stdout.trim(), '', 'stock: nothing there');
  const first = await prepare(stock);
  t.log(`prepared in ${Math.round(first.ms / 1000)} s: ${first.message}`);
  t.like(first, { ok: true, how: 'installed' });
  const r = await hostExec(
    stock,
    `kubeadm version -o short; systemctl is-enabled containerd kubelet; systemctl is-active containerd; test -S /run/containerd/containerd.sock && echo socket; grep -c '^file=' ${RECORD}; grep -x stock=1 ${RECORD}`,
  );
  t.is(
    r.stdout.trim().split('\n').join(' '),
    `${current} enabled enabled active socket ${bundle.manifest.files.length} stock=1`,
  );
  const again = await prepare(stock);
  t.like(again, { ok: true, how: 'recorded', uploadedBytes: 0 });
  // Another version on a host CAPBM prepared: refused by default, never mixed.
  const old = await new Bundles(bundleDir()).find(previous);
  const mixed = await prepare(stock, { bundle: old });
  t.like(mixed, { ok: false, reason: 'VersionMismatch' });
  // The reset: what preparation installed goes, so the host is stock again.
  const reset = await on(stock, (c) => runReset(c));
  t.deepEqual(reset.leftovers, []);
  await untouched(t, stock);
  t.is((await hostExec(stock, 'systemctl is-active containerd; true')).stdout.trim(), 'inactive');
});

test.serial('an OS image of the version is left alone; one of another version is refused', async (t) => {
  t.like(await prepare(image), { ok: true, how: 'image', uploadedBytes: 0 });
  const old = await new Bundles(bundleDir()).find(previous);
  const r = await prepare(image, { bundle: old });
  t.like(r, { ok: false, reason: 'VersionMismatch' });
  t.regex(r.message, /OS image .* never changed/);
});

test.serial('bad inputs are refused with what to do, and nothing is installed', async (t) => {
  t.timeout(10 * 60_000);
  // A wrong checksum: the provider's manifest says one thing, the file uploaded is another (the
  // bundle's small files only: what is checked is the same for every file, and uploads take time).
  const files = bundle.manifest.files
    .filter((f) => f.path.startsWith('/etc/'))
    .map((f) => (f.path === '/etc/containerd/config.toml' ? { ...f, sha256: '0'.repeat(64) } : f));
  const wrong = await prepare(other, { bundle: { ...bundle, manifest: { ...bundle.manifest, files } } });
  t.like(wrong, { ok: false, reason: 'ChecksumMismatch' });
  t.regex(wrong.message, /\/etc\/containerd\/config.toml .*Nothing was installed/);
  await untouched(t, other);
  // No space: more than the host has free.
  const full = await prepare(other, { policy: { ...policy, minFreeDiskMiB: 1024 * 1024 } });
  t.like(full, { ok: false, reason: 'InsufficientDisk' });
  t.regex(full.message, /Free space on \/ and \/var, or lower minFreeDiskMiB/);
  // No systemd: what the probe looks for (systemd's runtime folder) is not there.
  await hostExec(other, 'mv /run/systemd/system /run/systemd/system.away');
  const nosd = await prepare(other).finally(() => hostExec(other, 'mv /run/systemd/system.away /run/systemd/system'));
  t.like(nosd, { ok: false, reason: 'NoSystemd' });
  // An unsupported OS release.
  await hostExec(
    other,
    'cp /etc/os-release /etc/os-release.real && printf "ID=centos\\nVERSION_ID=7\\n" > /etc/os-release',
  );
  const os = await prepare(other).finally(() => hostExec(other, 'mv /etc/os-release.real /etc/os-release'));
  t.like(os, { ok: false, reason: 'UnsupportedOS' });
  t.regex(os.message, /The host runs centos 7; preparation supports debian 12/);
  // Something else installed a runtime here: a conflict, never overwritten.
  await hostExec(other, 'mkdir -p /etc/containerd && echo "# theirs" > /etc/containerd/config.toml');
  const conflict = await prepare(other).finally(() => hostExec(other, 'rm -f /etc/containerd/config.toml'));
  t.like(conflict, { ok: false, reason: 'PackageConflict' });
  await untouched(t, other);
});

// Every check of the node agent against a temp folder standing in for the host's root: the ok,
// failed and unknown verdict each, as the provider would receive them.
import test from 'ava';
import { chmodSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { issueCertificate, createCertificateAuthority } from '../../../provider/pki/certificate.ts';
import { containerRuntimeCheck, kubeletCheck, ProcessTable } from '../../../agent/checks/processes.ts';
import { diskCheck } from '../../../agent/checks/disk.ts';
import { memoryCheck } from '../../../agent/checks/memory.ts';
import { clockCheck, measureSkew } from '../../../agent/checks/clock.ts';
import { CertificateCache, certificatesCheck } from '../../../agent/checks/certificates.ts';
import { failedUnits, SystemdCheck } from '../../../agent/checks/systemd.ts';
import { UserChecks } from '../../../agent/checks/user.ts';
import { newCheckState, runChecks } from '../../../agent/checks/index.ts';
import { runCommand } from '../../../agent/runner.ts';
import { defaultThresholds } from '../../../agent/config.ts';
import { addProcess, envOf, healthz, put, tempRoot } from './env.ts';

const day = 86_400_000;

test('kubelet: ok when the process runs and healthz answers ok', async (t) => {
  const root = tempRoot();
  addProcess(root, 42, 'kubelet');
  const hz = await healthz(200, 'ok');
  t.teardown(() => hz.server.close());
  const r = await kubeletCheck(envOf(root), new ProcessTable({ root }), hz.url);
  t.like(r, { name: 'kubelet', status: 'ok', reason: 'KubeletHealthy' });
  t.regex(r.message, /pid 42/);
});

test('kubelet: failed when no kubelet process runs', async (t) => {
  const root = tempRoot();
  addProcess(root, 7, 'sshd');
  const r = await kubeletCheck(envOf(root), new ProcessTable({ root }), 'http://127.0.0.1:1/healthz');
  t.like(r, { status: 'failed', reason: 'KubeletNotRunning' });
});

test('kubelet: failed when healthz says no, or does not answer', async (t) => {
  const root = tempRoot();
  addProcess(root, 42, 'kubelet');
  const hz = await healthz(500, '[-]syncloop failed\n');
  t.teardown(() => hz.server.close());
  const procs = new ProcessTable({ root });
  const bad = await kubeletCheck(envOf(root), procs, hz.url);
  t.like(bad, { status: 'failed', reason: 'KubeletUnhealthy' });
  t.regex(bad.message, /HTTP 500: \[-\]syncloop failed/);
  procs.newPass();
  const closed = await kubeletCheck(envOf(root), procs, 'http://127.0.0.1:1/healthz');
  t.like(closed, { status: 'failed', reason: 'KubeletUnhealthy' });
  t.regex(closed.message, /ECONNREFUSED/);
});

test('the process table follows a process that exits and another that starts', (t) => {
  const root = tempRoot();
  addProcess(root, 10, 'containerd');
  const procs = new ProcessTable({ root });
  t.is(procs.find('containerd'), 10);
  rmSync(join(root, 'proc/10'), { recursive: true });
  addProcess(root, 11, 'containerd');
  procs.newPass();
  t.is(procs.find('containerd'), 11);
});

test('container runtime: ok for containerd or CRI-O, failed when none runs', (t) => {
  const root = tempRoot();
  t.like(containerRuntimeCheck(new ProcessTable({ root })), {
    name: 'container-runtime',
    status: 'failed',
    reason: 'ContainerRuntimeNotRunning',
  });
  addProcess(root, 99, 'crio');
  t.like(containerRuntimeCheck(new ProcessTable({ root })), { status: 'ok', reason: 'ContainerRuntimeRunning' });
});

test('disk: ok above the thresholds, DiskPressure and InodePressure below, unknown when unreadable', (t) => {
  const root = tempRoot();
  const env = envOf(root);
  t.like(diskCheck(env), { name: 'disk', status: 'ok' });
  env.thresholds.minFreeDiskPercent = 100.1;
  const full = diskCheck(env);
  t.like(full, { status: 'failed', reason: 'DiskPressure' });
  t.regex(full.message, /^\/ has [0-9.]+% free/);
  env.thresholds.minFreeDiskPercent = 0;
  env.thresholds.minFreeInodesPercent = 100.1;
  const inodes = diskCheck(env);
  // Filesystems without an inode table (btrfs) report no inode figures: the check says ok then.
  t.true(inodes.reason === 'InodePressure' || inodes.status === 'ok');
  t.like(diskCheck(envOf(join(root, 'missing'))), { status: 'unknown', reason: 'DiskUnreadable' });
});

const meminfo = (totalKiB: number, availKiB: number) =>
  `MemTotal:       ${totalKiB} kB\nMemFree:          1000 kB\nMemAvailable:   ${availKiB} kB\n`;
const psi = (fullAvg60: number) =>
  `some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=${fullAvg60.toFixed(2)} avg300=0.00 total=0\n`;

test('memory: ok, MemoryPressure on little MemAvailable or a high PSI stall, unknown without /proc', (t) => {
  const root = tempRoot();
  t.like(memoryCheck(envOf(root)), { name: 'memory', status: 'unknown', reason: 'MemoryUnreadable' });
  put(root, 'proc/meminfo', meminfo(8_000_000, 4_000_000));
  put(root, 'proc/pressure/memory', psi(0.5));
  t.like(memoryCheck(envOf(root)), { status: 'ok', reason: 'MemoryOk' });
  put(root, 'proc/meminfo', meminfo(8_000_000, 200_000));
  const low = memoryCheck(envOf(root));
  t.like(low, { status: 'failed', reason: 'MemoryPressure' });
  t.regex(low.message, /2\.5% of memory available/);
  put(root, 'proc/meminfo', meminfo(8_000_000, 4_000_000));
  put(root, 'proc/pressure/memory', psi(35));
  t.like(memoryCheck(envOf(root)), { status: 'failed', reason: 'MemoryPressure' });
});

test('clock: unknown before the provider answered, ok within the limit, ClockSkew beyond', (t) => {
  t.like(clockCheck(undefined, defaultThresholds), { name: 'clock', status: 'unknown' });
  // Sent at 1000, answered at 1100 on the host's clock; the provider said 61050: 60 s behind.
  const skew = measureSkew(1000, 1100, 61_050);
  t.is(skew, 60_000);
  t.like(clockCheck(skew, defaultThresholds), { status: 'failed', reason: 'ClockSkew' });
  t.like(clockCheck(-2000, defaultThresholds), { status: 'ok', message: 'clock is 2.0 s ahead of the provider' });
});

test('certificates: ok while far from expiry, CertificatesExpiring near or past it, unknown without any', async (t) => {
  const root = tempRoot();
  const cache = new CertificateCache();
  t.like(certificatesCheck(envOf(root), cache), { name: 'certificates', status: 'unknown', reason: 'NoCertificates' });
  const ca = await createCertificateAuthority('kubernetes');
  const client = await issueCertificate({ subject: { commonName: 'system:node:n1' }, ca, validityMs: 365 * day });
  // kubelet-client-current.pem holds the certificate and its key, as the kubelet writes it.
  put(root, 'var/lib/kubelet/pki/kubelet-client-current.pem', client.certPem + client.keyPem);
  put(root, 'etc/kubernetes/pki/ca.crt', ca.certPem);
  const ok = certificatesCheck(envOf(root), cache);
  t.like(ok, { status: 'ok', reason: 'CertificatesValid' });
  t.regex(ok.message, /kubelet-client-current\.pem expires in 36\d\.\d days/);
  // Five days before the client certificate ends.
  const soon = certificatesCheck(envOf(root, { now: () => Date.now() + 360 * day }), cache);
  t.like(soon, { status: 'failed', reason: 'CertificatesExpiring' });
  t.regex(soon.message, /kubelet-client-current\.pem expires in [45]\.\d days/);
  const expired = await issueCertificate({ subject: { commonName: 'apiserver' }, ca, validityMs: -60_000 });
  put(root, 'etc/kubernetes/pki/apiserver.crt', expired.certPem);
  const past = certificatesCheck(envOf(root), cache);
  t.like(past, { status: 'failed', reason: 'CertificatesExpiring' });
  t.regex(past.message, /apiserver\.crt expired at/);
});

test('certificates: a file that changes is read again; an unreadable one fails the check', async (t) => {
  const root = tempRoot();
  const cache = new CertificateCache();
  const f = put(root, 'var/lib/kubelet/pki/kubelet.crt', 'not a certificate');
  t.like(certificatesCheck(envOf(root), cache), { status: 'failed', reason: 'CertificatesUnreadable' });
  const good = await issueCertificate({ subject: { commonName: 'n1' } });
  put(root, 'var/lib/kubelet/pki/kubelet.crt', good.certPem);
  utimesSync(f, new Date(), new Date(Date.now() + 5000));
  t.like(certificatesCheck(envOf(root), cache), { status: 'ok' });
});

/** A runner that finds a fake systemctl first on PATH. */
function withFakeSystemctl(root: string, script: string) {
  const bin = put(root, 'bin/systemctl', `#!/bin/sh\n${script}\n`);
  chmodSync(bin, 0o755);
  return envOf(root, {
    run: (cmd, o) => runCommand(`PATH=${join(root, 'bin')}:$PATH; ${cmd}`, o),
  });
}

test('systemd units: unknown without systemd, ok with none failed, SystemdUnitsFailed with some', async (t) => {
  const root = tempRoot();
  t.like(await new SystemdCheck().run(envOf(root)), { name: 'systemd-units', status: 'unknown', reason: 'NoSystemd' });
  put(root, 'run/systemd/system/.keep', '');
  t.like(await new SystemdCheck().run(withFakeSystemctl(root, 'exit 0')), { status: 'ok' });
  const failed = await new SystemdCheck().run(
    withFakeSystemctl(
      root,
      "printf 'containerd.service loaded failed failed containerd\\nfoo.mount loaded failed failed Foo\\n'",
    ),
  );
  t.like(failed, {
    status: 'failed',
    reason: 'SystemdUnitsFailed',
    message: 'failed units: containerd.service, foo.mount',
  });
  t.like(await new SystemdCheck().run(withFakeSystemctl(root, 'exit 1')), {
    status: 'unknown',
    reason: 'SystemctlFailed',
  });
  t.deepEqual(failedUnits('● kubelet.service loaded failed failed kubelet\n'), ['kubelet.service']);
});

test('user checks: exit 0 is ok, non-zero fails with its output, a hang times out, a bad shell is unknown', async (t) => {
  const env = envOf(tempRoot());
  const u = new UserChecks();
  t.like(await u.run(env, { name: 'ok', command: 'true' }), { name: 'user:ok', status: 'ok' });
  const bad = await u.run(env, { name: 'nfs', command: 'echo "mount /srv is gone" >&2; exit 3' });
  t.like(bad, { status: 'failed', reason: 'UserCheckFailed', message: 'check nfs exited 3: mount /srv is gone' });
  t.like(await u.run(env, { name: 'slow', command: 'sleep 30', timeoutSeconds: 1 }), {
    status: 'failed',
    reason: 'UserCheckTimedOut',
  });
  const noShell = envOf(tempRoot(), {
    run: () => Promise.resolve({ exitCode: null, stdout: '', stderr: '', timedOut: false, error: 'spawn ENOENT' }),
  });
  t.like(await new UserChecks().run(noShell, { name: 'x', command: 'true' }), {
    status: 'unknown',
    reason: 'UserCheckNotRun',
  });
});

test('user checks run once per their interval; in between the last verdict stands', async (t) => {
  const root = tempRoot();
  let now = 1_000_000;
  const env = envOf(root, { now: () => now });
  const u = new UserChecks();
  const counter = join(root, 'runs');
  const c = { name: 'count', command: `echo x >> ${counter}`, intervalSeconds: 30 };
  await u.run(env, c);
  now += 10_000;
  await u.run(env, c);
  now += 30_000;
  await u.run(env, c);
  const { readFileSync } = await import('node:fs');
  t.is(readFileSync(counter, 'utf8'), 'x\nx\n');
});

test('one pass: fixed order, disabled checks skipped, user checks last', async (t) => {
  const root = tempRoot();
  addProcess(root, 1, 'kubelet');
  addProcess(root, 2, 'containerd');
  const hz = await healthz(200, 'ok');
  t.teardown(() => hz.server.close());
  const env = envOf(root);
  const state = newCheckState(env);
  const results = await runChecks(
    env,
    { checks: [{ name: 'fails', command: 'false' }], disabledChecks: ['memory'], kubeletHealthzUrl: hz.url },
    state,
  );
  t.deepEqual(
    results.map((r) => `${r.name}=${r.status}`),
    [
      'kubelet=ok',
      'container-runtime=ok',
      'disk=ok',
      'clock=unknown',
      'certificates=unknown',
      'systemd-units=unknown',
      'user:fails=failed',
    ],
  );
});

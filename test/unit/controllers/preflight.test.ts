import test from 'ava';
import { execa } from 'execa';
import { judgePreflight, preflightScript } from '../../../provider/controllers/preflight.ts';

const clean = [
  'os=debian 12',
  'kernel=6.1.0',
  'arch=x86_64',
  'cpus=4',
  'memory_kib=8000000',
  'swap_kib=0',
  'epoch=1000',
  'uid=0',
].join('\n');

test('a clean host passes, with its facts', (t) => {
  const r = judgePreflight(clean, 1005);
  t.deepEqual(r.problems, []);
  t.like(r.facts, { os: 'debian 12', arch: 'x86_64', cpus: 4, memoryKiB: 8000000 });
  t.is(r.clockSkewSeconds, -5);
});

test('leftovers of an earlier kubelet make the host dirty and quarantined', (t) => {
  const r = judgePreflight(`${clean}\nleftover=/etc/kubernetes/kubelet.conf\nleftover=process:kubelet`, 1000);
  t.is(r.problems.length, 1);
  t.like(r.problems[0], { reason: 'HostDirty', quarantine: true });
  t.regex(r.problems[0]!.message, /kubelet\.conf.*process:kubelet/);
});

test('clock skew, missing binaries and garbage output are reported with what to do', (t) => {
  t.like(judgePreflight(clean, 2000).problems[0], { reason: 'ClockSkew', quarantine: false });
  t.like(judgePreflight(`${clean}\nmissing_binary=gzip`, 1000).problems[0], { reason: 'MissingBinaries' });
  t.like(judgePreflight('Welcome to the machine!\n', 1000).problems[0], { reason: 'PreflightOutputInvalid' });
});

test('the script runs under plain sh, changes nothing, and its output is judged', async (t) => {
  const { stdout } = await execa('sh', ['-c', preflightScript()]);
  const r = judgePreflight(stdout, Math.floor(Date.now() / 1000));
  t.truthy(r.facts.kernel);
  t.true(r.facts.cpus > 0);
  t.false(r.problems.some((p) => p.reason === 'PreflightOutputInvalid' || p.reason === 'ClockSkew'));
});

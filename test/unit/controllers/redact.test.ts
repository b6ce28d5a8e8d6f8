// What a host's output may carry never reaches a condition or a log: CABPK's bootstrap data (its
// join tokens, the CA hash), the output kubeadm prints (join commands with a token and the
// certificate key), kubeconfigs (base64 client keys) and PEM keys. Real CABPK output from
// test/fixtures/cabpk, with fresh keys where the fixtures keep none.
import test from 'ava';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { redactLine } from '../../../provider/controllers/redact.ts';
import { repoRoot } from '../../harness/paths.ts';

const fixture = (n: string) => readFileSync(join(repoRoot, 'test/fixtures/cabpk', n), 'utf8').split('\n');
const hex = (n: number) => randomBytes(n).toString('hex');
const key = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const token = 'k3x9ab.q1w2e3r4t5y6u7i8';
const certKey = hex(32);
const b64Key = Buffer.from(key).toString('base64');

const secrets = [token, certKey, b64Key.slice(0, 40), 'abcdef.0123456789abcdef'];
const leaks = (line: string) => secrets.filter((s) => redactLine(line).includes(s));

test('CABPK bootstrap data lines: tokens and keys never pass', (t) => {
  for (const f of ['init-control-plane.yaml', 'join-control-plane.yaml', 'worker.yaml']) {
    for (const line of fixture(f)) t.deepEqual(leaks(line), [], `${f}: ${line}`);
  }
});

test('what kubeadm prints: join commands, the certificate key, a kubeconfig', (t) => {
  const output = [
    `  kubeadm join 10.250.1.2:6443 --token ${token} \\`,
    `	--discovery-token-ca-cert-hash sha256:${hex(32)} \\`,
    `	--control-plane --certificate-key ${certKey}`,
    '[upload-certs] Using certificate key:',
    certKey,
    `    client-key-data: ${b64Key}`,
    `    token: ${token}`,
    `{"certificate-key":"${certKey}"}`,
    ...key.split('\n'),
  ];
  for (const line of output) t.deepEqual(leaks(line), [], line);
  t.is(redactLine(`--token ${token} --x`), '--token [token] --x');
});

test('ordinary lines pass unchanged, cut to a readable length', (t) => {
  const plain = '[preflight] Running pre-flight checks: kubelet 1.36.3, containerd 1.7.24';
  t.is(redactLine(plain), plain);
  t.is(redactLine('x'.repeat(1000)).length, 300);
  const long = `error: ${'a'.repeat(400)} dial tcp 10.0.0.1:6443: connect: connection refused`;
  t.true(redactLine(long).startsWith('error: '));
  t.true(redactLine(long).endsWith('connect: connection refused'));
});

// The agent CA when several manager replicas start at once: each finds no Secret, makes a CA and
// tries to store it; exactly one create wins, and every replica ends up signing with that one CA,
// so every agent certificate verifies against the CA the agents are given.
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { issueAgentCertificate } from '../../provider/health/pki.ts';
import { loadAgentCa } from '../../provider/health/service.ts';
import { readSecret } from '../../provider/kube/secrets.ts';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.ts';

let cp: ControlPlane;
test.before(async () => {
  cp = await startControlPlane();
});
test.after.always(async () => {
  await cp?.stop();
});

test('replicas creating the agent CA at once all use the one stored CA', async (t) => {
  const ref = { namespace: 'default', name: 'capbm-agent-ca' };
  const cas = await Promise.all(Array.from({ length: 5 }, () => loadAgentCa(cp.kc, ref)));
  const stored = await readSecret(cp.kc, ref.namespace, ref.name);
  const caPem = stored?.data['ca.crt'] ?? '';
  t.truthy(caPem);
  const storedCa = new X509Certificate(caPem);
  for (const ca of cas) {
    t.is(ca.certPem, caPem);
    const leaf = new X509Certificate(
      (await issueAgentCertificate(ca, { host: 'ns/host-a', hostUid: 'u1', machineUid: 'u2' })).certPem,
    );
    t.true(leaf.verify(storedCa.publicKey), 'the certificate verifies against the stored CA');
  }
  // A later start reads it, never replaces it.
  t.is((await loadAgentCa(cp.kc, ref)).certPem, caPem);
});

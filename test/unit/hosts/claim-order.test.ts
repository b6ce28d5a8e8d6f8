import test from 'ava';
import type { BareMetalHost } from '../../../provider/api/host.ts';
import { claimOrder } from '../../../provider/hosts/claim.ts';

const host = (name: string, lastResetTime?: string, extra: Partial<BareMetalHost['spec']> = {}): BareMetalHost => ({
  apiVersion: 'infrastructure.cluster.x-k8s.io/v1alpha1',
  kind: 'BareMetalHost',
  metadata: { name, namespace: 'ns' },
  spec: { address: '10.0.0.1', poolRef: { name: 'p' }, ...extra },
  status: { phase: 'Available', ...(lastResetTime ? { lastResetTime } : {}) },
});

test('claim order: a host just reset comes last; never-used hosts first', (t) => {
  const hosts = [host('a', '2026-11-25T10:00:00Z'), host('b'), host('c', '2026-11-25T09:00:00Z')];
  for (const uid of ['u1', 'u2', 'u3', 'u4']) t.is(claimOrder(hosts, uid).at(-1)?.metadata.name, 'a');
});

test('claim order: only Available hosts, concurrent claimers start at different hosts', (t) => {
  const hosts = [
    ...Array.from({ length: 20 }, (_, i) => host(`h${String(i).padStart(2, '0')}`)),
    host('held', undefined, { consumerRef: { kind: 'BareMetalMachine', namespace: 'ns', name: 'm', uid: 'x' } }),
    host('sick', undefined, { quarantine: { reason: 'HostDirty' } }),
  ];
  const firsts = new Set(Array.from({ length: 32 }, (_, i) => claimOrder(hosts, `uid-${i}`)[0]!.metadata.name));
  t.true(firsts.size > 4, [...firsts].join(','));
  const all = claimOrder(hosts, 'z').map((h) => h.metadata.name);
  t.is(all.length, 20);
  t.false(all.includes('held') || all.includes('sick'));
});

import test from 'ava';
import type { BareMetalHost } from '../../../provider/api/host.ts';
import * as life from '../../../provider/hosts/lifecycle.ts';

const host = (): BareMetalHost =>
  ({
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta2',
    kind: 'BareMetalHost',
    metadata: { name: 'rack-10-0-0-1', namespace: 'team-a' },
    spec: { address: '10.0.0.1' },
    status: { phase: 'Deprovisioning' },
  }) as unknown as BareMetalHost;

test('whoever writes a quarantined host status writes the advice with the phase (the two writes race)', (t) => {
  const decided = host();
  life.resetDone(decided, { clean: false, reason: 'ResetFailed', detail: 'cannot be reached' });
  // The host controller sees the spec write alone: its status write carries the same advice.
  const seen = host();
  seen.spec = decided.spec;
  t.is(life.unheldAction(seen), 'mark-quarantined');
  life.markQuarantined(seen);
  t.is(seen.status?.phase, 'Quarantined');
  const clean = seen.status?.conditions?.find((c) => c.type === life.HostConditions.Clean);
  t.is(clean?.status, 'False');
  t.regex(clean?.message ?? '', /remove spec.quarantine/);
  t.is(life.unheldAction(seen), 'none');
});

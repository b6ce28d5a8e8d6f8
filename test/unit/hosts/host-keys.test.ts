// The pool's HostKeysMatch condition: a host whose last connection met a key the pool does not pin
// is named on the pool, with what to do (the command that made the pins, when the pool says).
import test from 'ava';
import type { BareMetalHost } from '../../../provider/api/host.ts';
import type { BareMetalHostPool } from '../../../provider/api/pool.ts';
import { hostKeysCondition } from '../../../provider/hosts/host-keys.ts';

const pool = (annotations?: Record<string, string>) =>
  ({
    metadata: { name: 'vagrant', namespace: 'default', ...(annotations ? { annotations } : {}) },
    spec: { addresses: ['10.250.160.11'], ssh: { secretRef: { name: 's' } }, hostKeyPolicy: { type: 'Pinned' } },
  }) as unknown as BareMetalHostPool;

const host = (name: string, address: string, reason?: string) =>
  ({
    metadata: { name, namespace: 'default' },
    spec: { address, poolRef: { name: 'vagrant' } },
    status: reason
      ? { conditions: [{ type: 'Reachable', status: 'False', reason, message: '', lastTransitionTime: '' }] }
      : {},
  }) as unknown as BareMetalHost;

test('no host refused for its key: True', (t) => {
  const c = hostKeysCondition(pool(), [host('a', '10.250.160.11'), host('b', '10.250.160.12', 'HostUnreachable')]);
  t.is(c.status, 'True');
});

test('a re-created VM: False, naming it and the command that re-pins', (t) => {
  const c = hostKeysCondition(pool({ 'capbm.dev/host-keys-from': 'hack/vagrant-pool --name vagrant --apply' }), [
    host('a', '10.250.160.11'),
    host('b', '10.250.160.12', 'HostKeyMismatch'),
  ]);
  t.is(c.status, 'False');
  t.is(c.reason, 'HostKeyMismatch');
  t.regex(c.message, /^b \(10\.250\.160\.12\) served an SSH host key the pool does not accept/);
  t.regex(c.message, /made by `hack\/vagrant-pool --name vagrant --apply`: if the host was re-created .* re-run it/);
});

test('without the annotation: update spec.hostKeyPolicy', (t) => {
  t.regex(
    hostKeysCondition(pool(), [host('b', '10.250.160.12', 'HostKeyMismatch')]).message,
    /update spec\.hostKeyPolicy of pool vagrant/,
  );
});

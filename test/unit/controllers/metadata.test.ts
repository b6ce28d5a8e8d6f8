import test from 'ava';
import { bootstrapMetaData, providerID } from '../../../provider/controllers/metadata.ts';

test('providerID names the namespace and host', (t) => {
  t.is(providerID('team-a', 'rack1-10-0-0-5'), 'capbm://team-a/rack1-10-0-0-5');
});

test('meta data names the node after the machine and carries the address family it has', (t) => {
  t.deepEqual(bootstrapMetaData({ namespace: 'ns', machineName: 'm-1', hostName: 'h-1', address: '10.0.0.5' }), {
    instance_id: 'm-1',
    local_hostname: 'm-1',
    hostname: 'm-1',
    local_ipv4: '10.0.0.5',
    provider_id: 'capbm://ns/h-1',
  });
  t.is(
    bootstrapMetaData({ namespace: 'ns', machineName: 'm', hostName: 'h', address: 'fd00::5' }).local_ipv6,
    'fd00::5',
  );
});

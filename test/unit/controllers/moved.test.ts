import test from 'ava';
import type { BareMetalHost } from '../../../provider/api/host.ts';
import type { BareMetalMachine } from '../../../provider/api/machine.ts';
import {
  adoptedPhase,
  adoptionMessage,
  deletedForMove,
  movedHostOf,
  parseMarkers,
} from '../../../provider/controllers/moved.ts';

const ns = 'team-a';
const machine = (name: string, uid: string, providerID?: string) =>
  ({
    metadata: { name, namespace: ns, uid },
    spec: providerID ? { providerID } : {},
  }) as unknown as BareMetalMachine;
const host = (name: string, consumer?: { name: string; uid: string; kind?: string; namespace?: string }) =>
  ({
    metadata: { name, namespace: ns },
    spec: {
      address: '10.0.0.1',
      poolRef: { name: 'p' },
      ...(consumer ? { consumerRef: { kind: 'BareMetalMachine', namespace: ns, ...consumer } } : {}),
    },
  }) as unknown as BareMetalHost;

test('a moved machine finds the host whose consumerRef names it with its uid from the source', (t) => {
  const hosts = [host('h1', { name: 'm1', uid: 'old-1' }), host('h2', { name: 'm2', uid: 'old-2' }), host('h3')];
  t.is(movedHostOf(machine('m1', 'new-1', 'capbm://team-a/h1'), hosts, new Set(['new-1']))?.metadata.name, 'h1');
  // Not provisioned when it moved (no providerID): the one host that names it.
  t.is(movedHostOf(machine('m2', 'new-2'), hosts, new Set())?.metadata.name, 'h2');
  // A providerID naming another host: not this one.
  t.is(movedHostOf(machine('m1', 'new-1', 'capbm://team-a/h9'), hosts, new Set()), undefined);
});

test('never a host another live machine holds, one it holds already, or one of another namespace or kind', (t) => {
  const h = host('h1', { name: 'm1', uid: 'old-1' });
  // The uid on the host is a machine that exists (e.g. one of the same name being deleted): not moved.
  t.is(movedHostOf(machine('m1', 'new-1'), [h], new Set(['old-1'])), undefined);
  // The machine holds it already (same uid): nothing to adopt.
  t.is(movedHostOf(machine('m1', 'old-1'), [h], new Set()), undefined);
  t.is(
    movedHostOf(machine('m1', 'new-1'), [host('h1', { name: 'm1', uid: 'o', namespace: 'b' })], new Set()),
    undefined,
  );
  t.is(
    movedHostOf(machine('m1', 'new-1'), [host('h1', { name: 'm1', uid: 'o', kind: 'Other' })], new Set()),
    undefined,
  );
  // Two hosts name it (cannot be from one machine's claim): ambiguous, nothing adopted.
  const two = [host('h1', { name: 'm1', uid: 'a' }), host('h2', { name: 'm1', uid: 'b' })];
  t.is(movedHostOf(machine('m1', 'new-1'), two, new Set()), undefined);
  t.is(movedHostOf(machine('m1', 'new-1', 'capbm://team-a/h2'), two, new Set())?.metadata.name, 'h2');
});

test("the host's run markers say where it resumes: a run started means its bootstrap is attached to, never run again", (t) => {
  const done = parseMarkers('rc=0 started=yes sentinel=yes');
  t.deepEqual(done, { rc: 0, started: true, sentinel: true });
  t.is(adoptedPhase(done), 'Provisioning');
  t.regex(adoptionMessage('h1', '10.0.0.1', done), /already ran and succeeded: not run again/);
  const running = parseMarkers('rc=none started=yes sentinel=no');
  t.deepEqual(running, { started: true, sentinel: false });
  t.is(adoptedPhase(running), 'Provisioning');
  t.regex(adoptionMessage('h1', '10.0.0.1', running), /still running: followed/);
  const failed = parseMarkers('rc=2 started=no sentinel=no');
  t.true(failed.started, 'an exit code means a run was started');
  t.regex(adoptionMessage('h1', '10.0.0.1', failed), /exit code 2/);
  const none = parseMarkers('rc=none started=no sentinel=no\n');
  t.is(adoptedPhase(none), 'Claimed');
  t.throws(() => parseMarkers('Permission denied'), { message: /unexpected run markers/ });
});

test('delete-for-move is read from the annotation clusterctl sets', (t) => {
  t.true(deletedForMove({ metadata: { annotations: { 'clusterctl.cluster.x-k8s.io/delete-for-move': '' } } }));
  t.false(deletedForMove({ metadata: {} }));
});

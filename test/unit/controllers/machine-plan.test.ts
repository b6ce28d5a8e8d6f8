import test from 'ava';
import fc from 'fast-check';
import { nextMachineStep, type HostFacts, type MachineFacts } from '../../../provider/controllers/machine-plan.ts';

const ready: MachineFacts = {
  deleting: false,
  hasFinalizer: true,
  ownerMachine: true,
  paused: false,
  clusterInfraProvisioned: true,
  bootstrapDataReady: true,
  controlPlane: true,
  availableHosts: 3,
  providerIDSet: false,
  provisioned: false,
  agentEnabled: true,
  preparationWanted: false,
  ageMs: 60_000,
  quietMs: 10_000,
  said: true,
};
const host: HostFacts = {
  name: 'pool-a-10-0-0-1',
  phase: 'Provisioning',
  preflightPassed: false,
  prepared: false,
  bootstrapSucceeded: false,
  agentInstalled: false,
  reset: false,
  run: 'none',
};

test('a worker claims only when it can go on at once; a control-plane machine claims early (the endpoint rule)', (t) => {
  const worker = { ...ready, controlPlane: false };
  t.like(nextMachineStep({ ...worker, clusterInfraProvisioned: false }), { reason: 'WaitingForClusterInfrastructure' });
  t.like(nextMachineStep({ ...worker, bootstrapDataReady: false }), { reason: 'WaitingForBootstrapData' });
  t.like(nextMachineStep(worker), { kind: 'claim-host' });
  t.like(nextMachineStep({ ...ready, bootstrapDataReady: false }), { kind: 'claim-host' });
});

test('a young worker waiting for CAPI writes nothing until it has something to say; a wait that lasts is written', (t) => {
  const young = { ...ready, controlPlane: false, bootstrapDataReady: false, ageMs: 3_000, said: false };
  t.like(nextMachineStep(young), { kind: 'wait', reason: 'WaitingForBootstrapData', quiet: { recheckMs: 7_000 } });
  // Past the window, or once the machine's story has begun, the wait is said (written).
  t.false('quiet' in nextMachineStep({ ...young, ageMs: 10_000 }));
  t.false('quiet' in nextMachineStep({ ...young, said: true }));
  t.false('quiet' in nextMachineStep({ ...young, quietMs: 0 }));
  // Waiting for the owner reference is never written (CAPI sets it within moments, an event).
  t.like(nextMachineStep({ ...ready, ownerMachine: false, said: false }), { quiet: {} });
  // A control-plane machine claims at once: nothing quiet about it.
  t.like(nextMachineStep({ ...young, controlPlane: true }), { kind: 'claim-host' });
});

test('a new machine claims a host early, and waits with a reason for what CAPI must provide before it runs anything', (t) => {
  t.like(nextMachineStep({ ...ready, ownerMachine: false }), { kind: 'wait', reason: 'WaitingForOwnerMachine' });
  t.like(nextMachineStep({ ...ready, paused: true }), { kind: 'wait', reason: 'Paused' });
  t.like(nextMachineStep({ ...ready, hasFinalizer: false }), { kind: 'add-finalizer' });
  // A host is claimed early (its address may become the control plane endpoint) but not touched.
  t.like(nextMachineStep({ ...ready, clusterInfraProvisioned: false }), { kind: 'claim-host' });
  t.like(nextMachineStep({ ...ready, host, clusterInfraProvisioned: false }), {
    reason: 'WaitingForClusterInfrastructure',
  });
  t.like(nextMachineStep({ ...ready, host, bootstrapDataReady: false }), { reason: 'WaitingForBootstrapData' });
});

test('provisioning walks claim, preflight, bootstrap, agent, provisioned, in that order', (t) => {
  t.like(nextMachineStep(ready), { kind: 'claim-host' });
  // The plan, not the claim, decides that there is nothing to claim.
  t.like(nextMachineStep({ ...ready, availableHosts: 0 }), { kind: 'wait', reason: 'NoHostAvailable' });
  t.like(nextMachineStep({ ...ready, host }), { kind: 'preflight', host: host.name });
  const pre = { ...host, preflightPassed: true };
  t.like(nextMachineStep({ ...ready, host: pre }), { kind: 'start-bootstrap' });
  t.like(nextMachineStep({ ...ready, host: { ...pre, run: 'running' } }), { kind: 'follow-bootstrap' });
  t.like(nextMachineStep({ ...ready, host: { ...pre, run: 'finished' } }), { kind: 'finish-bootstrap' });
  const boot = { ...pre, bootstrapSucceeded: true };
  t.like(nextMachineStep({ ...ready, host: boot }), { kind: 'install-agent' });
  t.like(nextMachineStep({ ...ready, agentEnabled: false, host: boot }), { kind: 'set-provisioned' });
  const agent = { ...boot, agentInstalled: true };
  t.like(nextMachineStep({ ...ready, host: agent }), { kind: 'set-provisioned' });
  t.like(nextMachineStep({ ...ready, host: agent, providerIDSet: true, provisioned: true }), { kind: 'done' });
});

test('a failed bootstrap is final: nothing more runs on the host, the failure stays as it was written', (t) => {
  const pre = { ...host, preflightPassed: true };
  t.like(nextMachineStep({ ...ready, host: pre, bootstrapFailure: 'step kubeadm exited 1' }), {
    kind: 'wait',
    reason: 'BootstrapFailed',
    message: 'step kubeadm exited 1',
  });
  // A run that ended is recorded first (the failure comes from it).
  t.like(nextMachineStep({ ...ready, host: { ...pre, run: 'finished' }, bootstrapFailure: 'x' }), {
    kind: 'finish-bootstrap',
  });
});

test('a quarantined host is never provisioned', (t) => {
  t.like(nextMachineStep({ ...ready, host: { ...host, phase: 'Quarantined' } }), {
    kind: 'wait',
    reason: 'HostQuarantined',
  });
});

test('delete resets the host before it is released, and never releases a quarantined host', (t) => {
  const del = { ...ready, deleting: true };
  t.like(nextMachineStep({ ...del, host }), { kind: 'reset-host' });
  t.like(nextMachineStep({ ...del, host: { ...host, reset: true } }), { kind: 'release-host' });
  t.like(nextMachineStep(del), { kind: 'remove-finalizer' });
  t.like(nextMachineStep({ ...del, host: { ...host, phase: 'Quarantined' } }), { kind: 'remove-finalizer' });
  t.like(nextMachineStep({ ...del, paused: true, host }), { kind: 'wait', reason: 'Paused' });
});

test('property: no fact combination releases a host that was not reset, or runs anything while paused', (t) => {
  const hostArb = fc.record({
    name: fc.constant('h'),
    phase: fc.constantFrom('Claimed', 'Provisioning', 'Provisioned', 'Deprovisioning', 'Quarantined', 'Available'),
    preflightPassed: fc.boolean(),
    prepared: fc.boolean(),
    bootstrapSucceeded: fc.boolean(),
    agentInstalled: fc.boolean(),
    reset: fc.boolean(),
    run: fc.constantFrom('none', 'running', 'finished'),
  }) as fc.Arbitrary<HostFacts>;
  const facts = fc.record({
    deleting: fc.boolean(),
    hasFinalizer: fc.boolean(),
    ownerMachine: fc.boolean(),
    paused: fc.boolean(),
    clusterInfraProvisioned: fc.boolean(),
    bootstrapDataReady: fc.boolean(),
    controlPlane: fc.boolean(),
    host: fc.option(hostArb, { nil: undefined }),
    availableHosts: fc.nat(3),
    providerIDSet: fc.boolean(),
    provisioned: fc.boolean(),
    bootstrapFailure: fc.option(fc.string(), { nil: undefined }),
    agentEnabled: fc.boolean(),
    preparationWanted: fc.boolean(),
    ageMs: fc.nat(20_000),
    quietMs: fc.constantFrom(0, 10_000),
    said: fc.boolean(),
  });
  fc.assert(
    fc.property(facts, (f) => {
      const step = nextMachineStep(f);
      if (step.kind === 'release-host') return f.host?.reset === true && f.host.phase !== 'Quarantined';
      if (f.paused) return step.kind === 'wait' || step.kind === 'done';
      // A bootstrap never starts on a host that wants preparation and is not prepared.
      if (step.kind === 'start-bootstrap' && f.preparationWanted && !f.host?.prepared) return false;
      if (step.kind === 'prepare-host')
        return f.preparationWanted && !!f.host?.preflightPassed && f.host.run === 'none' && !f.host.bootstrapSucceeded;
      if (['preflight', 'start-bootstrap', 'install-agent'].includes(step.kind)) {
        return f.host?.phase !== 'Quarantined' && f.bootstrapDataReady && f.clusterInfraProvisioned;
      }
      if (step.kind === 'start-bootstrap' && f.bootstrapFailure !== undefined) return false;
      if (step.kind === 'claim-host' && f.availableHosts === 0) return false;
      if (step.kind === 'claim-host' && !f.controlPlane) return f.bootstrapDataReady && f.clusterInfraProvisioned;
      // Quiet only before anything was said and before a host is held (nothing is lost by not writing).
      if (step.kind === 'wait' && step.quiet && step.reason !== 'WaitingForOwnerMachine') return !f.said && !f.host;
      return true;
    }),
  );
  t.pass();
});

test('after a clusterctl move: a machine adopts the host it held (never claims another), and a delete for the move lets go untouched', (t) => {
  const moved = { ...ready, controlPlane: false, movedHost: 'cp-10-0-0-1', availableHosts: 0 };
  t.like(nextMachineStep(moved), { kind: 'adopt-host', host: 'cp-10-0-0-1' });
  // Before anything CAPI must provide: the host is the machine's whatever else it waits for.
  t.like(nextMachineStep({ ...moved, bootstrapDataReady: false, clusterInfraProvisioned: false }), {
    kind: 'adopt-host',
  });
  // Paused (the move is going on): nothing.
  t.like(nextMachineStep({ ...moved, paused: true }), { kind: 'wait', reason: 'Paused' });
  // Holding it already: the usual path (the adopted host's bootstrap step attaches to its run).
  t.like(nextMachineStep({ ...moved, host: { ...host, preflightPassed: true } }), { kind: 'start-bootstrap' });
  // Deleted on the target before adopting: adopted first, so the reset runs and the host comes back.
  t.like(nextMachineStep({ ...moved, deleting: true }), { kind: 'adopt-host' });
  // Deleted from the source by clusterctl (delete-for-move): the host moved along, nothing is reset.
  const source = { ...ready, deleting: true, paused: true, host: { ...host, phase: 'Provisioned' as const } };
  t.like(nextMachineStep({ ...source, deletedForMove: true }), { kind: 'remove-finalizer' });
  t.like(nextMachineStep({ ...source, deletedForMove: true, hasFinalizer: false }), { kind: 'done' });
  t.like(nextMachineStep({ ...source, paused: false }), { kind: 'reset-host' });
});

test('a host is prepared after preflight and before the bootstrap, only when spec.preparation asks', (t) => {
  const held = { ...host, preflightPassed: true };
  t.like(nextMachineStep({ ...ready, host: held }), { kind: 'start-bootstrap' });
  t.like(nextMachineStep({ ...ready, preparationWanted: true, host: { ...host } }), { kind: 'preflight' });
  t.like(nextMachineStep({ ...ready, preparationWanted: true, host: held }), { kind: 'prepare-host' });
  t.like(nextMachineStep({ ...ready, preparationWanted: true, host: { ...held, prepared: true } }), {
    kind: 'start-bootstrap',
  });
  // Never under a bootstrap that runs, ended, or failed.
  t.like(nextMachineStep({ ...ready, preparationWanted: true, host: { ...held, run: 'running' } }), {
    kind: 'follow-bootstrap',
  });
  t.like(nextMachineStep({ ...ready, preparationWanted: true, bootstrapFailure: 'x', host: held }), {
    reason: 'BootstrapFailed',
  });
});

// The bootstrap's steps: start a run (bootstrap-runs.ts) with the rendered bootstrap data, report
// its progress, and record how it ended. Only a bootstrap payload that is genuinely invalid is
// called BootstrapDataInvalid; a Secret not there yet or an API error is retried with backoff.
import { render, type RenderResult } from '../../cloud-init/index.ts';
import { BootstrapDataError } from '../../cloud-init/errors.ts';
import * as life from '../hosts/lifecycle.ts';
import { InvalidName } from '../kube/kinds.ts';
import { readSecret, SecretForbidden, type SecretData } from '../kube/secrets.ts';
import { ClusterNameLabel } from './capi.ts';
import { hostTarget, poolOf } from './access.ts';
import { bootstrapWork } from './bootstrap-follow.ts';
import type { RunResult } from './bootstrap-runs.ts';
import { MachineConditions as C } from './machine-plan.ts';
import type { Outcome } from './machine-status.ts';
import { hostProblem, writeHost, type Step, type StepResult } from './machine-steps.ts';
import { bootstrapMetaData, providerID } from './metadata.ts';

const invalid = (why: string): StepResult => ({
  outcome: {
    kind: 'bootstrap-data-invalid',
    message: `The bootstrap data cannot be applied: ${why}. Fix the KubeadmConfig(Template); nothing was run on the host.`,
  },
});

/** The bootstrap data Secret, or the step's result when it cannot be had (yet). */
async function bootstrapSecret(s: Step, ns: string, name: string): Promise<SecretData | StepResult> {
  try {
    const secret = await readSecret(s.d.kc, ns, name);
    if (secret) return secret;
    // CABPK writes the Secret before it names it; a cache or a restore may lag. Not the user's fault.
    const message = `The bootstrap data Secret ${ns}/${name} named by the Machine does not exist yet; retrying.`;
    return { outcome: { kind: 'waiting', reason: 'WaitingForBootstrapData', message }, result: { requeue: true } };
  } catch (err) {
    if (err instanceof InvalidName) return invalid(`the Machine names bootstrap data Secret ${err.message}`);
    if (!(err instanceof SecretForbidden)) throw err;
    // Not the payload's fault: said on the machine, retried once the namespace grants it.
    const outcome: Outcome = {
      kind: 'problem',
      on: C.BootstrapSucceeded,
      reason: 'SecretForbidden',
      message: err.message,
    };
    return { outcome, result: { requeueAfter: 60_000 } };
  }
}

/** The bootstrap data Secret named by the Machine, rendered for this machine on this host. */
async function rendered(s: Step): Promise<RenderResult | StepResult> {
  const ns = s.m.metadata.namespace;
  const name = s.owner!.spec!.bootstrap!.dataSecretName!;
  const secret = await bootstrapSecret(s, ns, name);
  if ('outcome' in secret) return secret;
  const value = secret.data.value;
  // Bootstrap data holds the cluster's CA keys and a join token: only the machine's own cluster's.
  const cluster = s.m.metadata.labels?.[ClusterNameLabel];
  if (!cluster || secret.labels[ClusterNameLabel] !== cluster)
    return invalid(
      `Secret ${ns}/${name} belongs to cluster "${secret.labels[ClusterNameLabel] ?? ''}", not to this machine's cluster "${cluster ?? ''}" (label ${ClusterNameLabel}); the bootstrap data of another cluster is never used`,
    );
  if (value === undefined)
    return invalid(
      `Secret ${ns}/${name} has no "value" key; the bootstrap provider writes it, so check the KubeadmConfig's status`,
    );
  const h = s.host!;
  try {
    const metaData = bootstrapMetaData({
      namespace: ns,
      machineName: s.m.metadata.name,
      hostName: h.metadata.name,
      address: h.spec.address,
    });
    return render(value, { metaData: { ...metaData }, ...(secret.data.format ? { format: secret.data.format } : {}) });
  } catch (err) {
    if (err instanceof BootstrapDataError) return invalid(err.message);
    throw err;
  }
}

const isRendered = (r: RenderResult | StepResult): r is RenderResult => 'script' in r;

export async function startBootstrap(s: Step): Promise<StepResult> {
  const r = await rendered(s);
  if (!isRendered(r)) return r;
  let target;
  try {
    target = await hostTarget(s.d.kc, poolOf(s.d.pools, s.host!), s.host!);
  } catch (err) {
    return hostProblem(s, err, C.BootstrapSucceeded);
  }
  s.d.runs.start(s.m.metadata.uid ?? '', s.key, s.signal, bootstrapWork(s, r, target));
  return {
    outcome: { kind: 'bootstrap-started', total: r.steps.length },
    events: r.warnings.map((message) => ({ type: 'Normal' as const, reason: 'BootstrapWarning', message })),
  };
}

export function followBootstrap(s: Step): StepResult {
  const run = s.d.runs.get(s.m.metadata.uid ?? '');
  const step = run?.state === 'running' ? run.step : undefined;
  if (!step) return { outcome: { kind: 'none' } };
  const what = step.description ? ` (${step.description})` : '';
  return { outcome: { kind: 'bootstrap-progress', message: `Step ${step.index}/${step.total}: ${step.id}${what}` } };
}

/** The host is provisioned; so is the machine, unless its agent could not be installed (retried). */
async function succeeded(s: Step, r: RunResult): Promise<StepResult> {
  const h = s.host!;
  const name = h.metadata.name;
  const agent = r.agent;
  // One write: provisioned, and the agent's certificate as the host's newest (older ones refused).
  const host = await writeHost(s, h, (x) => {
    life.provisioned(x);
    if (agent !== 'not-configured' && agent.installed) life.agentCertified(x, agent.certificate);
  });
  const ok = agent === 'not-configured' || agent.installed;
  const provisioned = { providerID: providerID(s.m.metadata.namespace, name), address: h.spec.address };
  const outcome: Outcome = {
    kind: 'bootstrapped',
    host: name,
    steps: r.steps,
    attached: !r.bootstrap.started,
    agent: r.agent,
    ...(ok ? { provisioned } : {}),
  };
  return { outcome, host, ...(ok ? {} : { result: { requeue: true } }) };
}

export async function finishBootstrap(s: Step): Promise<StepResult> {
  const uid = s.m.metadata.uid ?? '';
  const run = s.d.runs.get(uid);
  s.d.runs.take(uid);
  if (run?.state === 'failed') return hostProblem(s, run.error, C.BootstrapSucceeded);
  if (run?.state !== 'finished') throw new Error(`no ended bootstrap run for ${s.key}`);
  const out = run.result.bootstrap;
  const h = s.host!;
  const name = h.metadata.name;
  const attached = !out.started;
  if (out.sentinel) return succeeded(s, run.result);
  if (out.exitCode === undefined) {
    // The run died without an exit code: the host went down under it. Run again (markers skip done steps).
    const message = `The bootstrap on host ${name} was interrupted (the host rebooted or lost power); retrying.`;
    await writeHost(s, h, (x) => life.unreachable(x, 'HostUnreachable', message));
    return {
      outcome: { kind: 'problem', on: C.BootstrapSucceeded, reason: 'HostUnreachable', message },
      result: { requeue: true },
    };
  }
  const failed = out.failedStep
    ? `step ${out.failedStep.id} exited ${out.failedStep.code}`
    : `the script exited ${out.exitCode} without the success sentinel`;
  const tail = out.tail.length ? `: ${out.tail.join(' | ')}` : '';
  const message = `Bootstrap failed on host ${name}: ${failed}${tail}. The host is not reused in place: delete the Machine (a MachineHealthCheck does) and a fresh host is provisioned.`;
  return { outcome: { kind: 'bootstrap-failed', message, attached } };
}

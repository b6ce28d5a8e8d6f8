// The machine's preparation step (spec.preparation): find the bundle for the Machine's Kubernetes
// version, prepare the host over SSH (preparation/prepare.ts), and say on HostPrepared what came of
// it. A refusal or a failure leaves the host held by this machine and is retried: the condition
// says what to fix (the host, the bundle, the template), or to delete the machine for another host.
import type { Bundle } from '../preparation/bundles.ts';
import type { HttpBundle } from '../preparation/http.ts';
import { BundleInvalid } from '../preparation/manifest.ts';
import { prepareOn, type PreparationProblemReason } from '../preparation/prepare.ts';
import { histogram } from '../runtime/metrics.ts';
import { MachineConditions as C } from './machine-plan.ts';
import { hostProblem, onHost, type Step, type StepResult } from './machine-steps.ts';

const seconds = histogram(
  'capbm_host_preparation_duration_seconds',
  'Host preparation over SSH (probe, upload, verify, install) by result: installed, recorded, image, or the refusal reason',
  ['result'],
  [1, 5, 10, 30, 60, 120, 300, 600],
);

const problem = (reason: PreparationProblemReason, message: string, requeueAfter = 60_000): StepResult => ({
  outcome: { kind: 'problem', on: C.HostPrepared, reason, message },
  result: { requeueAfter },
});

/** An HTTP source: the host downloads the bundle (preparation/download.ts), the provider needs no --bundle-dir. */
function httpFor(s: Step, version: string): HttpBundle | StepResult {
  const { url, sha256, mirrors, proxy } = s.m.spec.preparation?.bundle ?? {};
  if (!url || !sha256)
    return problem(
      'PreparationNotConfigured',
      'bundle.source HTTP needs bundle.url and bundle.sha256 (the sha256 of the manifest.json served there).',
      300_000,
    );
  return { version, http: { url, sha256, ...(mirrors ? { mirrors } : {}), ...(proxy ? { proxy } : {}) } };
}

/** The bundle for the Machine's version, or the step's result when there is none to use. */
async function bundleFor(s: Step): Promise<Bundle | HttpBundle | StepResult> {
  const prep = s.m.spec.preparation ?? {};
  const version = s.owner?.spec?.version;
  if (!version)
    return problem('PreparationNotConfigured', 'The Machine has no spec.version: preparation installs that version.');
  if (prep.bundle?.source === 'HTTP') return httpFor(s, version);
  if (!s.d.bundles)
    return problem(
      'PreparationNotConfigured',
      'spec.preparation is set but the provider has no --bundle-dir: give the provider a folder of bundles (hack/bundle), use bundle.source: HTTP, or drop spec.preparation for hosts that are already prepared.',
      300_000,
    );
  try {
    return await s.d.bundles.find(version, { ...prep.bundle });
  } catch (err) {
    if (!(err instanceof BundleInvalid)) throw err;
    return problem('BundleUnavailable', `${err.message}. Nothing was installed on host ${s.host!.metadata.name}.`);
  }
}

export async function prepareHost(s: Step): Promise<StepResult> {
  const bundle = await bundleFor(s);
  if ('outcome' in bundle) return bundle;
  const prep = s.m.spec.preparation ?? {};
  const policy = { onVersionMismatch: prep.onVersionMismatch ?? 'Refuse', minFreeDiskMiB: prep.minFreeDiskMiB ?? 2048 };
  const host = s.host!.metadata.name;
  let r;
  try {
    r = await onHost(s, (conn) =>
      prepareOn(conn, { bundle, policy, onStep: (what) => s.log.debug('preparation', { host, step: what }) }),
    );
  } catch (err) {
    return hostProblem(s, err, C.HostPrepared);
  }
  s.log.info('preparation', { host, ok: r.ok, ms: r.ms, ...(r.ok ? { how: r.how } : { reason: r.reason }) });
  seconds.observe({ result: r.ok ? r.how : r.reason }, r.ms / 1000);
  if (!r.ok) return problem(r.reason, `Host ${host}: ${r.message}`);
  return { outcome: { kind: 'prepared', host, message: `${r.message} (${Math.round(r.ms / 1000)} s)` } };
}

// Real Flux against the real kube-apiserver, reading a real Git server on loopback: a HelmRelease
// whose chart comes from a GitRepository (source-controller builds the chart into an artifact
// through github.com/fluxcd/pkg/artifact, the module version hack/flux substitutes; helm-controller
// downloads and installs it), and a Kustomization with prune. Every change is a commit and a push.
import test from 'ava';
import { execa } from 'execa';
import { join } from 'node:path';
import { ApiError, raw } from '../../provider/kube/raw.ts';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.ts';
import {
  applyFlux,
  describeFlux,
  requestReconcile,
  startFlux,
  waitForFluxReady,
  type Flux,
  type FluxRef,
} from '../harness/flux.ts';
import { cloneRepo, startGitServerProcess, type GitServer, type WorkTree } from '../harness/git-server.ts';
import { waitFor } from '../harness/process.ts';

const ns = 'gitops';
const source: FluxRef = { kind: 'GitRepository', namespace: ns, name: 'platform' };
const WAIT_MS = 120_000;

let cp: ControlPlane;
let flux: Flux;
let gitServer: GitServer;
let repo: WorkTree;

const chart = {
  'charts/demo/Chart.yaml': 'apiVersion: v2\nname: demo\nversion: 0.1.0\n',
  'charts/demo/values.yaml': 'greeting: hello\nteam: nobody\n',
  'charts/demo/templates/configmap.yaml': `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  greeting: {{ .Values.greeting | quote }}
  team: {{ .Values.team | quote }}
`,
};

const configMap = (name: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  from: git\n`;

test.before(async () => {
  cp = await startControlPlane();
  flux = await startFlux(cp);
  gitServer = await startGitServerProcess({ root: join(cp.dir, 'git'), logFile: join(cp.dir, 'git-server.log') });
  await gitServer.createRepo('platform');
  repo = await cloneRepo(gitServer.repoUrl('platform'), join(cp.dir, 'work', 'platform'));
  for (const [path, content] of Object.entries(chart)) repo.write(path, content);
  repo.write('apps/a.yaml', configMap('app-a'));
  repo.write('apps/b.yaml', configMap('app-b'));
  const first = await repo.commitAndPush('a chart and two apps');
  await raw(cp.kc, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await applyFlux(cp.kc, source, { url: gitServer.repoUrl('platform'), ref: { branch: 'main' }, interval: '1m' });
  await waitForFluxReady(cp.kc, source, { revision: first, timeoutMs: WAIT_MS });
});

test.after.always(async (t) => {
  if (flux) t.log(`Flux resident memory (MiB): ${JSON.stringify(flux.memory())}`);
  await flux?.stop();
  await gitServer?.stop();
  await cp?.stop();
});

/** Pushes the work tree's changes and has source-controller fetch them now (not at its interval). */
async function push(message: string): Promise<string> {
  const sha = await repo.commitAndPush(message);
  await requestReconcile(cp.kc, source);
  await waitForFluxReady(cp.kc, source, { revision: sha, timeoutMs: WAIT_MS });
  return sha;
}

/** The ConfigMap's data, or undefined while it does not exist. */
async function configMapData(name: string): Promise<Record<string, string> | undefined> {
  try {
    return (await raw<{ data?: Record<string, string> }>(cp.kc, 'GET', `/api/v1/namespaces/${ns}/configmaps/${name}`))
      .data;
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) return undefined;
    throw err;
  }
}

/** Waits for `until`; a timeout says what Flux reported of each object involved. */
async function waitExplained<T>(what: string, until: () => Promise<T | undefined>, refs: FluxRef[]): Promise<T> {
  try {
    return await waitFor(what, until, WAIT_MS, 500);
  } catch (err) {
    const reports = await Promise.all(refs.map((r) => describeFlux(cp.kc, r)));
    throw new Error(`${(err as Error).message}\n  Flux reports:\n    ${reports.join('\n    ')}`);
  }
}

test.serial('a HelmRelease with its chart from the Git repository installs it; a commit upgrades it', async (t) => {
  // The same chart renders with the helm CLI of this build.
  const rendered = await execa(flux.helm, ['template', 'demo', join(repo.dir, 'charts/demo')]);
  t.regex(rendered.stdout, /name: demo-settings/);

  const release: FluxRef = { kind: 'HelmRelease', namespace: ns, name: 'demo' };
  // helm-controller makes a HelmChart named <namespace>-<release> beside the source.
  const refs: FluxRef[] = [release, { kind: 'HelmChart', namespace: ns, name: `${ns}-demo` }, source];
  await applyFlux(cp.kc, release, {
    interval: '1m',
    chart: {
      spec: {
        chart: './charts/demo',
        sourceRef: { kind: 'GitRepository', name: source.name },
        // Every commit makes a new chart version (0.1.0+<sha>), so a values change in Git upgrades.
        reconcileStrategy: 'Revision',
        interval: '1m',
      },
    },
    values: { team: 'blue' },
  });
  const installed = await waitExplained(
    'the release ConfigMap demo-settings',
    async () => await configMapData('demo-settings'),
    refs,
  );
  t.deepEqual(installed, { greeting: 'hello', team: 'blue' });

  repo.write('charts/demo/values.yaml', 'greeting: hola\nteam: nobody\n');
  const sha = await push('demo: greet in Spanish');
  const upgraded = await waitExplained(
    'the release ConfigMap demo-settings to say hola',
    async () => ((await configMapData('demo-settings'))?.greeting === 'hola' ? true : undefined),
    refs,
  );
  t.true(upgraded);
  const hr = await waitForFluxReady(cp.kc, release, { revision: sha, timeoutMs: WAIT_MS });
  t.is(hr.status?.history?.[0]?.status, 'deployed');
});

test.serial('a Kustomization with prune deletes the object of a file removed from Git', async (t) => {
  const kustomization: FluxRef = { kind: 'Kustomization', namespace: ns, name: 'apps' };
  await applyFlux(cp.kc, kustomization, {
    interval: '1m',
    path: './apps',
    prune: true,
    targetNamespace: ns,
    sourceRef: { kind: 'GitRepository', name: source.name },
  });
  await waitForFluxReady(cp.kc, kustomization, { timeoutMs: WAIT_MS });
  t.deepEqual(await configMapData('app-a'), { from: 'git' });
  t.deepEqual(await configMapData('app-b'), { from: 'git' });

  repo.remove('apps/b.yaml');
  const sha = await push('apps: retire b');
  await waitForFluxReady(cp.kc, kustomization, { revision: sha, timeoutMs: WAIT_MS });
  const gone = await waitExplained(
    'ConfigMap app-b to be pruned',
    async () => ((await configMapData('app-b')) === undefined ? true : undefined),
    [kustomization, source],
  );
  t.true(gone);
  t.deepEqual(await configMapData('app-a'), { from: 'git' }, 'the file still in Git keeps its object');
});

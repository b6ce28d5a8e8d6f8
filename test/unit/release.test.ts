// hack/release refuses what clusterctl would refuse or install badly (clusterctl provider contract).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkComponents, checkMetadata, checkVariables, componentsYaml, releaseVersion } from '../../hack/release.ts';
import { repoRoot } from '../harness/paths.ts';

const deployment = (image: string, container = 'manager') => ({
  kind: 'Deployment',
  metadata: { name: 'capbm-manager', namespace: 'capbm-system' },
  spec: { template: { spec: { containers: [{ name: container, image }] } } },
});
const ns = (name: string) => ({ kind: 'Namespace', metadata: { name } });
const image = '${CAPBM_IMAGE:=ghcr.io/capbm/capbm-manager:v0.1.0}';

test('components: one Namespace, everything namespaced in it, a manager container tagged with the version', (t) => {
  t.notThrows(() => checkComponents([ns('capbm-system'), deployment(image)], 'v0.1.0'));
  t.throws(() => checkComponents([ns('a'), ns('b'), deployment(image)], 'v0.1.0'), { message: /2 Namespaces/ });
  t.throws(() => checkComponents([deployment(image)], 'v0.1.0'), { message: /0 Namespaces/ });
  t.throws(
    () =>
      checkComponents(
        [ns('capbm-system'), deployment(image), { kind: 'Role', metadata: { name: 'x', namespace: 'default' } }],
        'v0.1.0',
      ),
    { message: /Role x is in namespace "default", not capbm-system/ },
  );
  t.throws(() => checkComponents([ns('capbm-system'), deployment(image, 'main')], 'v0.1.0'), {
    message: /container named "manager"/,
  });
  t.throws(() => checkComponents([ns('capbm-system'), deployment(image)], 'v0.2.0'), {
    message: /not tagged v0.2.0/,
  });
});

test('components: every variable has a default, also in comments; a space is an empty default', (t) => {
  t.notThrows(() => checkVariables('a: ${CAPBM_LOG_LEVEL:=info}\nb: --watch-filter=${CAPBM_WATCH_FILTER:= }\n'));
  for (const bad of ['${CAPBM_WATCH_FILTER:=}', '${CAPBM_X}', '# ${VAR} in a comment', '${ CAPBM_Y }']) {
    t.throws(() => checkVariables(`x: ${bad}\n`), { message: /variables without a default/ }, bad);
  }
});

test('metadata: the release series of the version maps to contract v1beta2', (t) => {
  const m = (minor: number, contract = 'v1beta2') =>
    `apiVersion: clusterctl.cluster.x-k8s.io/v1alpha3\nkind: Metadata\nreleaseSeries:\n  - {major: 0, minor: ${minor}, contract: ${contract}}\n`;
  t.notThrows(() => checkMetadata(m(1), 'v0.1.3'));
  t.throws(() => checkMetadata(m(2), 'v0.1.3'), { message: /no release series 0.1/ });
  t.throws(() => checkMetadata(m(1, 'v1beta1'), 'v0.1.3'), { message: /contract v1beta2/ });
});

test("the shipped manifests pass the checks, and this version's series is in metadata.yaml", (t) => {
  const version = releaseVersion();
  t.notThrows(() => checkMetadata(readFileSync(join(repoRoot, 'manifests', 'metadata.yaml'), 'utf8'), version));
  const text = componentsYaml(version);
  const kinds = [...text.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]);
  t.is(kinds[0], 'Namespace');
  t.is(kinds.filter((k) => k === 'CustomResourceDefinition').length, 6);
  t.is([...text.matchAll(/^ {4}cluster\.x-k8s\.io\/provider: infrastructure-capbm$/gm)].length, kinds.length);
});

// docs/gitops-values.md is what hack/chart-docs.ts makes of the chart's schema and values.yaml.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { output, valuesReference } from '../../hack/chart-docs.ts';

test('docs/gitops-values.md is current (fix: node hack/chart-docs.ts)', (t) => {
  t.is(readFileSync(output, 'utf8'), valuesReference());
});

test('the reference lists every value with its rule and says which are required', (t) => {
  const doc = valuesReference();
  t.regex(doc, /\| `kubernetesVersion` \| string \| {2}\| \*\*required\*\*; `\^v1\\\.\[0-9\]\+\\\.\[0-9\]\+\$` \|/);
  t.regex(doc, /\| `controlPlane\.replicas` \| integer \| `1` \| one of 1, 3, 5 \|/);
  t.regex(doc, /\| `nodeGroups\[\]\.name` \| string \| {2}\| \*\*required\*\*/);
  t.regex(doc, /\| `controlPlane\.hosts` \| object \| {2}\| \*\*required\*\*; needs pool or labels \|/);
});

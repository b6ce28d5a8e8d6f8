// The shipped manager Deployment passes flags the manager accepts (clusterctl defaults filled in).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseFlags } from '../../provider/runtime/flags.ts';
import { repoRoot } from '../harness/paths.ts';

const withDefaults = (text: string) => text.replace(/\$\{[A-Z0-9_]+:=([^}]*)\}/g, '$1');

test('manager.yaml: the container args parse as manager flags', (t) => {
  const docs = parseAllDocuments(
    withDefaults(readFileSync(join(repoRoot, 'manifests/manager/manager.yaml'), 'utf8')),
  ).map(
    (d) => d.toJS() as { kind: string; spec?: { template?: { spec?: { containers?: Array<{ args?: string[] }> } } } },
  );
  const args = docs.find((d) => d.kind === 'Deployment')!.spec!.template!.spec!.containers![0]!.args!;
  const f = parseFlags(args);
  t.true(f.leaderElect);
  t.is(f.agentReportUrl, '');
  t.is(f.metricsBindAddress, '127.0.0.1:8080', 'metrics are not authenticated: local only');
});

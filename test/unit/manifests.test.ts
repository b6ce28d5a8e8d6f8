// The shipped manager Deployment passes flags the manager accepts (clusterctl defaults filled in).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseFlags } from '../../provider/runtime/flags.ts';
import { PROVIDER_NODE_OPTIONS } from '../harness/env.ts';
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

test("manager.yaml: V8's heap is a quarter of the memory limit, the size the harness and benches give outright", (t) => {
  type Container = { env?: Array<{ name: string; value?: string }>; resources?: { limits?: { memory?: string } } };
  const docs = parseAllDocuments(
    withDefaults(readFileSync(join(repoRoot, 'manifests/manager/manager.yaml'), 'utf8')),
  ).map((d) => d.toJS() as { kind: string; spec?: { template?: { spec?: { containers?: Container[] } } } });
  const c = docs.find((d) => d.kind === 'Deployment')!.spec!.template!.spec!.containers![0]!;
  const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
  const opts = (env.NODE_OPTIONS ?? '').split(' ');
  const percent = Number(/^--max-old-space-size-percentage=(\d+)$/.exec(opts[0] ?? '')?.[1]);
  const limitMiB = Number(/^(\d+)Gi$/.exec(c.resources?.limits?.memory ?? '')?.[1]) * 1024;
  t.deepEqual(
    [`--max-old-space-size=${(limitMiB * percent) / 100}`, ...opts.slice(1)],
    PROVIDER_NODE_OPTIONS,
    'test/harness/env.ts PROVIDER_NODE_OPTIONS: the Deployment as measured',
  );
  t.is(env.MALLOC_ARENA_MAX, '2');
});

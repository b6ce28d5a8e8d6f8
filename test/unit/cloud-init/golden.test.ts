// Golden files: the script rendered from real CABPK output (test/fixtures/cabpk, made by
// hack/cabpk-fixtures) and from hand-made edge cases. Regenerate with UPDATE_GOLDEN=1 after a
// deliberate change, and read the diff.
import test from 'ava';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { render } from '../../../cloud-init/index.ts';
import { repoRoot } from '../../harness/paths.ts';

const meta = {
  instance_id: 'golden-0',
  local_hostname: 'golden-0',
  hostname: 'golden-0',
  local_ipv4: '10.250.0.11',
  provider_id: 'capbm://default/pool-10-250-0-11',
};
const goldenDir = join(repoRoot, 'test', 'fixtures', 'cloud-init', 'golden');
const sources = ['cabpk', 'cloud-init'].flatMap((d) => {
  const dir = join(repoRoot, 'test', 'fixtures', d);
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.yaml'))
        .map((f) => ({ name: `${d}-${f.replace(/\.yaml$/, '')}`, file: join(dir, f) }))
    : [];
});

for (const { name, file } of sources) {
  test(`golden: ${name}`, (t) => {
    const r = render(readFileSync(file, 'utf8'), { metaData: meta });
    const got = [
      `# steps: ${r.steps.map((s) => s.id).join(' ')}`,
      ...r.warnings.map((w) => `# warning: ${w}`),
      r.script,
    ].join('\n');
    const golden = join(goldenDir, `${name}.golden`);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(golden)) writeFileSync(golden, got);
    t.is(got, readFileSync(golden, 'utf8'), `regenerate with UPDATE_GOLDEN=1 if the change is deliberate: ${golden}`);
  });
}

test('CABPK output: kubeadm runs after its files, with the provider ID templated, and the sentinel is kept', (t) => {
  const init = render(readFileSync(join(repoRoot, 'test/fixtures/cabpk/init-control-plane.yaml'), 'utf8'), {
    metaData: meta,
  });
  const ids = init.steps.map((s) => s.id);
  const kubeadm = init.steps.findIndex((s) => s.module === 'runcmd' && s.id === 'runcmd.2');
  t.true(ids.indexOf('write_files.0') < kubeadm);
  t.true(init.files.includes('/run/kubeadm/kubeadm.yaml'));
  t.regex(
    init.script,
    /kubeadm init --config \/run\/kubeadm\/kubeadm\.yaml {2}&& echo success > \/run\/cluster-api\/bootstrap-success\.complete/,
  );
  t.notRegex(init.script, /\{\{/);
  t.deepEqual(init.warnings, []);
});

// hack/bench cloud-init [N]: render N CABPK payloads (default 10,000), varied per machine as the
// provider sees them (different meta data, file contents and commands), and print the time per
// payload. The payloads start from the real CABPK fixtures in test/fixtures/cabpk.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { render } from '../../cloud-init/index.ts';
import { repoRoot } from '../../test/harness/paths.ts';

const n = Number(process.argv[2] ?? 10_000);
const dir = join(repoRoot, 'test', 'fixtures', 'cabpk');
const bases = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => readFileSync(join(dir, f), 'utf8'));

function payload(i: number): string {
  // A different file and command per payload, so nothing can be cached between renders.
  const base = bases[i % bases.length]!;
  return base
    .replace('runcmd:\n', `runcmd:\n  - "echo machine-${i} > /run/capbm-bench"\n`)
    .replace(
      'write_files:\n',
      `write_files:\n-   path: /etc/capbm/bench-${i}\n    content: "${'x'.repeat(i % 4096)}"\n`,
    );
}

const times: number[] = [];
const t0 = performance.now();
let bytes = 0;
for (let i = 0; i < n; i++) {
  const p = payload(i);
  const s = performance.now();
  const r = render(p, {
    metaData: {
      instance_id: `m-${i}`,
      local_hostname: `m-${i}`,
      hostname: `m-${i}`,
      local_ipv4: '10.250.0.11',
      provider_id: `capbm://bench/h-${i}`,
    },
  });
  times.push(performance.now() - s);
  bytes += r.script.length;
}
const wall = (performance.now() - t0) / 1000;
times.sort((a, b) => a - b);
const pct = (p: number) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]!.toFixed(3);
const mean = (times.reduce((a, b) => a + b, 0) / times.length).toFixed(3);
const cmd = process.env.CAPBM_BENCH_COMMAND ?? `hack/bench cloud-init ${n}`;
process.stdout.write(
  [
    `command: ${cmd}`,
    `node ${process.version}, ${n} CABPK payloads (init, join control plane, worker; varied per machine)`,
    `render time per payload: mean ${mean} ms, p50 ${pct(50)} ms, p99 ${pct(99)} ms`,
    `total ${wall.toFixed(2)} s wall, ${(n / wall).toFixed(0)} payloads/s, mean script ${(bytes / n / 1024).toFixed(1)} KiB`,
    '',
  ].join('\n'),
);

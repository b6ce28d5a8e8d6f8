#!/usr/bin/env node
// The `capbm` command (package.json "bin"): runs cloud-init/cli.ts, which is TypeScript run without a
// build step, so it needs Node >= 22.18 (type stripping on by default). Plain JavaScript that any
// Node (the machine's Node 20 included) can start: it runs the CLI in this Node when it can strip
// types, else in Node 24 from the node@24 devDependency that `npm ci` installs.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'cloud-init', 'cli.ts');
const [major, minor] = process.versions.node.split('.').map(Number);
const stripsTypes = major > 22 || (major === 22 && minor >= 18);
const bundled = join(root, 'node_modules', 'node', 'bin', 'node');

let node = process.execPath;
if (!stripsTypes) {
  if (!existsSync(bundled)) {
    process.stderr.write(
      `capbm: needs Node >= 22.18 (this is ${process.version}) or the node@24 devDependency: run npm ci in ${root}\n`,
    );
    process.exit(1);
  }
  node = bundled;
}
const r = spawnSync(node, [cli, ...process.argv.slice(2)], { stdio: 'inherit' });
if (r.error) {
  process.stderr.write(`capbm: could not start ${node}: ${r.error.message}\n`);
  process.exit(1);
}
process.exit(r.status ?? 1);

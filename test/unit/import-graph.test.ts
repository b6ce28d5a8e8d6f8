// The shape of the code, pinned: the provider and the node agent meet only in common/ (the shared
// leaves: logging, shell quoting, the agent's wire and host contract), common/ imports nothing of
// ours outside itself, no import cycles (type-only imports included), and no provider file grows
// into a room nobody wants to live in.
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { repoRoot } from '../harness/paths.ts';

const roots = ['provider', 'agent', 'common', 'cloud-init'];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const all = roots.flatMap((r) => files(join(repoRoot, r)));
const rel = (p: string) => relative(repoRoot, p);
const top = (p: string) => rel(p).split('/')[0]!;

/** Relative imports (static, dynamic and type-only) of a file, resolved to repository paths. */
function importsOf(file: string): string[] {
  // Comments may quote imports: leave them out.
  const text = readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!);
  return specs.map((s) => resolve(dirname(file), s));
}

const graph = new Map(all.map((f) => [f, importsOf(f)]));

test('the provider and the agent meet only in common/, and common/ is a leaf', (t) => {
  const wrong: string[] = [];
  for (const [f, deps] of graph) {
    for (const d of deps) {
      const [from, to] = [top(f), top(d)];
      if ((from === 'provider' && to === 'agent') || (from === 'agent' && to === 'provider'))
        wrong.push(`${rel(f)} -> ${rel(d)}`);
      if (from === 'common' && to !== 'common') wrong.push(`${rel(f)} -> ${rel(d)} (common/ must stay a leaf)`);
    }
  }
  t.deepEqual(wrong, []);
});

test('no import cycles', (t) => {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'visiting') {
      cycles.push([...path.slice(path.indexOf(f)), f].map(rel).join(' -> '));
      return;
    }
    state.set(f, 'visiting');
    for (const d of graph.get(f) ?? []) if (graph.has(d)) visit(d, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  t.deepEqual(cycles, []);
});

test('no provider file over 350 lines', (t) => {
  const big = all
    .filter((f) => top(f) === 'provider')
    .map((f) => ({ f: rel(f), lines: readFileSync(f, 'utf8').split('\n').length }))
    .filter((x) => x.lines > 350);
  t.deepEqual(big, []);
});

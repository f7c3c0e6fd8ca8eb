// The layout's rules, checked on the sources: each folder of src/ imports only from folders
// below it, no two files import each other (directly or round a circle), the protocol file
// both threads import has no side effects, and the package holds no developer tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { repoRoot } from './helpers.js';

/** Top to bottom. A file may import from its own folder and from folders of a lower rank. */
const RANK: Record<string, number> = {
  cli: 9, 'api.ts': 8, launcher: 7, engine: 6, files: 5, instrument: 5, control: 5, image: 4, wasi: 2, util: 1, 'errors.ts': 0,
};

const src = join(repoRoot, 'src');

function sources(dir = src): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of a file (static, dynamic and `import type`), as absolute .ts paths. A
 *  file naming itself (a worker's entry: new URL('../x/self.js', import.meta.url)) is not one. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|new URL\(\s*)['"](\.\.?\/[^'"]+)['"]/g)) {
    const target = resolve(dirname(file), m[1]!).replace(/\.js$/, '.ts');
    if (target.startsWith(src + '/') && target !== file) out.push(target); // not package.json
  }
  return out;
}

const room = (file: string): string => relative(src, file).split('/')[0]!;

test('layers: every folder of src/ has a rank, and imports only run downwards', () => {
  const wrong: string[] = [];
  for (const file of sources()) {
    const from = room(file);
    assert.ok(from in RANK, `${relative(repoRoot, file)}: ${from} has no place in the layer order (test/layers.test.ts)`);
    for (const target of importsOf(file)) {
      const to = room(target);
      if (to !== from && !(RANK[from]! > RANK[to]!)) wrong.push(`${relative(src, file)} -> ${relative(src, target)}`);
    }
  }
  assert.deepEqual(wrong, [], 'imports from a lower layer to a higher one');
});

test('layers: no import cycle between files', () => {
  const graph = new Map(sources().map((f) => [f, importsOf(f)]));
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(src, p)).join(' -> '));
      return;
    }
    state.set(f, 'open');
    for (const t of graph.get(f) ?? []) visit(t, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  assert.deepEqual(cycles, []);
});

test('layers: the two threads\' protocol file imports types only', () => {
  const text = readFileSync(join(src, 'engine', 'protocol.ts'), 'utf8');
  const imports = [...text.matchAll(/^import .*$/gm)].map((m) => m[0]);
  assert.ok(imports.length > 0);
  for (const line of imports) assert.match(line, /^import type /, line);
});

test('the package holds the runtime only: no tests, benchmarks or developer tools', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  assert.ok(files.includes('dist/src/api.js') && files.includes('bin/stasis.js'));
  const dev = files.filter((f) => f.startsWith('dist/') && !f.startsWith('dist/src/') || /bench|build-xxh64|xxh64-src/.test(f));
  assert.deepEqual(dev, []);
});

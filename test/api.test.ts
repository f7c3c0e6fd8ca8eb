// The programmatic API as an embedding application uses it: two programs launched in one
// process, checkpointed and killed through the API; the application's own signal handlers are
// left alone and its process is not exited; the image restarts in a new process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fixture, repoRoot, stasis, tempDir } from './helpers.js';

const EMBEDDER = (api: string): string => `
import { launch, checkpoint, kill, status } from ${JSON.stringify(api)};
import { writeFileSync } from 'node:fs';
const [wasm, dirA, dirB, out] = process.argv.slice(2);
process.on('SIGTERM', () => {}); // the application's own handler
const args = ['40', '25000000'];
const a = launch({ module: wasm, args, env: [], preopens: [], ckptDir: dirA, name: 'embed-a-' + process.pid, quiet: true });
const b = launch({ module: wasm, args, env: [], preopens: [], ckptDir: dirB, name: 'embed-b-' + process.pid, quiet: true });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
while ((await status().catch(() => [])).filter((e) => e.pid === process.pid).length < 2) await sleep(50);
await sleep(300);
const signals = { term: process.listenerCount('SIGTERM'), int: process.listenerCount('SIGINT') };
const r = await checkpoint('embed-a-' + process.pid, { exit: true });
const ra = await a;
await kill('embed-b-' + process.pid);
const rb = await b;
writeFileSync(out, JSON.stringify({ image: r.image, a: ra.exitCode, b: rb.exitCode, signals }));
// No process.exit: the process must end by itself once both programs have stopped.
`;

test('embedding: two programs in one process, checkpoint and kill by API, no signal handlers, no exit', () => {
  const { dir, cleanup } = tempDir();
  try {
    const script = join(dir, 'embed.mjs');
    writeFileSync(script, EMBEDDER(pathToFileURL(join(repoRoot, 'dist', 'src', 'api.js')).href));
    const out = join(dir, 'out.json');
    const r = spawnSync(process.execPath, [script, fixture('ckpt_compute'), join(dir, 'a'), join(dir, 'b'), out], { timeout: 60_000, input: '' });
    assert.equal(r.status, 0, String(r.stderr));
    const got = JSON.parse(readFileSync(out, 'utf8')) as { image: string; a: number; b: number; signals: { term: number; int: number } };
    assert.equal(got.a, 75, 'checkpoint --exit: the launch promise resolves with 75');
    assert.equal(got.b, 137, 'kill: the launch promise resolves with 137');
    assert.deepEqual(got.signals, { term: 1, int: 0 }, 'only the application\'s own handlers');
    // The image restarts in a new process and finishes the run exactly.
    const ref = stasis(['run', fixture('ckpt_compute'), '40', '25000000']);
    const again = stasis(['restart', '--quiet', got.image]);
    assert.equal(again.code, ref.code, again.stderr);
    assert.ok(again.stdout.length > 0 && ref.stdout.endsWith(again.stdout), again.stdout);
  } finally {
    cleanup();
  }
});

// Part of `npm run build`, after tsc: bundles what each of the CLI's threads loads, so that a
// thread loads a few files instead of resolving and loading dozens of ES modules one by one
// with Node's ES module loader (measured: tens of ms of every command's start-up).
//
// - The guest thread: dist/src/engine/guest.js and the ~25 modules it imports, as one CommonJS
//   file, dist/src/engine/guest.bundle.cjs (what src/launcher/threads.ts starts); the side
//   thread that supervises a program on the main thread likewise, dist/src/launcher/side.bundle.cjs.
//   Everything is in it, the image reader that only a restart's guest runs too: a module loaded
//   beside it would have classes of its own (an ImageError it threw would not be the bundle's).
//   Its import.meta.url is its own file's, one level below dist/src as the modules were, so the
//   relative URLs the modules resolve against it (the native addon's) still hold.
// - The CLI's main thread: dist/src/cli/main.js and everything it imports, dynamic imports
//   included (esbuild runs each of those modules' code only when it is imported), as one
//   CommonJS file, dist/src/cli/main.bundle.cjs, with V8's code cache for it beside it (written
//   here, by the Node that builds: src/cli/load.cts; trainCache below), which bin/stasis.js loads. Kept out of it:
//   packages (binaryen), and instrument/index.js, which only the instrumenter's worker imports
//   (it loads the unbundled instrument/thread.js) and which would bring binaryen with it.
//   launcher/threads.js is in it and also loaded by bin/stasis.js before it, to start the
//   guest thread early: the two copies share the thread through a global. Node built-ins that
//   only some commands need are loaded at their first use (src/util/builtins.ts), not by the
//   bundle's imports.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeCache } from '../dist/src/cli/load.cjs';

const MAIN_BUNDLE = 'dist/src/cli/main.bundle.cjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const common = { absWorkingDir: root, bundle: true, platform: 'node', target: 'node20', logLevel: 'warning' };
await build({
  ...common,
  entryPoints: ['dist/src/engine/guest.js'],
  outfile: 'dist/src/engine/guest.bundle.cjs',
  format: 'cjs',
  define: { 'import.meta.url': 'bundleUrl' },
  banner: { js: "const bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
// The side thread (src/launcher/side.ts), likewise.
await build({
  ...common,
  entryPoints: ['dist/src/launcher/side.js'],
  outfile: 'dist/src/launcher/side.bundle.cjs',
  format: 'cjs',
  define: { 'import.meta.url': 'bundleUrl' },
  banner: { js: "const bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
await build({
  ...common,
  entryPoints: ['dist/src/cli/main.js'],
  outfile: MAIN_BUNDLE,
  format: 'cjs',
  define: { 'import.meta.url': 'bundleUrl' },
  // One function expression, as Node wraps a CommonJS module: load.cts compiles it as it is.
  banner: { js: "(function (exports, require, module, __filename, __dirname) {const bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  footer: { js: '})' },
  packages: 'external',
  plugins: [{
    name: 'own-modules',
    setup(b) {
      b.onResolve({ filter: /^\.\/index\.js$/ }, (a) => (a.importer.endsWith('/instrument/thread.js') ? { path: '../instrument/index.js', external: true } : undefined));
    },
  }],
});
writeCache(join(root, MAIN_BUNDLE));
trainCache();

/**
 * The code cache written so holds what V8 compiles at once; the functions that run when called
 * (most of what a launch does before its program runs) are compiled at their first call, in
 * every process. Written again as a cached launch of the bench's empty program exits (its module
 * instrumented first, into a cache of its own), it holds those too: the main thread of a cached
 * launch spends ~8 ms less before its program runs, every command ~2 ms more reading the larger
 * cache. Where that launch cannot run here (no bench/, no Binaryen), the cache stays as written.
 */
function trainCache() {
  const program = join(root, 'bench', 'wasm', 'empty.wasm');
  if (!existsSync(program)) return;
  const tmp = mkdtempSync(join(root, 'dist', 'train-')); // written by this build already: writable
  const stasis = (args, env = {}) => spawnSync(process.execPath, [join(root, 'bin', 'stasis.js'), ...args], {
    env: { ...process.env, STASIS_CACHE_DIR: join(tmp, 'modules'), ...env }, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000,
  });
  try {
    for (const [args, env] of [[['instrument', program]], [['launch', '--quiet', '--ckpt-dir', join(tmp, 'ckpt'), program], { STASIS_CODE_CACHE_AFTER_RUN: '1' }]]) {
      const r = stasis(args, env);
      if (r.status !== 0) {
        writeCache(join(root, MAIN_BUNDLE));
        process.stderr.write(`bundle: the code cache holds only what V8 compiles at once: 'stasis ${args[0]}' of ${program} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}): ${r.stderr?.toString().trim() ?? ''}\n`);
        return;
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

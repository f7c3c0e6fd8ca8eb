// Part of `npm run build`, after tsc: bundles what each of the CLI's threads loads, so that a
// thread loads a few files instead of resolving and loading dozens of ES modules one by one
// with Node's ES module loader (measured: tens of ms of every command's start-up).
//
// - The guest thread: dist/src/engine/guest.js and the ~25 modules it imports, as one CommonJS
//   file, dist/src/engine/guest.bundle.cjs (what src/launcher/guest-thread.ts starts).
//   Everything is in it, the image reader that only a restart's guest runs too: a module loaded
//   beside it would have classes of its own (an ImageError it threw would not be the bundle's).
//   Its import.meta.url is its own file's, one level below dist/src as the modules were, so the
//   relative URLs the modules resolve against it (the native addon's) still hold.
// - The CLI's main thread: dist/src/cli/main.js and everything it imports, dynamic imports
//   included, in dist/src/bundle/ (what bin/stasis.js loads): ES modules split at the dynamic
//   imports, so a command still loads only what it needs (`run` no image writer, nothing loads
//   node:crypto or binaryen before it must). The chunks are one level below dist/src too.
//   Kept out of it, as their own modules: packages (binaryen), and launcher/guest-thread.js,
//   which bin/stasis.js loads before the bundle to start the guest thread early (one copy of
//   its state). The instrumenter's worker (instrument/thread.js) loads the unbundled modules.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

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
await build({
  ...common,
  entryPoints: ['dist/src/cli/main.js'],
  outdir: 'dist/src/bundle',
  format: 'esm',
  splitting: true,
  packages: 'external',
  plugins: [{
    name: 'guest-thread-apart',
    setup(b) {
      b.onResolve({ filter: /\/guest-thread\.js$/ }, () => ({ path: '../launcher/guest-thread.js', external: true }));
    },
  }],
});

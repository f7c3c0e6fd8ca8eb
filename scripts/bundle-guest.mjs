// Part of `npm run build`, after tsc: bundles the guest thread's code (dist/src/engine/guest.js
// and the ~25 modules it imports) into one CommonJS file, dist/src/engine/guest.bundle.cjs, which
// is what the thread loads (src/launcher/guest-thread.ts). A new thread resolving and loading
// that many ES modules one by one, with Node's ES module loader, took ~40 ms more of every run's
// start-up than loading one script. Everything is in it, the image reader that only a restart's
// guest runs too: a module loaded beside it would have classes of its own (an ImageError it threw
// would not be the bundle's). The bundle's import.meta.url is its own file's, one level below
// dist/src as the modules were, so the relative URLs the modules resolve against it (the native
// addon's) still hold.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
await build({
  absWorkingDir: root,
  entryPoints: ['dist/src/engine/guest.js'],
  outfile: 'dist/src/engine/guest.bundle.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  define: { 'import.meta.url': 'bundleUrl' },
  banner: { js: "const bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});

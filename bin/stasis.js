#!/usr/bin/env node
// Node's built-ins without the ES module loader where Node has process.getBuiltinModule
// (20.16): an import of one makes a facade of it, copied export by export (node:fs's ~4 ms,
// loading Node's streams with it).
const builtin = async (name) => process.getBuiltinModule?.(name) ?? await import(name);
// A launch or restart told to stop before its code has loaded stops as it would a moment later
// (exit 75 and, in a Slurm job, a requeue; nothing written): Node's default for SIGTERM would end
// it with 143. The signal is kept until the launcher's own handlers take over and get it
// (src/launcher/signals.ts).
if (process.argv[2] === 'launch' || process.argv[2] === 'restart') {
  const early = { sigterm: false, handler: () => { early.sigterm = true; } };
  globalThis[Symbol.for('stasis.earlyStop')] = early;
  process.on('SIGTERM', early.handler);
  // Testing aid (as STASIS_TEST_PAUSE's other phases): held here, before any module loads,
  // until a SIGTERM (kept as above) or the file STASIS_TEST_CONTINUE names.
  if (process.env.STASIS_TEST_PAUSE === 'load') {
    process.stderr.write('stasis: paused at load (STASIS_TEST_PAUSE)\n');
    const { existsSync } = await builtin('node:fs');
    const go = process.env.STASIS_TEST_CONTINUE;
    await new Promise((resolve) => {
      const t = setInterval(() => {
        if (early.sigterm || (go !== undefined && existsSync(go))) resolve(clearInterval(t));
      }, 10);
    });
  }
}
// The program's thread starts now: its start-up overlaps the loading of the launcher's code
// (src/launcher/threads.ts). Not with the native addon: `run`, `launch` and `restart` then run
// their program on this thread (src/launcher/run.ts, src/launcher/main-thread.ts, which decides
// alike); a launch's side thread starts only when the program is ready to run, as one started
// now would slow this thread's start-up by contending with it.
const command = process.argv[2];
if (['run', 'launch', 'restart'].includes(command) && !process.argv.includes('--dry-run')
  && (process.env.STASIS_NO_NATIVE || !(await builtin('node:fs')).existsSync(new URL('../native/build/stasis_native.node', import.meta.url)))) {
  (await import('../dist/src/launcher/threads.js')).startThread('guest');
}
// The CLI (src/cli/main.ts) as one bundle, from V8's code cache (scripts/bundle.mjs, src/cli/load.cts),
// lent this module's import() (src/util/import.ts).
const { createRequire } = await builtin('node:module');
const { fileURLToPath } = await builtin('node:url');
createRequire(import.meta.url)('../dist/src/cli/load.cjs')
  .runBundle(fileURLToPath(new URL('../dist/src/cli/main.bundle.cjs', import.meta.url)), (url) => import(url));

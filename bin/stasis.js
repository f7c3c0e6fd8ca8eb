#!/usr/bin/env node
// CommonJS (bin/package.json): as an ES module this file would start Node's ES module loader,
// some ms of every command's start-up, for nothing until a plugin is imported.
const { existsSync } = require('node:fs');
const { join } = require('node:path');
// A launch or restart told to stop before its code has loaded stops as it would a moment later
// (exit 75 and, in a Slurm job, a requeue; nothing written): Node's default for SIGTERM would end
// it with 143. The signal is kept until the launcher's own handlers take over and get it
// (src/launcher/signals.ts).
const command = process.argv[2];
const early = { sigterm: false, handler: () => { early.sigterm = true; } };
if (command === 'launch' || command === 'restart') {
  globalThis[Symbol.for('stasis.earlyStop')] = early;
  process.on('SIGTERM', early.handler);
}

async function start() {
  // Testing aid (as STASIS_TEST_PAUSE's other phases): held here, before any module loads,
  // until a SIGTERM (kept as above) or the file STASIS_TEST_CONTINUE names.
  if ((command === 'launch' || command === 'restart') && process.env.STASIS_TEST_PAUSE === 'load') {
    process.stderr.write('stasis: paused at load (STASIS_TEST_PAUSE)\n');
    const go = process.env.STASIS_TEST_CONTINUE;
    await new Promise((resolve) => {
      const t = setInterval(() => {
        if (early.sigterm || (go !== undefined && existsSync(go))) resolve(clearInterval(t));
      }, 10);
    });
  }
  // The program's thread starts now: its start-up overlaps the loading of the launcher's code
  // (src/launcher/threads.ts). Not with the native addon: `run`, `launch` and `restart` then run
  // their program on this thread (src/launcher/run.ts, src/launcher/main-thread.ts, which decides
  // alike); a launch's side thread starts only when the program is ready to run, as one started
  // now would slow this thread's start-up by contending with it.
  if (['run', 'launch', 'restart'].includes(command) && !process.argv.includes('--dry-run')
    && (process.env.STASIS_NO_NATIVE || !existsSync(join(__dirname, '../native/build/stasis_native.node')))) {
    (await import('../dist/src/launcher/threads.js')).startThread('guest');
  }
  // The CLI (src/cli/main.ts) as one bundle, from V8's code cache (scripts/bundle.mjs,
  // src/cli/load.cts), lent this module's import() (src/util/import.ts).
  require('../dist/src/cli/load.cjs').runBundle(join(__dirname, '../dist/src/cli/main.bundle.cjs'), (url) => import(url));
}
void start();

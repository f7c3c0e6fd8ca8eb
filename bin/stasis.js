#!/usr/bin/env node
// A launch or restart told to stop before its code has loaded stops as it would a moment later
// (exit 75, nothing written): Node's default for SIGTERM would end it with 143. The launcher's
// own handlers replace this one (src/launcher/signals.ts).
if (process.argv[2] === 'launch' || process.argv[2] === 'restart') {
  const stop = () => process.exit(75);
  globalThis[Symbol.for('stasis.earlyStop')] = stop;
  process.on('SIGTERM', stop);
  // Testing aid (as STASIS_TEST_PAUSE's other phases): held here, before any module loads.
  if (process.env.STASIS_TEST_PAUSE === 'load') {
    process.stderr.write('stasis: paused at load (STASIS_TEST_PAUSE)\n');
    setInterval(() => {}, 1 << 30);
    await new Promise(() => {});
  }
}
await import('../dist/src/cli/main.js');

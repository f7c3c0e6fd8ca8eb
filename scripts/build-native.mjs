#!/usr/bin/env node
// Builds the optional native addon (native/*.c: nanosecond-exact timestamps, and
// file reads/writes straight into wasm memory) into native/build/stasis_native.node
// by invoking the C compiler directly against the installed Node headers (no
// node-gyp, no downloads, no npm deps).
//
// This runs as the package's install script and must NEVER fail the install:
// any problem prints one line and exits 0; Stasis then falls back to Node's
// fs functions (microsecond-precision timestamps, fs.readSync/writeSync).
//
// Environment:
//   STASIS_SKIP_NATIVE=1  don't build
//   CC                    C compiler (default: cc)
//   npm_config_nodedir    Node source/headers prefix (headers in <dir>/include/node)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sources = ['addon.c', 'utimens.c', 'io.c', 'beneath.c', 'mapped.c', 'process.c', 'dirty.c', 'inline.c'].map((f) => join(root, 'native', f));
const outDir = join(root, 'native', 'build');
const out = join(outDir, 'stasis_native.node');

function giveUp(reason) {
  console.log(
    `stasis: native addon not built (${reason}); file timestamps will be microsecond-precision and file I/O goes through fs`,
  );
  process.exit(0);
}

function findIncludeDir() {
  const prefixes = [
    process.env.npm_config_nodedir,
    process.config?.variables?.node_prefix,
    resolve(dirname(process.execPath), '..'),
    '/usr/local',
    '/usr',
  ];
  for (const p of prefixes) {
    if (!p) continue;
    const dir = join(p, 'include', 'node');
    if (existsSync(join(dir, 'node_api.h'))) return dir;
  }
  return null;
}

function main() {
  if (process.env.STASIS_SKIP_NATIVE) giveUp('STASIS_SKIP_NATIVE is set');
  if (process.platform === 'win32') giveUp('not supported on Windows');
  const missing = sources.find((f) => !existsSync(f));
  if (missing) giveUp(`${missing} missing`);
  const include = findIncludeDir();
  if (!include) giveUp('Node headers (include/node/node_api.h) not found');

  const cc = process.env.CC || 'cc';
  const tmp = join(outDir, `stasis_native.${process.pid}.tmp.node`); // .node: require() picks the loader by extension
  const args = [
    '-shared', '-fPIC', '-O2', '-Wall',
    '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=stasis_native',
    `-I${include}`,
    ...sources, '-o', tmp,
  ];
  if (process.platform === 'darwin') args.push('-undefined', 'dynamic_lookup');

  mkdirSync(outDir, { recursive: true });
  const r = spawnSync(cc, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    const detail = r.error
      ? r.error.message
      : (r.stderr || '').split('\n').find((l) => /error/i.test(l)) || `${cc} exited ${r.status}`;
    giveUp(`${cc} failed: ${detail.trim().slice(0, 160)}`);
  }

  // Make sure it actually loads in this Node before installing it.
  try {
    const addon = createRequire(import.meta.url)(tmp);
    if (!['futimens', 'utimensat', 'iovecIo', 'openBeneath'].every((f) => typeof addon[f] === 'function')) {
      throw new Error('missing exports');
    }
  } catch (e) {
    rmSync(tmp, { force: true });
    giveUp(`built addon does not load: ${String(e?.message ?? e).split('\n')[0].slice(0, 160)}`);
  }
  renameSync(tmp, out);
  console.log(`stasis: built native addon (${join('native', 'build', 'stasis_native.node')}): nanosecond-precision timestamps, direct file I/O`);
}

try {
  main();
} catch (e) {
  giveUp(`unexpected error: ${String(e?.message ?? e).split('\n')[0].slice(0, 160)}`);
}
process.exit(0);

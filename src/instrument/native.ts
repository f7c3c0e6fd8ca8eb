// Asyncify by a native `wasm-opt` when the machine has one (Debian/Ubuntu and Homebrew
// `binaryen`): it is several times faster than the npm build (compiled to wasm, one thread)
// and uses every core. The npm build stays the fallback that always works.
// STASIS_WASM_OPT picks the tool: a path to a wasm-opt, or "npm" for the npm build.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, sep } from 'node:path';

/** The oldest release whose Asyncify reads lists from files (`@file`) as we use them. */
const MIN_VERSION = 100;

export interface NativeTool { path: string; version: number }

let found: NativeTool | null | undefined;

/** The native wasm-opt to use, or null (none, too old, or STASIS_WASM_OPT=npm). */
export function nativeWasmOpt(): NativeTool | null {
  if (found !== undefined) return found;
  const want = process.env.STASIS_WASM_OPT;
  if (want === 'npm') found = null;
  else if (want !== undefined && want !== '') found = probe(want);
  else {
    const path = nativeOnPath('wasm-opt');
    found = path === null ? null : probe(path);
  }
  return found;
}

/** An executable on PATH, leaving out node_modules/.bin (npm puts it first under `npm test`
 *  and `npm run`; the wasm-opt there is the npm build again, run as a script). */
function nativeOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '' || dir.split(sep).includes('node_modules')) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

function probe(path: string): NativeTool | null {
  const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const m = r.status === 0 ? /version (\d+)/.exec(r.stdout) : null;
  if (m === null) return null;
  const version = Number(m[1]);
  return version >= MIN_VERSION ? { path, version } : null;
}

/** Feature flags matching the features the module was read with (index.ts FEATURES). */
const FEATURE_FLAGS = [
  '--enable-mutable-globals', '--enable-nontrapping-float-to-int', '--enable-simd', '--enable-bulk-memory',
  '--enable-sign-ext', '--enable-reference-types', '--enable-multivalue', '--enable-tail-call',
  '--enable-threads', '--enable-exception-handling',
];

/** Asyncify's optimisation of the functions it changes (in either build). */
export const ASYNCIFY_OPTIMIZE_LEVEL = 2;

export interface AsyncifyArgs {
  /** asyncify-imports: module.name of each import an unwind may start at. */
  imports: string[];
  /** asyncify-onlylist, or null to instrument every function that may need it. */
  only: string[] | null;
}

/** The command line, with its lists in files in `dir` (a big program's list is longer than
 *  one argument may be). */
function commandLine(dir: string, input: Uint8Array, args: AsyncifyArgs): { argv: string[]; outPath: string } {
  const inPath = join(dir, 'in.wasm');
  const outPath = join(dir, 'out.wasm');
  writeFileSync(inPath, input);
  writeFileSync(join(dir, 'imports'), args.imports.join(','));
  const argv = [
    inPath, ...FEATURE_FLAGS, '--debuginfo', `--optimize-level=${ASYNCIFY_OPTIMIZE_LEVEL}`, '--shrink-level=0',
    '--strip-dwarf', '--asyncify', `--pass-arg=asyncify-imports@@${join(dir, 'imports')}`,
  ];
  if (args.only !== null) {
    writeFileSync(join(dir, 'only'), args.only.join(','));
    argv.push(`--pass-arg=asyncify-onlylist@@${join(dir, 'only')}`);
  }
  argv.push('-o', outPath);
  return { argv, outPath };
}

function failure(tool: NativeTool, status: number | null, stderr: string, error?: Error): Error {
  const why = error?.message ?? (stderr.trim().split('\n').slice(-3).join(' / ') || `exit status ${status}`);
  return new Error(`${tool.path} (Asyncify) failed: ${why}`);
}

/** Runs strip-dwarf and Asyncify (with Asyncify's own optimisation of what it changed) on a
 *  module with a name section, in a native wasm-opt; returns the output (names kept). */
export function asyncifyNative(tool: NativeTool, input: Uint8Array, args: AsyncifyArgs): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-asyncify-'));
  try {
    const { argv, outPath } = commandLine(dir, input, args);
    const r = spawnSync(tool.path, argv, { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) throw failure(tool, r.status, r.stderr ?? '', r.error);
    return readFileSync(outPath);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** asyncifyNative without blocking the thread (the launcher's main thread keeps its lock fresh
 *  and answers signals meanwhile). */
export async function asyncifyNativeAsync(tool: NativeTool, input: Uint8Array, args: AsyncifyArgs): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-asyncify-'));
  try {
    const { argv, outPath } = commandLine(dir, input, args);
    await new Promise<void>((resolve, reject) => {
      const child = spawn(tool.path, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-8192); });
      child.once('error', (e) => reject(failure(tool, null, stderr, e)));
      child.once('close', (status) => (status === 0 ? resolve() : reject(failure(tool, status, stderr))));
    });
    return readFileSync(outPath);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

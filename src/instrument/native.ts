// Asyncify by a native `wasm-opt` when the machine has one (Debian/Ubuntu and Homebrew
// `binaryen`): it is several times faster than the npm build (compiled to wasm, one thread)
// and uses every core. The npm build stays the fallback that always works.
// STASIS_WASM_OPT picks the tool: a path to a wasm-opt, or "npm" for the npm build.
import type { ChildProcess } from 'node:child_process';
import { nodeChildProcess } from '../util/builtins.js';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { bodySizes, merge, piece } from './chunks.js';
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
  const r = nodeChildProcess().spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
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
  /** The same functions by position among the defined functions (to cut the module in pieces). */
  onlyDefined: number[] | null;
}

/** The command line, with its lists in files in `dir` (a big program's list is longer than
 *  one argument may be). */
function commandLine(dir: string, tag: string, input: Uint8Array, args: AsyncifyArgs): { argv: string[]; outPath: string } {
  const inPath = join(dir, `in${tag}.wasm`);
  const outPath = join(dir, `out${tag}.wasm`);
  writeFileSync(inPath, input);
  if (!existsSync(join(dir, 'imports'))) writeFileSync(join(dir, 'imports'), args.imports.join(','));
  const argv = [
    inPath, ...FEATURE_FLAGS, '--debuginfo', `--optimize-level=${ASYNCIFY_OPTIMIZE_LEVEL}`, '--shrink-level=0',
    '--strip-dwarf', '--asyncify', `--pass-arg=asyncify-imports@@${join(dir, 'imports')}`,
  ];
  if (args.only !== null) {
    if (!existsSync(join(dir, 'only'))) writeFileSync(join(dir, 'only'), args.only.join(','));
    argv.push(`--pass-arg=asyncify-onlylist@@${join(dir, 'only')}`);
  }
  argv.push('-o', outPath);
  return { argv, outPath };
}

function failure(tool: NativeTool, status: number | null, stderr: string, error?: Error): Error {
  const why = error?.message ?? (stderr.trim().split('\n').slice(-3).join(' / ') || `exit status ${status}`);
  return new Error(`${tool.path} (Asyncify) failed: ${why}`);
}

/** Instrumented code per piece (bytes of function bodies): wasm-opt's memory grows ~130 times
 *  the code it instruments (flattened and optimised copies it keeps until the end), so this
 *  keeps each process under ~0.5 GB. */
function pieceCodeBytes(): number {
  const set = Number(process.env.STASIS_ASYNCIFY_PIECE_BYTES); // tests cut small modules in pieces
  return Number.isInteger(set) && set > 0 ? set : 3 << 20;
}

interface Plan { inputs: Uint8Array[]; owner: Int32Array }

/** The pieces to run wasm-opt on, or null to run it on the whole module (no only-list: which
 *  functions Asyncify instruments then depends on every body). */
function plan(pre: Uint8Array, args: AsyncifyArgs): Plan | null {
  if (args.onlyDefined === null || args.only === null) return null;
  const sizes = bodySizes(pre);
  const owner = new Int32Array(sizes.length).fill(-1);
  let total = 0;
  for (const d of args.onlyDefined) total += sizes[d]!;
  const count = Math.max(1, Math.ceil(total / pieceCodeBytes()));
  const per = total / count;
  let k = 0, acc = 0;
  for (const d of args.onlyDefined) {
    if (acc >= per * (k + 1) && k < count - 1) k++;
    owner[d] = k;
    acc += sizes[d]!;
  }
  const inputs: Uint8Array[] = [];
  for (let i = 0; i < count; i++) inputs.push(piece(pre, (d) => owner[d] === i));
  return { inputs, owner };
}

/** Runs strip-dwarf and Asyncify (with Asyncify's own optimisation of what it changed) on a
 *  module with a name section, in a native wasm-opt; returns the output (names kept). */
export function asyncifyNative(tool: NativeTool, input: Uint8Array, args: AsyncifyArgs): Uint8Array {
  const p = plan(input, args);
  const dir = mkdtempSync(join(tmpdir(), 'stasis-asyncify-'));
  try {
    const outputs = (p?.inputs ?? [input]).map((piece, i) => {
      const { argv, outPath } = commandLine(dir, `${i}`, piece, args);
      const r = nodeChildProcess().spawnSync(tool.path, argv, { encoding: 'utf8', maxBuffer: 64 << 20 });
      if (r.status !== 0) throw failure(tool, r.status, r.stderr ?? '', r.error);
      return readFileSync(outPath);
    });
    return p === null ? outputs[0]! : merge(input, outputs, (d) => p.owner[d]!);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** asyncifyNative without blocking the thread (the launcher's main thread keeps its lock fresh
 *  and answers signals meanwhile), the pieces run side by side, one per core. */
export async function asyncifyNativeAsync(tool: NativeTool, input: Uint8Array, args: AsyncifyArgs): Promise<Uint8Array> {
  const p = plan(input, args);
  const inputs = p?.inputs ?? [input];
  const dir = mkdtempSync(join(tmpdir(), 'stasis-asyncify-'));
  const children = new Set<ChildProcess>();
  try {
    const parallel = Math.min(inputs.length, availableParallelism());
    // More processes than one: one thread each (the serial parts of each run overlap too).
    const env = parallel > 1 ? { ...process.env, BINARYEN_CORES: '1' } : process.env;
    const outputs: Uint8Array[] = new Array(inputs.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < inputs.length) {
        const i = next++;
        const { argv, outPath } = commandLine(dir, `${i}`, inputs[i]!, args);
        inputs[i] = new Uint8Array(0); // written: not held meanwhile
        await new Promise<void>((resolve, reject) => {
          const child = nodeChildProcess().spawn(tool.path, argv, { stdio: ['ignore', 'ignore', 'pipe'], env });
          children.add(child);
          let stderr = '';
          child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-8192); });
          child.once('error', (e) => reject(failure(tool, null, stderr, e)));
          child.once('close', (status) => {
            children.delete(child);
            if (status === 0) resolve(); else reject(failure(tool, status, stderr));
          });
        });
        outputs[i] = readFileSync(outPath);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    return p === null ? outputs[0]! : merge(input, outputs, (d) => p.owner[d]!);
  } finally {
    for (const c of children) c.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

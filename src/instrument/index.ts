// The instrumenter: turns a wasm32-wasi module into a checkpointable one with Binaryen's Asyncify,
// plus (optionally) safe-point polls so that pure compute can be interrupted too.
// See polls.ts for where polls go and why, abi.ts and README.md for the contract with the engine.
import binaryen from 'binaryen';
import { POLL_IMPORT, WASI_MODULE } from './abi.js';
import {
  NON_UNWINDING_WASI, UnsupportedModuleError, analyseModule, cycleBreakers,
  cyclicComponents, unwindingFunctions, vetModule,
} from './analyse.js';
import { ASYNCIFY_OPTIMIZE_LEVEL, asyncifyNative, nativeWasmOpt, type NativeTool } from './native.js';
import { finish, sha256, type Prepared } from './finish.js';
import { insertPolls } from './polls.js';
import { gateEndingCalls } from './ending.js';
import { embeddedMeta } from './embedded.js';
import { defaultCacheDir, readCache, writeCache } from './cache.js';
import {
  DEFAULT_VARIANT, type InstrumentedModule, type InstrumentOptions,
  type PollVariant,
} from './types.js';
import { versionString } from './version.js';

export { UnsupportedModuleError } from './analyse.js';
export type {
  CounterKind, CycleEntries, GlobalType, InstrumentedModule, InstrumentMeta, InstrumentOptions,
  LoopPlacement, PollVariant,
} from './types.js';
export { DEFAULT_VARIANT } from './types.js';

/** Features Node 20 (V8 11.3) runs; we read with all of them so that we can refuse clearly
 *  (tail calls, threads, exceptions) instead of failing to parse. BulkMemoryOpt (memory.copy
 *  and fill) comes with BulkMemory: without it Binaryen aborts on a module that uses them. */
const FEATURES = binaryen.Features.MutableGlobals | binaryen.Features.NontrappingFPToInt
  | binaryen.Features.SIMD128 | binaryen.Features.BulkMemory | binaryen.Features.BulkMemoryOpt | binaryen.Features.SignExt
  | binaryen.Features.ReferenceTypes | binaryen.Features.Multivalue | binaryen.Features.TailCall
  | binaryen.Features.Atomics | binaryen.Features.ExceptionHandling;

export { INSTRUMENTER_VERSION, versionString } from './version.js';

/** How many times instrument() has run Binaryen (tests use it to see a cache hit). */
export const stats = { binaryenRuns: 0 };

export function instrument(bytes: Uint8Array, opts: InstrumentOptions): InstrumentedModule {
  return instrumentVariant(bytes, opts, DEFAULT_VARIANT);
}

interface BinaryenGlobals { optimize: number; shrink: number; debugInfo: boolean }

/** instrument() with an explicit poll placement (for measurements; the default is DEFAULT_VARIANT).
 *  `tool`: the native wasm-opt for Asyncify, null for the npm build. */
export function instrumentVariant(bytes: Uint8Array, opts: InstrumentOptions, variant: PollVariant, tool: NativeTool | null = nativeWasmOpt()): InstrumentedModule {
  const progress = opts.onProgress ?? (() => {});
  const prep = prepare(bytes, opts, variant);
  progress('asyncify');
  let out: Uint8Array | null = null;
  if (tool !== null) {
    try {
      out = asyncifyNative(tool, prep.pre, prep);
    } catch {
      out = null; // a broken or killed wasm-opt: the npm build below always works
    }
  }
  out ??= asyncifyNpm(prep);
  const post = variant.post ?? 'none';
  if (post !== 'none') {
    progress('optimize');
    out = optimizeAfter(out, post);
  }
  progress('emit');
  return finish(out, prep);
}

/** Parse, vet, analyse and place polls (binaryen.js): the module ready for Asyncify, with the
 *  lists and names it needs. Binaryen's copy of the module is freed before it returns. */
export function prepare(bytes: Uint8Array, opts: InstrumentOptions, variant: PollVariant = DEFAULT_VARIANT): Prepared {
  const progress = opts.onProgress ?? (() => {});
  const sourceHash = sha256(bytes);
  stats.binaryenRuns++;
  progress('parse');
  const saved = saveGlobals();
  let m: binaryen.Module;
  try {
    if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) throw new Error('no \\0asm header');
    m = read(bytes);
  } catch (e) {
    throw new UnsupportedModuleError(`the module cannot be read as WebAssembly with the features Stasis supports: ${(e as Error).message ?? e}`);
  }
  try {
    if (embeddedMeta(bytes) !== null) throw new UnsupportedModuleError('the module is already instrumented by Stasis; launch it as it is, or instrument the original');
    vetModule(m);
    progress('analyse');
    const a = analyseModule(m);
    const stackPointer = stackPointerGlobal(m);
    const ending = gateEndingCalls(m, a, freeGlobalName(m, 'stasis_ending'));

    const unwindImports: string[] = [];
    const unwindImportNames = new Set<string>();
    for (const f of a.funcs.values()) {
      if (f.imported && f.module === WASI_MODULE && !NON_UNWINDING_WASI.has(f.base!)) {
        unwindImports.push(`${f.module}.${f.base}`);
        unwindImportNames.add(f.name);
      }
    }
    let pollBudget: number | null = null;
    if (opts.polls) {
      progress('polls');
      const entries = variant.cycles === 'all' ? new Set(cyclicComponents(a).flat())
        : variant.cycles === 'none' ? new Set<string>() : cycleBreakers(a);
      const added = insertPolls(m, a, entries, variant, new Set(unwindImportNames));
      pollBudget = globalIndex(m, added.budgetGlobal);
      unwindImports.push(`${POLL_IMPORT.module}.${POLL_IMPORT.name}`);
      // The poll's callers: functions with a loop poll or an entry poll.
      for (const name of added.pollers) a.funcs.get(name)!.calls.add(added.pollFunction);
      unwindImportNames.add(added.pollFunction);
    }
    const unwinding = unwindingFunctions(a, unwindImportNames);
    const only = [...unwinding];
    // Their positions among the defined functions as written (imports are written first).
    const onlyDefined: number[] = [];
    for (let i = 0, d = 0; i < m.getNumFunctions(); i++) {
      const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
      if (f.module) continue;
      if (unwinding.has(f.name)) onlyDefined.push(d);
      d++;
    }
    binaryen.setDebugInfo(true); // the lists name functions: keep the name section
    const pre = m.emitBinary();
    const listed = only.length > 0 && only.every(listable);
    return {
      pre, sourceHash, stackPointer, pollBudget, endingGate: ending === null ? null : globalIndex(m, ending.gate),
      imports: unwindImports.length > 0 ? unwindImports : ['stasis.none'],
      only: listed ? only : null,
      onlyDefined: listed ? onlyDefined : null,
      meta: { version: versionString(opts, variant), pollImport: opts.polls ? { ...POLL_IMPORT } : null, unwindImports },
    };
  } finally {
    m.dispose();
    restoreGlobals(saved);
  }
}

function read(bytes: Uint8Array): binaryen.Module {
  const m = (binaryen.readBinary as (b: Uint8Array, f?: number) => binaryen.Module)(bytes, FEATURES);
  m.setFeatures(FEATURES);
  return m;
}

function saveGlobals(): BinaryenGlobals {
  return { optimize: binaryen.getOptimizeLevel(), shrink: binaryen.getShrinkLevel(), debugInfo: binaryen.getDebugInfo() };
}

function restoreGlobals(saved: BinaryenGlobals): void {
  binaryen.clearPassArguments();
  binaryen.setOptimizeLevel(saved.optimize);
  binaryen.setShrinkLevel(saved.shrink);
  binaryen.setDebugInfo(saved.debugInfo);
}

/** Asyncify in the npm build of Binaryen (wasm, one thread): the fallback that always works. */
export function asyncifyNpm(prep: Prepared): Uint8Array {
  const saved = saveGlobals();
  const m = read(prep.pre);
  try {
    binaryen.setOptimizeLevel(ASYNCIFY_OPTIMIZE_LEVEL);
    binaryen.setShrinkLevel(0);
    binaryen.clearPassArguments();
    binaryen.setPassArgument('asyncify-imports', prep.imports.join(','));
    if (prep.only !== null) binaryen.setPassArgument('asyncify-onlylist', prep.only.join(','));
    m.runPasses(['strip-dwarf', 'asyncify']);
    binaryen.setDebugInfo(true); // keeps the name section (function names in traps and profiles)
    return m.emitBinary();
  } finally {
    m.dispose();
    restoreGlobals(saved);
  }
}

/** A whole-module -O2 after Asyncify (variants measured by bench/polls.ts; not the default). */
function optimizeAfter(bytes: Uint8Array, post: NonNullable<PollVariant['post']>): Uint8Array {
  const saved = saveGlobals();
  const savedInline = binaryen.getOneCallerInlineMaxSize();
  const m = read(bytes);
  try {
    binaryen.setOptimizeLevel(2);
    binaryen.setShrinkLevel(0);
    if (post === 'noinline') { binaryen.addPassToSkip('inlining'); binaryen.addPassToSkip('inlining-optimizing'); }
    if (post === 'oneCaller0') binaryen.setOneCallerInlineMaxSize(0);
    m.optimize();
    binaryen.setDebugInfo(true);
    return m.emitBinary();
  } finally {
    binaryen.clearPassesToSkip();
    binaryen.setOneCallerInlineMaxSize(savedInline);
    m.dispose();
    restoreGlobals(saved);
  }
}

/** Names Asyncify's list parser takes literally (it splits on commas, expands '*', reads '@file'). */
function listable(name: string): boolean {
  return /^[^,*@\s()[\]<>{}]+$/.test(name);
}

/** Index of the shadow-stack pointer global: __stack_pointer, else the first mutable i32
 *  global (a module without a name section), or null. Indices, not names, go to the last step:
 *  Asyncify only adds globals after the others, and a global named by default has no entry
 *  in the name section. */
function stackPointerGlobal(m: binaryen.Module): number | null {
  let firstI32: number | null = null;
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (!g.mutable || g.type !== binaryen.i32) continue;
    if (g.name === '__stack_pointer') return i;
    firstI32 ??= i;
  }
  return firstI32;
}

/** `base`, or `base` and a number, that no global of m is named. */
function freeGlobalName(m: binaryen.Module, base: string): string {
  const taken = new Set<string>();
  for (let i = 0; i < m.getNumGlobals(); i++) taken.add(binaryen.getGlobalInfo(m.getGlobalByIndex(i)).name);
  let name = base;
  for (let i = 0; taken.has(name); i++) name = `${base}${i}`;
  return name;
}

function globalIndex(m: binaryen.Module, name: string): number {
  for (let i = 0; i < m.getNumGlobals(); i++) if (binaryen.getGlobalInfo(m.getGlobalByIndex(i)).name === name) return i;
  throw new Error(`no global ${name} (instrumenter bug)`);
}

// ---- cache (cache.ts: readable without loading binaryen) ----

export { defaultCacheDir } from './cache.js';

/** instrument(), cached on disk by sha256(input) + meta.version. */
export function instrumentCached(bytes: Uint8Array, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): InstrumentedModule {
  const hit = readCache(bytes, opts, cacheDir);
  if (hit !== null) return hit;
  const result = instrument(bytes, opts);
  writeCache(result, opts, cacheDir);
  return result;
}

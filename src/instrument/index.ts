// The instrumenter: turns a wasm32-wasi module into a checkpointable one with Binaryen's Asyncify,
// plus (optionally) safe-point polls so that pure compute can be interrupted too.
// See polls.ts for where polls go and why; README of the engine for the unwind protocol.
import binaryen from 'binaryen';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  NON_UNWINDING_WASI, UnsupportedModuleError, WASI_MODULE, analyseModule, cycleBreakers,
  cyclicComponents, unwindingFunctions, vetModule,
} from './analyse.js';
import { DEFAULT_VARIANT, insertPolls, type PollVariant } from './polls.js';
import { defaultCacheDir, readCache, writeCache } from './cache.js';
import { versionString } from './version.js';
import { cacheAsyncifyState } from './statecache.js';

export { UnsupportedModuleError } from './analyse.js';
export { INITIAL_BUDGET } from './polls.js';

export interface InstrumentOptions {
  /** Safe-point polls in loops and recursion, so pure compute can be checkpointed. */
  polls: boolean;
  /** Called at the start of each phase (parse, analyse, polls, asyncify, optimize, emit). */
  onProgress?: (phase: string) => void;
}

export type GlobalType = 'i32' | 'i64' | 'f32' | 'f64';

export interface InstrumentMeta {
  /** Instrumenter version + binaryen version + options: part of the cache key. */
  version: string;
  /** Every mutable global, exported as stasis_g<i> (in this order). */
  globals: { name: string; type: GlobalType }[];
  /** Export name of the shadow-stack pointer global, or null if there is none. */
  stackPointer: string | null;
  /** Lowest address of the shadow-stack region (free space below the current SP may hold the
   *  asyncify buffer). */
  stackLow: number;
  pollImport: { module: 'stasis'; name: 'poll' } | null;
  /** Export name of the poll budget global (in `globals` too), or null without polls. */
  pollBudget: string | null;
  /** The imports an unwind may start at (module.name). */
  unwindImports: string[];
}

export interface InstrumentedModule {
  bytes: Uint8Array;
  hash: string;
  sourceHash: string;
  meta: InstrumentMeta;
}

/** Features Node 20 (V8 11.3) runs; we read with all of them so that we can refuse clearly
 *  (tail calls, threads, exceptions) instead of failing to parse. */
const FEATURES = binaryen.Features.MutableGlobals | binaryen.Features.NontrappingFPToInt
  | binaryen.Features.SIMD128 | binaryen.Features.BulkMemory | binaryen.Features.SignExt
  | binaryen.Features.ReferenceTypes | binaryen.Features.Multivalue | binaryen.Features.TailCall
  | binaryen.Features.Atomics | binaryen.Features.ExceptionHandling;

export { INSTRUMENTER_VERSION, versionString } from './version.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** How many times instrument() has run Binaryen (tests use it to see a cache hit). */
export const stats = { binaryenRuns: 0 };

export function instrument(bytes: Uint8Array, opts: InstrumentOptions): InstrumentedModule {
  return instrumentVariant(bytes, opts, DEFAULT_VARIANT);
}

interface BinaryenGlobals { optimize: number; shrink: number; debugInfo: boolean }

/** instrument() with an explicit poll placement (for measurements; the default is DEFAULT_VARIANT). */
export function instrumentVariant(bytes: Uint8Array, opts: InstrumentOptions, variant: PollVariant): InstrumentedModule {
  const progress = opts.onProgress ?? (() => {});
  const sourceHash = sha256(bytes);
  stats.binaryenRuns++;
  progress('parse');
  const saved: BinaryenGlobals = { optimize: binaryen.getOptimizeLevel(), shrink: binaryen.getShrinkLevel(), debugInfo: binaryen.getDebugInfo() };
  let m: binaryen.Module;
  try {
    if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) throw new Error('no \\0asm header');
    m = (binaryen.readBinary as (b: Uint8Array, f?: number) => binaryen.Module)(bytes, FEATURES);
  } catch (e) {
    throw new UnsupportedModuleError(`the module cannot be read as WebAssembly with the features Stasis supports: ${(e as Error).message ?? e}`);
  }
  try {
    m.setFeatures(FEATURES);
    vetModule(m);
    progress('analyse');
    const a = analyseModule(m);
    const layout = stackLayout(m);

    const unwindImports: string[] = [];
    const unwindImportNames = new Set<string>();
    for (const f of a.funcs.values()) {
      if (f.imported && f.module === WASI_MODULE && !NON_UNWINDING_WASI.has(f.base!)) {
        unwindImports.push(`${f.module}.${f.base}`);
        unwindImportNames.add(f.name);
      }
    }
    let pollBudgetInternal: string | null = null;
    if (opts.polls) {
      progress('polls');
      const entries = variant.cycles === 'all' ? new Set(cyclicComponents(a).flat())
        : variant.cycles === 'none' ? new Set<string>() : cycleBreakers(a);
      const added = insertPolls(m, a, entries, variant, new Set(unwindImportNames));
      pollBudgetInternal = added.budgetGlobal;
      unwindImports.push('stasis.poll');
      // The poll's callers: functions with a loop poll or an entry poll.
      for (const name of added.pollers) a.funcs.get(name)!.calls.add(added.pollFunction);
      unwindImportNames.add(added.pollFunction);
    }

    progress('asyncify');
    binaryen.setOptimizeLevel(2);
    binaryen.setShrinkLevel(0);
    binaryen.setDebugInfo(false);
    binaryen.clearPassArguments();
    binaryen.setPassArgument('asyncify-imports', unwindImports.length > 0 ? unwindImports.join(',') : 'stasis.none');
    const only = [...unwindingFunctions(a, unwindImportNames)];
    const useOnly = only.length > 0 && only.every(listable);
    if (useOnly) binaryen.setPassArgument('asyncify-onlylist', only.join(','));
    m.runPasses(['strip-dwarf', 'asyncify']);
    if (variant.cacheState) {
      const instrumented = new Set(only);
      cacheAsyncifyState(m, '__asyncify_state', (callee) => !useOnly || instrumented.has(callee) || unwindImportNames.has(callee));
    }
    progress('optimize');
    const post = variant.post ?? 'full';
    const savedInline = binaryen.getOneCallerInlineMaxSize();
    try {
      if (post === 'noinline') { binaryen.addPassToSkip('inlining'); binaryen.addPassToSkip('inlining-optimizing'); }
      if (post === 'oneCaller0') binaryen.setOneCallerInlineMaxSize(0);
      if (post !== 'none') m.optimize();
    } finally {
      binaryen.clearPassesToSkip();
      binaryen.setOneCallerInlineMaxSize(savedInline);
    }

    // Export every mutable global (after optimisation, which could rename or drop unexported ones).
    const globals: InstrumentMeta['globals'] = [];
    let stackPointer: string | null = null;
    let pollBudget: string | null = null;
    const exportNames = new Set<string>();
    for (let i = 0; i < m.getNumExports(); i++) exportNames.add(binaryen.getExportInfo(m.getExportByIndex(i)).name);
    for (let i = 0; i < m.getNumGlobals(); i++) {
      const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
      if (!g.mutable) continue;
      const exportName = `stasis_g${globals.length}`;
      if (exportNames.has(exportName)) throw new UnsupportedModuleError(`the module already exports ${exportName}`);
      m.addGlobalExport(g.name, exportName);
      globals.push({ name: exportName, type: typeName(g.type) });
      if (g.name === layout.stackPointer) stackPointer = exportName;
      if (g.name === pollBudgetInternal) pollBudget = exportName;
    }

    progress('emit');
    if (!m.validate()) throw new Error('instrumented module does not validate (instrumenter bug)');
    binaryen.setDebugInfo(true); // keeps the name section (function names in traps and profiles)
    const out = m.emitBinary();
    const meta: InstrumentMeta = {
      version: versionString(opts, variant),
      globals,
      stackPointer,
      stackLow: layout.stackLow,
      pollImport: opts.polls ? { module: 'stasis', name: 'poll' } : null,
      pollBudget,
      unwindImports,
    };
    return { bytes: out, hash: sha256(out), sourceHash, meta };
  } finally {
    m.dispose();
    binaryen.clearPassArguments();
    binaryen.setOptimizeLevel(saved.optimize);
    binaryen.setShrinkLevel(saved.shrink);
    binaryen.setDebugInfo(saved.debugInfo);
  }
}

/** Names Asyncify's list parser takes literally (it splits on commas, expands '*', reads '@file'). */
function listable(name: string): boolean {
  return /^[^,*@\s()[\]<>{}]+$/.test(name);
}

function typeName(t: number): GlobalType {
  if (t === binaryen.i32) return 'i32';
  if (t === binaryen.i64) return 'i64';
  if (t === binaryen.f32) return 'f32';
  if (t === binaryen.f64) return 'f64';
  throw new UnsupportedModuleError('the module has a mutable global of a non-numeric type, which a snapshot cannot save');
}

/** The stack pointer global and the low end of the shadow stack. */
function stackLayout(m: binaryen.Module): { stackPointer: string | null; stackLow: number } {
  let sp: binaryen.GlobalInfo | null = null;
  let firstI32: binaryen.GlobalInfo | null = null;
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (!g.mutable || g.type !== binaryen.i32) continue;
    if (g.name === '__stack_pointer') { sp = g; break; }
    firstI32 ??= g;
  }
  sp ??= firstI32;
  if (!sp) return { stackPointer: null, stackLow: 16 };
  const init = binaryen.getExpressionInfo(sp.init);
  const spInit = init.id === binaryen.ConstId ? (init as binaryen.ConstInfo).value as number : null;
  let dataEnd = 0;
  const mm = m as unknown as { getNumDataSegments(): number; getDataSegmentByIndex(i: number): number; getDataSegmentInfo(s: number): { offset: number | null; data: ArrayBuffer; passive: boolean } };
  for (let i = 0; i < mm.getNumDataSegments(); i++) {
    const s = mm.getDataSegmentInfo(mm.getDataSegmentByIndex(i));
    if (s.passive || s.offset === null) continue;
    const end = s.offset + s.data.byteLength;
    if (spInit === null || end <= spInit) dataEnd = Math.max(dataEnd, end);
  }
  // Zero-initialised data (.bss) has no data segment: it lies between the last segment and the
  // stack, so the end of the segments is not the bottom of the stack. Without linker symbols the
  // best bound is wasm-ld's default stack size (64 KiB) below the initial stack pointer; a module
  // linked with a smaller -z stack-size would need __data_end/__stack_low exported (not done by
  // default), so take the higher of the two.
  const DEFAULT_STACK = 65536;
  let stackLow = Math.max(16, Math.ceil(dataEnd / 16) * 16);
  if (spInit !== null) stackLow = Math.max(stackLow, Math.ceil((spInit - DEFAULT_STACK) / 16) * 16);
  return { stackPointer: sp.name, stackLow };
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

// The instrumenter: turns a wasm32-wasi module into a checkpointable one with Binaryen's Asyncify,
// plus (optionally) safe-point polls so that pure compute can be interrupted too.
// See polls.ts for where polls go and why, abi.ts and README.md for the contract with the engine.
import binaryen from 'binaryen';
import { createHash } from 'node:crypto';
import { POLL_IMPORT, WASI_MODULE, globalExportName } from './abi.js';
import {
  NON_UNWINDING_WASI, UnsupportedModuleError, analyseModule, cycleBreakers,
  cyclicComponents, unwindingFunctions, vetModule,
} from './analyse.js';
import { asyncifyNative, nativeWasmOpt, type AsyncifyArgs } from './native.js';
import { insertPolls } from './polls.js';
import { META_SECTION, embeddedMeta, encodeMeta } from './embedded.js';
import { defaultCacheDir, readCache, writeCache } from './cache.js';
import {
  DEFAULT_VARIANT, type GlobalType, type InstrumentedModule, type InstrumentMeta, type InstrumentOptions,
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
    if (embeddedMeta(bytes) !== null) throw new UnsupportedModuleError('the module is already instrumented by Stasis; launch it as it is, or instrument the original');
    vetModule(m);
    progress('analyse');
    const a = analyseModule(m);
    const stackPointerInternal = stackPointerGlobal(m);

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
      unwindImports.push(`${POLL_IMPORT.module}.${POLL_IMPORT.name}`);
      // The poll's callers: functions with a loop poll or an entry poll.
      for (const name of added.pollers) a.funcs.get(name)!.calls.add(added.pollFunction);
      unwindImportNames.add(added.pollFunction);
    }

    progress('asyncify');
    const only = [...unwindingFunctions(a, unwindImportNames)];
    const asyncifyArgs: AsyncifyArgs = {
      imports: unwindImports.length > 0 ? unwindImports : ['stasis.none'],
      only: only.length > 0 && only.every(listable) ? only : null,
      optimizeLevel: 2,
    };
    const tool = nativeWasmOpt();
    let native: Uint8Array | null = null;
    if (tool !== null) {
      binaryen.setDebugInfo(true); // the lists name functions: keep the name section
      try {
        native = asyncifyNative(tool, m.emitBinary(), asyncifyArgs);
      } catch {
        native = null; // a broken or killed wasm-opt: the npm build below always works
      }
    }
    if (native !== null) {
      const next = (binaryen.readBinary as (b: Uint8Array, f?: number) => binaryen.Module)(native, FEATURES);
      m.dispose();
      m = next;
      m.setFeatures(FEATURES);
    } else {
      // Asyncify optimises the functions it changed itself (at this level): no pass over the
      // whole module afterwards, which took longer than Asyncify and gave a bigger module.
      binaryen.setOptimizeLevel(asyncifyArgs.optimizeLevel);
      binaryen.setShrinkLevel(0);
      binaryen.setDebugInfo(false);
      binaryen.clearPassArguments();
      binaryen.setPassArgument('asyncify-imports', asyncifyArgs.imports.join(','));
      if (asyncifyArgs.only !== null) binaryen.setPassArgument('asyncify-onlylist', asyncifyArgs.only.join(','));
      m.runPasses(['strip-dwarf', 'asyncify']);
    }
    const post = variant.post ?? 'none';
    if (post !== 'none') {
      progress('optimize');
      const savedInline = binaryen.getOneCallerInlineMaxSize();
      try {
        binaryen.setOptimizeLevel(2);
        binaryen.setShrinkLevel(0);
        if (post === 'noinline') { binaryen.addPassToSkip('inlining'); binaryen.addPassToSkip('inlining-optimizing'); }
        if (post === 'oneCaller0') binaryen.setOneCallerInlineMaxSize(0);
        m.optimize();
      } finally {
        binaryen.clearPassesToSkip();
        binaryen.setOneCallerInlineMaxSize(savedInline);
      }
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
      const exportName = globalExportName(globals.length);
      if (exportNames.has(exportName)) throw new UnsupportedModuleError(`the module already exports ${exportName}`);
      m.addGlobalExport(g.name, exportName);
      globals.push({ name: exportName, type: typeName(g.type) });
      if (g.name === stackPointerInternal) stackPointer = exportName;
      if (g.name === pollBudgetInternal) pollBudget = exportName;
    }

    progress('emit');
    if (!m.validate()) throw new Error('instrumented module does not validate (instrumenter bug)');
    const meta: InstrumentMeta = {
      version: versionString(opts, variant),
      globals,
      stackPointer,
      pollImport: opts.polls ? { ...POLL_IMPORT } : null,
      pollBudget,
      unwindImports,
    };
    m.addCustomSection(META_SECTION, encodeMeta({ meta, sourceHash }));
    binaryen.setDebugInfo(true); // keeps the name section (function names in traps and profiles)
    const out = m.emitBinary();
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

/** Internal name of the shadow-stack pointer: __stack_pointer, else the first mutable i32
 *  global (a module without a name section), or null. */
function stackPointerGlobal(m: binaryen.Module): string | null {
  let firstI32: string | null = null;
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (!g.mutable || g.type !== binaryen.i32) continue;
    if (g.name === '__stack_pointer') return g.name;
    firstI32 ??= g.name;
  }
  return firstI32;
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

// The instrumenter's types. Free of binaryen (and importing nothing that loads it), so that the
// cache lookup (cache.ts, version.ts) and the launcher can use them without loading binaryen
// (~0.4 s).
import type { PollImport } from './abi.js';

export interface InstrumentOptions {
  /** Safe-point polls in loops and recursion, so pure compute can be checkpointed. */
  polls: boolean;
  /** Called at the start of each phase (parse, analyse, polls, asyncify, emit). */
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
  pollImport: PollImport | null;
  /** Export name of the poll budget global (in `globals` too), or null without polls. */
  pollBudget: string | null;
  /** Export name of the ending gate (in `globals` too; ending.ts): while it is not 0 the program
   *  is on its way to a trap and must not be unwound. Null if the module has no ending calls
   *  (and in modules instrumented before it existed). */
  endingGate?: string | null;
  /** The imports an unwind may start at (module.name). */
  unwindImports: string[];
}

export interface InstrumentedModule {
  bytes: Uint8Array;
  hash: string;
  sourceHash: string;
  meta: InstrumentMeta;
}

export type LoopPlacement = 'naive' | 'outline' | 'auto';
export type CounterKind = 'global' | 'local' | 'auto';
export type CycleEntries = 'all' | 'breakers' | 'none';

/** Where polls go (polls.ts); the alternatives to the default are kept for measurements. */
export interface PollVariant {
  loops: LoopPlacement;
  counter: CounterKind;
  cycles: CycleEntries;
  /** Leave out innermost call-free loops that provably walk memory (isMemoryWalkLoop). */
  skipBounded: boolean;
  /** Leave out loops whose every iteration calls a function that polls on entry. */
  skipPolledCalls?: boolean;
  /** Leave out the loops of wasi-libc's allocator (polls.ts, rule 5). */
  trustAllocator?: boolean;
  /** Experiment: leave loops in call-free functions without polls (unsound, measures the cost). */
  skipLeafLoops?: boolean;
  /** Optimisation after Asyncify, over the whole module: none (the default: Asyncify's own
   *  optimisation of what it changed), full -O2, or -O2 without inlining. */
  post?: 'full' | 'none' | 'noinline' | 'oneCaller0';
}

export const DEFAULT_VARIANT: PollVariant = { loops: 'outline', counter: 'auto', cycles: 'breakers', skipBounded: true, skipPolledCalls: true, trustAllocator: true };

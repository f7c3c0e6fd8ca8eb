// How V8 compiles a program's wasm functions, chosen per command (`--compile`).
import { nodeV8 } from '../util/builtins.js';

/**
 * - 'optimized': by the optimizing compiler (TurboFan) at each function's first call. Best for
 *   long runs: V8 has no on-stack replacement for wasm, so under 'tiered' a loop in a function
 *   entered once (main) runs baseline code to the end. First calls cost compile time.
 * - 'tiered': V8's default: the baseline compiler (Liftoff) first, hot functions re-compiled
 *   optimized in the background (for their later calls).
 */
export type CompileMode = 'optimized' | 'tiered';
export const COMPILE_MODES: readonly CompileMode[] = ['optimized', 'tiered'];

let applied: CompileMode | null = null;

/**
 * Applies a mode before a program's first call: V8 compiles wasm lazily, each function at its
 * first call, with the flags of that moment. The flags are the process's, so the mode is too:
 * it holds for every program in the process from then on (the CLI runs one per process).
 */
export function useCompileMode(mode: CompileMode): void {
  nodeV8().setFlagsFromString(mode === 'optimized' ? '--no-liftoff' : '--liftoff');
  applied = mode;
}

/** The mode in effect in this process: the last one applied, else what node was started with. */
export function compileMode(): CompileMode {
  return applied ?? (process.execArgv.some((a) => /^--no-?liftoff$|^--liftoff=false$/.test(a)) ? 'optimized' : 'tiered');
}

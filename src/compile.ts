// How V8 compiles a program's wasm functions, chosen per command (`--compile`).
import { setFlagsFromString } from 'node:v8';

/**
 * - 'optimized': by the optimizing compiler (TurboFan) at each function's first call. Best for
 *   long runs: V8 has no on-stack replacement for wasm, so under 'tiered' a loop in a function
 *   entered once (main) runs baseline code to the end. First calls cost compile time.
 * - 'tiered': V8's default: the baseline compiler (Liftoff) first, hot functions re-compiled
 *   optimized in the background (for their later calls).
 */
export type CompileMode = 'optimized' | 'tiered';
export const COMPILE_MODES: readonly CompileMode[] = ['optimized', 'tiered'];

/**
 * Applies a mode before the program's first call: V8 compiles wasm lazily, each function at its
 * first call, with the flags of that moment. The flags are the process's, so the mode is too
 * (the CLI runs one program per process).
 */
export function useCompileMode(mode: CompileMode): void {
  setFlagsFromString(mode === 'optimized' ? '--no-liftoff' : '--liftoff');
}

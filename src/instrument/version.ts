// What identifies an instrumentation: the instrumenter's version, binaryen's and the options.
// Kept free of binaryen so that a cache lookup does not load it (it takes ~0.4 s).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { InstrumentOptions } from './index.js';

export type LoopPlacement = 'naive' | 'outline' | 'auto';
export type CounterKind = 'global' | 'local' | 'auto';
export type CycleEntries = 'all' | 'breakers' | 'none';

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
  /** Keep Asyncify's state in a local in instrumented functions (statecache.ts). */
  cacheState?: boolean;
  /** Optimisation after Asyncify: full -O2, none, or -O2 without inlining. */
  post?: 'full' | 'none' | 'noinline' | 'oneCaller0';
}

export const DEFAULT_VARIANT: PollVariant = { loops: 'outline', counter: 'auto', cycles: 'breakers', skipBounded: true, skipPolledCalls: true, trustAllocator: true };

/** Bump when the output for a given input changes (placement, passes, exports). */
export const INSTRUMENTER_VERSION = '4';

const BINARYEN_VERSION = ((): string => {
  try {
    const pkg = JSON.parse(readFileSync(createRequire(import.meta.url).resolve('binaryen/package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

export function versionString(opts: InstrumentOptions, variant: PollVariant = DEFAULT_VARIANT): string {
  const v = opts.polls ? `polls=${variant.loops}/${variant.counter}/${variant.cycles}${variant.skipBounded ? '/skipbounded' : ''}${variant.skipLeafLoops ? '/skipleaf' : ''}${variant.skipPolledCalls ? '/skippolledcalls' : ''}${variant.trustAllocator ? '/allocator' : ''}` : 'polls=off';
  return `stasis-instrument ${INSTRUMENTER_VERSION}; binaryen ${BINARYEN_VERSION}; ${v}${variant.cacheState ? '; statecache' : ''}${variant.post && variant.post !== 'full' ? `; post=${variant.post}` : ''}`;
}


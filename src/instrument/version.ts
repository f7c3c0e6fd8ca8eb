// What identifies an instrumentation: the instrumenter's version, binaryen's and the options.
// Kept free of binaryen so that a cache lookup does not load it (it takes ~0.4 s).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { DEFAULT_VARIANT, type InstrumentOptions, type PollVariant } from './types.js';

/** Bump when the output for a given input changes (placement, passes, exports). */
export const INSTRUMENTER_VERSION = '7';

// Read from its package.json: resolving a path loads nothing.
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
  return `stasis-instrument ${INSTRUMENTER_VERSION}; binaryen ${BINARYEN_VERSION}; ${v}${variant.post && variant.post !== 'none' ? `; post=${variant.post}` : ''}`;
}

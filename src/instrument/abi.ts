// The contract between an instrumented module and the engine that runs it (src/engine/):
// the names and numbers both sides must agree on. Free of binaryen, so the engine can import it.
// Changing a value here changes the instrumented output: bump INSTRUMENTER_VERSION (version.ts).

/** The import a polled module calls when its budget runs out: `() -> i32`, the next budget. */
export const POLL_IMPORT = { module: 'stasis', name: 'poll' } as const;
export type PollImport = typeof POLL_IMPORT;

/**
 * Loop back-edges and cycle entries between two polls: the module's initial budget, and what
 * the engine's poll returns. At 10 000 a poll comes within a few ms in the hottest loops
 * (fixtures: p99 <= 2.5 ms, max <= 11 ms) while polls cost < 1 %; a return <= 0 means "poll
 * again at the next one".
 */
export const POLL_BUDGET = 10_000;

/** Every mutable global is exported as `${GLOBAL_EXPORT_PREFIX}<i>`, i counting from 0. */
export const GLOBAL_EXPORT_PREFIX = 'stasis_g';
export const globalExportName = (i: number): string => `${GLOBAL_EXPORT_PREFIX}${i}`;

/** The module the WASI imports come from; `meta.unwindImports` names are `module.name`. */
export const WASI_MODULE = 'wasi_snapshot_preview1';

/** Asyncify's exports (binaryen's names; the engine drives unwind and rewind with them). */
export const ASYNCIFY_EXPORTS = [
  'asyncify_start_unwind', 'asyncify_stop_unwind', 'asyncify_start_rewind', 'asyncify_stop_rewind',
  'asyncify_get_state',
] as const;

/** What asyncify_get_state() returns. */
export const ASYNCIFY_STATE = { normal: 0, unwinding: 1, rewinding: 2 } as const;

/** The asyncify buffer starts with two i32s: the current position (starts at buffer + 8) and
 *  the end. Asyncify does not check the end while unwinding. */
export const ASYNCIFY_BUFFER_HEADER = 8;

// What an instrumented module and the engine that runs it agree on. Free of binaryen, so the
// engine can import it.

/** The import an instrumented loop calls at a safe point; it returns the next budget. */
export const POLL_IMPORT = { module: 'stasis', name: 'poll' } as const;

/**
 * Loop back-edges and recursive calls between two polls: at the instrumenter's measured rates
 * this keeps a poll within a few ms in the hottest loops (well inside the 50 ms latency bound)
 * while the poll's own cost stays negligible.
 */
export const POLL_BUDGET = 10_000;

// A progress line for slow steps: shown only on a terminal, and only once a step has taken
// longer than a second, so scripts and fast runs see nothing. STASIS_PROGRESS_AFTER_MS changes
// that delay (0: from the start; the tests use it).
const DELAY_MS = ((): number => {
  const v = Number(process.env.STASIS_PROGRESS_AFTER_MS);
  return process.env.STASIS_PROGRESS_AFTER_MS !== undefined && Number.isFinite(v) && v >= 0 ? v : 1000;
})();
/** How often a shown line is updated. */
const UPDATE_MS = 1000;

export async function progress<T>(what: string, step: () => Promise<T>): Promise<T> {
  if (!process.stderr.isTTY) return step();
  const t0 = performance.now();
  let shown = false;
  let timer: NodeJS.Timeout | null = null;
  const tick = (): void => {
    shown = true;
    process.stderr.write(`\rstasis: ${what}... ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    timer = setTimeout(tick, UPDATE_MS);
  };
  if (DELAY_MS === 0) tick();
  else timer = setTimeout(tick, DELAY_MS);
  let ok = false;
  try {
    const r = await step();
    ok = true;
    return r;
  } finally {
    if (timer !== null) clearTimeout(timer);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    if (shown) process.stderr.write(`\rstasis: ${what}... ${ok ? `done in ${secs} s` : `stopped after ${secs} s`}\n`);
  }
}

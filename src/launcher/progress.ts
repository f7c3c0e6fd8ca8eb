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

/** Rough share of each instrumentation phase in the whole (measured on big modules). */
const PHASE_WEIGHT: Record<string, number> = { start: 3, parse: 15, analyse: 10, polls: 10, asyncify: 55, optimize: 0, emit: 10 };
const BAR_WIDTH = 20;

/**
 * Shows the phases of a step as they come: on a terminal, one line redrawn with a bar and the
 * current phase; otherwise, with 'lines', a line per phase done with its time (nothing with
 * 'bar', whose caller has said in one line what it is doing).
 */
export function phaseProgress(what: string, style: 'bar' | 'lines'): { phase: (name: string) => void; done: (ok: boolean) => void } {
  const t0 = performance.now();
  let current = 'start'; // the worker starting and loading binaryen
  let since = t0;
  let before = 0; // weight of the phases done
  const tty = process.stderr.isTTY === true;
  let timer: NodeJS.Timeout | null = null;
  const draw = (): void => {
    const w = Object.values(PHASE_WEIGHT).reduce((x, y) => x + y, 0);
    const filled = Math.min(BAR_WIDTH, Math.round((before / w) * BAR_WIDTH));
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    process.stderr.write(`\r\x1b[Kstasis: ${what} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${current} ${secs} s`);
  };
  const end = (): void => {
    const now = performance.now();
    if (!tty && style === 'lines') process.stderr.write(`stasis: ${what}: ${current} ${((now - since) / 1000).toFixed(1)} s\n`);
    before += PHASE_WEIGHT[current] ?? 0;
    since = now;
  };
  if (tty) timer = setInterval(draw, UPDATE_MS);
  return {
    phase: (name) => {
      end();
      current = name;
      if (tty) draw();
    },
    done: (ok) => {
      end();
      if (timer !== null) clearInterval(timer);
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      if (tty) process.stderr.write(`\r\x1b[Kstasis: ${what}: ${ok ? 'done' : 'stopped'} in ${secs} s\n`);
      else if (style === 'lines' && ok) process.stderr.write(`stasis: ${what}: done in ${secs} s\n`);
    },
  };
}

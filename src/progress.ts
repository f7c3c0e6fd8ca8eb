// A progress line for slow steps: shown only on a terminal, and only once a step has taken
// longer than a second, so scripts and fast runs see nothing.
const DELAY_MS = 1000;

export async function progress<T>(what: string, step: () => Promise<T>): Promise<T> {
  if (!process.stderr.isTTY) return step();
  const t0 = performance.now();
  let shown = false;
  const timer = setInterval(() => {
    shown = true;
    process.stderr.write(`\rstasis: ${what}... ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }, DELAY_MS);
  try {
    return await step();
  } finally {
    clearInterval(timer);
    if (shown) process.stderr.write(`\rstasis: ${what}... done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }
}

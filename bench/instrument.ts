// The `inst-*` rows: first-launch instrumentation with a cold cache. Each run is a fresh
// `node bin/stasis.js instrument PROG -o OUT` child with an empty STASIS_CACHE_DIR; its wall
// time and the peak resident memory of its whole process tree (the worker and any native
// wasm-opt it runs, summed, sampled from /proc every 50 ms) are reported, beside a baseline in
// the same run: Binaryen's own `wasm-opt --asyncify -O1` on the same module (what a user would
// do by hand, without polls or lists), when a native wasm-opt is on PATH. Linux only (/proc).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BenchFailure, fmtBytes, median } from './ckpt.js';
import { nativeWasmOpt } from '../src/instrument/native.js';

export interface InstRow { name: string; title: string; module: () => string | null; missing?: string }

export interface InstSample { wallMs: number; peakRssBytes: number }
export interface InstResult {
  name: string; title: string; moduleBytes: number;
  stasis: InstSample; stasisNpm: InstSample | null; baseline: InstSample | null;
}

/** Peak summed RSS of a process and its descendants, sampled. */
function treeRss(pid: number): number {
  let sum = 0;
  const seen = new Set<number>();
  const visit = (p: number): void => {
    if (seen.has(p)) return;
    seen.add(p);
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) sum += Number(m[1]) * 1024;
      for (const t of readdirSync(`/proc/${p}/task`)) {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c) visit(Number(c));
      }
    } catch {
      // gone meanwhile
    }
  };
  visit(pid);
  return sum;
}

function measured(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string): Promise<InstSample> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let peak = 0;
    const timer = setInterval(() => { peak = Math.max(peak, treeRss(child.pid!)); }, 50);
    child.on('close', (code) => {
      clearInterval(timer);
      const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new BenchFailure(`${what}: exit ${code}\n${stderr.slice(-2000)}`));
      else resolve({ wallMs, peakRssBytes: peak });
    });
  });
}

const medianSample = (xs: InstSample[]): InstSample => ({ wallMs: median(xs.map((x) => x.wallMs)), peakRssBytes: Math.max(...xs.map((x) => x.peakRssBytes)) });

export async function instrumentRows(rows: InstRow[], stasisBin: string, tmp: string, runs: number, withNpm: boolean): Promise<{ results: InstResult[]; skipped: { name: string; why: string }[] }> {
  const native = nativeWasmOpt(); // not node_modules/.bin's (the npm build)
  const results: InstResult[] = [];
  const skipped: { name: string; why: string }[] = [];
  for (const row of rows) {
    const module = row.module();
    if (module === null) { skipped.push({ name: row.name, why: row.missing ?? 'module not available' }); continue; }
    process.stderr.write(`  ${row.name}\n`);
    const dir = join(tmp, row.name);
    const stasisRun = async (extra: Record<string, string>): Promise<InstSample> => {
      const cache = join(dir, 'cache');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const out = join(dir, 'out.wasm');
      const s = await measured(process.execPath, [stasisBin, 'instrument', module, '-o', out], { ...process.env, STASIS_CACHE_DIR: cache, ...extra }, `${row.name}: stasis instrument`);
      if (!existsSync(out)) throw new BenchFailure(`${row.name}: stasis instrument wrote no ${out}`);
      return s;
    };
    const st: InstSample[] = [], npm: InstSample[] = [], base: InstSample[] = [];
    for (let i = 0; i < runs; i++) {
      st.push(await stasisRun({}));
      if (withNpm && native !== null) npm.push(await stasisRun({ STASIS_WASM_OPT: 'npm' }));
      if (native !== null) {
        const out = join(dir, 'baseline.wasm');
        base.push(await measured(native.path, [module, '--enable-bulk-memory', '--enable-sign-ext', '--enable-mutable-globals', '--enable-nontrapping-float-to-int', '--enable-simd', '--asyncify', '-O1', '-o', out], process.env, `${row.name}: wasm-opt --asyncify -O1`));
      }
    }
    rmSync(dir, { recursive: true, force: true });
    results.push({
      name: row.name, title: row.title, moduleBytes: statSync(module).size,
      stasis: medianSample(st), stasisNpm: npm.length > 0 ? medianSample(npm) : null, baseline: base.length > 0 ? medianSample(base) : null,
    });
  }
  return { results, skipped };
}

export function instrumentTable(r: { results: InstResult[]; skipped: { name: string; why: string }[] }, grid: (head: string[], rows: string[][]) => string[]): string {
  const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
  const out = ['', 'First-launch instrumentation, cold cache: `stasis instrument PROG -o OUT` (a native wasm-opt if on PATH) vs Binaryen\'s `wasm-opt --asyncify -O1`', ''];
  out.push(...grid(['row', 'module', 'size', 'stasis', 'peak RSS', 'stasis (npm binaryen)', 'peak RSS', 'wasm-opt --asyncify -O1', 'peak RSS', 'stasis/wasm-opt'], r.results.map((x) => [
    x.name, x.title, fmtBytes(x.moduleBytes), s(x.stasis.wallMs), fmtBytes(x.stasis.peakRssBytes),
    x.stasisNpm ? s(x.stasisNpm.wallMs) : 'n/a', x.stasisNpm ? fmtBytes(x.stasisNpm.peakRssBytes) : 'n/a',
    x.baseline ? s(x.baseline.wallMs) : 'n/a', x.baseline ? fmtBytes(x.baseline.peakRssBytes) : 'n/a',
    x.baseline ? `${(x.stasis.wallMs / x.baseline.wallMs).toFixed(2)}x` : 'n/a',
  ])));
  for (const sk of r.skipped) out.push(`${sk.name}: SKIPPED: ${sk.why}`);
  out.push('', 'Wall time: median over runs; peak RSS: the highest of the process tree\'s summed resident memory, sampled',
    'every 50 ms (stasis: the CLI, its worker and wasm-opt). Targets: a 30 MB module <= 60 s and <= 1.5 GiB; 1-2 MB <= 5 s.',
    'The baseline instruments every function for plain Asyncify (no polls, no lists) and is what a user would run by hand.');
  return out.join('\n') + '\n';
}

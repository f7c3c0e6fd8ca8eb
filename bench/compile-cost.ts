// What V8's optimizing compiler (TurboFan) spends on a module and on its instrumented form,
// function by function. A developer tool (kept out of the package):
//   npx tsc -p . && node dist/bench/compile-cost.js PROG.wasm [INSTRUMENTED.wasm] [--top N] [--runs N]
// INSTRUMENTED.wasm defaults to what `stasis instrument` makes of PROG.wasm (built here, in memory).
// Each run is a fresh `node --no-liftoff --no-wasm-lazy-compilation` child that compiles the
// whole module eagerly (every function, on all cores) and reports the process's CPU time for it;
// a second child per module prints V8's time per function (--trace-wasm-compilation-times).
// Under tiering (launch's default) only the functions that get hot are optimized, in background
// threads, but their cost is this one: on a 2-core machine it competes with the program itself.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import binaryen from 'binaryen';
import { bodySizes } from '../src/instrument/chunks.js';
import { instrument } from '../src/instrument/index.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number): number => {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(argv.splice(i, 2)[1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} wants a positive integer`);
  return v;
};
const top = flag('--top', 12);
const runs = flag('--runs', 3);
if (argv.length < 1 || argv.length > 2) {
  process.stderr.write('usage: node dist/bench/compile-cost.js PROG.wasm [INSTRUMENTED.wasm] [--top N] [--runs N]\n');
  process.exit(64);
}
const original = readFileSync(argv[0]!);
const instrumented = argv[1] !== undefined ? readFileSync(argv[1]) : instrument(original, { polls: true }).bytes;

const dir = mkdtempSync(join(tmpdir(), 'stasis-compile-cost-'));
const COMPILE = `
const { readFileSync } = require('node:fs');
const bytes = readFileSync(process.argv[1]);
const c0 = process.cpuUsage();
new WebAssembly.Module(bytes);
const c = process.cpuUsage(c0);
process.stdout.write(String((c.user + c.system) / 1000));
`;
const EAGER = ['--no-liftoff', '--no-wasm-lazy-compilation'];

interface Cost { cpuMs: number[]; perFunction: Map<number, number> }

function measure(path: string): Cost {
  const cpuMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(process.execPath, [...EAGER, '-e', COMPILE, path], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`compiling ${path} failed: ${r.stderr}`);
    cpuMs.push(Number(r.stdout));
  }
  // "Compiled function 0x...#INDEX using TurboFan, took N ms ..." (INDEX counts imports too).
  const r = spawnSync(process.execPath, [...EAGER, '--trace-wasm-compilation-times', '-e', COMPILE, path], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const perFunction = new Map<number, number>();
  for (const m of r.stdout.matchAll(/#(\d+) using TurboFan, took (\d+) ms/g)) perFunction.set(Number(m[1]), Number(m[2]));
  return { cpuMs, perFunction };
}

/** Defined functions' names in order, and how many functions are imported. */
function names(bytes: Uint8Array): { imported: number; defined: string[] } {
  const m = binaryen.readBinary(bytes);
  try {
    let imported = 0;
    const defined: string[] = [];
    for (let i = 0; i < m.getNumFunctions(); i++) {
      const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
      if (f.module) imported++;
      else defined.push(f.name);
    }
    return { imported, defined };
  } finally {
    m.dispose();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

try {
  const paths = { original: join(dir, 'original.wasm'), instrumented: join(dir, 'instrumented.wasm') };
  writeFileSync(paths.original, original);
  writeFileSync(paths.instrumented, instrumented);
  const costs = { original: measure(paths.original), instrumented: measure(paths.instrumented) };
  const info = { original: names(original), instrumented: names(instrumented) };
  const sizes = { original: bodySizes(original), instrumented: bodySizes(instrumented) };
  const byName = (k: 'original' | 'instrumented'): Map<string, { bytes: number; ms: number }> => {
    const out = new Map<string, { bytes: number; ms: number }>();
    info[k].defined.forEach((name, d) => out.set(name, { bytes: sizes[k][d]!, ms: costs[k].perFunction.get(info[k].imported + d) ?? 0 }));
    return out;
  };
  const o = byName('original'), n = byName('instrumented');
  const sum = (m: Map<string, { bytes: number; ms: number }>, f: 'bytes' | 'ms'): number => [...m.values()].reduce((s, v) => s + v[f], 0);
  const cpuO = median(costs.original.cpuMs), cpuN = median(costs.instrumented.cpuMs);
  console.log(`eager optimizing compile, process CPU (median of ${runs}): original ${cpuO.toFixed(0)} ms, instrumented ${cpuN.toFixed(0)} ms (${(cpuN / cpuO).toFixed(2)}x)`);
  console.log(`code: original ${sum(o, 'bytes')} bytes, instrumented ${sum(n, 'bytes')} bytes; ` +
    `sum of per-function compile times: ${sum(o, 'ms')} ms -> ${sum(n, 'ms')} ms`);
  console.log(`\nfunctions by instrumented compile time (ms, wall of one thread; body bytes):`);
  const rows = [...n].sort((a, b) => b[1].ms - a[1].ms).slice(0, top);
  for (const [name, v] of rows) {
    const was = o.get(name);
    console.log(`  ${name.padEnd(36)} ${String(was?.ms ?? '-').padStart(6)} -> ${String(v.ms).padStart(6)} ms   ${String(was?.bytes ?? '-').padStart(7)} -> ${String(v.bytes).padStart(7)} bytes`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

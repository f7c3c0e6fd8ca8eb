// Measures the run-time cost of instrumentation variants against the original module under
// node:wasi, and the time between polls. A developer tool (kept out of the package):
//   npx tsc -p . && node dist/bench/polls.js [--runs N] [--budget B] [--only NAME] [--variants a,b]
// Each run is a fresh `node` child that times WebAssembly.compile + wasi.start (so start-up of
// node itself is not counted, compiling the bigger module is). Runs alternate original/variant;
// the table shows median(variant) / median(original). A second pass per variant records every
// interval between two polls (hrtime) and reports the max and p99.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { POLL_BUDGET } from '../src/instrument/abi.js';
import { instrumentVariant, versionString } from '../src/instrument/index.js';
import { DEFAULT_VARIANT, type PollVariant } from '../src/instrument/types.js';

// This file runs as dist/bench/polls.js.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Program { name: string; wasm: string; args: string[] }
const PROGRAMS: Program[] = [
  { name: 'compute', wasm: join(root, 'bench/wasm/compute.wasm'), args: ['1'] },
  { name: 'calls', wasm: join(root, 'test/fixtures/wasm/inst_calls.wasm'), args: ['1'] },
  { name: 'loops', wasm: join(root, 'test/fixtures/wasm/inst_loops.wasm'), args: ['4'] },
  { name: 'sort', wasm: join(root, 'test/fixtures/wasm/inst_sort.wasm'), args: ['2'] },
  { name: 'spin', wasm: join(root, 'test/fixtures/wasm/inst_spin.wasm'), args: ['200000000'] },
];

const VARIANTS: Record<string, PollVariant | null> = {
  nopolls: null,
  naive: { loops: 'naive', counter: 'global', cycles: 'all', skipBounded: false },
  'naive-brk': { loops: 'naive', counter: 'global', cycles: 'breakers', skipBounded: false },
  outline: { loops: 'outline', counter: 'global', cycles: 'all', skipBounded: false },
  'outline-brk': { loops: 'outline', counter: 'global', cycles: 'breakers', skipBounded: false },
  'outline-local': { loops: 'outline', counter: 'local', cycles: 'breakers', skipBounded: false },
  'x-noleaf': { loops: 'outline', counter: 'global', cycles: 'breakers', skipBounded: false, skipLeafLoops: true },
  'x-nocycles': { loops: 'outline', counter: 'global', cycles: 'none', skipBounded: false },
  'x-noleaf-nocycles': { loops: 'outline', counter: 'global', cycles: 'none', skipBounded: false, skipLeafLoops: true },
  'local-none': { loops: 'outline', counter: 'local', cycles: 'breakers', skipBounded: false, post: 'none' },
  'local-noinline': { loops: 'outline', counter: 'local', cycles: 'breakers', skipBounded: false, post: 'noinline' },
  'nopolls-noinline': { loops: 'outline', counter: 'local', cycles: 'breakers', skipBounded: false, post: 'noinline' },
  'g-mw': { loops: 'outline', counter: 'global', cycles: 'breakers', skipBounded: true },
  'l-mw': { loops: 'outline', counter: 'local', cycles: 'breakers', skipBounded: true },
  'l-mw-none': { loops: 'outline', counter: 'local', cycles: 'breakers', skipBounded: true, post: 'none' },
  'a-mw': { loops: 'outline', counter: 'auto', cycles: 'breakers', skipBounded: true },
  'a-mw-noinline': { loops: 'outline', counter: 'auto', cycles: 'breakers', skipBounded: true, post: 'noinline' },
  'a-mw-nocyc': { loops: 'outline', counter: 'auto', cycles: 'none', skipBounded: true },
  'a-mw-all': { loops: 'outline', counter: 'auto', cycles: 'all', skipBounded: true },
  'aa-mw': { loops: 'auto', counter: 'auto', cycles: 'breakers', skipBounded: true },
  'a-mw-nopc': { loops: 'outline', counter: 'auto', cycles: 'breakers', skipBounded: true },
  'a-mw-pc': { loops: 'outline', counter: 'auto', cycles: 'breakers', skipBounded: true, skipPolledCalls: true },
  default: DEFAULT_VARIANT,
};

// ---- child mode: run one module, print JSON timing ----
async function child(wasmPath: string, args: string[], budget: number, record: boolean, outPath: string): Promise<void> {
  const { WASI } = await import('node:wasi');
  const { openSync, closeSync } = await import('node:fs');
  const fd = openSync(outPath, 'w');
  const wasi = new WASI({ version: 'preview1', args: ['prog', ...args], env: {}, returnOnExit: true, stdout: fd });
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const module = await WebAssembly.compile(readFileSync(wasmPath));
  let last = 0n;
  let polls = 0;
  const intervals: number[] = [];
  const poll = record
    ? () => { const now = process.hrtime.bigint(); if (last !== 0n) intervals.push(Number(now - last) / 1e6); last = now; polls++; return budget; }
    : () => { polls++; return budget; };
  const imports = { ...(wasi.getImportObject() as WebAssembly.Imports), stasis: { poll } };
  const instance = await WebAssembly.instantiate(module, imports);
  const code = wasi.start(instance);
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  // CPU time of this process (user + system): less disturbed by other load on the machine than
  // wall time. V8's background compile threads count too, which is fair (they are work).
  const ms = process.env.BENCH_WALL ? wall : (cpu.user + cpu.system) / 1000;
  closeSync(fd);
  intervals.sort((x, y) => x - y);
  const p99 = intervals.length ? intervals[Math.floor(intervals.length * 0.99)]! : 0;
  const max = intervals.length ? intervals[intervals.length - 1]! : 0;
  process.stdout.write(JSON.stringify({ code, ms, polls, p99, max }) + '\n');
}

interface ChildResult { code: number; ms: number; polls: number; p99: number; max: number }
function runChild(wasm: string, args: string[], budget: number, record: boolean, out: string): ChildResult {
  const r = spawnSync(process.execPath, ['--no-warnings', fileURLToPath(import.meta.url), '--child', wasm, String(budget), record ? '1' : '0', out, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ChildResult;
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
const best = (xs: number[]): number => Math.min(...xs);

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    const [, wasm, budget, record, out, ...args] = argv;
    await child(wasm!, args, Number(budget), record === '1', out!);
    return;
  }
  let runs = 5, budget = POLL_BUDGET;
  let only: string | null = null;
  let custom = false;
  let useMin = true;
  let variants = Object.keys(VARIANTS);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--runs') runs = Number(argv[++i]);
    else if (argv[i] === '--budget') budget = Number(argv[++i]);
    else if (argv[i] === '--only') only = argv[++i]!;
    else if (argv[i] === '--variants') variants = argv[++i]!.split(',');
    else if (argv[i] === '--prog') {
      // --prog NAME=WASM[:ARG,ARG...] replaces the built-in program list (repeatable)
      const [name, rest] = argv[++i]!.split('=') as [string, string];
      const [wasm, args] = rest.split(':') as [string, string | undefined];
      if (!custom) { PROGRAMS.length = 0; custom = true; }
      PROGRAMS.push({ name, wasm: resolve(wasm), args: args ? args.split(',') : [] });
    } else if (argv[i] === '--median') useMin = false;
  }
  // Built variants are cached per content of the instrumenter's own code (so edits rebuild).
  const here = join(root, 'dist', 'src', 'instrument');
  const codeHash = createHash('sha256');
  for (const f of ['index.js', 'polls.js', 'analyse.js', 'walk.js', 'abi.js', 'types.js']) if (existsSync(join(here, f))) codeHash.update(readFileSync(join(here, f)));
  const cache = join(tmpdir(), 'stasis-bench-polls', codeHash.digest('hex').slice(0, 12));
  mkdirSync(cache, { recursive: true });
  const rows: string[] = [];
  const ratios = new Map<string, number[]>();
  for (const p of PROGRAMS) {
    if (only && p.name !== only) continue;
    const src = readFileSync(p.wasm);
    const built = new Map<string, string>();
    for (const v of variants) {
      const variant = VARIANTS[v];
      if (variant === undefined) throw new Error(`unknown variant ${v}`);
      const opts = { polls: variant !== null && !v.startsWith('nopolls') };
      const file = join(cache, `${p.name}.${v}.${createHash('sha256').update(versionString(opts, variant ?? DEFAULT_VARIANT)).digest('hex').slice(0, 12)}.wasm`);
      if (!existsSync(file)) {
        const t = Date.now();
        const r = instrumentVariant(src, opts, variant ?? DEFAULT_VARIANT);
        writeFileSync(file, r.bytes);
        process.stderr.write(`${p.name} ${v}: instrumented in ${Date.now() - t} ms, ${src.length} -> ${r.bytes.length} bytes\n`);
      }
      built.set(v, file);
    }
    const base: number[] = [];
    const times = new Map<string, number[]>(variants.map((v) => [v, []]));
    const outBase = join(cache, `${p.name}.out.orig`);
    runChild(p.wasm, p.args, budget, false, outBase); // warm-up (disk cache)
    for (let r = 0; r < runs; r++) {
      base.push(runChild(p.wasm, p.args, budget, false, outBase).ms);
      for (const v of variants) {
        const out = join(cache, `${p.name}.out.${v}`);
        times.get(v)!.push(runChild(built.get(v)!, p.args, budget, false, out).ms);
        if (readFileSync(out, 'utf8') !== readFileSync(outBase, 'utf8')) throw new Error(`${p.name} ${v}: output differs`);
      }
    }
    const pick = useMin ? best : median;
    const b = pick(base);
    let line = `| ${p.name} | ${b.toFixed(0)} ms |`;
    for (const v of variants) {
      const ratio = pick(times.get(v)!) / b;
      if (!ratios.has(v)) ratios.set(v, []);
      ratios.get(v)!.push(ratio);
      let extra = '';
      if (VARIANTS[v]) {
        const rec = runChild(built.get(v)!, p.args, budget, true, join(cache, `${p.name}.out.rec`));
        extra = ` (${rec.polls} polls, p99 ${rec.p99.toFixed(2)} / max ${rec.max.toFixed(1)} ms)`;
      }
      line += ` ${ratio.toFixed(2)}×${extra} |`;
    }
    rows.push(line);
    process.stderr.write(line + '\n');
  }
  let geo = '| geomean | |';
  for (const v of variants) {
    const rs = ratios.get(v) ?? [];
    geo += ` ${Math.exp(rs.reduce((s, x) => s + Math.log(x), 0) / Math.max(1, rs.length)).toFixed(2)}× |`;
  }
  console.log(`budget ${budget}, ${runs} runs, ${useMin ? 'best' : 'median'} time instrumented / original (compile + run)`);
  console.log(`| program | original | ${variants.join(' | ')} |`);
  console.log(`| --- | --- |${variants.map(() => ' --- |').join('')}`);
  for (const r of rows) console.log(r);
  console.log(geo);
}

await main();

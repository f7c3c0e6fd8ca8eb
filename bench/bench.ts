// `npm run bench`: Stasis against Node's own node:wasi (the baseline), side by side.
//
//   node dist/bench/bench.js [--runs N] [--warmup N] [--only NAME]... [--json] [--baseline-as-stasis]
//
// Every run of every row is a fresh `node` child process (bin/stasis.js run ... for Stasis,
// dist/bench/node-wasi-runner.js for node:wasi, with the same command line). The two runtimes
// alternate run by run, and each row reports the median over --runs runs (after --warmup discarded
// runs per runtime). A row's time is the program's own: the median wall time of its children minus
// the median wall time of an empty .wasm under the same runtime, measured in the same bench run.
// Every run's stdout, exit code and output files must be identical across runtimes (and, where the
// bench can compute it, equal to the expected value); any difference fails the bench loudly.
// Nothing here asserts on timings.
//
// Rows are plain data (ROWS below): add one by giving a name, a bench/wasm program, its guest
// arguments, and optionally setup / beforeEach / output files / Stasis-only flags.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const wasmDir = join(repoRoot, 'bench', 'wasm');
const nodeWasiRunner = join(repoRoot, 'dist', 'bench', 'node-wasi-runner.js');
const stasisBin = join(repoRoot, 'bin', 'stasis.js');
const stasisMain = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

/** Where a row's files live: HOST dir on this machine, preopened as GUEST in the program. */
export interface RowContext {
  host: string;
  guest: string;
}

export interface RowDef {
  /** Short id, used by --only and in --json. */
  name: string;
  /** What the row does, for the table. */
  title: string;
  /** Program: bench/wasm/NAME.wasm */
  wasm: string;
  /** Guest command-line arguments (after the program name). */
  args?: (ctx: RowContext) => string[];
  /** Number of operations the row performs (for µs/op in --json), if meaningful. */
  ops?: number;
  /** Once per bench run, before the row's first child. */
  setup?: (ctx: RowContext) => void;
  /** Before every child of either runtime (e.g. delete the previous run's output). */
  beforeEach?: (ctx: RowContext) => void;
  /** Files (relative to ctx.host) whose bytes must be identical after every run of both runtimes. */
  outputFiles?: string[];
  /** If given, every run's stdout must equal this exactly (computed after setup). */
  expectStdout?: (ctx: RowContext) => string;
  /** If given, the sha256 (hex) each output file must have (computed after setup). */
  expectFiles?: (ctx: RowContext) => Record<string, string>;
  /** Extra flags for `stasis run` only, before --dir (e.g. checkpointing rows). */
  stasisFlags?: string[];
}

// ---- workloads ----------------------------------------------------------------------------------

const WRITES = 1_000_000;
const WRITE_SIZE = 16; // fixed by bench/src/writes.c
const OPENS = 100_000;
const OPEN_FILES = 16;
const READ_SIZE = 100 * 1024 * 1024;
const READ_CHUNK = 64 * 1024;
const READ_PASSES = 20;

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The bytes bench/src/writes.c writes: record i = 15 hex digits of i*0x9E3779B1 mod 2^60, '\n'. */
function expectedWrites(count: number): Buffer {
  const out = Buffer.alloc(count * WRITE_SIZE);
  for (let i = 0; i < count; i++) {
    const v = BigInt(i) * 0x9E3779B1n & 0x0FFFFFFFFFFFFFFFn;
    out.write(v.toString(16).padStart(15, '0') + '\n', i * WRITE_SIZE, 'latin1');
  }
  return out;
}

let readSum = '';
/** Writes READ_SIZE deterministic pseudo-random bytes and records readfile.c's checksum of them. */
function makeReadFile(path: string): void {
  const chunk = new Uint32Array(1 << 18); // 1 MiB
  let x = 0x12345678, a = 0, b = 0;
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < READ_SIZE; done += chunk.byteLength) {
      for (let i = 0; i < chunk.length; i++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5; // xorshift32
        const w = x >>> 0;
        chunk[i] = w;
        a = (a + w) >>> 0;
        b = (b + a) >>> 0;
      }
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error('bench assumes a little-endian host');
  readSum = b.toString(16).padStart(8, '0') + a.toString(16).padStart(8, '0');
}

export const ROWS: RowDef[] = [
  {
    name: 'compute',
    title: 'compute: int hashing + 160x160 f64 matmul + fib(33)',
    wasm: 'compute',
    args: () => ['1'],
  },
  {
    name: 'writes',
    title: `${WRITES.toLocaleString('en-US')} x ${WRITE_SIZE}-byte fd_write to a file`,
    wasm: 'writes',
    ops: WRITES,
    args: (c) => [`${c.guest}/out.bin`, String(WRITES)],
    beforeEach: (c) => rmSync(join(c.host, 'out.bin'), { force: true }),
    outputFiles: ['out.bin'],
    expectStdout: () => `writes count=${WRITES} bytes=${WRITES * WRITE_SIZE}\n`,
    expectFiles: () => ({ 'out.bin': sha256(expectedWrites(WRITES)) }),
  },
  {
    name: 'opens',
    title: `${OPENS.toLocaleString('en-US')} x path_open + fd_close`,
    wasm: 'opens',
    ops: OPENS,
    args: (c) => [c.guest, String(OPENS), String(OPEN_FILES)],
    setup: (c) => {
      for (let i = 0; i < OPEN_FILES; i++) writeFileSync(join(c.host, `f${String(i).padStart(2, '0')}`), `file ${i}\n`);
    },
    expectStdout: () => `opens count=${OPENS} files=${OPEN_FILES}\n`,
  },
  {
    name: 'read',
    title: `read ${READ_SIZE >> 20} MiB file in ${READ_CHUNK >> 10} KiB fd_reads, x${READ_PASSES} passes`,
    wasm: 'readfile',
    ops: READ_PASSES * (READ_SIZE / READ_CHUNK + 1),
    args: (c) => [`${c.guest}/big.bin`, String(READ_CHUNK), String(READ_PASSES)],
    setup: (c) => makeReadFile(join(c.host, 'big.bin')),
    expectStdout: () =>
      `readfile bytes=${READ_SIZE} passes=${READ_PASSES} reads=${READ_PASSES * (Math.ceil(READ_SIZE / READ_CHUNK) + 1)} sum=${readSum}\n`,
  },
];

/** Start-up baseline, run before every run of a row and subtracted from it. Same preopen as the row. */
const EMPTY: RowDef = { name: 'empty', title: 'empty program (start-up)', wasm: 'empty', expectStdout: () => '' };

// ---- runtimes -----------------------------------------------------------------------------------

type RuntimeId = 'node:wasi' | 'stasis';
const RUNTIMES: RuntimeId[] = ['node:wasi', 'stasis'];

interface Options {
  runs: number;
  warmup: number;
  only: string[];
  json: boolean;
  baselineAsStasis: boolean;
}

function commandFor(rt: RuntimeId, row: RowDef, ctx: RowContext, opts: Options): string[] {
  const common = ['--dir', `${ctx.host}::${ctx.guest}`, join(wasmDir, `${row.wasm}.wasm`), ...(row.args?.(ctx) ?? [])];
  if (rt === 'node:wasi' || opts.baselineAsStasis) return [nodeWasiRunner, ...common];
  return [stasisBin, 'run', ...(row.stasisFlags ?? []), ...common];
}

class BenchFailure extends Error {}

interface RunOutput {
  wallMs: number;
  stdout: string;
  files: Record<string, string>;
}

function runOnce(rt: RuntimeId, row: RowDef, ctx: RowContext, opts: Options): RunOutput {
  row.beforeEach?.(ctx);
  const argv = commandFor(rt, row, ctx, opts);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
    timeout: 600_000,
  });
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const what = `${row.name} under ${rt}: node ${argv.map((a) => a.replace(repoRoot + '/', '')).join(' ')}`;
  if (r.error) throw new BenchFailure(`${what}: ${r.error.message}`);
  const stderr = (r.stderr as Buffer).toString('utf8');
  if (r.status !== 0) {
    throw new BenchFailure(`${what}: exit ${r.status ?? 'signal ' + r.signal}\n--- stderr ---\n${stderr.slice(-4000)}`);
  }
  const files: Record<string, string> = {};
  for (const f of row.outputFiles ?? []) {
    const p = join(ctx.host, f);
    if (!existsSync(p)) throw new BenchFailure(`${what}: did not create ${f}`);
    files[f] = sha256(readFileSync(p));
  }
  return { wallMs, stdout: (r.stdout as Buffer).toString('utf8'), files };
}

interface Reference {
  source: string;
  stdout?: string;
  files: Record<string, string>;
}

/** Fails loudly unless `out` matches the reference outputs (expected values, or the first run). */
function check(rt: RuntimeId, row: RowDef, out: RunOutput, ref: Reference): void {
  if (ref.stdout === undefined) ref.stdout = out.stdout;
  else if (out.stdout !== ref.stdout) {
    throw new BenchFailure(`${row.name}: stdout under ${rt} differs from ${ref.source}\n` +
      `--- ${ref.source} ---\n${ref.stdout}--- ${rt} ---\n${out.stdout}`);
  }
  for (const [f, h] of Object.entries(out.files)) {
    const want = ref.files[f];
    if (want === undefined) ref.files[f] = h;
    else if (h !== want) throw new BenchFailure(`${row.name}: ${f} under ${rt} differs from ${ref.source} (sha256 ${h} vs ${want})`);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Samples { wallMs: number[]; medianWallMs: number }
interface Measured { row: Record<RuntimeId, Samples>; startup: Record<RuntimeId, Samples> }

const samples = (wallMs: number[]): Samples => ({ wallMs, medianWallMs: median(wallMs) });

/**
 * Runs one row warmup+runs times per runtime, alternating which runtime goes first. Each run of
 * the row is preceded by a run of the empty program under the same runtime (same preopen), so the
 * start-up time subtracted from the row is measured under the same machine conditions.
 */
function measure(row: RowDef, ctx: RowContext, opts: Options): Measured {
  mkdirSync(ctx.host, { recursive: true });
  row.setup?.(ctx);
  const ref: Reference = row.expectStdout || row.expectFiles
    ? { source: 'the expected output', stdout: row.expectStdout?.(ctx), files: row.expectFiles?.(ctx) ?? {} }
    : { source: 'node:wasi', files: {} };
  const emptyRef: Reference = { source: 'the expected output', stdout: '', files: {} };
  const walls: Record<RuntimeId, number[]> = { 'node:wasi': [], stasis: [] };
  const empties: Record<RuntimeId, number[]> = { 'node:wasi': [], stasis: [] };
  const total = opts.warmup + opts.runs;
  for (let i = 0; i < total; i++) {
    // node:wasi goes first in run 0, so a row without expected values is checked against it.
    const order: RuntimeId[] = i % 2 === 0 ? ['node:wasi', 'stasis'] : ['stasis', 'node:wasi'];
    for (const rt of order) {
      const e = runOnce(rt, EMPTY, ctx, opts);
      check(rt, EMPTY, e, emptyRef);
      const out = runOnce(rt, row, ctx, opts);
      check(rt, row, out, ref);
      if (i >= opts.warmup) { walls[rt].push(out.wallMs); empties[rt].push(e.wallMs); }
    }
    process.stderr.write(`\r  ${row.name}: ${i + 1}/${total}${i + 1 === total ? '\n' : ''}`);
  }
  return {
    row: { 'node:wasi': samples(walls['node:wasi']), stasis: samples(walls.stasis) },
    startup: { 'node:wasi': samples(empties['node:wasi']), stasis: samples(empties.stasis) },
  };
}

// ---- command line, report -----------------------------------------------------------------------

const USAGE = `usage: node dist/bench/bench.js [options]    (npm run bench -- [options])
  --runs N              measured runs per runtime and row (default 5); the median is reported
  --warmup N            discarded runs per runtime and row before those (default 1)
  --only NAME           run only this row (repeatable); rows: ${ROWS.map((r) => r.name).join(', ')}
  --json                print machine-readable results instead of the table
  --baseline-as-stasis  run the "stasis" column under node:wasi too (to test the bench itself;
                        also STASIS_BENCH_BASELINE_AS_STASIS=1)
`;

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    runs: 5, warmup: 1, only: [], json: false,
    baselineAsStasis: process.env['STASIS_BENCH_BASELINE_AS_STASIS'] === '1',
  };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min) throw new BenchFailure(`${flag} wants an integer >= ${min}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--runs': opts.runs = int('--runs', value(), 1); break;
      case '--warmup': opts.warmup = int('--warmup', value(), 0); break;
      case '--only': {
        const v = value();
        for (const name of (v ?? '').split(',')) {
          if (!ROWS.some((r) => r.name === name)) throw new BenchFailure(`--only: no row named '${name ?? ''}'\n${USAGE}`);
          opts.only.push(name);
        }
        break;
      }
      case '--json': opts.json = true; break;
      case '--baseline-as-stasis': opts.baselineAsStasis = true; break;
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0);
      default: throw new BenchFailure(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return opts;
}

const fmtMs = (ms: number): string => `${ms.toFixed(1)} ms`;

interface RowResult {
  name: string;
  title: string;
  ops: number | null;
  runtimes: Record<RuntimeId, Samples & { netMs: number; usPerOp: number | null; startup: Samples }>;
  /** throughput Stasis / node:wasi = net node:wasi time / net stasis time; null if not measurable. */
  ratio: number | null;
}

function table(results: RowResult[], opts: Options): string {
  const stasisHead = opts.baselineAsStasis ? 'stasis*' : 'stasis';
  const head = ['row', 'workload', 'node:wasi', stasisHead, 'Stasis/node:wasi'];
  const body = results.map((r) => [
    r.name, r.title, fmtMs(r.runtimes['node:wasi'].netMs), fmtMs(r.runtimes.stasis.netMs),
    r.ratio === null ? 'n/a' : r.ratio.toFixed(2),
  ]);
  const rows = [head, ...body];
  const width = head.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]): string =>
    row.map((cell, c) => (c < 2 ? cell.padEnd(width[c]!) : cell.padStart(width[c]!))).join('   ').trimEnd();
  const out = [line(head), width.map((w) => '-'.repeat(w)).join('   '), ...body.map(line)];
  out.push('',
    `Times: the program's own time = median wall time of ${opts.runs} fresh \`node\` child processes per runtime`,
    `(runtimes alternating, ${opts.warmup} warm-up run(s) each discarded) minus the median wall time of an empty`,
    '.wasm run under the same runtime just before each of those runs (start-up, median over all rows:',
    `node:wasi ${fmtMs(median(results.flatMap((r) => r.runtimes['node:wasi'].startup.wallMs)))}, ` +
      `${stasisHead} ${fmtMs(median(results.flatMap((r) => r.runtimes.stasis.startup.wallMs)))}).`,
    'Stasis/node:wasi = throughput ratio = t_node:wasi / t_stasis; >= 1.00 means Stasis is at least as fast.',
    'Every run\'s stdout, exit code and output files were checked identical across runtimes.',
    `node ${process.version}, ${process.platform}-${process.arch}, ${cpus()[0]?.model ?? 'unknown cpu'} x${cpus().length}.`);
  if (opts.baselineAsStasis) out.push('* --baseline-as-stasis: the "stasis" column ran node:wasi, not Stasis.');
  return out.join('\n') + '\n';
}

function main(): number {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    return 2;
  }
  if (!existsSync(nodeWasiRunner)) {
    process.stderr.write(`bench: ${nodeWasiRunner} missing; run through \`npm run bench\` (it builds first)\n`);
    return 2;
  }
  if (!opts.baselineAsStasis && !existsSync(stasisMain)) {
    process.stderr.write(`bench: the Stasis CLI is not built (${stasisMain} missing).\n` +
      '  Use --baseline-as-stasis to exercise the bench with node:wasi in both columns.\n');
    return 2;
  }
  const rows = opts.only.length ? ROWS.filter((r) => opts.only.includes(r.name)) : ROWS;
  for (const r of [EMPTY, ...rows]) {
    const p = join(wasmDir, `${r.wasm}.wasm`);
    if (!existsSync(p)) {
      process.stderr.write(`bench: ${p} missing; build it with: bash scripts/build-fixtures.sh ${r.wasm}\n`);
      return 2;
    }
  }

  const tmp = mkdtempSync(join(tmpdir(), 'stasis-bench-'));
  const cleanup = (): void => rmSync(tmp, { recursive: true, force: true });
  const onSignal = (sig: NodeJS.Signals): void => { cleanup(); process.kill(process.pid, sig); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const ctxFor = (row: RowDef): RowContext => ({ host: join(tmp, row.name), guest: '/bench' });
    process.stderr.write(`bench: ${opts.runs} run(s) + ${opts.warmup} warm-up per runtime and row, in ${tmp}\n`);
    const results: RowResult[] = [];
    for (const row of rows) {
      const m = measure(row, ctxFor(row), opts);
      const runtimes = {} as RowResult['runtimes'];
      for (const rt of RUNTIMES) {
        const netMs = m.row[rt].medianWallMs - m.startup[rt].medianWallMs;
        runtimes[rt] = { ...m.row[rt], netMs, usPerOp: row.ops ? (netMs * 1000) / row.ops : null, startup: m.startup[rt] };
      }
      const n = runtimes['node:wasi'].netMs, s = runtimes.stasis.netMs;
      results.push({ name: row.name, title: row.title, ops: row.ops ?? null, runtimes, ratio: n > 0 && s > 0 ? n / s : null });
      // Free the row's files (the 100 MiB read file) before the next row.
      rmSync(ctxFor(row).host, { recursive: true, force: true });
    }
    if (opts.json) {
      process.stdout.write(JSON.stringify({
        node: process.version, platform: `${process.platform}-${process.arch}`, cpu: cpus()[0]?.model ?? null, cpus: cpus().length,
        runs: opts.runs, warmup: opts.warmup,
        stasis: opts.baselineAsStasis ? 'node:wasi (--baseline-as-stasis)' : 'bin/stasis.js run',
        method: 'netMs = median wall ms of fresh child processes minus median wall ms of empty.wasm run just before each of them under the same runtime; ratio = netMs(node:wasi) / netMs(stasis)',
        rows: results,
      }, null, 2) + '\n');
    } else {
      process.stdout.write(table(results, opts));
    }
    return 0;
  } catch (e) {
    if (!(e instanceof BenchFailure)) throw e;
    process.stderr.write(`\nbench: FAILED: ${e.message}\n`);
    return 1;
  } finally {
    cleanup();
  }
}

process.exitCode = main();

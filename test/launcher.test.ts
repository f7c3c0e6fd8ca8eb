// Units of the launcher that run without the CLI or a guest thread: the checkpoint queue, the
// capture buffer, the checkpoint steps (against a stand-in guest and a real image store), the
// signal wiring and the two threads' protocol.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fixture, tempDir } from './helpers.js';
import { CONTROL_WORDS, Control, type CapturedState } from '../src/engine/protocol.js';
import type { FileGuard } from '../src/files/guard.js';
import { readImage } from '../src/image/index.js';
import { CaptureBuffer } from '../src/launcher/capture-buffer.js';
import { CheckpointQueue, Checkpoints, type CapturableGuest, type CheckpointSetting } from '../src/launcher/checkpoints.js';
import { onTerminatingSignals, SIGNAL_STATUS } from '../src/launcher/signals.js';
import { guestInWorker, type GuestSession } from '../src/launcher/session.js';
import { WASI_MODULE } from '../src/instrument/abi.js';
import { instrument, instrumentCached } from '../src/instrument/index.js';
import binaryen from 'binaryen';
import { maxFrameBytes } from '../src/engine/stack.js';

test('checkpoint queue: steps run one at a time in order; a failed step does not stop the next', async () => {
  const q = new CheckpointQueue();
  const log: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const first = q.run(async () => {
    log.push('first starts');
    await gate;
    log.push('first ends');
    return 1;
  });
  const second = q.run(async () => {
    log.push('second');
    throw new Error('boom');
  });
  const third = q.run(async () => {
    log.push('third');
    return 3;
  });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(log, ['first starts'], 'the second waits for the first');
  release();
  assert.equal(await first, 1);
  await assert.rejects(second, /boom/);
  assert.equal(await third, 3);
  assert.deepEqual(log, ['first starts', 'first ends', 'second', 'third']);
});

function fakeSink(bytes: number) {
  const given: Uint8Array[] = [];
  return { given, memoryBytes: () => bytes, giveBuffer: (m: Uint8Array) => { given.push(m); } };
}

test('capture buffer: small memories need none; a big one is prepared once, handed over once, then the capture\'s comes back', async () => {
  const small = new CaptureBuffer(fakeSink(1 << 20));
  try {
    assert.equal(small.ready(), true);
    assert.equal(await small.handOver(), false);
  } finally {
    small.dispose();
  }
  const size = 64 << 20;
  const sink = fakeSink(size);
  const buf = new CaptureBuffer(sink);
  try {
    assert.equal(buf.ready(), false, 'nothing prepared yet');
    await buf.prepare();
    assert.equal(buf.ready(), true);
    assert.equal(await buf.handOver(), true, 'a fresh buffer goes to the guest');
    assert.equal(sink.given.length, 1);
    assert.equal(sink.given[0]!.length, size);
    assert.equal(await buf.handOver(), false, 'the guest holds one of its size already');
    buf.giveBack(new Uint8Array(size), 1);
    assert.equal(sink.given.length, 2);
    assert.equal(buf.ready(), true);
  } finally {
    buf.dispose();
  }
});

/** A guest that captures a memory of `bytes` filled with `fill`, recording what it is told. */
function fakeGuest(bytes: number, fill: () => number) {
  const calls: string[] = [];
  let failNext: Error | null = null;
  const guest: CapturableGuest & { calls: string[]; failWith(e: Error): void } = {
    calls,
    failWith(e) { failNext = e; },
    async capture(stop) {
      calls.push(`capture${stop ? ' stop' : ''}`);
      if (failNext) {
        const e = failNext;
        failNext = null;
        throw e;
      }
      const state: CapturedState = {
        memory: new Uint8Array(bytes).fill(fill()), dirtyPages: null, copyId: 1, globals: [], asyncifyData: 0,
        wasi: { args: ['prog'], env: [], preopens: [], fds: [] }, monotonicNs: '1', stdinPending: new Uint8Array(0),
        stdinReceived: 0, fileHandles: [], written: [], pauseMs: 0,
      };
      return state;
    },
    release(guards: FileGuard[]) { calls.push(`release ${guards.length}`); },
    memoryBytes: () => bytes,
    giveBuffer(m: Uint8Array) { calls.push(`buffer ${m.length}`); },
  };
  return guest;
}

/** What the checkpoints of a stand-in program need: a module of 8 bytes, no files, no policy. */
function setting(ckptDir: string): CheckpointSetting {
  const moduleBytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
  return {
    name: 'unit', ckptDir, moduleBytes, moduleHash: 'a'.repeat(64), instrumentedHash: createHash('sha256').update(moduleBytes).digest('hex'),
    engine: { unwindImports: [], poll: false, stackPointer: null, maxFrameBytes: 16, endingGate: null },
    policy: { checkpointOpenFiles: false, allowFileOverwrite: false, rules: [], pathMap: [] },
    plugins: [], where: { saved: [], dirs: [], pathMap: [], allowOverwrite: false },
  };
}

test('checkpoint steps: capture, files, release, image written, buffer back; generations count on; a failed capture is reported and the next goes on', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckptDir = join(dir, 'ck');
    let n = 0;
    const guest = fakeGuest(3 << 16, () => ++n);
    const checkpoints = new Checkpoints(guest, setting(ckptDir), 4);
    try {
      const [a, b] = await Promise.all([checkpoints.take(), checkpoints.take()]);
      assert.equal(a.generation, 5, 'numbered after the images already there');
      assert.equal(b.generation, 6);
      assert.deepEqual(guest.calls, ['capture', 'release 0', 'buffer 196608', 'capture', 'release 0', 'buffer 196608']);
      const img = await readImage(ckptDir);
      assert.equal(img.ref.generation, 6);
      assert.ok(Buffer.from(img.snapshot.memory).equals(Buffer.alloc(3 << 16, 2)), 'the second capture\'s memory');
      guest.failWith(new Error('the program exited'));
      await assert.rejects(checkpoints.take(), /the program exited/);
      const c = await checkpoints.take(true);
      assert.equal(c.generation, 7);
      assert.equal(guest.calls.at(-3), 'capture stop');
    } finally {
      checkpoints.dispose();
    }
  } finally {
    cleanup();
  }
});

test('checkpoint steps: after a failed file capture, the next image is not built on the older one', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckptDir = join(dir, 'ck');
    const bytes = 3 << 16;
    // Each capture: its memory's fill byte, whether its file capture fails (a host fd that is
    // not open), and its changed pages relative to the capture before it (none for the third).
    const plan = [{ fill: 1, bad: false }, { fill: 2, bad: true }, { fill: 2, bad: false }];
    let n = 0;
    const guest: CapturableGuest = {
      async capture() {
        const p = plan[n++]!;
        return {
          memory: new Uint8Array(bytes).fill(p.fill), dirtyPages: n === 1 ? null : new Uint8Array(bytes >> 16), copyId: n,
          globals: [], asyncifyData: 0, monotonicNs: '1', stdinPending: new Uint8Array(0), stdinReceived: 0, pauseMs: 0,
          wasi: { args: ['prog'], env: [], preopens: [], fds: p.bad ? [{ kind: 'file', fd: 5, location: { preopen: '/', rel: 'x' }, access: 'r', offset: 0, filetype: 4, rightsBase: 0, rightsInheriting: 0, fdflags: 0 }] : [] },
          fileHandles: p.bad ? [[5, 1 << 20]] : [], written: [],
        };
      },
      release() {},
      memoryBytes: () => bytes,
      giveBuffer() {},
    };
    const checkpoints = new Checkpoints(guest, setting(ckptDir), 0);
    try {
      await checkpoints.take();
      await assert.rejects(checkpoints.take(), /EBADF/);
      const third = await checkpoints.take();
      const img = await readImage(ckptDir);
      assert.equal(img.ref.generation, third.generation);
      assert.ok(Buffer.from(img.snapshot.memory).equals(Buffer.alloc(bytes, 2)), 'the third capture\'s memory, not the first image\'s');
    } finally {
      checkpoints.dispose();
    }
  } finally {
    cleanup();
  }
});

test('signals: every terminating signal is handled while installed, and only then', () => {
  const before = SIGNAL_STATUS.map(([sig]) => process.listenerCount(sig));
  const ended: number[] = [];
  let termed = 0;
  const remove = onTerminatingSignals((s) => ended.push(s), { SIGTERM: () => termed++ });
  try {
    SIGNAL_STATUS.forEach(([sig], i) => assert.equal(process.listenerCount(sig), before[i]! + 1, sig));
    process.emit('SIGINT');
    process.emit('SIGHUP');
    process.emit('SIGTERM');
    assert.deepEqual(ended, [130, 129]);
    assert.equal(termed, 1);
  } finally {
    remove();
  }
  SIGNAL_STATUS.forEach(([sig], i) => assert.equal(process.listenerCount(sig), before[i], sig));
});

test('signals: exitProcess ends the process with the status, after its exit listeners and what it wrote', () => {
  const { dir, cleanup } = tempDir();
  try {
    const script = join(dir, 'exit.mjs');
    const signals = new URL('../src/launcher/signals.js', import.meta.url).href;
    writeFileSync(script, [
      `import { exitProcess } from ${JSON.stringify(signals)};`,
      `process.on('exit', (code) => process.stdout.write('exit listener saw ' + code + '\\n'));`,
      `process.stdout.write('before\\n');`,
      `exitProcess(75);`,
      `process.stdout.write('after\\n');`,
    ].join('\n'));
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    assert.equal(r.status, 75, r.stderr);
    assert.equal(r.stdout, 'before\nexit listener saw 75\n');
  } finally {
    cleanup();
  }
});

test('protocol: control words are distinct and fit the shared array', () => {
  const words = Object.values(Control);
  assert.equal(new Set(words).size, words.length);
  for (const w of words) assert.ok(Number.isInteger(w) && w >= 0 && w < CONTROL_WORDS);
});

/** A session under checkpoint control for an instrumented module. */
function sessionFor(inst: { bytes: Uint8Array; meta: { unwindImports: string[]; pollImport: unknown; stackPointer: string | null; endingGate?: string | null; globals: { name: string; type: 'i32' | 'i64' | 'f32' | 'f64' }[] } }, args: string[]): GuestSession {
  return guestInWorker({
    module: new WebAssembly.Module(inst.bytes as Uint8Array<ArrayBuffer>), modulePath: args[0]!, args, env: [], preopens: [],
    checkpoint: {
      unwindImports: inst.meta.unwindImports.map((i) => i.slice(WASI_MODULE.length + 1)),
      poll: inst.meta.pollImport !== null, stackPointer: inst.meta.stackPointer, endingGate: inst.meta.endingGate ?? null,
      maxFrameBytes: maxFrameBytes(inst.bytes), globals: inst.meta.globals,
    },
  });
}

test('a checkpoint asked before the guest thread has started is served, not lost', async () => {
  const inst = instrumentCached(readFileSync(fixture('ckpt_sleep')), { polls: true });
  const session = sessionFor(inst, ['ckpt_sleep.wasm', '1000', '1000']);
  // Asked in the same tick as the worker was created: it cannot have loaded yet.
  const captured = await session.capture(true);
  assert.ok(captured.memory.length > 0);
  assert.equal(captured.wasi.args[1], '1000');
  session.end(75);
  assert.equal((await session.result).exitCode, 75);
});

test('float globals JSON has no number for (NaN, infinities) are captured as strings', async () => {
  const m = binaryen.parseText(`(module
    (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
    (memory (export "memory") 1)
    (global $nan (mut f64) (f64.const nan))
    (global $inf (mut f32) (f32.const -inf))
    (global $one (mut f64) (f64.const 1.5))
    (func (export "_start")
      (loop $l
        (drop (call $yield))
        (global.set $nan (f64.add (global.get $nan) (global.get $one)))
        (global.set $inf (f32.sub (global.get $inf) (f32.const 1)))
        (global.set $one (f64.mul (global.get $one) (f64.const 1)))
        (br $l))))`);
  const bytes = m.emitBinary();
  m.dispose();
  const session = sessionFor(instrument(bytes, { polls: true }), ['floats.wasm']);
  const captured = await session.capture(true);
  session.end(75);
  await session.result;
  const values = captured.globals.filter((g) => g.type !== 'i32').map((g) => [g.type, g.value]);
  assert.deepEqual(values.sort(), [['f32', '-Infinity'], ['f64', 1.5], ['f64', 'NaN']]);
});

// The pages written since a capture, from the kernel (native/dirty.c) instead of a compare of
// the whole memory: the addon's functions, the capture that uses them (memory-copy.ts), and a
// Slurm job's warning checkpoint then SIGTERM through the CLI, restarted, as an uninterrupted run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { MemoryCopier } from '../src/engine/memory-copy.js';
import { WASM_PAGE } from '../src/engine/protocol.js';
import { nativeIovecIo, nativeWriteTracking } from '../src/wasi/native.js';
import { fixture, stasis, stasisBin, tempDir } from './helpers.js';

/** Why the kernel cannot track writes here (the tests of the tracking itself skip), or null. */
function trackingUnavailable(): string | null {
  if (nativeWriteTracking === null || nativeIovecIo === null) return 'the native addon is not built';
  const probe = new WebAssembly.Memory({ initial: 1 });
  const h = nativeWriteTracking.trackWrites(probe.buffer);
  if (h < 0) return `the kernel does not track writes here (errno ${-h}; needs Linux >= 6.7)`;
  nativeWriteTracking.untrackWrites(h);
  return null;
}
const unavailable = trackingUnavailable();

/** The wasm pages of a memory marked in a page map. */
const marked = (pages: Uint8Array): number[] => [...pages.keys()].filter((p) => pages[p] !== 0);

/** A file of `n` bytes (not zero, not the memory's fill) read into memory by the kernel. */
function dataFile(dir: string, n: number): string {
  const path = join(dir, 'data.bin');
  writeFileSync(path, Buffer.alloc(n, 0x5a));
  return path;
}

/** readv of `len` bytes of a file into memory at `at` through the addon (the iovec at `iov`). */
function kernelRead(mem: WebAssembly.Memory, path: string, iov: number, at: number, len: number): void {
  const view = new DataView(mem.buffer);
  view.setUint32(iov, at, true);
  view.setUint32(iov + 4, len, true);
  const fd = openSync(path, 'r');
  try {
    assert.equal(nativeIovecIo!(fd, mem.buffer, iov, 1, 0, false), len);
  } finally {
    closeSync(fd);
  }
}

test('writtenPages: exactly the pages written since the last scan, by the program or the kernel; unwritten again after', { skip: unavailable ?? false }, () => {
  const { dir, cleanup } = tempDir();
  const t = nativeWriteTracking!;
  const mem = new WebAssembly.Memory({ initial: 64 });
  const u8 = new Uint8Array(mem.buffer);
  u8.fill(1, 0, 16 * WASM_PAGE); // pages 16.. are never touched before the tracking starts
  const data = dataFile(dir, 2 * WASM_PAGE);
  const iov = 2 * WASM_PAGE;
  const h = t.trackWrites(mem.buffer);
  try {
    assert.ok(h >= 0, `trackWrites: errno ${-h}`);
    const out = new Uint8Array(64);
    assert.equal(t.writtenPages(h, mem.buffer, out, WASM_PAGE), 0);
    assert.deepEqual(marked(out), [], 'nothing written yet');
    u8[5 * WASM_PAGE + 77] = 9; // a touched page
    u8[40 * WASM_PAGE + 4095] = 3; // a page never touched
    // The kernel writes pages 20 and 21 (a read across their boundary). The iovec is written
    // first (page 2), and scanned away before the read.
    const view = new DataView(mem.buffer);
    const fd = openSync(data, 'r');
    try {
      view.setUint32(iov, 21 * WASM_PAGE - 100, true);
      view.setUint32(iov + 4, 200, true);
      const first = new Uint8Array(64);
      assert.equal(t.writtenPages(h, mem.buffer, first, WASM_PAGE), 0);
      assert.deepEqual(marked(first), [2, 5, 40]);
      assert.equal(nativeIovecIo!(fd, mem.buffer, iov, 1, 0, false), 200);
    } finally {
      closeSync(fd);
    }
    out.fill(0);
    assert.equal(t.writtenPages(h, mem.buffer, out, WASM_PAGE), 0);
    assert.deepEqual(marked(out), [20, 21], 'the kernel\'s writes');
    assert.equal(u8[21 * WASM_PAGE - 100], 0x5a);
    out.fill(0);
    assert.equal(t.writtenPages(h, mem.buffer, out, WASM_PAGE), 0);
    assert.deepEqual(marked(out), [], 'unwritten again after a scan');
    // Finer units: the 4 KiB block inside page 5.
    u8[5 * WASM_PAGE + 4096 + 1] = 7;
    const fine = new Uint8Array(64 * 16);
    assert.equal(t.writtenPages(h, mem.buffer, fine, 4096), 0);
    assert.deepEqual(marked(fine), [5 * 16 + 1]);
    // Grown: the new pages are not tracked, and the scan says so instead of missing them.
    mem.grow(1);
    assert.ok(t.writtenPages(h, mem.buffer, new Uint8Array(65), WASM_PAGE) < 0);
  } finally {
    assert.equal(t.untrackWrites(h), 0);
    cleanup();
  }
});

test('writtenPages and trackWrites refuse what they cannot track', { skip: nativeWriteTracking === null ? 'the native addon is not built' : false }, () => {
  const t = nativeWriteTracking!;
  assert.ok(t.trackWrites(new ArrayBuffer(100)) < 0, 'not whole pages');
  assert.ok(t.writtenPages(-1, new ArrayBuffer(65536), new Uint8Array(1), WASM_PAGE) < 0);
});

test('a capture after a tracked one looks at the written pages only, and equals the memory byte for byte', { skip: unavailable ?? false }, () => {
  const { dir, cleanup } = tempDir();
  const { port1, port2 } = new MessageChannel();
  const copier = new MemoryCopier(port1);
  // As the launcher gives buffers back: the one the copier holds by its copyId alone.
  let shared: Uint8Array | null = null;
  const give = (memory: Uint8Array, copyId: number | null): void => {
    if (memory === shared) return port2.postMessage({ copyId });
    shared = memory;
    port2.postMessage({ memory, copyId });
  };
  /** The launcher's view of a capture's buffer. */
  const received = (c: { memory: Uint8Array; inShared: boolean }): Uint8Array => {
    if (!c.inShared) shared = c.memory;
    assert.equal(Buffer.compare(c.memory, shared!), 0);
    return shared!;
  };
  try {
    const mem = new WebAssembly.Memory({ initial: 64 });
    const u8 = (): Uint8Array => new Uint8Array(mem.buffer);
    for (let i = 0; i < 32 * WASM_PAGE; i += 8) u8()[i] = (i >> 16) + 1;
    const data = dataFile(dir, 4096);
    const c1 = copier.copy(mem);
    assert.equal(c1.dirtyPages, null, 'no previous capture');
    assert.ok(!c1.inShared && c1.memory.buffer instanceof SharedArrayBuffer, 'a fresh buffer, shared from now on');
    const m1 = received(c1);
    copier.afterCapture(true, mem);
    // The program writes page 3 and (through the kernel) page 50, never touched before.
    u8()[3 * WASM_PAGE + 10] = 200;
    kernelRead(mem, data, 50 * WASM_PAGE, 50 * WASM_PAGE + 8, 1000);
    // The buffer comes back changed where the memory was not (page 20): only a compare of the
    // whole memory would see that, a capture from tracked writes leaves it.
    c1.memory[20 * WASM_PAGE] ^= 0xff;
    give(m1, c1.copyId);
    const c2 = copier.copy(mem);
    assert.ok(c2.inShared, 'into the buffer given back by its copyId alone');
    const m2 = received(c2);
    assert.equal(c2.copyId, c1.copyId + 1);
    assert.deepEqual(marked(c2.dirtyPages!), [3, 50]);
    assert.notEqual(c2.memory[20 * WASM_PAGE], u8()[20 * WASM_PAGE], 'the tracked writes were used');
    c2.memory[20 * WASM_PAGE] ^= 0xff;
    assert.equal(Buffer.compare(c2.memory, u8()), 0);

    // Tracking goes on from that capture; the memory grows before the next: compared instead.
    copier.afterCapture(true, mem);
    give(m2, c2.copyId);
    u8()[7 * WASM_PAGE] = 1;
    mem.grow(2);
    u8()[65 * WASM_PAGE] = 5;
    const c3 = copier.copy(mem);
    assert.equal(c3.dirtyPages, null, 'a buffer of the old size: a fresh copy');
    received(c3);
    assert.equal(Buffer.compare(c3.memory, u8()), 0);

    // A buffer that is not the tracked capture's (a fresh one): compared, not trusted.
    copier.afterCapture(true, mem);
    u8()[9 * WASM_PAGE] = 9;
    give(new Uint8Array(new SharedArrayBuffer(mem.buffer.byteLength)), null);
    const c4 = copier.copy(mem);
    assert.ok(c4.inShared, 'into the fresh buffer given');
    const m4 = received(c4);
    assert.equal(Buffer.compare(c4.memory, u8()), 0);
    assert.ok(c4.dirtyPages![9] === 1 && c4.dirtyPages![1] === 1);

    // Not tracked after a capture that does not ask: the next one compares everything.
    copier.afterCapture(false, mem);
    give(m4, c4.copyId);
    u8()[11 * WASM_PAGE] = 11;
    const c5 = copier.copy(mem);
    received(c5);
    assert.deepEqual(marked(c5.dirtyPages!), [11]);
    assert.equal(Buffer.compare(c5.memory, u8()), 0);
  } finally {
    port1.close();
    port2.close();
    cleanup();
  }
});

/** `stasis ARGS` with piped stdio: send lines, wait for stdout lines and stderr text. */
function interactive(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [stasisBin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  let wake: (() => void) | null = null;
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); wake?.(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); wake?.(); });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => { resolve(code); wake?.(); }));
  let closed = false;
  void exit.then(() => { closed = true; });
  const until = async (ok: () => boolean, what: string): Promise<void> => {
    while (!ok()) {
      if (closed) throw new Error(`exited before ${what}:\n${err}`);
      await new Promise<void>((r) => { wake = r; });
      wake = null;
    }
  };
  return {
    child, exit, stdout: () => out, stderr: () => err,
    send: (line: string) => child.stdin.write(line + '\n'),
    lines: (n: number) => until(() => out.split('\n').length - 1 >= n, `${n} lines of output`),
    stderrHas: (re: RegExp) => until(() => re.test(err), `printing ${re}`),
  };
}

const CHECKPOINTED = 75;

for (const grow of [false, true]) {
  test(`Slurm warning, then ${grow ? 'memory grown, ' : ''}writes and file reads, then SIGTERM: the restart goes on as an uninterrupted run`, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const work = join(dir, 'work');
      mkdirSync(work);
      writeFileSync(join(work, 'data.bin'), Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 7) & 0xff)));
      const prog = [`--dir`, `${work}::/work`, fixture('ckpt_tracked'), '/work/data.bin'];
      const before = ['write', 'read', 'sum'];
      const after = [...(grow ? ['grow'] : []), 'write', 'read', 'write', 'sum'];
      const resumed = ['sum', 'write', 'read', 'sum', 'quit'];
      const ref = stasis(['run', ...prog], { input: [...before, ...after, ...resumed].join('\n') + '\n' });
      assert.equal(ref.code, 0, ref.stderr);

      const ckpt = join(dir, 'ckpt');
      const env: NodeJS.ProcessEnv = { ...process.env, SLURM_JOB_ID: '4242' };
      for (const k of Object.keys(env)) if (k.startsWith('SLURM_') && k !== 'SLURM_JOB_ID') delete env[k];
      const p = interactive(['launch', '--ckpt-dir', ckpt, ...prog], env);
      try {
        await p.stderrHas(/ running \(pid/); // the signal handlers are in place
        for (const c of before) p.send(c);
        await p.lines(before.length);
        p.child.kill('SIGUSR1');
        await p.stderrHas(/on SIGUSR1 \(Slurm's warning; the program goes on\)/);
        for (const c of after) p.send(c);
        await p.lines(before.length + after.length);
        p.child.kill('SIGTERM');
        assert.equal(await p.exit, CHECKPOINTED, p.stderr());
        assert.match(p.stderr(), /checkpointed to \S+ on SIGTERM/);
      } finally {
        p.child.kill('SIGKILL');
      }
      const r = stasis(['restart', ckpt], { input: resumed.join('\n') + '\n' });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(p.stdout() + r.stdout, ref.stdout);
    } finally {
      cleanup();
    }
  });
}

test('checkpoints store the changed pages in their own files, the one on a warning none: each image restarts as an uninterrupted run, from its directory and from an export', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const work = join(dir, 'work');
    mkdirSync(work);
    writeFileSync(join(work, 'data.bin'), Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 11) & 0xff)));
    const prog = [`--dir`, `${work}::/work`, fixture('ckpt_tracked'), '/work/data.bin'];
    // A full image; one after a file read into the buffer (a few pages changed: a pages file);
    // one on Slurm's warning after a write to many pages (chunks stored whole, no pages); and
    // the stop's, after another read (only the pages changed since the warning).
    const steps = [['write', 'sum'], ['read', 'sum'], ['write', 'sum'], ['read', 'sum']];
    const how = ['control', 'control', 'SIGUSR1', 'SIGTERM'] as const;
    const resumed = ['write', 'read', 'sum', 'quit'];
    const ref = stasis(['run', ...prog], { input: [...steps.flat(), ...resumed].join('\n') + '\n' });
    assert.equal(ref.code, 0, ref.stderr);
    const refLines = ref.stdout.split('\n');

    const ckpt = join(dir, 'ckpt');
    const name = `pages-${process.pid}`;
    const env: NodeJS.ProcessEnv = { ...process.env, SLURM_JOB_ID: '4243' };
    for (const k of Object.keys(env)) if (k.startsWith('SLURM_') && k !== 'SLURM_JOB_ID') delete env[k];
    const p = interactive(['launch', '--name', name, '--ckpt-dir', ckpt, ...prog], env);
    let sent = 0;
    try {
      await p.stderrHas(/ running \(pid/);
      for (const [k, cmds] of steps.entries()) {
        for (const c of cmds) p.send(c);
        sent += cmds.length;
        await p.lines(sent);
        if (how[k] === 'control') {
          const cp = stasis(['checkpoint', name], { env });
          assert.equal(cp.code, 0, cp.stderr);
        } else if (how[k] === 'SIGUSR1') {
          p.child.kill('SIGUSR1');
          await p.stderrHas(/on SIGUSR1/);
        } else {
          p.child.kill('SIGTERM');
          assert.equal(await p.exit, CHECKPOINTED, p.stderr());
        }
      }
    } finally {
      p.child.kill('SIGKILL');
    }
    assert.equal(p.stdout(), refLines.slice(0, sent).join('\n') + '\n');
    type M = { version: number; memory: { pages?: { runs: unknown[] } } };
    const manifest = (g: number): M => JSON.parse(readFileSync(join(ckpt, 'images', `gen-00000${g}`, 'manifest.json'), 'utf8')) as M;
    assert.deepEqual([1, 2, 3, 4].map((g) => [manifest(g).version, manifest(g).memory.pages !== undefined]), [[2, false], [3, true], [2, false], [3, true]]);
    // Each image goes on from where it was taken, as the uninterrupted run did.
    const file = join(dir, 'four.tar');
    const ex = stasis(['export', ckpt, '-o', file]);
    assert.equal(ex.code, 0, ex.stderr);
    const from = [1, 2, 3, 4].map((g) => [g, join(ckpt, 'images', `gen-00000${g}`)] as const);
    for (const [g, path] of [...from, [4, file] as const]) {
      const rest = [...steps.slice(g).flat(), ...resumed];
      const r = stasis(['restart', '--quiet', ...(path === file ? ['--ckpt-dir', join(dir, 'from-export')] : []), path], { input: rest.join('\n') + '\n' });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, refLines.slice(steps.slice(0, g).flat().length).join('\n'), `restart from generation ${g} (${path})`);
    }
  } finally {
    cleanup();
  }
});

// The image store (src/image/): round trips, incremental images, relocation, damage detection,
// crash safety (including writers killed with SIGKILL), retention.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmdirSync, statSync,
  truncateSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import type { Snapshot } from '../src/image/schema.js';
import {
  FORMAT_VERSION, ImageError, inspectImage, latestImage, listImages, readImage, writeImage, type ImageErrorCode,
  type Manifest,
} from '../src/image/index.js';
import { repoRoot, smallFs, tempDir } from './helpers.js';

const MiB = 1 << 20;

/** Deterministic pseudo-random bytes (xorshift32), so a child process can make the same. */
function fillRandom(mem: Uint8Array, off: number, len: number, seed: number): void {
  let x = (seed * 2654435761) >>> 0 || 1;
  const end = off + len;
  for (let i = off; i < end; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    mem[i] = x & 0xff;
  }
}

/** A memory with all-zero chunks, random chunks, a partly zero chunk and a repeated chunk. */
function sampleMemory(size = 16 * MiB + 65536): Uint8Array {
  const mem = new Uint8Array(size);
  fillRandom(mem, 0, 3 * MiB, 1); // chunks 0-2
  fillRandom(mem, 8 * MiB + 4096, 100_000, 2); // chunk 8, mostly zero
  mem.copyWithin(10 * MiB, 0, MiB); // chunk 10 = chunk 0
  fillRandom(mem, size - 65536, 65536, 3); // the short last chunk
  return mem;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

const moduleA = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
const moduleB = new Uint8Array(150_000).map((_, i) => (i * 13) & 0xff);

function snapshot(memory: Uint8Array, generation: number, module = moduleA): Snapshot {
  const hash = sha256(module);
  return {
    moduleHash: 'f'.repeat(64),
    instrumentedHash: hash,
    memory,
    globals: [
      { name: 'stasis_g0', type: 'i32', value: 66560 },
      { name: 'stasis_g1', type: 'i64', value: '-9223372036854775808' },
      { name: 'stasis_g2', type: 'i64', value: '18446744073709551615' },
      { name: 'stasis_g3', type: 'f64', value: 0.1 },
      { name: 'stasis_g4', type: 'f32', value: -2.5 },
    ],
    asyncifyData: 1048560,
    engine: { unwindImports: ['fd_read', 'fd_write'], poll: true, stackPointer: 'stasis_g0', maxFrameBytes: 256 },
    wasi: {
      args: ['prog.wasm', 'a b', 'ü'],
      env: ['HOME=/home/x', 'EMPTY='],
      preopens: [{ guest: '/data', host: '/tmp/some/where' }],
      fds: [
        { kind: 'stdio', fd: 0, stream: 0, filetype: 2, rightsBase: 1, rightsInheriting: 0, fdflags: 0 },
        { kind: 'stdio', fd: 1, stream: 1, filetype: 2, rightsBase: 2, rightsInheriting: 0, fdflags: 1 },
        { kind: 'dir', fd: 3, location: { preopen: '/data', rel: '' }, preopenName: '/data', listing: null, rightsBase: 0xffff, rightsInheriting: 0xffff, fdflags: 0 },
        { kind: 'dir', fd: 4, location: { preopen: '/data', rel: 'sub' }, listing: ['a', 'b'], rightsBase: 0xfff, rightsInheriting: 0xfff, fdflags: 0 },
        { kind: 'file', fd: 5, location: { preopen: '/data', rel: 'sub/log.txt' }, access: 'rw', offset: 12345, filetype: 4, rightsBase: 0xff, rightsInheriting: 0, fdflags: 1 },
      ],
    },
    monotonicNs: '123456789012345678',
    stdinPending: new Uint8Array([0, 1, 2, 255, 10, 13]),
    stdinReceived: 42,
    meta: {
      name: 'prog',
      generation,
      createdAt: '2024-01-02T03:04:05.000Z',
      pauseMs: 1.5,
      host: { hostname: 'h', platform: 'linux', arch: 'x64', node: 'v20', pid: 42 },
    },
  };
}

function assertSameSnapshot(got: Snapshot, want: Snapshot): void {
  assert.equal(got.memory.length, want.memory.length);
  assert.ok(Buffer.from(got.memory).equals(Buffer.from(want.memory)), 'memory differs');
  assert.deepEqual([...got.stdinPending], [...want.stdinPending]);
  const { memory: _a, stdinPending: _b, ...g } = got;
  const { memory: _c, stdinPending: _d, ...w } = want;
  assert.deepEqual(g, w);
}

/** Every file under `dir` with its size and mtime: to show a reader wrote nothing. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const st = statSync(p);
      out.push(`${p} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

async function assertImageError(p: Promise<unknown>, code: ImageErrorCode, mention?: string): Promise<ImageError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ImageError, `expected an ImageError, got ${String(e)}`);
    assert.equal(e.reason, code, e.message);
    assert.ok(!e.message.includes('\n'), 'message is one line');
    if (mention) assert.ok(e.message.includes(mention), `message should name ${mention}: ${e.message}`);
    return e;
  }
  assert.fail(`expected ImageError ${code}`);
}

function chunkFiles(ckpt: string): string[] {
  return readdirSync(join(ckpt, 'chunks')).sort();
}

/** Chunk files the manifests of the remaining images reference. */
function referencedChunks(ckpt: string): string[] {
  const refs = new Set<string>();
  for (const g of readdirSync(join(ckpt, 'images'))) {
    const m = JSON.parse(readFileSync(join(ckpt, 'images', g, 'manifest.json'), 'utf8')) as Manifest;
    for (const c of m.memory.chunks) refs.add(`${m.memory.hash}-${c.hash}${c.codec === 'none' ? '' : c.codec === 'brotli' ? '.br' : '.deflate'}`);
  }
  return [...refs].sort();
}

function leftovers(ckpt: string): string[] {
  return tree(ckpt).filter((l) => l.includes('.tmp-') || l.includes('.lock'));
}

test('round trip is byte-exact; the path may be the checkpoint dir, the image dir or its manifest', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'prog.ckpt');
    const snap = snapshot(sampleMemory(), 1);
    const w = await writeImage(ckpt, snap, { moduleBytes: moduleA });
    assert.equal(w.generation, 1);
    assert.equal(w.name, 'prog');
    assert.equal(w.path, join(ckpt, 'images', 'gen-000001'));
    assert.deepEqual(w.chunks, { written: 5, reused: 1, zero: 11 }); // 17 chunks; chunk 10 = chunk 0
    for (const p of [ckpt, w.path, join(w.path, 'manifest.json')]) {
      const r = await readImage(p);
      assertSameSnapshot(r.snapshot, snap);
      assert.deepEqual([...r.moduleBytes], [...moduleA]);
      assert.deepEqual(r.ref, { dir: ckpt, path: w.path, generation: 1, name: 'prog' });
    }
    // Into memory the engine provides: a WebAssembly.Memory (grown as needed; here it holds
    // "data segments" that must not survive), or a Uint8Array holding garbage.
    const wasm = new WebAssembly.Memory({ initial: 1 });
    new Uint8Array(wasm.buffer).fill(0xee, 100, 5000);
    const r = await readImage(ckpt, { into: () => wasm });
    assert.equal(r.snapshot.memory.buffer, wasm.buffer);
    assert.equal(wasm.buffer.byteLength, snap.memory.length);
    assertSameSnapshot(r.snapshot, snap);
    const garbage = new Uint8Array(snap.memory.length).fill(0x55);
    const r2 = await readImage(ckpt, { into: () => garbage });
    assert.equal(r2.snapshot.memory, garbage);
    assertSameSnapshot(r2.snapshot, snap);
    await assert.rejects(readImage(ckpt, { into: (n) => new Uint8Array(n - 1) }), TypeError);
    assert.deepEqual(leftovers(ckpt), []);
    assert.deepEqual(await listImages(ckpt), [{ dir: ckpt, path: w.path, generation: 1, name: 'prog' }]);
    assert.equal((await latestImage(ckpt))?.generation, 1);
  } finally {
    cleanup();
  }
});

test('compression codecs and the sha256 chunk hash round-trip too', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const mem = sampleMemory(8 * MiB);
    mem.fill(0x41, 4 * MiB, 5 * MiB); // compressible
    for (const [i, opts] of ([
      { compress: 'deflate' }, { compress: 'brotli' }, { chunkHash: 'sha256' }, { compress: 'brotli', chunkHash: 'sha256', chunkSize: 4 * MiB },
    ] as const).entries()) {
      const ckpt = join(dir, `c${i}`);
      const snap = snapshot(mem, 1);
      await writeImage(ckpt, snap, { moduleBytes: moduleA, ...opts });
      assertSameSnapshot((await readImage(ckpt)).snapshot, snap);
      if ('compress' in opts && !('chunkSize' in opts)) {
        // incompressible chunks are stored raw, the compressible one compressed
        const names = chunkFiles(ckpt);
        assert.ok(names.some((n) => n.endsWith(opts.compress === 'brotli' ? '.br' : '.deflate')), names.join());
        assert.ok(names.some((n) => !n.includes('.')), names.join());
        // A compressed chunk that would inflate past its size (a bomb) is refused before it
        // is inflated, not after.
        const packed = names.find((n) => n.includes('.'))!;
        const original = readFileSync(join(ckpt, 'chunks', packed));
        const bomb = new Uint8Array(256 * MiB);
        writeFileSync(join(ckpt, 'chunks', packed), opts.compress === 'brotli'
          ? zlib.brotliCompressSync(bomb, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } })
          : zlib.deflateRawSync(bomb, { level: 1 }));
        await assertImageError(readImage(ckpt), 'CORRUPT', `does not decompress (${opts.compress})`);
        writeFileSync(join(ckpt, 'chunks', packed), original);
      }
    }
  } finally {
    cleanup();
  }
});

test('a second image after dirtying 1% of memory writes under 5% of the first', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    const mem = new Uint8Array(64 * MiB);
    fillRandom(mem, 0, 48 * MiB, 7);
    const first = await writeImage(ckpt, snapshot(mem, 1), { moduleBytes: moduleA });
    const dirtyOff = 20 * MiB + 600_000; // straddles two chunks: the worst case
    const dirtyLen = Math.ceil(mem.length / 100);
    fillRandom(mem, dirtyOff, dirtyLen, 8);
    const second = await writeImage(ckpt, snapshot(mem, 2), { moduleBytes: moduleA });
    assert.ok(second.bytesWritten <= 0.05 * first.bytesWritten, `${second.bytesWritten} vs ${first.bytesWritten}`);
    assert.equal(second.chunks.written, 2);
    // The same with the engine's dirty hint: clean chunks are neither read nor hashed, and of
    // the two changed chunks only the changed pages are written, in the image's pages file.
    fillRandom(mem, dirtyOff, dirtyLen, 9);
    const seen: number[] = [];
    const changed = (off: number, len: number): boolean => off < dirtyOff + dirtyLen && dirtyOff < off + len;
    const third = await writeImage(ckpt, snapshot(mem, 3), {
      moduleBytes: moduleA,
      dirty: { base: 2, isDirty: (off, len) => { seen.push(off); return changed(off, len); } },
    });
    // Every chunk asked once; pages asked only within the changed chunks.
    assert.deepEqual([...new Set(seen.filter((off) => off % MiB === 0))].length, 64);
    assert.ok(seen.every((off) => off % MiB === 0 || changed(Math.floor(off / MiB) * MiB, MiB)));
    assert.deepEqual(third.chunks, { written: 0, reused: 48, zero: 16 });
    const pagesFrom = Math.floor(dirtyOff / 65536) * 65536;
    const pagesLen = Math.ceil((dirtyOff + dirtyLen) / 65536) * 65536 - pagesFrom;
    const m3 = JSON.parse(readFileSync(join(ckpt, 'images', 'gen-000003', 'manifest.json'), 'utf8')) as Manifest;
    assert.equal(m3.version, 3);
    assert.deepEqual(m3.memory.pages?.runs.map((r) => [r.offset, r.length]), [[pagesFrom, pagesLen]]);
    assert.equal(statSync(join(ckpt, 'images', 'gen-000003', 'pages')).size, pagesLen);
    assert.ok(third.bytesWritten <= pagesLen + 16384, `${third.bytesWritten} bytes for ${pagesLen} bytes of pages`);
    assertSameSnapshot((await readImage(ckpt)).snapshot, snapshot(mem, 3));
    // Memory grew: the new chunk is beyond the base image, so it is hashed whatever the hint.
    const grown = new Uint8Array(65 * MiB);
    grown.set(mem);
    fillRandom(grown, 64 * MiB, MiB, 10);
    // The pages image 3 stored are stored again (its chunks there are as in image 2).
    const fourth = await writeImage(ckpt, snapshot(grown, 4), { moduleBytes: moduleA, dirty: { base: 3, isDirty: () => false } });
    assert.deepEqual(fourth.chunks, { written: 1, reused: 48, zero: 16 });
    assert.equal(statSync(join(ckpt, 'images', 'gen-000004', 'pages')).size, pagesLen);
    assertSameSnapshot((await readImage(ckpt)).snapshot, snapshot(grown, 4));
    // Older generations are intact.
    const m1 = new Uint8Array(64 * MiB);
    fillRandom(m1, 0, 48 * MiB, 7);
    assertSameSnapshot((await readImage(ckpt, 1)).snapshot, snapshot(m1, 1));
  } finally {
    cleanup();
  }
});

test('a chain of images storing changed pages reads byte for byte, after keep N, from an export; a damaged pages file is refused', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    const mem = new Uint8Array(32 * MiB);
    fillRandom(mem, 0, 24 * MiB, 11);
    await writeImage(ckpt, snapshot(mem, 1), { moduleBytes: moduleA, keep: 3 });
    const states = new Map<number, Uint8Array>([[1, mem.slice()]]);
    const pagesOf = (g: number): Manifest['memory']['pages'] => (JSON.parse(readFileSync(join(ckpt, 'images', `gen-00000${g}`, 'manifest.json'), 'utf8')) as Manifest).memory.pages;
    // Each generation rewrites a few pages somewhere (some in all-zero chunks, some where the
    // one before wrote): the pages file holds those and the ones its base stored.
    const changes = [[5 * MiB + 3 * 65536, 2 * 65536], [28 * MiB, 65536], [5 * MiB + 4 * 65536 + 100, 3000], [17 * MiB - 65536, 2 * 65536]];
    let expectPages = new Set<number>();
    for (let g = 2; g <= 5; g++) {
      const [off, len] = changes[g - 2]!;
      fillRandom(mem, off, len, 20 + g);
      const changed = (o: number, l: number): boolean => o < off + len && off < o + l;
      const r = await writeImage(ckpt, snapshot(mem, g), { moduleBytes: moduleA, keep: 3, dirty: { base: g - 1, isDirty: changed } });
      assert.equal(r.chunks.written, 0, `generation ${g} writes no chunk`);
      for (let p = Math.floor(off / 65536); p * 65536 < off + len; p++) expectPages.add(p);
      const runs = pagesOf(g)!.runs;
      const stored = new Set(runs.flatMap((run) => Array.from({ length: run.length / 65536 }, (_, k) => run.offset / 65536 + k)));
      assert.deepEqual([...stored].sort((a, b) => a - b), [...expectPages].sort((a, b) => a - b));
      states.set(g, mem.slice());
    }
    // keep 3: generations 3 to 5 remain, each as it was written.
    assert.deepEqual((await listImages(ckpt)).map((i) => i.generation), [3, 4, 5]);
    for (const g of [3, 4, 5]) assertSameSnapshot((await readImage(ckpt, g)).snapshot, snapshot(states.get(g)!, g));
    // An export holds the pages file; it reads the same.
    const file = join(dir, 'five.tar');
    const ex = spawnSync(process.execPath, [join(repoRoot, 'bin', 'stasis.js'), 'export', ckpt, '-o', file], { encoding: 'utf8' });
    assert.equal(ex.status, 0, ex.stderr);
    assert.ok(readFileSync(file).includes('images/gen-000005/pages'));
    assertSameSnapshot((await readImage(file)).snapshot, snapshot(states.get(5)!, 5));
    // A damaged pages file: one line naming it, nothing changed; a truncated one the same.
    const pagesPath = join(ckpt, 'images', 'gen-000005', 'pages');
    const good = readFileSync(pagesPath);
    const bad = Buffer.from(good);
    bad[bad.length - 10]! ^= 1;
    for (const damaged of [bad, good.subarray(0, good.length - 4096)]) {
      writeFileSync(pagesPath, damaged);
      const before = tree(ckpt);
      await assert.rejects(readImage(ckpt), (e: unknown) => e instanceof ImageError && e.reason === 'CORRUPT' && /memory pages file .*gen-000005\/pages/.test(e.message));
      const v = spawnSync(process.execPath, [join(repoRoot, 'bin', 'stasis.js'), 'inspect', '--verify', ckpt], { encoding: 'utf8' });
      assert.equal(v.status, 73, v.stderr);
      assert.match(v.stderr, /^stasis: memory pages file \S+gen-000005\/pages of checkpoint image \S+ (does not match|has \d+ bytes instead)/);
      assert.equal(v.stderr.trim().split('\n').length, 1, v.stderr);
      assert.deepEqual(tree(ckpt), before);
    }
    writeFileSync(pagesPath, good);
    // Many pages changed: every chunk with pages that differ from its file is written whole,
    // and the pages file starts anew (none here).
    fillRandom(mem, 0, 4 * MiB, 30);
    const whole = await writeImage(ckpt, snapshot(mem, 6), { moduleBytes: moduleA, keep: 3, dirty: { base: 5, isDirty: (o) => o < 4 * MiB } });
    assert.equal(whole.chunks.written, 4 + 4); // chunks 0-3, and 5, 16, 17, 28 (their pages)
    assert.equal(pagesOf(6), undefined);
    assertSameSnapshot((await readImage(ckpt, 6)).snapshot, snapshot(mem, 6));
    assertSameSnapshot((await readImage(ckpt, 5)).snapshot, snapshot(states.get(5)!, 5));
  } finally {
    cleanup();
  }
});

test('a moved checkpoint directory still reads', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = join(dir, 'a', 'prog.ckpt');
    const s1 = snapshot(sampleMemory(), 1);
    await writeImage(a, s1, { moduleBytes: moduleA });
    const m2 = sampleMemory();
    m2[5 * MiB] = 1;
    const s2 = snapshot(m2, 2);
    await writeImage(a, s2, { moduleBytes: moduleA });
    mkdirSync(join(dir, 'elsewhere', 'deeper'), { recursive: true });
    const b = join(dir, 'elsewhere', 'deeper', 'moved.ckpt');
    renameSync(a, b);
    const r = await readImage(b);
    assert.equal(r.ref.dir, b);
    assertSameSnapshot(r.snapshot, s2);
    assertSameSnapshot((await readImage(join(b, 'images', 'gen-000001'))).snapshot, s1);
    const info = await inspectImage(b);
    assert.equal(info.generation, 2);
    assert.equal(info.complete, true);
    assert.equal(info.latest, true);
    assert.equal(info.memory.storedChunks, 7);
    JSON.stringify(info);
    // A further image in the moved directory shares its chunks.
    const w = await writeImage(b, snapshot(m2, 3), { moduleBytes: moduleA });
    assert.equal(w.chunks.written, 0);
  } finally {
    cleanup();
  }
});

test('damage and foreign files give the right ImageError, and reading writes nothing', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'prog.ckpt');
    const snap = snapshot(sampleMemory(), 1);
    const w = await writeImage(ckpt, snap, { moduleBytes: moduleA, compress: 'brotli' });
    const manifestPath = join(w.path, 'manifest.json');
    const manifestText = readFileSync(manifestPath, 'utf8');
    const m = JSON.parse(manifestText) as Manifest;
    const chunk = (i: number) => join(ckpt, 'chunks', `${m.memory.hash}-${m.memory.chunks[i]!.hash}${m.memory.chunks[i]!.codec === 'brotli' ? '.br' : ''}`);
    const restore = () => {
      writeFileSync(manifestPath, manifestText);
      writeFileSync(join(w.path, 'manifest.sha256'), `${sha256(Buffer.from(manifestText))}  manifest.json\n`);
    };
    const reading = async (code: ImageErrorCode, mention?: string, path = ckpt) => {
      const before = tree(dir);
      await assertImageError(readImage(path), code, mention);
      assert.deepEqual(tree(dir), before, 'reading wrote nothing');
    };

    // A flipped byte in a raw chunk, then a truncated one, then a missing one.
    const c0 = chunk(0);
    const good = readFileSync(c0);
    const bad = Buffer.from(good);
    bad[1000] ^= 1;
    writeFileSync(c0, bad);
    await reading('CORRUPT', c0);
    // Problems are reported in chunk order, though later chunks are read ahead.
    assert.ok(m.memory.chunks.length >= 3);
    const c2 = chunk(2);
    const good2 = readFileSync(c2);
    unlinkSync(c2);
    await reading('CORRUPT', c0);
    writeFileSync(c2, good2);
    truncateSync(c0, good.length - 1);
    await reading('CORRUPT', c0);
    unlinkSync(c0);
    await reading('MISSING', c0);
    writeFileSync(c0, good);
    // A damaged compressed chunk.
    const ci = m.memory.chunks.findIndex((c) => c.codec === 'brotli');
    assert.ok(ci >= 0);
    const cb = chunk(ci);
    const goodB = readFileSync(cb);
    writeFileSync(cb, goodB.subarray(0, goodB.length >> 1));
    await reading('CORRUPT', cb);
    writeFileSync(cb, goodB);
    // The module.
    const mod = join(ckpt, 'modules', `${sha256(moduleA)}.wasm`);
    appendFileSync(mod, 'x');
    await reading('CORRUPT', mod);
    writeFileSync(mod, moduleA);
    await readImage(ckpt);

    // A truncated manifest; an edited one; a missing checksum.
    writeFileSync(manifestPath, manifestText.slice(0, manifestText.length >> 1));
    await reading('CORRUPT', manifestPath);
    writeFileSync(manifestPath, manifestText.replace('"asyncifyData": 1048560', '"asyncifyData": 1048561'));
    await reading('CORRUPT', manifestPath);
    restore();
    unlinkSync(join(w.path, 'manifest.sha256'));
    await reading('CORRUPT', 'manifest.sha256');
    restore();
    // A newer format (with a matching checksum): BAD_VERSION, whatever else it holds.
    const newer = JSON.stringify({ magic: 'stasis-image', version: FORMAT_VERSION + 1, whatever: true });
    writeFileSync(manifestPath, newer);
    writeFileSync(join(w.path, 'manifest.sha256'), `${sha256(Buffer.from(newer))}  manifest.json\n`);
    await reading('BAD_VERSION', 'newer');
    restore();
    await readImage(ckpt);

    // Foreign things.
    const foreignFile = join(dir, 'notes.txt');
    writeFileSync(foreignFile, 'hello');
    await reading('NOT_AN_IMAGE', foreignFile, foreignFile);
    const foreignDir = join(dir, 'some-dir');
    mkdirSync(foreignDir);
    await reading('NOT_AN_IMAGE', foreignDir, foreignDir);
    const foreignJson = join(dir, 'other', 'manifest.json');
    mkdirSync(join(dir, 'other'));
    writeFileSync(foreignJson, '{"name": "some npm thing"}');
    await reading('NOT_AN_IMAGE', foreignJson, join(dir, 'other'));
    writeFileSync(foreignJson, 'PK\u0003\u0004 binary');
    await reading('NOT_AN_IMAGE', foreignJson, join(dir, 'other'));
    // Missing things.
    await reading('MISSING', undefined, join(dir, 'nope'));
    await assertImageError(readImage(ckpt, 7), 'MISSING', 'generation 7');
    mkdirSync(join(dir, 'empty.ckpt', 'images'), { recursive: true });
    await reading('MISSING', undefined, join(dir, 'empty.ckpt'));
    // inspect reports on the same terms.
    await assertImageError(inspectImage(foreignFile), 'NOT_AN_IMAGE');
    unlinkSync(c0);
    const info = await inspectImage(ckpt);
    assert.equal(info.complete, false);
    assert.equal(info.problems.length, 1);
  } finally {
    cleanup();
  }
});

test('a manifest with a malformed field is CORRUPT, and the message names the field', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'prog.ckpt');
    const snap = snapshot(sampleMemory(), 1);
    snap.files = [{
      fds: [5], location: { preopen: '/data', rel: 'sub/log.txt' }, hostPath: '/tmp/some/where/sub/log.txt', deleted: false,
      size: 10, mode: 0o644, treatment: 'reopen', reason: 'read-only', onDiffer: 'refuse',
    }];
    const w = await writeImage(ckpt, snap, { moduleBytes: moduleA });
    const manifestPath = join(w.path, 'manifest.json');
    const original = readFileSync(manifestPath, 'utf8');
    // Rewrites the manifest with its sha256 sidecar recomputed: only the shape check can object.
    const edited = (edit: (m: any) => void): Promise<unknown> => {
      const m = JSON.parse(original) as Manifest;
      edit(m);
      const text = JSON.stringify(m, null, 2);
      writeFileSync(manifestPath, text);
      writeFileSync(join(w.path, 'manifest.sha256'), `${sha256(Buffer.from(text))}  manifest.json\n`);
      return readImage(ckpt);
    };
    const cases: [string, (m: any) => void][] = [
      ['snapshot.wasi.fds[4].offset: expected a non-negative integer, got "12345"', (m) => { m.snapshot.wasi.fds[4].offset = '12345'; }],
      ['snapshot.files[0].size: expected a non-negative integer, got -1', (m) => { m.snapshot.files[0].size = -1; }],
      // Places outside the preopens: an image cannot name them.
      ['snapshot.files[0].location.rel: expected a relative path without "..", "." or empty components, got "../../../etc/passwd"', (m) => { m.snapshot.files[0].location.rel = '../../../etc/passwd'; }],
      ['snapshot.files[0].location.rel', (m) => { m.snapshot.files[0].location.rel = 'sub//x'; }],
      ['snapshot.files[0].location.preopen: expected one of the preopens (/data), got "/etc"', (m) => { m.snapshot.files[0].location.preopen = '/etc'; }],
      ['snapshot.wasi.fds[4].location.rel', (m) => { m.snapshot.wasi.fds[4].location.rel = 'a/../..'; }],
      ['snapshot.meta: expected an object, got nothing', (m) => { delete m.snapshot.meta; }],
      ['snapshot.meta.host.pid', (m) => { m.snapshot.meta.host.pid = 'x'; }],
      ['snapshot.wasi.fds[2].kind: expected one of "file", "dir", "stdio", got "socket"', (m) => { m.snapshot.wasi.fds[2].kind = 'socket'; }],
      ['snapshot.wasi.fds[3].listing', (m) => { m.snapshot.wasi.fds[3].listing = [1]; }],
      ['snapshot.wasi.fds[0].stream', (m) => { m.snapshot.wasi.fds[0].stream = 3; }],
      ['snapshot.globals[1].value: expected a decimal integer string, got 5', (m) => { m.snapshot.globals[1].value = 5; }],
      ['snapshot.globals[0].value: expected an integer', (m) => { m.snapshot.globals[0].value = 0.5; }],
      ['snapshot.engine.maxFrameBytes', (m) => { m.snapshot.engine.maxFrameBytes = -1; }],
      ['snapshot.engine.poll: expected true or false, got 1', (m) => { m.snapshot.engine.poll = 1; }],
      ['snapshot.monotonicNs', (m) => { m.snapshot.monotonicNs = 12; }],
      ['snapshot.stdinReceived', (m) => { m.snapshot.stdinReceived = -3; }],
      ['snapshot.filePolicy.pathMap[0]: expected an array of 2', (m) => {
        m.snapshot.filePolicy = { checkpointOpenFiles: true, allowFileOverwrite: false, rules: [], pathMap: [['/a']] };
      }],
      ['snapshot.files[0].copy: expected a saved copy', (m) => { m.snapshot.files[0].treatment = 'save'; }],
      ['snapshot.files[0].copy.file', (m) => {
        m.snapshot.files[0].copy = { file: '../../etc/passwd', size: 10, blockSize: 4 * MiB, blocks: ['0123456789abcdef'] };
      }],
      ['snapshot.instrumentedHash: expected module.sha256', (m) => { m.snapshot.instrumentedHash = 'e'.repeat(64); }],
      ['memory.chunks[1].index', (m) => { m.memory.chunks[1].index = m.memory.chunks[0].index; }],
      ['memory.chunks[0].hash', (m) => { m.memory.chunks[0].hash = 'e'.repeat(64); }],
      ['memory.chunks[0].codec: expected one of "none", "deflate", "brotli", got "zstd"', (m) => { m.memory.chunks[0].codec = 'zstd'; }],
      ['memory.chunkSize: expected a positive integer, got 0', (m) => { m.memory.chunkSize = 0; }],
      ['module.sha256', (m) => { m.module.sha256 = 'nope'; }],
      ['stdinPending: expected an object, got null', (m) => { m.stdinPending = null; }],
      // Pages: a version-2 reader would ignore them, so only version 3 may have them; runs apart,
      // page-aligned, within the memory, adding up to the size.
      ['version: expected 3 or more (the image has memory.pages), got 2', (m) => { m.version = 2; m.memory.pages = { size: 65536, runs: [{ offset: 0, length: 65536, hash: '0123456789abcdef' }] }; }],
      ['memory.pages.runs[0].offset', (m) => { m.version = 3; m.memory.pages = { size: 65536, runs: [{ offset: 4096, length: 65536, hash: '0123456789abcdef' }] }; }],
      ['memory.pages.runs[1].offset', (m) => { m.version = 3; m.memory.pages = { size: 2 * 65536, runs: [{ offset: 0, length: 65536, hash: '0123456789abcdef' }, { offset: 0, length: 65536, hash: '0123456789abcdef' }] }; }],
      ['memory.pages.runs[0].length', (m) => { m.version = 3; m.memory.pages = { size: 65536, runs: [{ offset: m.memory.byteLength - 65536, length: 2 * 65536, hash: '0123456789abcdef' }] }; }],
      ['memory.pages.size', (m) => { m.version = 3; m.memory.pages = { size: 5, runs: [{ offset: 0, length: 65536, hash: '0123456789abcdef' }] }; }],
    ];
    for (const [mention, edit] of cases) {
      const e = await assertImageError(edited(edit), 'CORRUPT', mention);
      assert.ok(e.message.startsWith(`checkpoint image file ${manifestPath} is malformed (`), e.message);
    }
    // inspect checks the same way.
    await assertImageError(edited((m) => { m.snapshot.files[0].fds = [true]; }), 'CORRUPT', 'snapshot.files[0].fds[0]: expected a non-negative integer, got true');
    await assertImageError(inspectImage(ckpt), 'CORRUPT', 'snapshot.files[0].fds[0]');
    // Fields this reader does not know are fine (engine.stackLow: images written before it went).
    await edited((m) => { m.snapshot.engine.stackLow = 1024; m.snapshot.later = { x: 1 }; m.memory.chunks[0].note = 'y'; });
    const r = await readImage(ckpt);
    assert.ok(Buffer.from(r.snapshot.memory).equals(Buffer.from(snap.memory)));
    assert.deepEqual(r.snapshot.files, snap.files);
    // Images written before maxFrameBytes and stdinReceived were recorded still read, and so do
    // non-finite floats: kept as strings, or null in images written before they were.
    await edited((m) => {
      delete m.snapshot.engine.maxFrameBytes;
      delete m.snapshot.stdinReceived;
      m.snapshot.globals[3].value = null;
      m.snapshot.globals[4].value = '-Infinity';
    });
    const old = await readImage(ckpt);
    assert.equal(old.snapshot.engine.maxFrameBytes, undefined);
    assert.deepEqual(old.snapshot.globals.slice(3).map((g) => g.value), [null, '-Infinity']);
    await assertImageError(edited((m) => { m.snapshot.globals[3].value = 'Inf'; }), 'CORRUPT', 'snapshot.globals[3].value: expected a number, "NaN", "Infinity", "-Infinity" or null, got "Inf"');
    await edited(() => {}); // the image as written
    // A writer does not publish what readers would refuse.
    const nan = snapshot(sampleMemory(), 2);
    nan.globals[3]!.value = NaN;
    await assert.rejects(writeImage(ckpt, nan, { moduleBytes: moduleA }), /snapshot\.globals\[3\]\.value: expected a number, "NaN", "Infinity", "-Infinity" or null, got NaN/);
    assert.equal((await readImage(ckpt)).ref.generation, 1);
  } finally {
    cleanup();
  }
});

test('half-written leftovers are ignored by readers and cleaned by the next writer', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    await writeImage(ckpt, snapshot(sampleMemory(), 1), { moduleBytes: moduleA });
    const m2 = sampleMemory();
    fillRandom(m2, 12 * MiB, MiB, 5);
    const s2 = snapshot(m2, 2);
    await writeImage(ckpt, s2, { moduleBytes: moduleA });
    // A writer of generation 3 died: its temp image dir, a temp chunk, an orphan chunk (renamed
    // into place but never referenced), a temp `latest`, and its lock (a pid that is not alive).
    const tmpImage = join(ckpt, 'images', '.tmp-gen-000003-99999-abcd');
    mkdirSync(tmpImage);
    writeFileSync(join(tmpImage, 'manifest.json'), '{"magic":"stasis-image","vers');
    writeFileSync(join(ckpt, 'chunks', '.tmp-xxh64-0123456789abcdef-99999-abcd'), 'partial');
    writeFileSync(join(ckpt, 'chunks', 'xxh64-0123456789abcdef'), 'orphan');
    writeFileSync(join(ckpt, '.tmp-latest-99999-abcd'), 'gen-000003\n');
    writeFileSync(join(ckpt, '.lock'), JSON.stringify({ pid: await deadPid(), host: hostname(), time: new Date().toISOString() }));
    assert.equal((await readImage(ckpt)).ref.generation, 2);
    assert.deepEqual((await listImages(ckpt)).map((r) => r.generation), [1, 2]);
    // Without `latest`, the highest generation that has a manifest is the latest.
    mkdirSync(join(ckpt, 'images', 'gen-000009'));
    renameSync(join(ckpt, 'latest'), join(dir, 'latest.saved'));
    assert.equal((await readImage(ckpt)).ref.generation, 2);
    await assertImageError(readImage(ckpt, 9), 'MISSING');
    renameSync(join(dir, 'latest.saved'), join(ckpt, 'latest'));
    rmdirSync(join(ckpt, 'images', 'gen-000009'));

    const m3 = sampleMemory();
    fillRandom(m3, 13 * MiB, MiB, 6);
    const w3 = await writeImage(ckpt, snapshot(m3, 3), { moduleBytes: moduleA });
    assert.deepEqual(leftovers(ckpt), []);
    assert.deepEqual(chunkFiles(ckpt), referencedChunks(ckpt)); // the orphan is gone
    assertSameSnapshot((await readImage(ckpt)).snapshot, snapshot(m3, 3));
    assertSameSnapshot((await readImage(ckpt, 2)).snapshot, s2);
    assert.equal(w3.generation, 3);
  } finally {
    cleanup();
  }
});

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((res) => child.on('exit', res));
  return child.pid!;
}

test('a writer killed with SIGKILL at random moments never breaks the latest image', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    const indexUrl = pathToFileURL(join(repoRoot, 'dist', 'src', 'image', 'index.js')).href;
    // The child writes generations g = first, first+1, ... of a 24 MiB memory whose content
    // is a function of g, reporting each one published, until killed.
    const child = `
      import { writeImage } from ${JSON.stringify(indexUrl)};
      import { createHash } from 'node:crypto';
      const fillRandom = ${fillRandom.toString()};
      const memoryOf = ${memoryOf.toString()};
      const moduleBytes = new Uint8Array(${JSON.stringify([...moduleA.subarray(0, 64)])});
      const hash = createHash('sha256').update(moduleBytes).digest('hex');
      for (let g = Number(process.argv[1]); ; g++) {
        const snap = { moduleHash: hash, instrumentedHash: hash, memory: memoryOf(g, fillRandom), globals: [],
          asyncifyData: 0, engine: { unwindImports: [], poll: false, stackPointer: null, maxFrameBytes: 0 },
          wasi: { args: [], env: [], preopens: [], fds: [] }, monotonicNs: '0', stdinPending: new Uint8Array(0), stdinReceived: 0,
          meta: { name: 'k', generation: g, createdAt: '', pauseMs: 0, host: { hostname: '', platform: '', arch: '', node: '', pid: 0 } } };
        await writeImage(process.argv[2], snap, { moduleBytes, keep: 3, compress: g % 3 === 0 ? 'brotli' : 'none' });
        process.stdout.write('published ' + g + '\\n');
      }`;
    let first = 1;
    let published = 0;
    for (let round = 0; round < 8; round++) {
      const p = spawn(process.execPath, ['--input-type=module', '-e', child, String(first), ckpt], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      // Kill at a random moment: before, during or after the first few images.
      // (Later, if nothing was published yet: a loaded machine may take longer for the first.)
      const delay = 60 + Math.floor(Math.random() * 500) + (published === 0 ? round * 500 : 0);
      await new Promise((res) => setTimeout(res, delay));
      p.kill('SIGKILL');
      await new Promise((res) => p.on('close', res)); // its stdout read to the end, not just exited
      const done = [...out.matchAll(/published (\d+)/g)].map((m) => Number(m[1]));
      if (done.length) published = Math.max(published, ...done);
      if (published === 0) continue;
      // The latest image is complete and exactly what was written for its generation, which is
      // the last one reported or the one being published when the kill came.
      const r = await readImage(ckpt);
      const g = r.ref.generation;
      assert.ok(g === published || g === published + 1, `latest is ${g}, last reported ${published}`);
      assert.ok(Buffer.from(r.snapshot.memory).equals(Buffer.from(memoryOf(g, fillRandom))), `generation ${g} memory`);
      first = g + 1;
      published = g; // the next round goes on from here, reported or not
    }
    assert.ok(published > 0, 'some image was published');
    // A writer in this process cleans what the killed ones left (and keeps 3, of however many
    // the killed ones published).
    const before = (await listImages(ckpt)).length;
    const w = await writeImage(ckpt, snapshot(memoryOf(first, fillRandom), first, moduleA.subarray(0, 64)), { moduleBytes: moduleA.subarray(0, 64), keep: 3 });
    assert.deepEqual(leftovers(ckpt), []);
    assert.deepEqual(chunkFiles(ckpt), referencedChunks(ckpt));
    assert.equal((await listImages(ckpt)).length, Math.min(3, before + 1));
    assert.equal((await readImage(ckpt)).ref.generation, w.generation);
  } finally {
    cleanup();
  }
});

/** The memory the kill test's writer uses for generation g (24 MiB; 4 MiB change per g). */
function memoryOf(g: number, fill: (mem: Uint8Array, off: number, len: number, seed: number) => void): Uint8Array {
  const mem = new Uint8Array(24 * 1024 * 1024);
  fill(mem, 0, 16 * 1024 * 1024, 1);
  fill(mem, (g % 5) * 4 * 1024 * 1024, 4 * 1024 * 1024, g + 100);
  return mem;
}

test('keep N removes older generations and only unreferenced chunks and modules', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    const mems: Uint8Array[] = [];
    for (let g = 1; g <= 5; g++) {
      const mem = sampleMemory(8 * MiB);
      fillRandom(mem, 4 * MiB, MiB, g * 10); // one chunk per generation differs
      mems[g] = mem;
      const module = g >= 3 ? moduleB : moduleA;
      await writeImage(ckpt, snapshot(mem, g, module), { moduleBytes: module, keep: 2 });
      assert.ok((await listImages(ckpt)).length <= 2);
    }
    assert.deepEqual((await listImages(ckpt)).map((r) => r.generation), [4, 5]);
    assert.deepEqual(chunkFiles(ckpt), referencedChunks(ckpt));
    assert.deepEqual(readdirSync(join(ckpt, 'modules')), [`${sha256(moduleB)}.wasm`]);
    assertSameSnapshot((await readImage(ckpt, 4)).snapshot, snapshot(mems[4]!, 4, moduleB));
    assertSameSnapshot((await readImage(ckpt)).snapshot, snapshot(mems[5]!, 5, moduleB));
    // keep 1 keeps only the new image.
    await writeImage(ckpt, snapshot(mems[5]!, 6, moduleB), { moduleBytes: moduleB, keep: 1 });
    assert.deepEqual((await listImages(ckpt)).map((r) => r.generation), [6]);
    assert.deepEqual(chunkFiles(ckpt), referencedChunks(ckpt));
    assertSameSnapshot((await readImage(ckpt)).snapshot, snapshot(mems[5]!, 6, moduleB));
    // Without keep nothing is removed.
    await writeImage(ckpt, snapshot(mems[1]!, 7, moduleB), { moduleBytes: moduleB });
    assert.deepEqual((await listImages(ckpt)).map((r) => r.generation), [6, 7]);
  } finally {
    cleanup();
  }
});

test('an existing generation is replaced (restart from an older image) and becomes the latest', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    for (let g = 1; g <= 3; g++) await writeImage(ckpt, snapshot(sampleMemory(4 * MiB), g), { moduleBytes: moduleA });
    const mem = sampleMemory(4 * MiB);
    fillRandom(mem, MiB, MiB, 77);
    await writeImage(ckpt, snapshot(mem, 2), { moduleBytes: moduleA });
    assert.deepEqual((await listImages(ckpt)).map((r) => r.generation), [1, 2, 3]);
    const r = await readImage(ckpt);
    assert.equal(r.ref.generation, 2);
    assertSameSnapshot(r.snapshot, snapshot(mem, 2));
    assert.deepEqual(leftovers(ckpt), []);
  } finally {
    cleanup();
  }
});

test('a live writer holds the directory: a second one gets BUSY and changes nothing', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    await writeImage(ckpt, snapshot(sampleMemory(4 * MiB), 1), { moduleBytes: moduleA });
    writeFileSync(join(ckpt, '.lock'), JSON.stringify({ pid: process.pid, host: hostname(), time: new Date().toISOString() }));
    const before = tree(ckpt).filter((l) => !l.startsWith(ckpt + ' '));
    await assertImageError(writeImage(ckpt, snapshot(sampleMemory(4 * MiB), 2), { moduleBytes: moduleA }), 'BUSY', '.lock');
    assert.deepEqual(tree(ckpt).filter((l) => !l.startsWith(ckpt + ' ')), before);
    unlinkSync(join(ckpt, '.lock'));
    await writeImage(ckpt, snapshot(sampleMemory(4 * MiB), 2), { moduleBytes: moduleA });
    assert.equal(existsSync(join(ckpt, '.lock')), false);
  } finally {
    cleanup();
  }
});

test('writeImage refuses module bytes that are not the snapshot\'s instrumented module', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await assert.rejects(writeImage(join(dir, 'c'), snapshot(new Uint8Array(65536), 1), { moduleBytes: moduleB }), /instrumented module/);
  } finally {
    cleanup();
  }
});

test('a checkpoint that runs out of disk fails, keeps the previous image, and leaves nothing behind', async (t) => {
  // A 40 MiB file system of its own: room for one 24 MiB image, not two.
  const small = smallFs(t, '40m');
  if (small === null) return;
  try {
    const ckpt = join(small.dir, 'ckpt');
    const memory = new Uint8Array(24 * MiB);
    fillRandom(memory, 0, memory.length, 1000);
    const first = snapshot(memory, 1);
    await writeImage(ckpt, first, { moduleBytes: moduleA });
    // Every file with its size (directories' times change as names come and go).
    const files = (): string[] => tree(ckpt).filter((l) => !statSync(l.split(' ')[0]!).isDirectory()).map((l) => l.split(' ').slice(0, 2).join(' '));
    const before = files();
    for (const g of [2, 3]) {
      const mem = new Uint8Array(24 * MiB);
      fillRandom(mem, 0, mem.length, 1000 + g);
      await assert.rejects(writeImage(ckpt, snapshot(mem, g), { moduleBytes: moduleA }), /ENOSPC/);
      assert.deepEqual(files(), before, `attempt ${g} left nothing behind`);
    }
    const r = await readImage(ckpt);
    assert.equal(r.ref.generation, 1);
    assert.ok(Buffer.from(r.snapshot.memory).equals(Buffer.from(first.memory)));
  } finally {
    small.cleanup();
  }
});

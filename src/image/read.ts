// Reading checkpoint images: every byte is checked against the hashes in the manifest.
// Nothing here writes to the file system.
import { closeSync, fstatSync, read } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { ChunkEntry, FilePolicyOptions, FileTreatment, Manifest, Snapshot, SnapshotMeta } from './schema.js';
import { guestPath, type FdState, type Location, type Preopen } from '../wasi/state.js';
import { ImageError } from '../errors.js';
import { IMAGES, chunkFile, genName, moduleFile, type ChunkHash, type Codec } from './format.js';
import { errno, openRegularFile, readRegularFile, sha256hex, unreadable } from '../util/fs.js';
import { readCopy } from './files.js';
import { hashChunk } from './hash.js';
import { xxh64hexInPlace } from './xxh64.js';
import { generations, latestPointer, latestGeneration, loadManifest, resolveImage, type ImageRef } from './manifest.js';

export interface ReadOptions {
  /** Which generation, when the path is a checkpoint directory (default: the latest). */
  generation?: number;
  /**
   * Supplies the memory to restore into, given its size in bytes: a Uint8Array of exactly
   * that length, or a WebAssembly.Memory (grown here if smaller; then chunks are read straight
   * into it and hashed in place, the fastest restore). Its old contents (e.g. data segments of
   * a fresh instance) are overwritten; all-zero chunks are zeroed where they are not already.
   * snapshot.memory is then a view of it. Default: a new Uint8Array.
   */
  into?: (byteLength: number) => Uint8Array | WebAssembly.Memory;
  /** false: skip the memory (snapshot.memory is then empty), e.g. to plan a restart. */
  memory?: boolean;
}

export interface ReadResult {
  ref: ImageRef;
  snapshot: Snapshot;
  moduleBytes: Uint8Array;
}

const readAsync = promisify(read);
/** Chunks read ahead of the one being hashed: two reads in flight (of the thread pool's four)
 *  restored 1 GiB from the page cache in ~0.47 s against ~0.65 s one chunk at a time. */
const READ_AHEAD = 2;

/** Where chunk `index` lies in memory (the last chunk may be short). */
function span(m: Manifest, index: number): { off: number; len: number } {
  const off = index * m.memory.chunkSize;
  return { off, len: Math.min(m.memory.chunkSize, m.memory.byteLength - off) };
}

function corruptChunk(file: string, imageDir: string, what: string): ImageError {
  return new ImageError('CORRUPT', `memory chunk ${file} of checkpoint image ${imageDir} ${what}: the image cannot be restored; restart from another generation (or take a new checkpoint)`, file);
}

function missing(file: string, imageDir: string, what: string): ImageError {
  return new ImageError('MISSING', `${what} ${file} of checkpoint image ${imageDir} is missing: copy or move the whole checkpoint directory (images/, chunks/ and modules/ together), or restart from another generation`, file);
}

/**
 * Starts reading one chunk into place; resolves once its bytes are there (check them with
 * checkChunk). An uncompressed chunk is read on the thread pool, so that the caller can hash
 * the previous one meanwhile (a 1 GiB restore: ~0.5 s of reading, ~0.17 s of hashing); open
 * and fstat stay synchronous (cheap, and a missing chunk is reported at once). Compressed
 * chunks are read and inflated here.
 */
function readChunk(ckptDir: string, imageDir: string, m: Manifest, c: ChunkEntry, target: Uint8Array): Promise<void> {
  const file = join(ckptDir, chunkFile(m.memory.hash, c.hash, c.codec));
  const { off, len } = span(m, c.index);
  const dest = target.subarray(off, off + len);
  if (c.codec === 'none') {
    let fd: number;
    try {
      fd = openRegularFile(file, true);
    } catch (e) {
      if (errno(e) === 'ENOENT') throw missing(file, imageDir, 'memory chunk');
      throw corruptChunk(file, imageDir, `cannot be read: ${unreadable(e)}`);
    }
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    if (size !== len) {
      closeSync(fd);
      throw corruptChunk(file, imageDir, `has ${size} bytes instead of ${len} (truncated or damaged)`);
    }
    return (async () => {
      try {
        for (let done = 0; done < len;) {
          const { bytesRead } = await readAsync(fd, dest, done, len - done, done);
          if (bytesRead === 0) throw corruptChunk(file, imageDir, 'is truncated');
          done += bytesRead;
        }
      } finally {
        closeSync(fd);
      }
    })();
  }
  let data: Buffer;
  try {
    // Compressing never made a stored chunk much larger than its memory (else it is stored raw).
    data = readRegularFile(file, { noFollow: true, limit: 2 * len + 4096 });
  } catch (e) {
    if (errno(e) === 'ENOENT') throw missing(file, imageDir, 'memory chunk');
    throw corruptChunk(file, imageDir, `cannot be read: ${unreadable(e)}`);
  }
  let raw: Buffer;
  try {
    raw = c.codec === 'brotli' ? zlib.brotliDecompressSync(data, { maxOutputLength: len + 1 }) : zlib.inflateRawSync(data, { maxOutputLength: len + 1 });
  } catch {
    throw corruptChunk(file, imageDir, `does not decompress (${c.codec}): truncated or damaged`);
  }
  if (raw.length !== len) throw corruptChunk(file, imageDir, `decompresses to ${raw.length} bytes instead of ${len}`);
  dest.set(raw);
  return Promise.resolve();
}

/** Checks a chunk read into place against its hash (in place for a wasm memory). */
function checkChunk(ckptDir: string, imageDir: string, m: Manifest, c: ChunkEntry, target: Uint8Array, wasm: WebAssembly.Memory | null): void {
  const { off, len } = span(m, c.index);
  const hash = wasm && m.memory.hash === 'xxh64' ? xxh64hexInPlace(wasm, off, len) : hashChunk(m.memory.hash, target.subarray(off, off + len));
  if (hash !== c.hash) {
    throw corruptChunk(join(ckptDir, chunkFile(m.memory.hash, c.hash, c.codec)), imageDir, `does not match its ${m.memory.hash} hash (damaged)`);
  }
}

/** What `verifyImage` checked. */
export interface Verified {
  image: string;
  memoryBytes: number;
  chunks: number;
  savedCopies: number;
}

/**
 * Checks a whole image as a restart does before it changes anything — manifest, module, every
 * memory chunk, every saved copy — and keeps nothing: throws ImageError at the first problem.
 */
export async function verifyImage(path: string, generation?: number): Promise<Verified> {
  const r = await readImage(path, generation === undefined ? {} : { generation });
  let savedCopies = 0;
  for (const f of r.snapshot.files ?? []) {
    if (f.copy === undefined) continue;
    readCopy(r.ref.dir, f.copy, f.hostPath, () => {});
    savedCopies++;
  }
  const m = await loadManifest(r.ref.path);
  return { image: r.ref.path, memoryBytes: r.snapshot.memory.length, chunks: m.memory.chunks.length, savedCopies };
}

/**
 * Reads and verifies an image: `path` is a checkpoint directory (its latest image, or
 * opts.generation), an image directory, or an image's manifest.json.
 */
export async function readImage(path: string, opts: ReadOptions | number = {}): Promise<ReadResult> {
  const o: ReadOptions = typeof opts === 'number' ? { generation: opts } : opts;
  const { ckptDir, imageDir } = await resolveImage(path, o.generation);
  const m = await loadManifest(imageDir);

  const modFile = join(ckptDir, moduleFile(m.module.sha256));
  let moduleBytes: Buffer;
  try {
    moduleBytes = readRegularFile(modFile, { noFollow: true, limit: m.module.size });
  } catch (e) {
    if (errno(e) === 'ENOENT') throw missing(modFile, imageDir, 'module');
    throw new ImageError('CORRUPT', `module ${modFile} of checkpoint image ${imageDir} cannot be read (${unreadable(e)}): restart from another generation`, modFile);
  }
  if (moduleBytes.length !== m.module.size || sha256hex(moduleBytes) !== m.module.sha256) {
    throw new ImageError('CORRUPT', `module ${modFile} of checkpoint image ${imageDir} does not match its sha256 (damaged or truncated): restart from another generation`, modFile);
  }

  const stdin = Buffer.from(m.stdinPending.base64, 'base64');
  if (stdin.length !== m.stdinPending.size || sha256hex(stdin) !== m.stdinPending.sha256) {
    throw new ImageError('CORRUPT', `checkpoint image ${imageDir}: the pending stdin bytes in its manifest do not match their sha256: restart from another generation`, join(imageDir, 'manifest.json'));
  }

  const result = (memory: Uint8Array): ReadResult => ({
    ref: { dir: ckptDir, path: imageDir, generation: m.snapshot.meta.generation, name: m.snapshot.meta.name },
    snapshot: { ...m.snapshot, memory, stdinPending: new Uint8Array(stdin.buffer, stdin.byteOffset, stdin.length) },
    moduleBytes: new Uint8Array(moduleBytes.buffer, moduleBytes.byteOffset, moduleBytes.length),
  });
  if (o.memory === false) return result(new Uint8Array(0));
  const byteLength = m.memory.byteLength;
  const { memory, wasm, zeroed } = target(o, byteLength);
  // Chunk i is hashed while the next READ_AHEAD chunks are being read.
  const chunks = m.memory.chunks;
  const start = (i: number): Promise<void> | null => {
    if (i >= chunks.length) return null;
    let p: Promise<void>;
    try {
      p = readChunk(ckptDir, imageDir, m, chunks[i]!, memory);
    } catch (e) {
      p = Promise.reject(e); // reported in chunk order, after the chunks before it are checked
    }
    p.catch(() => {}); // awaited below; not unhandled if an earlier chunk fails first
    return p;
  };
  const reading: (Promise<void> | null)[] = [];
  for (let k = 0; k < READ_AHEAD; k++) reading.push(start(k));
  for (let i = 0; i < chunks.length; i++) {
    await reading.shift();
    reading.push(start(i + READ_AHEAD));
    checkChunk(ckptDir, imageDir, m, chunks[i]!, memory, wasm);
  }
  await Promise.all(reading);
  if (!zeroed) zeroGaps(memory, m);
  return result(memory);
}

function target(o: ReadOptions, byteLength: number): { memory: Uint8Array; wasm: WebAssembly.Memory | null; zeroed: boolean } {
  if (!o.into) return { memory: new Uint8Array(byteLength), wasm: null, zeroed: true };
  const t = o.into(byteLength);
  if (t instanceof WebAssembly.Memory) {
    const have = t.buffer.byteLength;
    if (have >= byteLength + 65536) throw new TypeError(`readImage: into() gave a memory of ${have} bytes, larger than the image's ${byteLength}`);
    if (have < byteLength) t.grow(Math.ceil((byteLength - have) / 65536));
    return { memory: new Uint8Array(t.buffer, 0, byteLength), wasm: t, zeroed: false };
  }
  if (!(t instanceof Uint8Array) || t.length !== byteLength) {
    throw new TypeError(`readImage: into(${byteLength}) returned ${(t as Uint8Array | null)?.length} bytes`);
  }
  return { memory: t, wasm: null, zeroed: false };
}

let zeros = new Uint8Array(0);
/** Zeroes the chunks the image does not store (all-zero ones) where they are not zero yet. */
function zeroGaps(memory: Uint8Array, m: Manifest): void {
  const cs = m.memory.chunkSize;
  if (zeros.length < cs) zeros = new Uint8Array(cs);
  const z = Buffer.from(zeros.buffer, 0, cs);
  let next = 0;
  const gap = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const { off, len } = span(m, i);
      const view = Buffer.from(memory.buffer, memory.byteOffset + off, len);
      if (view.compare(z, 0, len) !== 0) view.fill(0);
    }
  };
  for (const c of m.memory.chunks) {
    gap(next, c.index);
    next = c.index + 1;
  }
  gap(next, Math.ceil(m.memory.byteLength / cs));
}

/** The images of a checkpoint directory whose manifests pass their checks, oldest first. */
export async function listImages(ckptDir: string): Promise<ImageRef[]> {
  const out: ImageRef[] = [];
  for (const g of await generations(ckptDir)) {
    const path = join(ckptDir, IMAGES, genName(g));
    try {
      const m = await loadManifest(path);
      out.push({ dir: ckptDir, path, generation: g, name: m.snapshot.meta.name });
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
    }
  }
  return out;
}

/** The latest image of a checkpoint directory, or null if it has none. */
export async function latestImage(ckptDir: string): Promise<ImageRef | null> {
  const g = await latestGeneration(ckptDir);
  if (g === null) return null;
  const path = join(ckptDir, IMAGES, genName(g));
  const m = await loadManifest(path);
  return { dir: ckptDir, path, generation: g, name: m.snapshot.meta.name };
}

/** What `stasis inspect` shows of an image (its --json output, in this order). */
export interface ImageSummary {
  format: { magic: string; version: number };
  checkpointDir: string;
  image: string;
  /** Whether `latest` names this image. */
  latest: boolean;
  name: string;
  generation: number;
  createdAt: string;
  pauseMs: number;
  host: SnapshotMeta['host'];
  moduleHash: string;
  module: { sha256: string; size: number; file: string };
  memory: {
    byteLength: number;
    chunkSize: number;
    chunkHash: ChunkHash;
    chunks: number;
    storedChunks: number;
    zeroChunks: number;
    /** Bytes of the chunk files it references (each counted once). */
    storedBytes: number;
    /** Stored chunks by codec. */
    codecs: Partial<Record<Codec, number>>;
  };
  /** How many globals. */
  globals: number;
  asyncifyData: number;
  monotonicNs: string;
  stdinPendingBytes: number;
  /** Absent in images written before it was recorded. */
  stdinReceived?: number;
  wasi: {
    args: string[];
    /** How many environment variables. */
    env: number;
    preopens: Preopen[];
    fds: { fd: number; kind: FdState['kind']; stream?: 0 | 1 | 2; location?: Location; access?: 'r' | 'w' | 'rw'; offset?: number }[];
  };
  files: {
    path: string;
    guestPath: string;
    fds: number[];
    treatment: FileTreatment;
    reason: string;
    size: number;
    /** Permission bits in octal ("0644"). */
    mode: string;
    deleted: boolean;
    /** The saved copy, relative to the checkpoint directory. */
    copy?: string;
    restartPath?: string;
  }[];
  filePolicy?: FilePolicyOptions;
  /** Every file the image references is there with the right size. */
  complete: boolean;
  /** What is missing or of the wrong size. */
  problems: string[];
}

/**
 * A summary of an image for `stasis inspect`, from its manifest alone (checked), plus the
 * presence and size of every file it references; memory is not read or hashed.
 */
export async function inspectImage(path: string, generation?: number): Promise<ImageSummary> {
  const { ckptDir, imageDir } = await resolveImage(path, generation);
  const m = await loadManifest(imageDir);
  const s = m.snapshot;
  const problems: string[] = [];
  const codecs: Partial<Record<Codec, number>> = {};
  let storedBytes = 0;
  const seen = new Set<string>();
  for (const c of m.memory.chunks) {
    codecs[c.codec] = (codecs[c.codec] ?? 0) + 1;
    const rel = chunkFile(m.memory.hash, c.hash, c.codec);
    if (seen.has(rel)) continue;
    seen.add(rel);
    try {
      const size = (await stat(join(ckptDir, rel))).size;
      storedBytes += size;
      const { len } = span(m, c.index);
      if (c.codec === 'none' && size !== len) problems.push(`${rel}: ${size} bytes instead of ${len}`);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
      problems.push(`${rel}: missing`);
    }
  }
  const modRel = moduleFile(m.module.sha256);
  try {
    const size = (await stat(join(ckptDir, modRel))).size;
    if (size !== m.module.size) problems.push(`${modRel}: ${size} bytes instead of ${m.module.size}`);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
    problems.push(`${modRel}: missing`);
  }
  for (const f of s.files ?? []) {
    if (f.copy === undefined || seen.has(f.copy.file)) continue;
    seen.add(f.copy.file);
    const size = (await stat(join(ckptDir, f.copy.file)).catch(() => null))?.size;
    if (size === undefined) problems.push(`${f.copy.file}: missing`);
    else if (size !== f.copy.size) problems.push(`${f.copy.file}: ${size} bytes instead of ${f.copy.size}`);
  }
  const nChunks = Math.ceil(m.memory.byteLength / m.memory.chunkSize);
  return {
    format: { magic: m.magic, version: m.version },
    checkpointDir: ckptDir,
    image: imageDir,
    latest: (await latestPointer(ckptDir)) === s.meta.generation,
    name: s.meta.name,
    generation: s.meta.generation,
    createdAt: s.meta.createdAt,
    pauseMs: s.meta.pauseMs,
    host: s.meta.host,
    moduleHash: s.moduleHash,
    module: { sha256: m.module.sha256, size: m.module.size, file: modRel },
    memory: {
      byteLength: m.memory.byteLength,
      chunkSize: m.memory.chunkSize,
      chunkHash: m.memory.hash,
      chunks: nChunks,
      storedChunks: m.memory.chunks.length,
      zeroChunks: nChunks - m.memory.chunks.length,
      storedBytes,
      codecs,
    },
    globals: s.globals.length,
    asyncifyData: s.asyncifyData,
    monotonicNs: s.monotonicNs,
    stdinPendingBytes: m.stdinPending.size,
    ...(s.stdinReceived !== undefined && { stdinReceived: s.stdinReceived }),
    wasi: {
      args: s.wasi.args,
      env: s.wasi.env.length,
      preopens: s.wasi.preopens,
      fds: s.wasi.fds.map((f) => ({ fd: f.fd, kind: f.kind, ...(f.kind === 'stdio' ? { stream: f.stream } : { location: f.location }), ...(f.kind === 'file' ? { access: f.access, offset: f.offset } : {}) })),
    },
    files: (s.files ?? []).map((f) => ({
      path: f.hostPath, guestPath: guestPath(f.location), fds: f.fds,
      treatment: f.treatment, reason: f.reason, size: f.size, mode: `0${f.mode.toString(8)}`, deleted: f.deleted,
      ...(f.copy && { copy: f.copy.file }), ...(f.restartPath !== undefined && { restartPath: f.restartPath }),
    })),
    ...(s.filePolicy && { filePolicy: s.filePolicy }),
    complete: problems.length === 0,
    problems,
  };
}

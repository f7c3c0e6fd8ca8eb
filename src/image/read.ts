// Reading checkpoint images: every byte is checked against the hashes in the manifest.
// Nothing here writes to the file system.
import { closeSync, read } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ChunkEntry, FilePolicyOptions, FileTreatment, Manifest, Snapshot, SnapshotMeta } from './schema.js';
import { guestPath, type FdState, type Location, type Preopen } from '../wasi/state.js';
import { ImageError } from '../errors.js';
import { IMAGES, MANIFEST, MANIFEST_SUM, chunkFile, genName, moduleFile, pagesFile, type ChunkHash, type Codec } from './format.js';
import { nodeZlib } from '../util/builtins.js';
import { sha256hex } from '../util/fs.js';
import { hashChunk } from './hash.js';
import { xxh64hexInPlace } from './xxh64.js';
import { generations, latestPointer, latestGeneration, loadManifest, parseManifest, readManifestFiles, resolveImage, type ImageRef } from './manifest.js';
import { writtenHere } from './provenance.js';
import { checkExportEntries, exportSource, openExport } from './export.js';
import { dirSource, readStored, readStoredAll, type ImageSource, type StoredFile } from './source.js';
import { readCopy } from './files.js';

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
  /** For an export file, `dir` and `path` are the file. */
  ref: ImageRef;
  snapshot: Snapshot;
  moduleBytes: Uint8Array;
  manifest: Manifest;
  /** Where its stored files are read from (a checkpoint directory, or an export file). */
  source: ImageSource;
  /** Whether this user's Stasis wrote it (provenance.ts): else the host paths it names are not used. */
  ours: boolean;
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

function corruptChunk(source: ImageSource, rel: string, imageDir: string, what: string): ImageError {
  return new ImageError('CORRUPT', `memory chunk ${source.name(rel)} of checkpoint image ${imageDir} ${what}: the image cannot be restored; ${source.remedy}`, source.name(rel));
}

function missing(source: ImageSource, rel: string, imageDir: string, what: string): ImageError {
  const hint = source.kind === 'export' ? 'export the image again' : 'copy or move the whole checkpoint directory (images/, chunks/ and modules/ together), or restart from another generation';
  return new ImageError('MISSING', `${what} ${source.name(rel)} of checkpoint image ${imageDir} is missing: ${hint}`, source.name(rel));
}

function openStored(source: ImageSource, rel: string, imageDir: string, what: string): StoredFile {
  const f = source.open(rel);
  if (f === null) throw missing(source, rel, imageDir, what);
  return f;
}

/**
 * Starts reading one chunk into `dest` (exactly its length); resolves once its bytes are
 * there (check them with checkChunk). An uncompressed chunk is read on the thread pool, so
 * that the caller can hash the previous one meanwhile (a 1 GiB restore: ~0.5 s of reading,
 * ~0.17 s of hashing); opening stays synchronous (cheap, and a missing chunk is reported at
 * once). Compressed chunks are read and inflated here, never past the chunk's length.
 */
function readChunk(source: ImageSource, imageDir: string, m: Manifest, c: ChunkEntry, dest: Uint8Array): Promise<void> {
  const rel = chunkFile(m.memory.hash, c.hash, c.codec);
  const len = dest.length;
  const f = openStored(source, rel, imageDir, 'memory chunk');
  if (c.codec === 'none') {
    if (f.size !== len) {
      closeSync(f.fd);
      throw corruptChunk(source, rel, imageDir, `has ${f.size} bytes instead of ${len} (truncated or damaged)`);
    }
    return (async () => {
      try {
        for (let done = 0; done < len;) {
          const { bytesRead } = await readAsync(f.fd, dest, done, len - done, f.start + done);
          if (bytesRead === 0) throw corruptChunk(source, rel, imageDir, 'is truncated');
          done += bytesRead;
        }
      } finally {
        closeSync(f.fd);
      }
    })();
  }
  let data: Buffer;
  try {
    // Compressing never makes a stored chunk much larger than its memory (else it is stored raw).
    if (f.size > 2 * len + 4096) throw corruptChunk(source, rel, imageDir, `has ${f.size} bytes, too many for ${len} bytes of memory (damaged)`);
    data = readStoredAll(f);
  } finally {
    closeSync(f.fd);
  }
  let raw: Buffer;
  try {
    const zlib = nodeZlib(); // loaded once an image is read: a launch loads this file, not it
    raw = c.codec === 'brotli' ? zlib.brotliDecompressSync(data, { maxOutputLength: len + 1 }) : zlib.inflateRawSync(data, { maxOutputLength: len + 1 });
  } catch {
    throw corruptChunk(source, rel, imageDir, `does not decompress (${c.codec}): truncated or damaged`);
  }
  if (raw.length !== len) throw corruptChunk(source, rel, imageDir, `decompresses to ${raw.length} bytes instead of ${len}`);
  dest.set(raw);
  return Promise.resolve();
}

/** Checks a chunk read into place against its hash (in place for a wasm memory). */
function checkChunk(source: ImageSource, imageDir: string, m: Manifest, c: ChunkEntry, target: Uint8Array, wasm: WebAssembly.Memory | null, off: number): void {
  const { len } = span(m, c.index);
  const hash = wasm && m.memory.hash === 'xxh64' ? xxh64hexInPlace(wasm, off, len) : hashChunk(m.memory.hash, target.subarray(off, off + len));
  if (hash !== c.hash) {
    throw corruptChunk(source, chunkFile(m.memory.hash, c.hash, c.codec), imageDir, `does not match its ${m.memory.hash} hash (damaged)`);
  }
}

/**
 * Reads the image's pages file over `memory` (after its chunks), checking each run against its
 * hash (in place for a wasm memory). `memory` null: checks the runs without keeping them.
 */
function readPages(source: ImageSource, imageDir: string, m: Manifest, memory: Uint8Array | null, wasm: WebAssembly.Memory | null): void {
  const pages = m.memory.pages;
  if (pages === undefined) return;
  const rel = pagesFile(m.snapshot.meta.generation);
  const f = openStored(source, rel, imageDir, 'memory pages file');
  const damaged = (what: string): ImageError => new ImageError('CORRUPT', `memory pages file ${f.name} of checkpoint image ${imageDir} ${what}: the image cannot be restored; ${source.remedy}`, f.name);
  try {
    if (f.size !== pages.size) throw damaged(`has ${f.size} bytes instead of ${pages.size} (truncated or damaged)`);
    let at = 0;
    let scratch: Uint8Array | null = null;
    for (const r of pages.runs) {
      let dest: Uint8Array;
      if (memory !== null) dest = memory.subarray(r.offset, r.offset + r.length);
      else {
        if (scratch === null || scratch.length < r.length) scratch = new Uint8Array(r.length);
        dest = scratch.subarray(0, r.length);
      }
      readStored(f, dest, at);
      const hash = memory !== null && wasm && m.memory.hash === 'xxh64' ? xxh64hexInPlace(wasm, r.offset, r.length) : hashChunk(m.memory.hash, dest);
      if (hash !== r.hash) throw damaged(`does not match its ${m.memory.hash} hash at bytes ${at} to ${at + r.length} (damaged)`);
      at += r.length;
    }
  } finally {
    closeSync(f.fd);
  }
}

/** An image's manifest (checked) and where its stored files are: a checkpoint directory's
 *  image, or an export file (its index checked against the manifest). */
async function locate(path: string, generation?: number): Promise<{ ref: ImageRef; imageDir: string; source: ImageSource; m: Manifest; sha: string }> {
  const r = await resolveImage(path, generation);
  if (r.kind === 'directory') {
    const { manifest, sum } = await readManifestFiles(r.imageDir);
    const m = parseManifest(manifest, sum, r.imageDir);
    return { ref: { dir: r.ckptDir, path: r.imageDir, generation: m.snapshot.meta.generation, name: m.snapshot.meta.name }, imageDir: r.imageDir, source: dirSource(r.ckptDir), m, sha: sha256hex(manifest) };
  }
  const idx = openExport(r.file);
  const source = exportSource(idx);
  const imageDir = `${r.file}:${idx.image}`;
  const entry = (rel: string): Buffer | null => {
    const f = source.open(rel);
    if (f === null) return null;
    try {
      return readStoredAll(f);
    } finally {
      closeSync(f.fd);
    }
  };
  const manifest = entry(`${idx.image}/${MANIFEST}`);
  if (manifest === null) throw new ImageError('CORRUPT', `export file ${r.file} has no ${idx.image}/${MANIFEST}: copy it again (or export the image again)`, r.file);
  const m = parseManifest(manifest, entry(`${idx.image}/${MANIFEST_SUM}`), imageDir, source.remedy);
  checkExportEntries(idx, m);
  if (generation !== undefined && generation !== idx.generation) {
    throw new ImageError('MISSING', `export file ${r.file} holds the image of generation ${idx.generation}, not ${generation}`, r.file);
  }
  return { ref: { dir: r.file, path: r.file, generation: idx.generation, name: m.snapshot.meta.name }, imageDir, source, m, sha: sha256hex(manifest) };
}

/**
 * Reads and verifies an image: `path` is a checkpoint directory (its latest image, or
 * opts.generation), an image directory, an image's manifest.json, or an export file.
 */
export async function readImage(path: string, opts: ReadOptions | number = {}): Promise<ReadResult> {
  const o: ReadOptions = typeof opts === 'number' ? { generation: opts } : opts;
  const { ref, imageDir, source, m, sha } = await locate(path, o.generation);

  const modRel = moduleFile(m.module.sha256);
  const mod = openStored(source, modRel, imageDir, 'module');
  let moduleBytes: Buffer;
  try {
    if (mod.size !== m.module.size) throw new ImageError('CORRUPT', `module ${mod.name} of checkpoint image ${imageDir} has ${mod.size} bytes instead of ${m.module.size} (damaged or truncated): ${source.remedy}`, mod.name);
    moduleBytes = readStoredAll(mod);
  } finally {
    closeSync(mod.fd);
  }
  if (sha256hex(moduleBytes) !== m.module.sha256) {
    throw new ImageError('CORRUPT', `module ${mod.name} of checkpoint image ${imageDir} does not match its sha256 (damaged): ${source.remedy}`, mod.name);
  }

  const stdin = Buffer.from(m.stdinPending.base64, 'base64');
  if (stdin.length !== m.stdinPending.size || sha256hex(stdin) !== m.stdinPending.sha256) {
    throw new ImageError('CORRUPT', `checkpoint image ${imageDir}: the pending stdin bytes in its manifest do not match their sha256: ${source.remedy}`, join(imageDir, 'manifest.json'));
  }

  const result = (memory: Uint8Array): ReadResult => ({
    ref,
    snapshot: { ...m.snapshot, memory, stdinPending: new Uint8Array(stdin.buffer, stdin.byteOffset, stdin.length) },
    moduleBytes: new Uint8Array(moduleBytes.buffer, moduleBytes.byteOffset, moduleBytes.length),
    manifest: m,
    ours: writtenHere(sha),
    source,
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
      const { off, len } = span(m, chunks[i]!.index);
      p = readChunk(source, imageDir, m, chunks[i]!, memory.subarray(off, off + len));
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
    checkChunk(source, imageDir, m, chunks[i]!, memory, wasm, span(m, chunks[i]!.index).off);
  }
  await Promise.all(reading);
  if (!zeroed) zeroGaps(memory, m);
  readPages(source, imageDir, m, memory, wasm);
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

/**
 * Reads every memory chunk and saved copy of an image read with readImage and checks each
 * against its hash (the module and manifest were checked by readImage), without keeping the
 * memory: an image that passes restores completely. Throws ImageError MISSING or CORRUPT.
 */
export async function verifyStored(image: ReadResult): Promise<void> {
  const { manifest: m, source } = image;
  const imageDir = image.ref.path;
  const buf = new Uint8Array(m.memory.chunkSize);
  const checked = new Set<string>();
  for (const c of m.memory.chunks) {
    const rel = chunkFile(m.memory.hash, c.hash, c.codec);
    if (checked.has(rel)) continue;
    checked.add(rel);
    const { len } = span(m, c.index);
    await readChunk(source, imageDir, m, c, buf.subarray(0, len));
    checkChunk(source, imageDir, m, c, buf, null, 0);
  }
  readPages(source, imageDir, m, null, null);
  for (const f of m.snapshot.files ?? []) {
    if (f.copy === undefined || checked.has(f.copy.file)) continue;
    checked.add(f.copy.file);
    readCopy(source, f.copy, f.hostPath, () => {});
  }
}

/** What `verifyImage` checked. */
export interface Verified {
  image: string;
  memoryBytes: number;
  chunks: number;
  /** Bytes of the image's own pages file (format 3; 0 without). */
  pagesBytes: number;
  savedCopies: number;
}

/**
 * Checks a whole image as a restart does before it changes anything — manifest, module, every
 * memory chunk, every saved copy — and keeps nothing: throws ImageError at the first problem.
 */
export async function verifyImage(path: string, generation?: number): Promise<Verified> {
  const r = await readImage(path, { ...(generation !== undefined && { generation }), memory: false });
  await verifyStored(r);
  const m = r.manifest;
  return { image: r.ref.path, memoryBytes: m.memory.byteLength, chunks: m.memory.chunks.length, pagesBytes: m.memory.pages?.size ?? 0, savedCopies: (m.snapshot.files ?? []).filter((f) => f.copy !== undefined).length };
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
  /** The checkpoint directory, or the export file. */
  checkpointDir: string;
  /** The image directory (for an export file: FILE:images/gen-NNNNNN). */
  image: string;
  /** Whether `latest` names this image (always, for an export file). */
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
    /** (Format 3) Pages the image stores in its own pages file, over its chunks. */
    pages?: { runs: number; bytes: number };
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
 * presence and size of every file it references (for an export file, its index and every
 * entry's header); memory is not read or hashed.
 */
export async function inspectImage(path: string, generation?: number): Promise<ImageSummary> {
  const { ref, imageDir, source, m } = await locate(path, generation);
  const s = m.snapshot;
  const problems: string[] = [];
  const codecs: Partial<Record<Codec, number>> = {};
  let storedBytes = 0;
  /** The stored file's size; a problem noted when it is missing or unreadable. */
  const sizeOf = (rel: string): number | null => {
    let f: StoredFile | null;
    try {
      f = source.open(rel);
    } catch (e) {
      // A damaged export is damaged as a whole; in a directory, one file is.
      if (!(e instanceof ImageError) || source.kind === 'export') throw e;
      problems.push(`${rel}: ${e.message}`);
      return null;
    }
    if (f === null) problems.push(`${rel}: missing`);
    else closeSync(f.fd);
    return f?.size ?? null;
  };
  const seen = new Set<string>();
  for (const c of m.memory.chunks) {
    codecs[c.codec] = (codecs[c.codec] ?? 0) + 1;
    const rel = chunkFile(m.memory.hash, c.hash, c.codec);
    if (seen.has(rel)) continue;
    seen.add(rel);
    const size = sizeOf(rel);
    if (size === null) continue;
    storedBytes += size;
    const { len } = span(m, c.index);
    if (c.codec === 'none' && size !== len) problems.push(`${rel}: ${size} bytes instead of ${len}`);
  }
  let pagesBytes = 0;
  if (m.memory.pages !== undefined) {
    const rel = pagesFile(s.meta.generation);
    const size = sizeOf(rel);
    if (size !== null && size !== m.memory.pages.size) problems.push(`${rel}: ${size} bytes instead of ${m.memory.pages.size}`);
    pagesBytes = size ?? 0;
  }
  const modRel = moduleFile(m.module.sha256);
  const modSize = sizeOf(modRel);
  if (modSize !== null && modSize !== m.module.size) problems.push(`${modRel}: ${modSize} bytes instead of ${m.module.size}`);
  for (const f of s.files ?? []) {
    if (f.copy === undefined || seen.has(f.copy.file)) continue;
    seen.add(f.copy.file);
    const size = sizeOf(f.copy.file);
    if (size !== null && size !== f.copy.size) problems.push(`${f.copy.file}: ${size} bytes instead of ${f.copy.size}`);
  }
  const nChunks = Math.ceil(m.memory.byteLength / m.memory.chunkSize);
  return {
    format: { magic: m.magic, version: m.version },
    checkpointDir: ref.dir,
    image: imageDir,
    latest: source.kind === 'export' || (await latestPointer(ref.dir)) === s.meta.generation,
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
      ...(m.memory.pages !== undefined && { pages: { runs: m.memory.pages.runs.length, bytes: pagesBytes } }),
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

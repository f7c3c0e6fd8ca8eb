// Writing checkpoint images: content-addressed chunks, atomic publication, retention.
import { hostname } from 'node:os';
import { linkSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { promisify } from 'node:util';
import { manifestShape, type ChunkEntry, type FileRecord, type Manifest, type PageRun, type Snapshot } from './schema.js';
import { ShapeError } from './shape.js';
import { ImageError } from '../errors.js';
import {
  CHUNK_FILE_RE, CHUNKS, CODECS, FILE_NAME_RE, FILES, FORMAT_VERSION, FORMAT_VERSION_NO_PAGES, GEN_RE, IMAGES, LATEST, LOCK, MAGIC,
  MANIFEST, MANIFEST_SUM, MODULE_FILE_RE, MODULES, PAGE, PAGES, STAGE_PREFIX, TMP_PREFIX, chunkFile, codecOfSuffix,
  chunkKey, defaultChunkSize, genName, moduleFile, type ChunkHash, type Codec,
} from './format.js';
import { publishStaged } from './files.js';
import { rememberWritten } from './provenance.js';
import { hashChunk } from './hash.js';
import { allSettled, errno, fsyncDir, pool, renameOrRemove, rmrf, sha256hex, tmpSuffix, writeFileAtomic, writeFilesSynced } from '../util/fs.js';
import { alive } from '../util/proc.js';
import { nodeZlib } from '../util/builtins.js';
import { generations, loadManifest, type ImageRef } from './manifest.js';

export interface WriteOptions {
  /** The instrumented module that ran (its sha256 must be snap.instrumentedHash). */
  moduleBytes: Uint8Array;
  /** Per-chunk compression; default 'none'. 'brotli' (quality 1) is the faster of the two. */
  compress?: Codec;
  /** Keep only this many images (the new one and the highest generations below it). */
  keep?: number;
  /**
   * Optional hint from the engine: which memory changed since the image of generation `base`
   * (in the same checkpoint directory) was captured. Chunks for which isDirty() is false are
   * taken from that image without being read or hashed; of a chunk with a few changed pages,
   * only those pages are written (in the image's pages file, over the chunk it had). A wrong
   * answer makes a wrong image.
   */
  dirty?: {
    base: number;
    isDirty(offset: number, length: number): boolean;
    /** false: chunks that differ from the base are stored whole, and the image has no pages
     *  (the next image's pages are then only those changed after it). Default true. */
    pages?: boolean;
  };
  /** Memory chunk size in bytes, a multiple of 64 KiB (default: defaultChunkSize()). */
  chunkSize?: number;
  /**
   * Hash naming and checking memory chunks: 'xxh64' (default; ~8x faster here) or 'sha256'
   * (collision-resistant: for a checkpoint directory shared by programs that distrust each
   * other). The manifest, module and stdin bytes are always checked with sha256.
   */
  chunkHash?: ChunkHash;
  /**
   * Copies of open files staged for this image (stageFile in files.ts), by the record in
   * snap.files they belong to: published with the image, and the record's `copy` filled in.
   */
  stagedFiles?: Map<FileRecord, string>;
}

export interface WriteResult extends ImageRef {
  /** Bytes this write added to the checkpoint directory (new chunks, module, manifest...). */
  bytesWritten: number;
  ms: number;
  /** Chunks of memory written / reused from the store / omitted as all-zero. */
  chunks: { written: number; reused: number; zero: number };
}

/** Concurrent chunk writes in flight (8 measured better than 4 and as good as 16). */
const WRITE_CONCURRENCY = 8;

// node:zlib loads at the first compressed write (every command loads this file).
const brotliCompress = (raw: Uint8Array, opts: import('node:zlib').BrotliOptions): Promise<Buffer> => promisify(nodeZlib().brotliCompress)(raw, opts);
const deflateRaw = (raw: Uint8Array, opts: import('node:zlib').ZlibOptions): Promise<Buffer> => promisify(nodeZlib().deflateRaw)(raw, opts);
const brotliQuality1 = (): import('node:zlib').BrotliOptions => ({ params: { [nodeZlib().constants.BROTLI_PARAM_QUALITY]: 1 } });

/**
 * Whether a chunk looks incompressible: brotli quality 1 on four 16 KiB samples (~70 us).
 * Random data would otherwise cost deflate ~20 ms per MiB for nothing.
 */
function looksIncompressible(raw: Uint8Array): boolean {
  const piece = 16 << 10;
  if (raw.length < 8 * piece) return false;
  const sample = new Uint8Array(4 * piece);
  for (let k = 0; k < 4; k++) {
    const at = Math.floor((raw.length - piece) * k / 3);
    sample.set(raw.subarray(at, at + piece), k * piece);
  }
  return nodeZlib().brotliCompressSync(sample, brotliQuality1()).length > 0.9 * sample.length;
}

async function encode(codec: Codec, raw: Uint8Array): Promise<Uint8Array> {
  if (codec === 'none' || looksIncompressible(raw)) return raw;
  if (codec === 'deflate') return deflateRaw(raw, { level: 1 });
  return brotliCompress(raw, {
    params: {
      [nodeZlib().constants.BROTLI_PARAM_QUALITY]: 1,
      [nodeZlib().constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });
}

let zeroBuf = Buffer.alloc(1 << 20);
function isZero(mem: Uint8Array, off: number, len: number): boolean {
  if (zeroBuf.length < len) zeroBuf = Buffer.alloc(len);
  const view = Buffer.from(mem.buffer, mem.byteOffset + off, len);
  return view.compare(zeroBuf, 0, len) === 0; // memcmp: tens of GB/s
}

function exists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch (e) {
    if (errno(e) === 'ENOENT') return false;
    throw e;
  }
}

// ---- the writer lock -------------------------------------------------------------------

interface LockInfo { pid: number; host: string; time: string }


/** Takes <ckptDir>/.lock; returns whether a previous holder died holding it. */
function acquireLock(ckptDir: string): boolean {
  const file = join(ckptDir, LOCK);
  const mine: LockInfo = { pid: process.pid, host: hostname(), time: new Date().toISOString() };
  // The lock appears with its content or not at all: written aside, then hard-linked.
  const tmp = join(ckptDir, `${TMP_PREFIX}lock-${tmpSuffix()}`);
  writeFileSync(tmp, JSON.stringify(mine));
  let tookOver = false;
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(tmp, file);
        return tookOver;
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
      }
      let held: Partial<LockInfo> = {};
      try {
        held = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockInfo>;
      } catch (e) {
        if (errno(e) === 'ENOENT') continue; // released meanwhile
        // unreadable: not one of ours, treat as stale
      }
      const stale = typeof held.pid !== 'number'
        || (held.host === mine.host ? !alive(held.pid) : Date.now() - Date.parse(String(held.time)) > 3600_000);
      if (!stale) {
        throw new ImageError('BUSY', `checkpoint directory ${ckptDir} is being written by process ${held.pid} on ${held.host} (since ${held.time}): wait for it, or if no Stasis process is writing there, delete ${file}`, file);
      }
      try {
        unlinkSync(file);
      } catch (e) {
        if (errno(e) !== 'ENOENT') throw e; // released meanwhile
      }
      tookOver = true;
    }
    throw new ImageError('BUSY', `could not take the lock ${file}: another writer keeps taking it; run one writer per checkpoint directory`, file);
  } finally {
    removeQuietly(tmp);
  }
}

function releaseLock(ckptDir: string): void {
  removeQuietly(join(ckptDir, LOCK));
}

/** Removes a file this writer made, if it is there. */
function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // not made, or gone already
  }
}

/** Removes what interrupted writers left (temporaries); returns whether there was any. */
async function removeLeftovers(ckptDir: string): Promise<boolean> {
  let found = false;
  for (const d of [ckptDir, join(ckptDir, IMAGES), join(ckptDir, CHUNKS), join(ckptDir, MODULES), join(ckptDir, FILES)]) {
    for (const n of readdirSync(d)) {
      if (n.startsWith(TMP_PREFIX)) {
        // Another process's lock attempt (it will find the lock held and remove it).
        const lockTry = /^\.tmp-lock-(\d+)-/.exec(n);
        if (lockTry && Number(lockTry[1]) !== process.pid && alive(Number(lockTry[1]))) continue;
        // A copy a live launcher (this one included) staged for the image it is about to write.
        if (n.startsWith(STAGE_PREFIX) && alive(Number(n.slice(STAGE_PREFIX.length).split('-')[0]))) continue;
        found = true;
        await rmrf(join(d, n));
      }
    }
  }
  return found;
}

/** sha256 of module bytes, remembered per array (the engine passes the same one each time). */
const moduleHashes = new WeakMap<Uint8Array, string>();
function moduleHash(bytes: Uint8Array): string {
  let h = moduleHashes.get(bytes);
  if (h === undefined) {
    h = sha256hex(bytes);
    moduleHashes.set(bytes, h);
  }
  return h;
}

// ---- writeImage --------------------------------------------------------------------------

/**
 * Writes `snap` as generation snap.meta.generation of the checkpoint directory `ckptDir`
 * (created if needed) and makes it the latest. Atomic: until it resolves, readers see the
 * previous latest image; a crash leaves only temporaries, removed by the next writer.
 */
export async function writeImage(ckptDir: string, snap: Snapshot, opts: WriteOptions): Promise<WriteResult> {
  const t0 = performance.now();
  const { generation, compress, chunkSize, moduleSha } = checkWrite(snap, opts);
  for (const d of [IMAGES, CHUNKS, MODULES, FILES]) mkdirSync(join(ckptDir, d), { recursive: true });
  const tookOverLock = acquireLock(ckptDir);
  let tmpImage: string | undefined;
  let latestTmp: string | undefined;
  // Store files this attempt added (module, chunks, saved copies) until an image names them:
  // a failed attempt (a full disk) removes them again, leaving the store as it was.
  const added: string[] = [];
  try {
    let needGc = (await removeLeftovers(ckptDir)) || tookOverLock;
    const sfx = tmpSuffix();
    tmpImage = join(ckptDir, IMAGES, `${TMP_PREFIX}${genName(generation)}-${sfx}`);
    mkdirSync(tmpImage);
    let bytesWritten = await storeModule(ckptDir, moduleSha, opts.moduleBytes, sfx, added);
    const alg = opts.chunkHash ?? 'xxh64';
    const memory = await storeMemory(ckptDir, snap.memory, { alg, chunkSize, compress, sfx, added, ...(opts.dirty && { dirty: opts.dirty }) });
    bytesWritten += memory.bytesWritten;
    bytesWritten += await storeFiles(ckptDir, snap, opts.stagedFiles, added);

    const { memory: _m, stdinPending, ...state } = snap;
    const stdin = Buffer.from(stdinPending.buffer, stdinPending.byteOffset, stdinPending.length);
    const pages = memory.pages;
    const manifest = checkedManifest({
      magic: MAGIC,
      version: pages.runs.length > 0 ? FORMAT_VERSION : FORMAT_VERSION_NO_PAGES,
      module: { sha256: moduleSha, size: opts.moduleBytes.length },
      memory: {
        byteLength: snap.memory.length, chunkSize, hash: alg, chunks: memory.entries,
        ...(pages.runs.length > 0 && { pages: { size: pages.size, runs: pages.runs } }),
      },
      stdinPending: { size: stdin.length, sha256: sha256hex(stdin), base64: stdin.toString('base64') },
      snapshot: state,
    });
    // Everything the image names made durable in one round (writeFilesSynced; one after another
    // the waits for the disk were most of a small checkpoint's time): the image's own files
    // (pages, manifest, sidecar) and directory, `latest`'s next content, and the store's
    // directories this write added to. After a writer that died (its leftovers, or its lock),
    // all three: its entries, which this image may reuse, may not be durable yet. Otherwise
    // every entry there was made durable by the writer that added it, before its image.
    const storeDirs = [MODULES, CHUNKS, FILES].filter((d) => needGc || added.some((f) => f.startsWith(join(ckptDir, d) + sep)));
    const latest = Buffer.from(`${genName(generation)}\n`);
    latestTmp = join(ckptDir, `${TMP_PREFIX}${LATEST}-${sfx}`);
    const json = Buffer.from(JSON.stringify(manifest, null, 1) + '\n');
    const sha = sha256hex(json);
    const sum = Buffer.from(`${sha}  ${MANIFEST}\n`);
    // The image's files under their final names: the directory is not an image until renamed.
    await writeFilesSynced([
      ...(pages.data.length > 0 ? [{ path: join(tmpImage, PAGES), data: pages.data }] : []),
      { path: join(tmpImage, MANIFEST), data: json },
      { path: join(tmpImage, MANIFEST_SUM), data: sum },
      { path: latestTmp, data: latest },
    ], [tmpImage, ...storeDirs.map((d) => join(ckptDir, d))]);
    rememberWritten(sha);
    bytesWritten += json.length + sum.length;
    const published = await publish(ckptDir, tmpImage, generation, sfx, latestTmp, () => { added.length = 0; });
    tmpImage = undefined;
    latestTmp = undefined;
    lastWritten.set(ckptDir, { generation, chunkSize, alg, ...layoutOf(snap.memory.length, memory.entries, pages.runs) });
    bytesWritten += published.bytesWritten;
    needGc ||= published.replacedOne;

    // Retention and garbage collection (after publication: a crash here loses nothing).
    if (opts.keep !== undefined) {
      await retire(ckptDir, generation, opts.keep, sfx);
      needGc = true; // with a retention limit there are few images: always collect
    }
    if (needGc) {
      await removeLeftovers(ckptDir); // images retired or replaced, a dead writer's files
      await collectGarbage(ckptDir);
    }

    return {
      dir: ckptDir,
      path: published.imageDir,
      generation,
      name: snap.meta.name,
      bytesWritten,
      ms: performance.now() - t0,
      chunks: memory.counts,
    };
  } catch (e) {
    for (const file of added) removeQuietly(file);
    throw e;
  } finally {
    if (tmpImage) await rmrf(tmpImage).catch(() => {});
    if (latestTmp) removeQuietly(latestTmp);
    releaseLock(ckptDir);
  }
}

/** The options checked against the snapshot, with their defaults. */
function checkWrite(snap: Snapshot, opts: WriteOptions): { generation: number; compress: Codec; chunkSize: number; moduleSha: string } {
  const generation = snap.meta.generation;
  if (!Number.isSafeInteger(generation) || generation < 1) throw new TypeError(`writeImage: bad generation ${generation}`);
  const compress = opts.compress ?? 'none';
  if (!CODECS.includes(compress)) throw new TypeError(`writeImage: bad compress ${String(compress)}`);
  if (opts.keep !== undefined && (!Number.isSafeInteger(opts.keep) || opts.keep < 1)) throw new TypeError(`writeImage: keep must be a positive integer (got ${opts.keep})`);
  const chunkSize = opts.chunkSize ?? defaultChunkSize(snap.memory.length);
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize % 65536 !== 0) throw new TypeError(`writeImage: chunkSize must be a multiple of 64 KiB (got ${chunkSize})`);
  const moduleSha = moduleHash(opts.moduleBytes);
  if (moduleSha !== snap.instrumentedHash) {
    throw new TypeError(`writeImage: moduleBytes (sha256 ${moduleSha}) are not the instrumented module of the snapshot (${snap.instrumentedHash})`);
  }
  return { generation, compress, chunkSize, moduleSha };
}

/** The module, stored once per content. Returns the bytes written. */
async function storeModule(ckptDir: string, moduleSha: string, bytes: Uint8Array, sfx: string, added: string[]): Promise<number> {
  const final = join(ckptDir, moduleFile(moduleSha));
  let written = 0;
  if (!exists(final)) {
    await writeFileAtomic(join(ckptDir, MODULES, `${TMP_PREFIX}${moduleFile(moduleSha).slice(MODULES.length + 1)}-${sfx}`), final, bytes);
    added.push(final);
    written = bytes.length;
  }
  return written; // the directory is fsynced with the manifest
}

interface MemoryStore { alg: ChunkHash; chunkSize: number; compress: Codec; sfx: string; added: string[]; dirty?: WriteOptions['dirty'] }

/** The pages an image stores in its own pages file: runs, and their bytes in order. */
interface StoredPages { size: number; runs: PageRun[]; data: Uint8Array[] }

/** The pages an image may store in its pages file: at most this share of its memory. Above it,
 *  the chunks they lie in are written whole (the pages then start again from none). */
const PAGES_SHARE = 1 / 16;

/**
 * Memory as chunks by content; what the store has is not written again. With a dirty hint, the
 * chunks of the base image keep the base's chunk files, and the pages that differ (changed
 * since, or stored in the base's own pages file) go into this image's pages file, if they are
 * few (PAGES_SHARE): a small change writes its pages, not whole chunks, and no store file.
 */
async function storeMemory(ckptDir: string, mem: Uint8Array, o: MemoryStore): Promise<{ entries: ChunkEntry[]; pages: StoredPages; counts: WriteResult['chunks']; bytesWritten: number }> {
  const { alg, chunkSize, compress, sfx } = o;
  const stored = new Map<string, Codec>(); // chunk key -> a codec it is stored with
  for (const n of readdirSync(join(ckptDir, CHUNKS))) {
    const m = CHUNK_FILE_RE.exec(n);
    if (m && (!stored.has(m[1]!) || codecOfSuffix(m[2]) === compress)) stored.set(m[1]!, codecOfSuffix(m[2]));
  }
  const byteLength = mem.length;
  const nChunks = Math.ceil(byteLength / chunkSize);
  const base = o.dirty ? await baseChunks(ckptDir, o.dirty.base, chunkSize, alg) : null;
  const entries: ChunkEntry[] = [];
  const paged: number[] = []; // pages for the pages file, increasing
  const pending = new Map<string, ChunkEntry[]>(); // chunk key -> entries waiting for its write
  const counts = { written: 0, reused: 0, zero: 0 };
  let bytesWritten = 0;
  /** The pages of [off, off + len) that differ from the base image's chunk: changed since, or
   *  stored in its pages file. */
  const pagesOver = (off: number, len: number): number[] => {
    const out: number[] = [];
    const inBase = base!.paged !== null && base!.paged.subarray(off / PAGE, Math.ceil((off + len) / PAGE)).includes(1);
    if (!inBase && !o.dirty!.isDirty(off, len)) return out;
    for (let at = off; at < off + len; at += PAGE) {
      const p = at / PAGE;
      if (base!.paged?.[p] === 1 || o.dirty!.isDirty(at, Math.min(PAGE, off + len - at))) out.push(p);
    }
    return out;
  };
  // A chunk that lay wholly inside the base image's memory (and whose file is in the store) is
  // as the base's chunk there, but for the pages that differ.
  const differ = new Map<number, number[]>();
  let differing = 0;
  for (let c = 0; base !== null && c < nChunks; c++) {
    const off = c * chunkSize;
    const len = Math.min(chunkSize, byteLength - off);
    const prev = base.chunks.get(c);
    if (off + len > base.byteLength || (prev !== undefined && !stored.has(chunkKey(alg, prev.hash)))) continue;
    const over = pagesOver(off, len);
    differ.set(c, over);
    differing += over.length;
  }
  const usePages = o.dirty?.pages !== false && differing * PAGE <= byteLength * PAGES_SHARE;
  let i = 0;
  const next = (): (() => Promise<void>) | undefined => {
    for (; i < nChunks; i++) {
      const off = i * chunkSize;
      const len = Math.min(chunkSize, byteLength - off);
      const over = differ.get(i);
      if (over !== undefined && (over.length === 0 || usePages)) {
        const prev = base!.chunks.get(i);
        if (prev === undefined) counts.zero++;
        else {
          entries.push({ index: i, hash: prev.hash, codec: stored.get(chunkKey(alg, prev.hash))! });
          counts.reused++;
        }
        paged.push(...over);
        continue;
      }
      if (isZero(mem, off, len)) { counts.zero++; continue; }
      const view = mem.subarray(off, off + len);
      const hash = hashChunk(alg, view);
      const key = chunkKey(alg, hash);
      const entry: ChunkEntry = { index: i, hash, codec: compress };
      entries.push(entry);
      const have = stored.get(key);
      if (have !== undefined) { entry.codec = have; counts.reused++; continue; }
      const waiting = pending.get(key);
      if (waiting) { waiting.push(entry); counts.reused++; continue; }
      pending.set(key, [entry]);
      counts.written++;
      i++;
      return async () => {
        const data = await encode(compress, view);
        const codec: Codec = data.length < view.length ? compress : 'none';
        const final = join(ckptDir, chunkFile(alg, hash, codec));
        await writeFileAtomic(join(ckptDir, CHUNKS, `${TMP_PREFIX}${key}-${sfx}`), final, codec === 'none' ? view : data);
        o.added.push(final);
        bytesWritten += codec === 'none' ? view.length : data.length;
        for (const e of pending.get(key)!) e.codec = codec;
      };
    }
    return undefined;
  };
  await pool(WRITE_CONCURRENCY, next);
  // The directory is fsynced with the manifest (always: chunks reused from a writer that died
  // before its own directory fsync must be durable before a manifest names them).
  const pages = pageRuns(mem, paged, alg);
  return { entries, pages, counts, bytesWritten: bytesWritten + pages.size };
}

/** Runs of consecutive pages, each hashed, with their bytes (views of `mem`). */
function pageRuns(mem: Uint8Array, paged: readonly number[], alg: ChunkHash): StoredPages {
  const out: StoredPages = { size: 0, runs: [], data: [] };
  for (let k = 0; k < paged.length;) {
    let end = k + 1;
    while (end < paged.length && paged[end] === paged[end - 1]! + 1) end++;
    const offset = paged[k]! * PAGE;
    const view = mem.subarray(offset, Math.min(mem.length, paged[end - 1]! * PAGE + PAGE));
    out.runs.push({ offset, length: view.length, hash: hashChunk(alg, view) });
    out.data.push(view);
    out.size += view.length;
    k = end;
  }
  return out;
}

/** Saved files: staged copies get their content names; every saved record needs a copy. */
async function storeFiles(ckptDir: string, snap: Snapshot, stagedFiles: WriteOptions['stagedFiles'], added: string[]): Promise<number> {
  let written = 0;
  for (const [record, staged] of stagedFiles ?? []) {
    const copy = await publishStaged(ckptDir, staged);
    record.copy = copy.copy;
    if (copy.added > 0) added.push(join(ckptDir, copy.copy.file));
    written += copy.added;
  }
  for (const f of snap.files ?? []) {
    if (f.treatment === 'save' && f.copy === undefined) throw new TypeError(`writeImage: no copy of the saved file ${f.hostPath}`);
    if (f.copy !== undefined && !exists(join(ckptDir, f.copy.file))) throw new TypeError(`writeImage: the copy ${f.copy.file} of ${f.hostPath} is not in the store`);
  }
  return written; // the directory is fsynced with the manifest
}

/** `manifest`, if readers would take it: one they would refuse is not published (it would
 *  also stop garbage collection). */
function checkedManifest(manifest: Manifest): Manifest {
  try {
    manifestShape.check(manifest);
  } catch (e) {
    if (e instanceof ShapeError) throw new TypeError(`writeImage: the snapshot does not fit the image format (${e.message})`);
    throw e;
  }
  return manifest;
}

/** The image directory renamed into place, then `latest` pointed at it (its new content is
 *  durable in `latestTmp` already). */
async function publish(ckptDir: string, tmpImage: string, generation: number, sfx: string, latestTmp: string, onPublished: () => void): Promise<{ imageDir: string; replacedOne: boolean; bytesWritten: number }> {
  const name = genName(generation);
  const imageDir = join(ckptDir, IMAGES, name);
  let replaced: string | undefined;
  if (exists(imageDir)) {
    // An image of this generation exists (a restart from an older image continues the
    // numbering): move it aside, then publish. A crash in between leaves the older images,
    // and `latest` falls back to the highest one that exists.
    replaced = join(ckptDir, IMAGES, `${TMP_PREFIX}old-${name}-${sfx}`);
    renameSync(imageDir, replaced);
  }
  try {
    renameSync(tmpImage, imageDir);
  } catch (e) {
    if (replaced) {
      try {
        renameSync(replaced, imageDir);
      } catch {
        // left aside: a reader falls back to the highest image there is
      }
    }
    throw e;
  }
  onPublished(); // readers may use it from here on, `latest` or not
  const newest = !readdirSync(join(ckptDir, IMAGES)).some((n) => Number(GEN_RE.exec(n)?.[1] ?? 0) > generation);
  if (replaced !== undefined || !newest) {
    // `latest` names it only once it is durable: else a crash could leave `latest` naming the
    // image it replaced (a restart from an older image continues the numbering).
    await fsyncDir(join(ckptDir, IMAGES));
    renameOrRemove(latestTmp, join(ckptDir, LATEST));
    await fsyncDir(ckptDir);
  } else {
    // The highest generation, under a new name: if a crash keeps `latest` but not the image,
    // `latest` names no image and readers take the highest there is, the one before it
    // (latestGeneration). So both are made durable at once.
    renameOrRemove(latestTmp, join(ckptDir, LATEST));
    await allSettled([fsyncDir(join(ckptDir, IMAGES)), fsyncDir(ckptDir)]);
  }
  return { imageDir, replacedOne: replaced !== undefined, bytesWritten: `${name}\n`.length };
}

/** --keep: images beyond the newest `keep` (this one among them) moved to the trash. */
async function retire(ckptDir: string, generation: number, keep: number, sfx: string): Promise<void> {
  const others = (await generations(ckptDir)).filter((g) => g !== generation);
  const below = others.filter((g) => g < generation);
  const keepBelow = new Set(keep > 1 ? below.slice(-(keep - 1)) : []);
  let moved = false;
  for (const g of others) {
    if (keepBelow.has(g)) continue;
    const trash = join(ckptDir, IMAGES, `${TMP_PREFIX}del-${genName(g)}-${sfx}`);
    renameSync(join(ckptDir, IMAGES, genName(g)), trash);
    moved = true;
  }
  if (moved) await fsyncDir(join(ckptDir, IMAGES));
}

interface MemoryLayout {
  byteLength: number;
  chunks: Map<number, ChunkEntry>;
  /** One byte per page: 1 where the image's pages file holds the page (null: none does). */
  paged: Uint8Array | null;
}

function layoutOf(byteLength: number, chunks: readonly ChunkEntry[], runs: readonly PageRun[] | undefined): MemoryLayout {
  let paged: Uint8Array | null = null;
  if (runs !== undefined && runs.length > 0) {
    paged = new Uint8Array(Math.ceil(byteLength / PAGE));
    for (const r of runs) paged.fill(1, r.offset / PAGE, Math.ceil((r.offset + r.length) / PAGE));
  }
  return { byteLength, chunks: new Map(chunks.map((c) => [c.index, c])), paged };
}

/**
 * The memory layout of the last image this process wrote in each checkpoint directory, so that
 * the next one's dirty hint needs no read of it. It describes what this process captured, which
 * is what the hint is relative to; the chunks it names are looked up in the store as always.
 */
const lastWritten = new Map<string, MemoryLayout & { generation: number; chunkSize: number; alg: ChunkHash }>();

/** The memory layout of image `generation`, if it can serve as the base of a dirty hint. */
async function baseChunks(ckptDir: string, generation: number, chunkSize: number, alg: ChunkHash): Promise<MemoryLayout | null> {
  const mine = lastWritten.get(ckptDir);
  if (mine !== undefined && mine.generation === generation) return mine.chunkSize === chunkSize && mine.alg === alg ? mine : null;
  let m: Manifest;
  try {
    m = await loadManifest(join(ckptDir, IMAGES, genName(generation)));
  } catch {
    return null; // no such image (or unreadable): hash everything
  }
  if (m.memory.chunkSize !== chunkSize || m.memory.hash !== alg) return null;
  return layoutOf(m.memory.byteLength, m.memory.chunks, m.memory.pages?.runs);
}

/**
 * Deletes chunks and modules no image references. Conservative: if any image's manifest
 * cannot be read (damaged, or a newer format), nothing is deleted.
 */
export async function collectGarbage(ckptDir: string): Promise<void> {
  const chunks = new Set<string>();
  const modules = new Set<string>();
  const files = new Set<string>();
  for (const g of await generations(ckptDir)) {
    let m: Manifest;
    try {
      m = await loadManifest(join(ckptDir, IMAGES, genName(g)));
    } catch {
      return;
    }
    modules.add(moduleFile(m.module.sha256).slice(MODULES.length + 1));
    for (const c of m.memory.chunks) chunks.add(chunkFile(m.memory.hash, c.hash, c.codec).slice(CHUNKS.length + 1));
    for (const f of m.snapshot.files ?? []) if (f.copy) files.add(f.copy.file.slice(FILES.length + 1));
  }
  for (const [dir, re, live] of [[CHUNKS, CHUNK_FILE_RE, chunks], [MODULES, MODULE_FILE_RE, modules], [FILES, FILE_NAME_RE, files]] as const) {
    let removed = false;
    let names: string[] = [];
    try {
      names = readdirSync(join(ckptDir, dir));
    } catch {
      // not there: nothing to collect
    }
    for (const n of names) {
      if (re.test(n) && !live.has(n)) {
        unlinkSync(join(ckptDir, dir, n));
        removed = true;
      }
    }
    if (removed) await fsyncDir(join(ckptDir, dir));
  }
}

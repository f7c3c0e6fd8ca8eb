// The on-disk cache of instrumented modules: by sha256(input) + version string. Free of
// binaryen, so a launch whose module is cached never loads it, and of node:crypto (tens of ms
// to load): file names and the check of a cached module use XXH64; the sha256 of an unchanged
// source is remembered (sourceOf).
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { xxh64hex } from '../image/xxh64.js';
import type { InstrumentedModule, InstrumentMeta, InstrumentOptions } from './types.js';
import { versionString } from './version.js';
import { errno, nowNs, replaceFileSync, settledBefore, sha256hex } from '../util/fs.js';
import { alive } from '../util/proc.js';

/** STASIS_CACHE_DIR (a cache several users or nodes may share, possibly read-only), else
 *  $XDG_CACHE_HOME/stasis/modules, else ~/.cache/stasis/modules. */
export function defaultCacheDir(): string {
  const shared = process.env.STASIS_CACHE_DIR;
  if (shared !== undefined && shared.length > 0) return resolve(shared);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'stasis', 'modules');
}

function paths(sourceHash: string, version: string, cacheDir: string): { wasm: string; meta: string; lock: string } {
  const key = xxh64hex(new TextEncoder().encode(`${sourceHash}\n${version}`));
  return { wasm: join(cacheDir, `${key}.wasm`), meta: join(cacheDir, `${key}.json`), lock: join(cacheDir, `${key}.lock`) };
}

/** Where the instrumented module of a source goes in the cache. */
export function cachedModulePath(sourceHash: string, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): string {
  return paths(sourceHash, versionString(opts), cacheDir).wasm;
}

/** The cached instrumentation of bytes, or null (a miss, or an entry that fails its checks). */
export function readCache(bytes: Uint8Array, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): InstrumentedModule | null {
  const entry = readEntry(sha256hex(bytes), opts, cacheDir);
  if (entry === null) return null;
  const { xxh64: _, ...module } = entry;
  return sha256hex(module.bytes) === module.hash ? module : null;
}

/** Like readCache, by the source's hash; `verified` is false if the entry is damaged (its
 *  module's XXH64 is not the one written with it). */
export async function lookupCache(sourceHash: string, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): Promise<{ module: InstrumentedModule; verified: Promise<boolean> } | null> {
  const entry = readEntry(sourceHash, opts, cacheDir);
  if (entry === null) return null;
  const { xxh64, ...module } = entry;
  return { module, verified: Promise.resolve(xxh64 !== undefined && xxh64hex(module.bytes) === xxh64) };
}

interface SourceMemo { dev: string; ino: string; size: string; mtimeNs: string; ctimeNs: string; hashedAt: string; sha256: string }

/**
 * The sha256 of a module file, and its bytes if they had to be read. A big module is hashed
 * once: the hash is remembered with the file's device, inode, size, mtime and ctime (any write
 * changes ctime), and a later launch of the unchanged file neither reads nor hashes it.
 * `read` reads the file (and fails clearly if it cannot).
 */
export function sourceOf(path: string, read: () => Buffer, cacheDir: string = defaultCacheDir()): { sourceHash: string; bytes: Buffer | null } {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (st === undefined || !st.isFile()) return hashed(read());
  const memoFile = join(cacheDir, 'sources', `${xxh64hex(new TextEncoder().encode(resolve(path)))}.json`);
  try {
    const m = JSON.parse(readFileSync(memoFile, 'utf8')) as SourceMemo;
    if (m.dev === String(st.dev) && m.ino === String(st.ino) && m.size === String(st.size)
      && m.mtimeNs === String(st.mtimeNs) && m.ctimeNs === String(st.ctimeNs)
      && settledBefore(st.ctimeNs, BigInt(m.hashedAt)) && /^[0-9a-f]{64}$/.test(m.sha256)) {
      return { sourceHash: m.sha256, bytes: null };
    }
  } catch {
    // no memo yet, or unreadable: hash the file
  }
  const hashedAt = nowNs(); // before the read: a write during it shows in ctime
  const r = hashed(read());
  const memo: SourceMemo = {
    dev: String(st.dev), ino: String(st.ino), size: String(st.size), mtimeNs: String(st.mtimeNs),
    ctimeNs: String(st.ctimeNs), hashedAt: String(hashedAt), sha256: r.sourceHash,
  };
  try {
    mkdirSync(join(cacheDir, 'sources'), { recursive: true });
    replaceFileSync(memoFile, JSON.stringify(memo));
  } catch {
    // a read-only cache only costs the next launch a hash
  }
  return r;
}

function hashed(bytes: Buffer): { sourceHash: string; bytes: Buffer } {
  return { sourceHash: sha256hex(bytes), bytes };
}

/** The entry for a source hash whose metadata matches, its module not yet checked; xxh64 is
 *  its module's, as written with it. */
function readEntry(sourceHash: string, opts: InstrumentOptions, cacheDir: string): (InstrumentedModule & { xxh64?: string }) | null {
  const version = versionString(opts);
  const p = paths(sourceHash, version, cacheDir);
  try {
    const meta = JSON.parse(readFileSync(p.meta, 'utf8')) as InstrumentMeta & { hash: string; sourceHash: string; xxh64?: string };
    if (meta.version !== version || meta.sourceHash !== sourceHash) return null;
    const out = readFileSync(p.wasm);
    const { hash, sourceHash: _s, xxh64, ...rest } = meta;
    return { bytes: new Uint8Array(out.buffer, out.byteOffset, out.byteLength), hash, sourceHash, meta: rest, ...(xxh64 !== undefined && { xxh64 }) };
  } catch {
    return null; // miss or unreadable entry
  }
}

/** Stores an entry (each file renamed into place whole; the module before the metadata that
 *  points to it). Returns false if the cache cannot be written: that only costs the next run
 *  another instrumentation. */
export function writeCache(result: InstrumentedModule, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): boolean {
  const p = paths(result.sourceHash, versionString(opts), cacheDir);
  try {
    mkdirSync(cacheDir, { recursive: true });
    replaceFileSync(p.wasm, result.bytes);
    replaceFileSync(p.meta, JSON.stringify({ ...result.meta, hash: result.hash, sourceHash: result.sourceHash, xxh64: xxh64hex(result.bytes) }, null, 1));
    return true;
  } catch {
    return false;
  }
}

// ---- one instrumentation per entry at a time, across processes and nodes sharing the cache ----

/** A lock not refreshed for this long was left by a process that died on another node. */
const STALE_LOCK_MS = 60_000;
/** How often a holder refreshes its lock (its mtime). */
export const LOCK_REFRESH_MS = 10_000;

export interface EntryLock {
  path: string;
  /** Shows the lock is still held (call every LOCK_REFRESH_MS). */
  refresh(): void;
  release(): void;
}

/**
 * Takes the lock of a source's entry: an EntryLock, 'busy' (another process holds it: wait
 * for the entry), or 'unwritable' (the cache cannot be written: instrument without it).
 * A lock whose holder is gone (a dead pid on this host, or not refreshed for a minute) is
 * taken over.
 */
export function lockEntry(sourceHash: string, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): EntryLock | 'busy' | 'unwritable' {
  const path = paths(sourceHash, versionString(opts), cacheDir).lock;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      mkdirSync(cacheDir, { recursive: true });
      const fd = openSync(path, 'wx', 0o644);
      try {
        writeSync(fd, `${process.pid} ${hostname()}\n`);
      } finally {
        closeSync(fd);
      }
      return {
        path,
        refresh: () => { try { const now = new Date(); utimesSync(path, now, now); } catch { /* taken over: we still finish */ } },
        release: () => { try { unlinkSync(path); } catch { /* gone already */ } },
      };
    } catch (e) {
      if (errno(e) !== 'EEXIST') return 'unwritable';
      if (!stale(path)) return 'busy';
      try { unlinkSync(path); } catch { /* another waiter took it over first */ }
    }
  }
  return 'busy';
}

function stale(lockPath: string): boolean {
  try {
    const st = statSync(lockPath);
    const [pid, host] = readFileSync(lockPath, 'utf8').trim().split(' ');
    if (host === hostname() && Number(pid) > 0 && !alive(Number(pid))) return true;
    return Date.now() - st.mtimeMs > STALE_LOCK_MS;
  } catch {
    return false; // gone (released) or just being written: look again
  }
}

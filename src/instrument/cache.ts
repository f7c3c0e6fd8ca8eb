// The on-disk cache of instrumented modules: by sha256(input) + version string. Free of
// binaryen, so a launch whose module is cached never loads it.
import { webcrypto } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { InstrumentedModule, InstrumentMeta, InstrumentOptions } from './types.js';
import { versionString } from './version.js';
import { nowNs, replaceFileSync, settledBefore, sha256hex } from '../util/fs.js';

export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'stasis', 'modules');
}

function paths(sourceHash: string, version: string, cacheDir: string): { wasm: string; meta: string } {
  const key = sha256hex(new TextEncoder().encode(`${sourceHash}\n${version}`));
  return { wasm: join(cacheDir, `${key}.wasm`), meta: join(cacheDir, `${key}.json`) };
}

/** The cached instrumentation of bytes, or null (a miss, or an entry that fails its checks). */
export function readCache(bytes: Uint8Array, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): InstrumentedModule | null {
  const entry = readEntry(sha256hex(bytes), opts, cacheDir);
  return entry !== null && sha256hex(entry.bytes) === entry.hash ? entry : null;
}

/** Like readCache, by the source's hash; the cached module's own hash is checked on the thread
 *  pool: `verified` settles to false if the entry is damaged, and the caller can compile the
 *  module meanwhile. */
export async function lookupCache(sourceHash: string, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): Promise<{ module: InstrumentedModule; verified: Promise<boolean> } | null> {
  const entry = readEntry(sourceHash, opts, cacheDir);
  if (entry === null) return null;
  const verified = webcrypto.subtle.digest('SHA-256', entry.bytes)
    .then((d) => Buffer.from(d).toString('hex') === entry.hash, () => false);
  return { module: entry, verified };
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
  const memoFile = join(cacheDir, 'sources', `${sha256hex(new TextEncoder().encode(resolve(path)))}.json`);
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

/** The entry for a source hash whose metadata matches, its module not yet checked. */
function readEntry(sourceHash: string, opts: InstrumentOptions, cacheDir: string): InstrumentedModule | null {
  const version = versionString(opts);
  const p = paths(sourceHash, version, cacheDir);
  try {
    const meta = JSON.parse(readFileSync(p.meta, 'utf8')) as InstrumentMeta & { hash: string; sourceHash: string };
    if (meta.version !== version || meta.sourceHash !== sourceHash) return null;
    const out = readFileSync(p.wasm);
    const { hash, sourceHash: _s, ...rest } = meta;
    return { bytes: new Uint8Array(out.buffer, out.byteOffset, out.byteLength), hash, sourceHash, meta: rest };
  } catch {
    return null; // miss or unreadable entry
  }
}

export function writeCache(result: InstrumentedModule, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): void {
  const p = paths(result.sourceHash, versionString(opts), cacheDir);
  try {
    mkdirSync(cacheDir, { recursive: true });
    replaceFileSync(p.wasm, result.bytes);
    replaceFileSync(p.meta, JSON.stringify({ ...result.meta, hash: result.hash, sourceHash: result.sourceHash }, null, 1));
  } catch {
    // A read-only or full cache only costs the next run another instrumentation.
  }
}

// The on-disk cache of instrumented modules: by sha256(input) + version string. Free of
// binaryen, so a launch whose module is cached never loads it.
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { InstrumentedModule, InstrumentMeta, InstrumentOptions } from './index.js';
import { versionString } from './version.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'stasis', 'modules');
}

function paths(sourceHash: string, version: string, cacheDir: string): { wasm: string; meta: string } {
  const key = sha256(new TextEncoder().encode(`${sourceHash}\n${version}`));
  return { wasm: join(cacheDir, `${key}.wasm`), meta: join(cacheDir, `${key}.json`) };
}

/** The cached instrumentation of bytes, or null (a miss, or an entry that fails its checks). */
export function readCache(bytes: Uint8Array, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): InstrumentedModule | null {
  const entry = readEntry(sha256(bytes), opts, cacheDir);
  return entry !== null && sha256(entry.bytes) === entry.hash ? entry : null;
}

/** Like readCache, but the cached module's own hash is checked on the thread pool: `verified`
 *  settles to false if the entry is damaged, and the caller can compile the module meanwhile. */
export async function lookupCache(bytes: Uint8Array, opts: InstrumentOptions, cacheDir: string = defaultCacheDir()): Promise<{ module: InstrumentedModule; verified: Promise<boolean> } | null> {
  const entry = readEntry(sha256(bytes), opts, cacheDir);
  if (entry === null) return null;
  const verified = webcrypto.subtle.digest('SHA-256', entry.bytes)
    .then((d) => Buffer.from(d).toString('hex') === entry.hash, () => false);
  return { module: entry, verified };
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
    atomicWrite(p.wasm, result.bytes);
    atomicWrite(p.meta, JSON.stringify({ ...result.meta, hash: result.hash, sourceHash: result.sourceHash }, null, 1));
  } catch {
    // A read-only or full cache only costs the next run another instrumentation.
  }
}

function atomicWrite(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
}

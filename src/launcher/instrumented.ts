// The instrumented module a launch runs: the file itself if it was instrumented ahead of time
// (`stasis instrument -o`), else the cache entry, else built now (once: other processes
// sharing the cache wait for it), saying so on stderr. Also `stasis instrument`.
import { basename } from 'node:path';
import { StasisError } from '../errors.js';
import {
  cachedModulePath, defaultCacheDir, lockEntry, LOCK_REFRESH_MS, lookupCache, sourceOf, writeCache,
} from '../instrument/cache.js';
import { embeddedMeta } from '../instrument/embedded.js';
import type { InstrumentedModule, InstrumentOptions } from '../instrument/types.js';
import { instrumentInThread, Unsupported } from '../instrument/thread.js';
import { pauseForTest } from './signals.js';
import { versionString } from '../instrument/version.js';
import { replaceFileSync, sha256hex } from '../util/fs.js';
import { loadModule, readModuleBytes } from './module.js';
import { phaseProgress } from './progress.js';

const OPTS: InstrumentOptions = { polls: true };
/** How often a process waiting for another one's instrumentation looks for the entry. */
const WAIT_POLL_MS = 200;

/** A module compiled, or compiling in V8's background threads (a cache hit's). */
type Compiled = WebAssembly.Module | Promise<WebAssembly.Module>;

/** The program instrumented and compiled: from the cache (the original is neither compiled nor
 *  hashed twice; the cached module's hash is checked while it compiles, and its compilation
 *  goes on while the launch sets up), else vetted and built. */
export async function instrumentedModule(path: string): Promise<{ inst: InstrumentedModule; module: Compiled }> {
  const cacheDir = defaultCacheDir();
  const source = sourceOf(path, () => readModuleBytes(path), cacheDir);
  const hit = await cached(source.sourceHash, cacheDir);
  if (hit !== null) return hit;
  const bytes = source.bytes ?? readModuleBytes(path);
  const pre = preInstrumented(path, bytes, source.sourceHash);
  if (pre !== null) return pre;
  loadModule(path, bytes); // a clear error for a module that is not a WASI command
  let waiting = false;
  for (;;) {
    const lock = lockEntry(source.sourceHash, OPTS, cacheDir);
    if (lock === 'busy') {
      if (!waiting) process.stderr.write(`stasis: waiting for another process instrumenting ${basename(path)} into ${cacheDir}\n`);
      waiting = true;
      await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
      const done = await cached(source.sourceHash, cacheDir);
      if (done !== null) return done;
      continue; // still busy, or its holder gave up: try to take it
    }
    const where = lock === 'unwritable' ? `not cached: ${cacheDir} cannot be written` : `cached in ${cacheDir}`;
    // Said once the module is read and analysed: a module refused there gets its one line only.
    const notice = `stasis: instrumenting ${basename(path)} (${size(bytes.length)}) once; ${where}\n`;
    const refresh = lock === 'unwritable' ? null : setInterval(() => lock.refresh(), LOCK_REFRESH_MS);
    // A SIGTERM meanwhile exits at once (signals.ts): the lock goes too, or a process on another
    // host (a job's next attempt on another node) would wait a minute for it to go stale.
    const releaseOnExit = (): void => { if (lock !== 'unwritable') lock.release(); };
    process.once('exit', releaseOnExit);
    try {
      // Another process may have finished it between our look and our lock.
      const done = lock === 'unwritable' ? null : await cached(source.sourceHash, cacheDir);
      if (done !== null) return done;
      const inst = await build(path, bytes, source.sourceHash, 'bar', notice);
      if (lock !== 'unwritable') writeCache(inst, OPTS, cacheDir);
      return { inst, module: new WebAssembly.Module(inst.bytes as Uint8Array<ArrayBuffer>) };
    } finally {
      if (refresh !== null) clearInterval(refresh);
      process.off('exit', releaseOnExit);
      if (lock !== 'unwritable') lock.release();
    }
  }
}

/** `stasis instrument PROG.wasm [-o OUT]`: OUT, or the cache entry; returns the path written. */
export async function instrumentCommand(path: string, out?: string): Promise<string> {
  const bytes = readModuleBytes(path);
  if (embeddedMeta(bytes) !== null) throw new StasisError('UNSUPPORTED', `${path} is already instrumented by Stasis; launch it as it is`);
  loadModule(path, bytes);
  const sourceHash = sha256hex(bytes);
  const inst = await build(path, bytes, sourceHash, 'lines');
  if (out !== undefined) {
    try {
      replaceFileSync(out, inst.bytes);
    } catch (e) {
      throw new StasisError('FILE_ACCESS', `cannot write ${out}: ${(e as Error).message}`);
    }
    return out;
  }
  const cacheDir = defaultCacheDir();
  if (!writeCache(inst, OPTS, cacheDir)) throw new StasisError('FILE_ACCESS', `cannot write the cache ${cacheDir}; pass -o OUT, or set STASIS_CACHE_DIR to a writable directory`);
  return cachedModulePath(sourceHash, OPTS, cacheDir);
}

async function build(path: string, bytes: Uint8Array, sourceHash: string, style: 'bar' | 'lines', notice?: string): Promise<InstrumentedModule> {
  const shown = phaseProgress(`instrumenting ${basename(path)}`, style);
  try {
    const [inst] = await Promise.all([instrumentInThread(bytes, OPTS, (phase) => {
      if (phase === 'polls' && notice !== undefined) process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}${notice}`);
      shown.phase(phase);
    }), pauseForTest('instrument')]);
    if (inst.sourceHash !== sourceHash) throw new Error('instrumented a different module than was hashed');
    shown.done(true);
    return inst;
  } catch (e) {
    shown.done(false);
    if (e instanceof Unsupported) throw new StasisError('UNSUPPORTED', `${path}: ${e.message}`);
    throw e;
  }
}

/** A cache hit with its hash checked, compiling; null on a miss or a damaged entry (rebuilt). */
async function cached(sourceHash: string, cacheDir: string): Promise<{ inst: InstrumentedModule; module: Compiled } | null> {
  const found = await lookupCache(sourceHash, OPTS, cacheDir);
  if (found === null) return null;
  // In V8's threads, while this one checks the hash and sets the launch up (the program waits for
  // it: engine/program.ts). Its bytes are those written after their instrumentation: one that
  // does not compile is a fault, not damage, and fails the launch there.
  const module = WebAssembly.compile(found.module.bytes as Uint8Array<ArrayBuffer>).catch((e: Error) => {
    throw new StasisError('INTERNAL', `the cached module ${cachedModulePath(sourceHash, OPTS, cacheDir)} does not compile (${e.message}); remove it to instrument the program again`);
  });
  module.catch(() => {}); // awaited later: not an unhandled rejection meanwhile
  return await found.verified ? { inst: found.module, module } : null;
}

/** The module as it is, compiled, if `stasis instrument` made it (for this version of Stasis). */
function preInstrumented(path: string, bytes: Buffer, hash: string): { inst: InstrumentedModule; module: WebAssembly.Module } | null {
  let e;
  try {
    e = embeddedMeta(bytes);
  } catch (err) {
    throw new StasisError('BAD_MODULE', `${path}: ${(err as Error).message}`);
  }
  if (e === null) return null;
  if (e.meta.version !== versionString(OPTS)) {
    throw new StasisError('UNSUPPORTED', `${path} was instrumented by another version of Stasis (${e.meta.version}); instrument the original again with 'stasis instrument'`);
  }
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  } catch (err) {
    throw new StasisError('BAD_MODULE', `${path} is not a valid WebAssembly module: ${(err as Error).message}`);
  }
  return { inst: { bytes, hash, sourceHash: e.sourceHash, meta: e.meta }, module };
}

function size(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(0)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

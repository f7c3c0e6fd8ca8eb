// Loading the CLI's bundle (scripts/bundle.mjs) with V8's code cache: compiling its ~440 KB
// costs every command ~15 ms of the main thread, which start-up pays before the program runs;
// from the cache written beside it at build time, ~4 ms. Node 20 keeps no code cache for ES
// modules, so the bundle is CommonJS, compiled here as a vm.Script with the cache. A cache from
// another Node (V8) or other V8 flags is rejected by V8, and the bundle is then compiled as usual.
// This file is CommonJS too (bin/stasis.js requires it): each ES module costs start-up ~1 ms in
// Node's ES module loader, and each Node built-in it imports a facade copied export by export
// (node:fs's loads Node's streams with it).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/** Where the code cache of a bundle is kept. */
export const cacheOf = (bundle: string): string => `${bundle}.v8cache`;

// The bundle is one function expression, `(function (exports, require, module, __filename,
// __dirname) {...})` (scripts/bundle.mjs): its text is compiled as it was read, not copied
// into a wrapper first (a second string of its size, which start-up would also collect).
function compile(bundle: string, cachedData?: Buffer): Script {
  return new Script(readFileSync(bundle, 'utf8'), { filename: bundle, ...(cachedData !== undefined && { cachedData }) });
}

/**
 * Runs a CommonJS bundle as Node would require it, from its code cache when that is usable.
 * A script's import() has no loader: the bundle imports (plugins) with `importer`, an ES
 * module's import() (src/util/import.ts). With STASIS_CODE_CACHE_AFTER_RUN=1 (scripts/bundle.mjs),
 * the code cache is written again as the process exits, with the functions this run compiled.
 */
export function runBundle(bundle: string, importer: (url: string) => Promise<unknown>): void {
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cacheOf(bundle));
  } catch {
    // none: compiled from its source
  }
  (globalThis as Record<symbol, unknown>)[Symbol.for('stasis.import')] = importer;
  const module = { exports: {} };
  const script = compile(bundle, cachedData);
  if (process.env['STASIS_CODE_CACHE_AFTER_RUN'] === '1') process.once('exit', () => save(bundle, script));
  const fn = script.runInThisContext() as (...a: unknown[]) => void;
  fn.call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle));
}

/** Writes a bundle's code cache (at build time, by the Node that will run it): the functions V8
 *  compiles at once, not those it compiles at their first call. */
export function writeCache(bundle: string): void {
  save(bundle, compile(bundle));
}

function save(bundle: string, script: Script): void {
  const tmp = `${cacheOf(bundle)}.tmp`;
  writeFileSync(tmp, script.createCachedData());
  renameSync(tmp, cacheOf(bundle));
}

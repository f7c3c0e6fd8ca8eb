// Loading the CLI's bundle (scripts/bundle.mjs) with V8's code cache: compiling its ~370 KB
// costs every command ~15 ms of the main thread, which start-up pays before the program runs;
// from the cache written beside it at build time, ~4 ms. Node 20 keeps no code cache for ES
// modules, so the bundle is CommonJS, compiled here as a vm.Script with the cache. A cache from
// another Node (V8) or other V8 flags is rejected by V8, and the bundle is then compiled as usual.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as vm from 'node:vm';
import { lendImporter } from '../util/import.js';

/** Where the code cache of a bundle is kept. */
export const cacheOf = (bundle: string): string => `${bundle}.v8cache`;

function compile(bundle: string, cachedData?: Buffer): vm.Script {
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, 'utf8')}\n})`;
  return new vm.Script(source, {
    filename: bundle,
    ...(cachedData !== undefined && { cachedData }),
  });
}

/** Runs a CommonJS bundle as Node would require it, from its code cache when that is usable. */
export function runBundle(bundle: string): void {
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cacheOf(bundle));
  } catch {
    // none: compiled from its source
  }
  // A script's import() has no loader: the bundle imports (plugins) with this module's.
  lendImporter((url) => import(url));
  const module = { exports: {} };
  const fn = compile(bundle, cachedData).runInThisContext() as (...a: unknown[]) => void;
  fn.call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle));
}

/** Writes a bundle's code cache (at build time, by the Node that will run it). */
export function writeCache(bundle: string): void {
  const data = compile(bundle).createCachedData();
  const tmp = `${cacheOf(bundle)}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, cacheOf(bundle));
}

// import() of a module by URL, from code that may run inside the CLI's bundle: that is compiled
// as a script with V8's code cache (src/cli/load.ts), and a script's import() has no loader in
// Node 20 (and loses the one it is given once read from a code cache). The loader then lends
// an import() of its own, from an ES module.
const IMPORTER = Symbol.for('stasis.import');

type Importer = (url: string) => Promise<unknown>;

export function importModule(url: string): Promise<unknown> {
  const lent = (globalThis as Record<symbol, Importer | undefined>)[IMPORTER];
  return lent !== undefined ? lent(url) : import(url);
}

/** Called by an ES module whose import() the code it loads as a script should use. */
export function lendImporter(importer: Importer): void {
  (globalThis as Record<symbol, Importer>)[IMPORTER] = importer;
}

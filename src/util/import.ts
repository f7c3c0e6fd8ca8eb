// import() of a module by URL, from code that may run inside the CLI's bundle: that is compiled
// as a script with V8's code cache (src/cli/load.cts), and a script's import() has no loader in
// Node 20 (and loses the one it is given once read from a code cache). The loader then lends
// an import() of an ES module's (bin/stasis.js's), under this key.
const IMPORTER = Symbol.for('stasis.import');

type Importer = (url: string) => Promise<unknown>;

export function importModule(url: string): Promise<unknown> {
  const lent = (globalThis as Record<symbol, Importer | undefined>)[IMPORTER];
  return lent !== undefined ? lent(url) : import(url);
}

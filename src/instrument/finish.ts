// The instrumented module's last touches, on its bytes (binary.ts; no binaryen, so that the
// thread that runs a native wasm-opt never loads it): every mutable global exported, the
// metadata section appended.
import { sha256hex } from '../util/fs.js';
import { globalExportName } from './abi.js';
import { UnsupportedModuleError } from './errors.js';
import { addGlobalExports, appendCustomSection, exportNames, mutableGlobals } from './binary.js';
import { META_SECTION, encodeMeta } from './embedded.js';
import type { InstrumentedModule, InstrumentMeta } from './types.js';

/** What the steps before Asyncify found out, for the last one (and for the worker boundary:
 *  plain data). */
export interface Prepared {
  /** The module ready for Asyncify (polls in, name section kept: the lists name functions). */
  pre: Uint8Array;
  sourceHash: string;
  /** Asyncify's lists: imports an unwind may start at, functions to instrument (null: all). */
  imports: string[];
  only: string[] | null;
  /** The same functions as `only`, by position among the defined functions. */
  onlyDefined: number[] | null;
  /** Global indices of the shadow-stack pointer, the poll budget and the ending gate, or null. */
  stackPointer: number | null;
  pollBudget: number | null;
  endingGate: number | null;
  meta: Pick<InstrumentMeta, 'version' | 'pollImport' | 'unwindImports'>;
}

// (node:crypto loaded when first needed: a launch whose module is cached loads this file, not it)
export const sha256 = (b: Uint8Array): string => sha256hex(b);

/** The instrumented module from Asyncify's output (with its name section). */
export function finish(out: Uint8Array, prep: Prepared): InstrumentedModule {
  const globals: InstrumentMeta['globals'] = [];
  let stackPointer: string | null = null;
  let pollBudget: string | null = null;
  let endingGate: string | null = null;
  const taken = exportNames(out);
  const add: { name: string; index: number }[] = [];
  for (const g of mutableGlobals(out)) {
    if (g.type === null) throw new UnsupportedModuleError('the module has a mutable global of a non-numeric type, which a snapshot cannot save');
    const exportName = globalExportName(globals.length);
    if (taken.has(exportName)) throw new UnsupportedModuleError(`the module already exports ${exportName}`);
    add.push({ name: exportName, index: g.index });
    globals.push({ name: exportName, type: g.type });
    if (g.index === prep.stackPointer) stackPointer = exportName;
    if (g.index === prep.pollBudget) pollBudget = exportName;
    if (g.index === prep.endingGate) endingGate = exportName;
  }
  if (prep.pollBudget !== null && pollBudget === null) throw new Error('the poll budget global is missing after Asyncify (instrumenter bug)');
  if (prep.endingGate !== null && endingGate === null) throw new Error('the ending gate global is missing after Asyncify (instrumenter bug)');
  if (prep.stackPointer !== null && stackPointer === null) throw new Error('the stack pointer global is missing after Asyncify (instrumenter bug)');
  const meta: InstrumentMeta = { ...prep.meta, globals, stackPointer, pollBudget, endingGate };
  const bytes = appendCustomSection(addGlobalExports(out, add), META_SECTION, encodeMeta({ meta, sourceHash: prep.sourceHash }));
  return { bytes, hash: sha256(bytes), sourceHash: prep.sourceHash, meta };
}

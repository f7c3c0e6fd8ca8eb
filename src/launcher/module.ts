// Loading and vetting a program: is it WebAssembly, and a WASI preview-1 command we can run?
import { StasisError } from '../errors.js';
import { readRegularFile, unreadable } from '../util/fs.js';
import { WASI_FUNCTIONS } from '../wasi/signatures.js';

export interface LoadedModule {
  path: string;
  bytes: Buffer;
  module: WebAssembly.Module;
}

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);

/** The module's bytes, if the file can be read and starts like WebAssembly (nothing compiled). */
export function readModuleBytes(path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(path);
  } catch (e) {
    throw new StasisError('NOT_FOUND', `cannot read module ${path}: ${unreadable(e)}`);
  }
  if (bytes.length < 8 || !bytes.subarray(0, 4).equals(WASM_MAGIC)) {
    throw new StasisError('BAD_MODULE', `${path} is not a WebAssembly module (no \\0asm header); pass a .wasm file built for wasm32-wasi`);
  }
  return bytes;
}

/** Reads, compiles and vets a program. */
export function loadModule(path: string, bytes: Buffer = readModuleBytes(path)): LoadedModule {
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new StasisError('BAD_MODULE', `${path} is not a valid WebAssembly module: ${(e as Error).message}`);
  }
  checkCommand(path, module);
  return { path, bytes, module };
}

/** Refuses modules that are not WASI preview-1 commands, naming what is wrong. */
function checkCommand(path: string, module: WebAssembly.Module): void {
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === 'wasi_snapshot_preview1' && imp.kind === 'function' && WASI_FUNCTIONS.has(imp.name)) continue;
    const what = `${imp.module}.${imp.name}`;
    const hint = imp.module === 'wasi_unstable'
      ? ' (WASI preview 0; rebuild with a current wasi-sdk / wasi-libc)'
      : imp.module === 'wasi_snapshot_preview1' ? ' (not a WASI preview-1 function)' : '';
    throw new StasisError('UNSUPPORTED', `${path} imports ${imp.kind} ${what}, which Stasis does not provide${hint}`);
  }
  const exports = WebAssembly.Module.exports(module);
  const has = (name: string, kind: string): boolean => exports.some((e) => e.name === name && e.kind === kind);
  if (!has('_start', 'function')) {
    const reactor = has('_initialize', 'function') ? ' (it is a WASI reactor/library, not a command)' : '';
    throw new StasisError('UNSUPPORTED', `${path} has no _start export${reactor}; Stasis runs WASI commands (e.g. clang --target=wasm32-wasi prog.c)`);
  }
  if (!has('memory', 'memory')) {
    throw new StasisError('UNSUPPORTED', `${path} exports no memory; a WASI command must export "memory"`);
  }
}

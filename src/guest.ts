// Worker-thread entry: runs one WASI command. The main thread (run.ts) stays free to flush
// buffered writes on time and to handle signals while the guest computes.
import { parentPort, workerData } from 'node:worker_threads';
import { EXIT } from './errors.js';
import { ProcExit, WasiHost } from './wasi/host.js';
import type { Preopen } from './wasi/state.js';
import { WriteBehind } from './wasi/writebehind.js';

export interface GuestData {
  module: WebAssembly.Module;
  modulePath: string;
  args: string[];
  env: string[];
  preopens: Preopen[];
  writeBehind: SharedArrayBuffer;
  stdin: SharedArrayBuffer | null;
}

export interface GuestResult {
  exitCode: number;
  trap?: string;
}

function run(data: GuestData): GuestResult {
  const host = new WasiHost({
    args: data.args, env: data.env, preopens: data.preopens,
    writeBehind: new WriteBehind(data.writeBehind), stdin: data.stdin,
  });
  const instance = new WebAssembly.Instance(data.module, { wasi_snapshot_preview1: host.imports() });
  host.attach(instance.exports.memory as WebAssembly.Memory);
  try {
    (instance.exports._start as () => void)();
    return { exitCode: 0 };
  } catch (e) {
    if (e instanceof ProcExit) return { exitCode: e.code & 0xff };
    return { exitCode: EXIT.TRAP, trap: describeTrap(e, data.modulePath) };
  } finally {
    host.flushAll();
  }
}

/** "unreachable executed in function 'main' (prog.wasm)": the message and first wasm frame. */
export function describeTrap(e: unknown, modulePath: string): string {
  if (!(e instanceof WebAssembly.RuntimeError) && !(e instanceof RangeError)) throw e;
  const frame = (e.stack ?? '').split('\n').find((l) => l.includes('wasm://') || l.includes('wasm-function'));
  let where = '';
  if (frame !== undefined) {
    const named = /at (\S+) \(wasm:/.exec(frame);
    const index = /wasm-function\[(\d+)\]/.exec(frame);
    if (named) where = ` in function '${named[1]}'`;
    else if (index) where = ` in function #${index[1]} (module has no name section)`;
  }
  return `trap: ${e.message}${where} (${modulePath})`;
}

if (parentPort !== null && workerData?.kind === 'guest') {
  parentPort.postMessage(run(workerData.data as GuestData));
}

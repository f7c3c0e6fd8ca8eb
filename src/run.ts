// Running a WASI command to completion in this thread: `stasis run`.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT, StasisError } from './errors.js';
import { loadModule } from './module.js';
import { ProcExit, WasiHost } from './wasi/host.js';
import type { Preopen } from './wasi/state.js';

export interface RunOptions {
  /** Path of the .wasm file. */
  module: string;
  /** Arguments after the module; argv[0] is the module path as given. */
  args: string[];
  /** "KEY=VALUE" strings. */
  env: string[];
  preopens: Preopen[];
}

export interface RunResult {
  exitCode: number;
  /** Set when the program trapped: a one-line description. */
  trap?: string;
}

/** Checks that every preopen's host directory exists before anything runs. */
export function checkPreopens(preopens: Preopen[]): Preopen[] {
  return preopens.map((p) => {
    let st;
    try {
      st = statSync(p.host);
    } catch {
      throw new StasisError('BAD_DIR', `--dir ${p.host}: no such directory; create it or fix the path`);
    }
    if (!st.isDirectory()) throw new StasisError('BAD_DIR', `--dir ${p.host}: not a directory`);
    return { guest: p.guest, host: resolve(p.host) };
  });
}

export function runCommand(opts: RunOptions): RunResult {
  const loaded = loadModule(opts.module);
  const host = new WasiHost({
    args: [opts.module, ...opts.args], env: opts.env, preopens: checkPreopens(opts.preopens),
  });
  const instance = new WebAssembly.Instance(loaded.module, { wasi_snapshot_preview1: host.imports() });
  host.attach(instance.exports.memory as WebAssembly.Memory);
  try {
    (instance.exports._start as () => void)();
    return { exitCode: 0 };
  } catch (e) {
    if (e instanceof ProcExit) return { exitCode: e.code & 0xff };
    return { exitCode: EXIT.TRAP, trap: describeTrap(e, opts.module) };
  } finally {
    host.flushAll();
  }
}

/** "unreachable executed in function 'main' (prog.wasm)": the message and first wasm frame. */
export function describeTrap(e: unknown, modulePath: string): string {
  if (!(e instanceof Error)) return `program failed: ${String(e)}`;
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

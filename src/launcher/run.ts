// `stasis run`: runs a WASI command to completion, with no checkpointing. With the native
// addon, on this (the main) thread: starting a worker and loading the host's code in it again
// is most of a short program's start-up. Without it, in a worker (launcher/session.ts).
import { statSync } from 'node:fs';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { StasisError } from '../errors.js';
import type { GuestResult } from '../engine/protocol.js';
import { nativeInline } from '../wasi/native.js';
import { stdinIsFile } from '../wasi/stdin.js';
import { WriteBehind } from '../wasi/writebehind.js';
import { loadModule } from './module.js';
import { onTerminatingSignals, SIGNAL_STATUS } from './signals.js';
import { useCompileMode, type CompileMode } from './compile.js';
import type { Preopen } from '../wasi/state.js';

export interface RunOptions {
  /** Path of the .wasm file. */
  module: string;
  /** Arguments after the module; argv[0] is the module path as given. */
  args: string[];
  /** "KEY=VALUE" strings. */
  env: string[];
  preopens: Preopen[];
  /** Default: V8's flags as they are (the CLI's `run` says 'optimized'). Process-wide: it holds
   *  for every program in this process from then on (compile.ts). */
  compile?: CompileMode;
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

export async function runCommand(opts: RunOptions): Promise<GuestResult> {
  const native = nativeInline;
  if (native !== null) {
    // A native thread flushes its coalesced writes when stale, and on a signal writes them out
    // and ends the process as the signal would a native program, at once, even in a loop that
    // never returns to JavaScript.
    const writeBehind = new WriteBehind();
    native.exitOnSignals(SIGNAL_STATUS.flatMap(([sig, status]) => [constants.signals[sig], status]), new Int32Array(writeBehind.shared));
    const loaded = loadModule(opts.module);
    const preopens = checkPreopens(opts.preopens);
    if (opts.compile !== undefined) useCompileMode(opts.compile);
    // Loaded only here: a launch imports this module too (checkPreopens) but runs in a worker.
    const { runInline } = await import('../engine/inline.js');
    return runInline({
      module: loaded.module, modulePath: opts.module, args: [opts.module, ...opts.args], env: opts.env, preopens,
      stdin: stdinIsFile() ? null : { pollIn: native.pollIn }, writeBehind,
    });
  }
  const loaded = loadModule(opts.module);
  const { guestInWorker } = await import('./session.js');
  const session = guestInWorker({
    module: loaded.module, modulePath: opts.module, args: [opts.module, ...opts.args],
    env: opts.env, preopens: checkPreopens(opts.preopens), ...(opts.compile && { compile: opts.compile }),
  });
  // A signal ends the program as it would a native one, but nothing it wrote is lost.
  const removeSignals = onTerminatingSignals((status) => {
    session.flush();
    process.exit(status);
  });
  try {
    return await session.result;
  } finally {
    removeSignals();
  }
}

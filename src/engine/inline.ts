// A program without checkpoint control, run on this thread (`stasis run` on the main thread):
// no worker to start, no second copy of the host's code to load. Nothing else runs here while
// it computes, so what a worker's main thread would do meanwhile is done otherwise, by the
// caller: stdin is waited for with poll(2) (its StdinFrom), and a native thread flushes the
// coalesced writes and ends the process on a signal (native/inline.c).
import { EXIT } from '../errors.js';
import { ProcExit, WasiHost } from '../wasi/host.js';
import type { Preopen } from '../wasi/state.js';
import type { StdinFrom } from '../wasi/stdin.js';
import type { WriteBehind } from '../wasi/writebehind.js';
import type { GuestResult } from './protocol.js';
import { describeTrap } from './trap.js';

export interface InlineProgram {
  module: WebAssembly.Module;
  modulePath: string;
  /** argv, argv[0] included. */
  args: string[];
  env: string[];
  preopens: Preopen[];
  stdin: StdinFrom;
  /** The coalesced writes' buffer, which something else flushes when stale. */
  writeBehind: WriteBehind;
}

export async function runInline(p: InlineProgram): Promise<GuestResult> {
  const host = new WasiHost({
    args: p.args, env: p.env, preopens: p.preopens, stdin: p.stdin, writeBehind: p.writeBehind,
  });
  const instance = new WebAssembly.Instance(p.module, { wasi_snapshot_preview1: host.imports() as WebAssembly.ModuleImports });
  const ex = instance.exports as { _start: () => void; memory: WebAssembly.Memory };
  host.attach(ex.memory);
  // As in a worker (engine/guest.ts): one turn of the event loop for V8's tasks on the instance.
  await new Promise<void>((resolve) => setImmediate(resolve));
  try {
    ex._start();
    return { exitCode: 0 };
  } catch (e) {
    if (e instanceof ProcExit) return { exitCode: e.code & 0xff };
    return { exitCode: EXIT.TRAP, trap: describeTrap(e, p.modulePath) };
  } finally {
    host.flushAll();
  }
}

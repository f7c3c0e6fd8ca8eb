// A program under checkpoint control, run on the calling thread to its end: instantiated (and,
// for a restart, its memory read and checked, its files put in place, its stack rewound), then
// run, a Checkpointer serving requests at its safe points. Run by the guest's worker
// (engine/guest.ts) or, for the CLI with the native addon, on the main thread while a side
// thread supervises (launcher/main-thread.ts); `run` without checkpoints: engine/inline.ts.
import { EXIT, ImageError } from '../errors.js';
import { ChangeRecorder } from '../files/journal.js';
import { POLL_IMPORT } from '../instrument/abi.js';
import { ProcExit, WasiHost } from '../wasi/host.js';
import type { StdinFrom } from '../wasi/stdin.js';
import { WriteBehind } from '../wasi/writebehind.js';
import { Checkpointer, type AsyncifyExports } from './checkpointer.js';
import { describeTrap } from './trap.js';
import { CONTROL_WORDS, Control, WASM_PAGE, type GuestData, type GuestMessage, type GuestResult, type RestoreSetup } from './protocol.js';

/** Sends a message to the supervising thread. */
export type Post = (m: GuestMessage, transfer?: ArrayBuffer[]) => void;

/** The program as the thread that runs it gets it. */
export interface Program extends Omit<GuestData, 'module' | 'stdin' | 'restore'> {
  /** The module, or its compilation still under way (a launch compiles a cached module in the
   *  background while it sets up: launcher/instrumented.ts). */
  module: WebAssembly.Module | Promise<WebAssembly.Module>;
  stdin: StdinFrom;
  restore?: RestoreSetup;
}

export async function runProgram(data: Program, post: Post): Promise<GuestResult> {
  const ck = data.checkpoint;
  const changes = new ChangeRecorder(ck?.journal?.dir ?? null, ck?.journal?.generation ?? null);
  const host = new WasiHost({
    args: data.args, env: data.env, preopens: data.preopens, ...(data.mounts && { mounts: data.mounts }),
    writeBehind: new WriteBehind(data.writeBehind), stdin: data.stdin,
    ...(ck !== undefined && { changes }),
    ...(data.restore && {
      restore: {
        monotonicNs: BigInt(data.restore.monotonicNs), stdinPending: data.restore.stdinPending,
        ...(data.restore.pollDeadlines && { pollDeadlines: data.restore.pollDeadlines }),
      },
    }),
  });
  const wasi = host.imports() as Record<string, (...a: never[]) => number>;
  const imports: WebAssembly.Imports = { wasi_snapshot_preview1: wasi };
  let engine: Checkpointer | null = null;
  if (ck !== undefined) {
    const checkpointer = new Checkpointer(ck, host, changes, post);
    imports.wasi_snapshot_preview1 = checkpointer.wrapImports(wasi);
    if (ck.poll) imports[POLL_IMPORT.module] = { [POLL_IMPORT.name]: () => checkpointer.poll() };
    engine = checkpointer;
  }
  const instance = new WebAssembly.Instance(await data.module, imports);
  const ex = instance.exports as AsyncifyExports;
  engine?.attach(ex);
  // Under checkpoint control, publish the memory size: the main thread prepares a capture
  // buffer of that size ahead of the first checkpoint.
  const control = ck === undefined ? null : new Int32Array(ck.control, 0, CONTROL_WORDS);
  host.attach(ex.memory, control === null ? undefined : (bytes) => Atomics.store(control, Control.MEMORY_PAGES, bytes / WASM_PAGE));
  if (data.restore !== undefined) {
    const { readImage } = await import('../image/read.js'); // only a restart needs the image reader
    try {
      await readImage(data.restore.image.path, { generation: data.restore.image.generation, into: () => ex.memory });
    } catch (e) {
      if (e instanceof ImageError) return { exitCode: -1, imageError: { reason: e.reason, message: e.message } };
      throw e;
    }
    const problem = engine!.restoreProblem(data.restore);
    if (problem !== null) {
      return { exitCode: -1, imageError: { reason: 'CORRUPT', message: `checkpoint image ${data.restore.image.path} cannot be restored: ${problem}; restart from another generation` } };
    }
    // Verified, then acted on: the files are put in place only now that the memory is sound.
    const restore = data.restore;
    host.restoreFds(restore.fds, await restore.putFiles());
    engine!.restore(restore);
    post({ type: 'restored' });
  }
  // Let the event loop turn once before the program starts: V8 finishes work for the new
  // instance in tasks on this thread, and a program that starts at once runs without it
  // (measured: a pure-compute program ran ~10 % slower to the end).
  await new Promise<void>((resolve) => setImmediate(resolve));
  const ended = (r: GuestResult): GuestResult => (engine === null ? r : { ...r, reentries: engine.reentries });
  const result = ((): GuestResult => {
    try {
      for (;;) {
        ex._start();
        if (engine === null || !engine.unwound()) return ended({ exitCode: 0 });
        engine.serveUnwind();
      }
    } catch (e) {
      if (e instanceof ProcExit) return ended({ exitCode: e.code & 0xff });
      return ended({ exitCode: EXIT.TRAP, trap: describeTrap(e, data.modulePath) });
    } finally {
      host.flushAll();
    }
  })();
  // It changes nothing more: its journal is complete, and sealed here (files/journal.ts).
  return changes.close() ? { ...result, sealed: true } : result;
}

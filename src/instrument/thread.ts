// Instrumentation runs off the main thread: binaryen needs seconds on a first launch, and the
// main thread must stay free to show progress, keep its cache lock fresh and answer signals.
// With a native wasm-opt, the worker does only the binaryen.js steps (prepare) and is ended
// before wasm-opt starts: its heap (hundreds of MB on a big program) is freed, not held while
// wasm-opt needs its own. The main thread then waits for wasm-opt and does the last, byte-level
// step (finish.ts), without loading binaryen.
import { parentPort, Worker, workerData, type MessagePort } from 'node:worker_threads';
import { UnsupportedModuleError as Refused } from './errors.js';
import { finish, type Prepared } from './finish.js';
import { asyncifyNativeAsync, nativeWasmOpt } from './native.js';
import type { InstrumentedModule, InstrumentOptions } from './types.js';

type Job = { kind: 'instrument'; native: boolean } | { kind: 'prepare' };

type Outcome =
  | { kind: 'phase'; phase: string }
  | { kind: 'result'; ok: true; result: InstrumentedModule | Prepared }
  | { kind: 'result'; ok: false; unsupported: boolean; message: string };

/** Thrown for a module the instrumenter refuses (the message says why). */
export class Unsupported extends Error {}

/** The instrumented module, built off the main thread (callers look the cache up first with
 *  lookupCache, without loading binaryen, and fill it). `onPhase` hears each phase start. */
export async function instrumentInThread(bytes: Uint8Array, opts: Omit<InstrumentOptions, 'onProgress'>, onPhase: (phase: string) => void = () => {}): Promise<InstrumentedModule> {
  const tool = nativeWasmOpt();
  if (tool === null) return await inWorker({ kind: 'instrument', native: false }, bytes, opts, onPhase) as InstrumentedModule;
  const prep = await inWorker({ kind: 'prepare' }, bytes, opts, onPhase) as Prepared;
  onPhase('asyncify');
  let out: Uint8Array;
  try {
    out = await asyncifyNativeAsync(tool, prep.pre, prep);
  } catch {
    // a broken or killed wasm-opt: the npm build always works
    return await inWorker({ kind: 'instrument', native: false }, bytes, opts, onPhase) as InstrumentedModule;
  }
  onPhase('emit');
  try {
    return finish(out, prep);
  } catch (e) {
    throw e instanceof Refused ? new Unsupported(e.message) : e;
  }
}

function inWorker(job: Job, bytes: Uint8Array, opts: Omit<InstrumentOptions, 'onProgress'>, onPhase: (phase: string) => void): Promise<InstrumentedModule | Prepared> {
  return new Promise((resolve, reject) => {
    // This file, by a path that holds from the CLI's bundle too (dist/src/bundle/, scripts/bundle.mjs).
    const worker = new Worker(new URL('../instrument/thread.js', import.meta.url), { workerData: { job, bytes, opts } });
    worker.on('message', (o: Outcome) => {
      if (o.kind === 'phase') { onPhase(o.phase); return; }
      if (o.ok) resolve(o.result);
      else reject(o.unsupported ? new Unsupported(o.message) : new Error(o.message));
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

if (parentPort !== null && workerData?.job !== undefined) void runJob(parentPort);

/** The worker's side: does the job it was given and posts the outcome. */
async function runJob(port: MessagePort): Promise<void> {
  const job = workerData.job as Job;
  const { instrumentVariant, prepare, DEFAULT_VARIANT, UnsupportedModuleError } = await import('./index.js');
  let outcome: Outcome;
  try {
    const opts: InstrumentOptions = { ...workerData.opts as InstrumentOptions, onProgress: (phase) => port.postMessage({ kind: 'phase', phase }) };
    const bytes = workerData.bytes as Uint8Array;
    const result = job.kind === 'prepare' ? prepare(bytes, opts) : instrumentVariant(bytes, opts, DEFAULT_VARIANT, job.native ? nativeWasmOpt() : null);
    outcome = { kind: 'result', ok: true, result };
  } catch (e) {
    outcome = { kind: 'result', ok: false, unsupported: e instanceof UnsupportedModuleError, message: (e as Error).message };
  }
  port.postMessage(outcome);
}

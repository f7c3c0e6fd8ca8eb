// Instrumentation runs in a worker thread: binaryen needs seconds on a first launch, and the
// main thread must stay free to show progress, keep its cache lock fresh and answer signals.
import { parentPort, Worker, workerData } from 'node:worker_threads';
import type { InstrumentedModule, InstrumentOptions } from './types.js';

type Outcome =
  | { kind: 'phase'; phase: string }
  | { kind: 'result'; ok: true; result: InstrumentedModule }
  | { kind: 'result'; ok: false; unsupported: boolean; message: string };

/** Thrown for a module the instrumenter refuses (the message says why). */
export class Unsupported extends Error {}

/** The instrumented module, built in a worker thread (callers look the cache up first with
 *  lookupCache, without loading binaryen, and fill it). `onPhase` hears each phase start. */
export function instrumentInThread(bytes: Uint8Array, opts: Omit<InstrumentOptions, 'onProgress'>, onPhase: (phase: string) => void = () => {}): Promise<InstrumentedModule> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { kind: 'instrument', bytes, opts } });
    worker.on('message', (o: Outcome) => {
      if (o.kind === 'phase') { onPhase(o.phase); return; }
      if (o.ok) resolve(o.result);
      else reject(o.unsupported ? new Unsupported(o.message) : new Error(o.message));
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

if (parentPort !== null && workerData?.kind === 'instrument') {
  const port = parentPort;
  const { instrument, UnsupportedModuleError } = await import('./index.js');
  let outcome: Outcome;
  try {
    const opts: InstrumentOptions = { ...workerData.opts as InstrumentOptions, onProgress: (phase) => port.postMessage({ kind: 'phase', phase }) };
    outcome = { kind: 'result', ok: true, result: instrument(workerData.bytes as Uint8Array, opts) };
  } catch (e) {
    outcome = { kind: 'result', ok: false, unsupported: e instanceof UnsupportedModuleError, message: (e as Error).message };
  }
  port.postMessage(outcome);
}

// Instrumentation runs in a worker thread: binaryen needs seconds on a first launch, and the
// main thread must stay free to show progress and to answer signals meanwhile.
import { parentPort, Worker, workerData } from 'node:worker_threads';
import type { InstrumentedModule, InstrumentOptions } from './types.js';

type Outcome =
  | { ok: true; result: InstrumentedModule }
  | { ok: false; unsupported: boolean; message: string };

/** Thrown for a module the instrumenter refuses (the message says why). */
export class Unsupported extends Error {}

/** The instrumented module, built in a worker thread (which fills the cache; callers look the
 *  cache up first with lookupCache, without loading binaryen). */
export function instrumentInThread(bytes: Uint8Array, opts: Omit<InstrumentOptions, 'onProgress'>): Promise<InstrumentedModule> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { kind: 'instrument', bytes, opts } });
    worker.once('message', (o: Outcome) => {
      if (o.ok) resolve(o.result);
      else reject(o.unsupported ? new Unsupported(o.message) : new Error(o.message));
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

if (parentPort !== null && workerData?.kind === 'instrument') {
  const port = parentPort;
  const { instrumentCached, UnsupportedModuleError } = await import('./index.js');
  let outcome: Outcome;
  try {
    outcome = { ok: true, result: instrumentCached(workerData.bytes as Uint8Array, workerData.opts as InstrumentOptions) };
  } catch (e) {
    outcome = { ok: false, unsupported: e instanceof UnsupportedModuleError, message: (e as Error).message };
  }
  port.postMessage(outcome);
}

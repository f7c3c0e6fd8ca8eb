// The guest's worker thread. Starting a Node thread and loading its modules takes tens of ms:
// the CLI starts it first thing (bin/stasis.js), so that this overlaps the launcher's own
// start-up (its modules, reading and compiling the program); the program is handed to it later.
import { Worker } from 'node:worker_threads';
import { GUEST_WORKER } from '../engine/protocol.js';

// The thread started early, where both copies of this module see it: bin/stasis.js loads this
// file, and the CLI's bundle has its own copy (scripts/bundle.mjs).
const EARLY = Symbol.for('stasis.guestThread');
const slot = ((globalThis as Record<symbol, unknown>)[EARLY] ??= { worker: null }) as { worker: Worker | null };

/** Starts a guest thread now, for the next guestThread() to take. */
export function startGuestThread(): void {
  if (slot.worker !== null) return;
  const w = spawn();
  // One that fails before it is taken is not handed out (its error would go unheard).
  const drop = (): void => {
    if (slot.worker === w) slot.worker = null;
  };
  w.once('error', drop).once('exit', drop);
  slot.worker = w;
}

/** A guest thread waiting for its program (engine/guest.ts): the one started early, else a new one. */
export function guestThread(): Worker {
  const w = slot.worker ?? spawn();
  slot.worker = null;
  return w;
}

function spawn(): Worker {
  // engine/guest.js and its imports, bundled into one module by `npm run build` (scripts/bundle.mjs).
  return new Worker(new URL('../engine/guest.bundle.cjs', import.meta.url), {
    workerData: { kind: GUEST_WORKER }, stdin: false, stdout: false, stderr: false,
  });
}

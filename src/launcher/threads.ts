// The launcher's second thread: the guest's worker (engine/guest.ts), or, when the program runs
// on the main thread, the side thread that supervises it (side.ts). Starting a Node thread and
// loading its modules takes tens of ms: the CLI starts the guest's first thing (bin/stasis.js),
// so that this overlaps the launcher's own start-up (its modules, reading and compiling the
// program); its work is handed to it later. (The side thread is started when the program is
// about to run: the program does not wait for it, and started earlier it would slow the main
// thread's own start-up.)
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { StasisError } from '../errors.js';
import { GUEST_WORKER } from '../engine/protocol.js';

/** workerData.kind of the side thread. */
export const SIDE_WORKER = 'side';

export type ThreadKind = typeof GUEST_WORKER | typeof SIDE_WORKER;

// Threads started early, where both copies of this module see them: bin/stasis.js loads this
// file, and the CLI's bundle has its own copy (scripts/bundle.mjs).
const EARLY = Symbol.for('stasis.earlyThreads');
const early = ((globalThis as Record<symbol, unknown>)[EARLY] ??= new Map<ThreadKind, Worker>()) as Map<ThreadKind, Worker>;

/** Starts a thread now, for the next takeThread(kind) to take. */
export function startThread(kind: ThreadKind): void {
  if (early.has(kind)) return;
  const w = spawn(kind);
  // One that fails before it is taken is not handed out (its error would go unheard).
  const drop = (): void => {
    if (early.get(kind) === w) early.delete(kind);
  };
  w.once('error', drop).once('exit', drop);
  early.set(kind, w);
}

/** A thread waiting for its work: the one started early, else a new one. */
export function takeThread(kind: ThreadKind): Worker {
  const w = early.get(kind) ?? spawn(kind);
  early.delete(kind);
  return w;
}

function spawn(kind: ThreadKind): Worker {
  // Each entry and its imports, bundled into one file by `npm run build` (scripts/bundle.mjs).
  // Named from dist/src/*/ (this module's place, and the CLI bundle's, which holds a copy).
  const entry = new URL(kind === GUEST_WORKER ? '../engine/guest.bundle.cjs' : '../launcher/side.bundle.cjs', import.meta.url);
  // Said now: a thread that cannot load fails later, unheard while the program computes on the
  // main thread.
  if (!existsSync(entry)) throw new StasisError('INTERNAL', `${fileURLToPath(entry)} is missing: build Stasis again (npm run build)`);
  // The side thread writes to its stdout and stderr directly (side.ts): they are not piped into
  // this thread's process.stdout and stderr, which would cost a launch's start-up ~2.5 ms of
  // this thread's time (making those streams); main-thread.ts copies what it wrote before.
  const own = kind === SIDE_WORKER;
  return new Worker(entry, { workerData: { kind }, stdin: false, stdout: own, stderr: own });
}

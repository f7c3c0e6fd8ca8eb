// The process's signals, for commands that own the process (the CLI's run, launch, restart).
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { isMainThread } from 'node:worker_threads';
import { nativeExitNow, nativeInline } from '../wasi/native.js';
import { requeueAfterStop, slurmJob, WARNING_SIGNALS } from './slurm.js';

/** Exit statuses for signals that end a program (as a shell reports them). */
export const SIGNAL_STATUS: readonly (readonly [NodeJS.Signals, number])[] = [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]];

/** Exit status of a program stopped after a checkpoint, or before it started: "run me again"
 *  (sysexits' "try again later"). */
export const EXIT_CHECKPOINTED = 75;

/**
 * Ends the process with `status` as process.exit does ('exit' listeners run), without the
 * teardown Node does after them: it waits for V8's background compilations in flight, and
 * V8's optimizing compiler can spend hundreds of ms on one hot function of the guest, after
 * the checkpoint a scheduler is waiting for is durable. Nothing is lost: the image is fsynced,
 * stdio is written synchronously (Linux), the guest is parked or ended. A profile or coverage
 * (written by that teardown) keeps Node's own exit.
 */
export function exitProcess(status: number): never {
  const now = nativeExitNow;
  // A side thread (main-thread.ts) ends the process, not only itself.
  if (!isMainThread && now !== null) now(status);
  const profiled = process.env['NODE_V8_COVERAGE'] !== undefined
    || [...process.execArgv, ...(process.env['NODE_OPTIONS'] ?? '').split(/\s+/)].some((a) => /^--(cpu|heap)-prof|^--prof$/.test(a));
  // Last of the 'exit' listeners: the others have run.
  if (now !== null && !profiled) process.once('exit', () => now(status));
  process.exit(status);
}

/**
 * Handles the terminating signals (SIGNAL_STATUS) from now on: `override` for those it names,
 * else `end(status)` with the signal's status; and the other signals `override` names. Returns
 * the function that removes the handlers.
 */
export type SignalSource = (end: (status: number) => void, override: Partial<Record<NodeJS.Signals, () => void>>) => () => void;

/** A SignalSource from Node's signal events (on the main thread, whose event loop is free). */
export const onProcessSignals: SignalSource = (end, override) => {
  const others = Object.entries(override).filter(([sig]) => !SIGNAL_STATUS.some(([t]) => t === sig)) as [NodeJS.Signals, () => void][];
  for (const [sig, h] of others) process.on(sig, h);
  const removeTerminating = onTerminatingSignals(end, override);
  return () => {
    removeTerminating();
    for (const [sig, h] of others) process.off(sig, h);
  };
};

/**
 * For a program about to run on the main thread, where no JavaScript handler can run while it
 * computes (main-thread.ts): from now on the native addon notes these signals (the terminating
 * ones, and `others`) and hands them to the side thread's onForwardedSignals, which may come
 * later. stopEarlyOnSignals's handlers stay (removing them would hand the signals back to the
 * default action), but see nothing more.
 */
export function forwardSignals(others: readonly NodeJS.Signals[]): void {
  nativeInline!.forwardSignals([...SIGNAL_STATUS.map(([sig]) => sig), ...others].map((sig) => constants.signals[sig]));
}

/** A SignalSource from the signals forwardSignals notes (on a side thread: Node gives a worker no
 *  signals). Also those noted before it was called. */
export const onForwardedSignals: SignalSource = (end, override) => {
  let on = true;
  const names = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));
  nativeInline!.onSignals((signal) => {
    const sig = names.get(signal);
    if (!on || sig === undefined) return;
    const h = override[sig];
    if (h !== undefined) h();
    else {
      const status = SIGNAL_STATUS.find(([t]) => t === sig)?.[1];
      if (status !== undefined) end(status);
    }
  });
  return () => {
    on = false;
  };
};

/** The handlers stopEarlyOnSignals installed, until a program's own take over. */
let removeEarly: (() => void) | null = null;

/**
 * Handles each terminating signal: `override` for those it names, else `end(status)` with the
 * signal's status. Replaces stopEarlyOnSignals's handlers. Returns the function that removes
 * the handlers.
 */
export function onTerminatingSignals(end: (status: number) => void, override: Partial<Record<NodeJS.Signals, () => void>> = {}): () => void {
  const remove = install(end, override);
  removeEarly?.();
  removeEarly = null;
  return remove;
}

// New handlers are added before the ones they replace are removed, here and in the callers:
// Node closes a signal's handle with its last listener, and a signal that handle had caught but
// not yet dispatched is lost with it.
function install(end: (status: number) => void, override: Partial<Record<NodeJS.Signals, () => void>>): () => void {
  const installed = SIGNAL_STATUS.map(([sig, status]) => {
    const h = override[sig] ?? ((): void => end(status));
    process.on(sig, h);
    return [sig, h] as const;
  });
  // bin/stasis.js's handler, there before any module loaded: these take over from it, and
  // get a SIGTERM it kept.
  const key = Symbol.for('stasis.earlyStop');
  const early = (globalThis as Record<symbol, unknown>)[key] as { sigterm: boolean; handler: () => void } | undefined;
  if (early !== undefined) {
    process.off('SIGTERM', early.handler);
    delete (globalThis as Record<symbol, unknown>)[key];
  }
  if (early?.sigterm === true) process.nextTick(() => process.emit('SIGTERM', 'SIGTERM'));
  return () => {
    for (const [sig, h] of installed) process.off(sig, h);
  };
}

/**
 * For a launch or restart that owns the process, from its first instant until its program runs
 * under supervision (whose handlers replace these): SIGTERM exits 75, as a checkpoint would —
 * the program has not started, so there is nothing to save, and the same command run again
 * starts it (`launch --resume`: from the image it was going to restart) — and the other
 * terminating signals exit with their status. Nothing is left half-done: until then a launch
 * or restart writes only the module cache, each file under a temporary name renamed into place.
 */
export function stopEarlyOnSignals(): void {
  if (removeEarly !== null) return;
  const slurm = slurmJob();
  // A Slurm job goes back in the queue, as after a checkpoint (a time limit's SIGTERM while a
  // big module is instrumented must not end it as failed).
  const onTerm = (): void => {
    if (slurm !== null) process.stderr.write(`stasis: stopped on SIGTERM before the program ran; nothing written; ${requeueAfterStop(slurm)}\n`);
    process.exit(EXIT_CHECKPOINTED);
  };
  const removeTerminating = install((status) => process.exit(status), { SIGTERM: onTerm });
  // A Slurm job's warning signal comes before there is anything to save: it changes nothing.
  const ignore = (): void => {};
  const warnings = slurm === null ? [] : WARNING_SIGNALS;
  for (const sig of warnings) process.on(sig, ignore);
  removeEarly = () => {
    removeTerminating();
    for (const sig of warnings) process.off(sig, ignore);
  };
}

/**
 * Testing aid: with STASIS_TEST_PAUSE=PHASE, the launcher says so on stderr when it reaches
 * PHASE ('load': bin/stasis.js, before any module loads; 'instrument': a first launch's instrumentation has started; 'restart': a restart's
 * image is read and its file plan checked, nothing changed yet; 'checkpoint': a checkpoint's
 * capture is done and the program goes on, its image not written yet; 'side': a side thread
 * has its run, before it supervises it (main-thread.ts), while the program runs) and waits there (for ever, or
 * until the file STASIS_TEST_CONTINUE names exists), so that a test can signal it, or change
 * the program's files, at that instant without racing it.
 */
export async function pauseForTest(phase: 'instrument' | 'restart' | 'checkpoint' | 'side'): Promise<void> {
  if (process.env['STASIS_TEST_PAUSE'] !== phase) return;
  process.stderr.write(`stasis: paused at ${phase} (STASIS_TEST_PAUSE)\n`);
  // Until the file STASIS_TEST_CONTINUE names exists (the test made its change), or for ever.
  const go = process.env['STASIS_TEST_CONTINUE'];
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (go !== undefined && existsSync(go)) {
        clearInterval(t);
        resolve();
      }
    }, 10);
  });
}

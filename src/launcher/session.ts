// A running guest, seen from the main thread: the worker that runs it, the shared memory for
// its coalesced writes and stdin, and (under checkpoint control) the request counter.
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { ImageError, StasisError } from '../errors.js';
import {
  CONTROL_WORDS, Control, WASM_PAGE, type CapturedState, type GuestData, type GuestMessage, type GuestResult, type Release, type RestoreState, type SpareBuffer,
} from '../engine/protocol.js';
import type { FileGuard } from '../files/guard.js';
import { StdinPump, stdinChannel, stdinIsFile, wakeStdinWaiter } from '../wasi/stdin.js';
import { WriteBehind } from '../wasi/writebehind.js';
import { compileMode, useCompileMode, type CompileMode } from './compile.js';
import { guestThread } from './guest-thread.js';

/** How often buffered writes are checked for staleness. */
const FLUSH_INTERVAL_MS = 5;

/**
 * When (ms after the program starts or is restored) a program under checkpoint control is
 * re-entered, to run the optimized code V8 has compiled by then (see engine/checkpointer.ts):
 * each costs about what a checkpoint's pause does without the copy (~1 ms). Not under
 * --compile optimized, where every function is optimized from its first call.
 * STASIS_REENTER_MS=a,b,... replaces the schedule (testing aid; 0 is asked before a launched
 * program starts, so a test need not race it).
 */
function reentrySchedule(): number[] {
  const env = process.env['STASIS_REENTER_MS'];
  if (env === undefined) return [250, 1000, 4000, 16000];
  return env.split(',').filter((x) => x !== '').map(Number).filter((x) => Number.isFinite(x) && x >= 0);
}

export type GuestSetup = Omit<GuestData, 'writeBehind' | 'stdin' | 'checkpoint' | 'restore'> & {
  checkpoint?: Omit<NonNullable<GuestData['checkpoint']>, 'control' | 'spares' | 'guards'>;
  /** For a restart: its state, and what puts its files in place once the guest has read its
   *  memory (and found the image sound), returning [guest fd, host fd] of the files it opened. */
  restore?: Omit<RestoreState, 'files'> & { putFiles: () => Promise<[number, number][]> };
  /** How V8 compiles the program (process-wide, see compile.ts); absent: as it is. */
  compile?: CompileMode;
};

export class GuestSession {
  readonly result: Promise<GuestResult>;
  private readonly worker: Worker;
  private readonly writeBehind = new WriteBehind();
  private readonly stdin: SharedArrayBuffer | null;
  private readonly control: Int32Array | null;
  private readonly timer: NodeJS.Timeout;
  private readonly spares: MessagePort;
  private readonly guards: MessagePort;
  private readonly waiting = new Map<number, (s: CapturedState) => void>();
  /** The capture buffer the guest and this thread share (see SpareBuffer). */
  private shared: Uint8Array | null = null;
  private readonly reentryTimers: NodeJS.Timeout[] = [];
  private done = false;
  /** Ends the program now (its thread is stopped): `result` resolves with this exit code. */
  end!: (exitCode: number) => void;
  /** Resolves once a restarted program's image is loaded (it runs next); never for a launch. */
  readonly restored: Promise<void>;
  private onRestored: () => void = () => {};
  /** Called with captures nobody asked for (the guest's own --checkpoint-at-call). */
  onUnrequested: ((s: CapturedState) => void) | null = null;

  constructor(setup: GuestSetup) {
    this.stdin = stdinIsFile() ? null : stdinChannel();
    const control = setup.checkpoint ? new SharedArrayBuffer(4 * CONTROL_WORDS) : null;
    this.control = control && new Int32Array(control);
    const { checkpoint, compile, restore, ...rest } = setup;
    if (compile !== undefined) useCompileMode(compile);
    const data: GuestData = { ...rest, writeBehind: this.writeBehind.shared, stdin: this.stdin };
    const spares = new MessageChannel();
    const guards = new MessageChannel();
    const files = restore ? new MessageChannel() : null;
    this.spares = spares.port1;
    this.guards = guards.port1;
    const transfer: MessagePort[] = [];
    if (checkpoint && control) {
      data.checkpoint = { ...checkpoint, control, spares: spares.port2, guards: guards.port2 };
      transfer.push(spares.port2, guards.port2);
    }
    if (restore) {
      const { putFiles: _, ...state } = restore;
      data.restore = { ...state, files: files!.port2 };
      transfer.push(files!.port2);
    }
    if (this.stdin !== null) new StdinPump(this.stdin).start();
    const reentries = this.control !== null && compileMode() !== 'optimized' ? reentrySchedule() : [];
    // A launch's re-entries at 0 ms are asked before the guest starts, so its first safe point
    // sees one however slow the machine (and serves it if the unwind buffer fits on the stack
    // there; else it is dropped, as every re-entry without room is).
    if (!setup.restore && reentries.includes(0)) Atomics.add(this.control!, Control.REENTER, 1);
    this.worker = guestThread();
    this.worker.postMessage(data, transfer);

    // Flush a burst of small writes once no new one has come for a tick.
    let lastSeq = this.writeBehind.sequence();
    this.timer = setInterval(() => {
      const seq = this.writeBehind.sequence();
      if (seq === lastSeq && this.writeBehind.pending) this.writeBehind.flush();
      lastSeq = seq;
    }, FLUSH_INTERVAL_MS);

    this.restored = new Promise<void>((resolve) => { this.onRestored = resolve; });
    void (setup.restore ? this.restored : Promise.resolve()).then(() => {
      for (const ms of reentries) {
        if (ms > 0 || setup.restore) this.reentryTimers.push(setTimeout(() => this.reenter(), ms));
      }
    });
    this.result = new Promise<GuestResult>((resolve, reject) => {
      this.end = (exitCode) => resolve({ exitCode });
      this.worker.on('message', (m: GuestMessage) => {
        if (m.type === 'loaded') {
          restore!.putFiles().then((handles) => {
            files!.port1.postMessage(handles);
            files!.port1.close();
          }, reject);
        } else if (m.type === 'restored') {
          this.onRestored();
        } else if (m.type === 'snapshot') {
          if (m.inShared) m.snapshot.memory = this.shared!;
          else this.shared = m.snapshot.memory;
          // One capture serves every request made before the guest reached its safe point.
          let served = false;
          for (const [request, done] of this.waiting) {
            if (request <= m.request) {
              done(m.snapshot);
              this.waiting.delete(request);
              served = true;
            }
          }
          if (!served) this.onUnrequested?.(m.snapshot);
        } else {
          if (m.imageError !== undefined) reject(new ImageError(m.imageError.reason, m.imageError.message));
          else {
            const { type: _, imageError: __, ...result } = m;
            resolve(result);
          }
        }
      });
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new StasisError('INTERNAL', `guest thread exited (${code}) without a result`)));
    }).finally(() => this.stop());
  }

  /**
   * Asks the guest to checkpoint at its next safe point; resolves with what it captured.
   * With stop, the guest does nothing more afterwards (the caller saves the image and exits).
   */
  capture(stop = false, trackWrites = false): Promise<CapturedState> {
    const control = this.control;
    if (control === null) throw new Error('not under checkpoint control');
    if (this.done) return Promise.reject(new StasisError('CONTROL', 'the program has exited'));
    if (stop) Atomics.store(control, Control.STOP, 1);
    Atomics.store(control, Control.TRACK_WRITES, trackWrites ? 1 : 0);
    const request = Atomics.add(control, Control.REQUEST, 1) + 1;
    const captured = new Promise<CapturedState>((resolve, reject) => {
      this.waiting.set(request, resolve);
      this.result.then(() => reject(new StasisError('CONTROL', 'the program exited before it reached a safe point')), reject);
    });
    // Wake the guest if it is sleeping in poll_oneoff or waiting for stdin.
    Atomics.notify(control, Control.REQUEST);
    if (this.stdin !== null) wakeStdinWaiter(this.stdin);
    return captured;
  }

  /**
   * Lets the guest go on after a capture (it waits so that its files can be copied), with the
   * files whose copies are still being made (it copies a block before changing it).
   */
  release(guards: FileGuard[], generation: number): void {
    if (this.control === null) return;
    this.guards.postMessage({ guards, generation } satisfies Release);
    Atomics.add(this.control, Control.RELEASE, 1);
    Atomics.notify(this.control, Control.RELEASE);
  }

  /** Has the guest unwind and rewind at its next safe point, without a capture. */
  private reenter(): void {
    if (this.control !== null && !this.done) Atomics.add(this.control, Control.REENTER, 1);
  }

  /** Hands a buffer to the guest for its next capture (a capture's memory, or a fresh one). */
  giveBuffer(memory: Uint8Array, copyId: number | null): void {
    if (this.done) return;
    if (memory === this.shared) {
      this.spares.postMessage({ copyId } satisfies SpareBuffer);
    } else {
      this.shared = memory;
      this.spares.postMessage({ memory, copyId } satisfies SpareBuffer);
    }
  }

  /** The guest's memory size in bytes, as it last published it (0 before it did). */
  memoryBytes(): number {
    return this.control === null ? 0 : Atomics.load(this.control, Control.MEMORY_PAGES) * WASM_PAGE;
  }

  /** Makes the guest's buffered writes visible now (before exiting on a signal). */
  flush(): void {
    this.writeBehind.flush();
  }

  private stop(): void {
    if (this.done) return;
    this.done = true;
    clearInterval(this.timer);
    for (const t of this.reentryTimers) clearTimeout(t);
    this.spares.close();
    this.guards.close();
    this.writeBehind.flush();
    // Not awaited: the CLI exits right after, and nothing else holds the worker.
    void this.worker.terminate();
  }
}

// A running guest, seen from the thread that supervises it: the thread that runs it (a worker,
// or the main thread when a side thread supervises: main-thread.ts), the shared memory for its
// coalesced writes and stdin, and (under checkpoint control) the request counter.
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { ImageError, StasisError } from '../errors.js';
import {
  CONTROL_WORDS, Control, GUEST_WORKER, WASM_PAGE, type CapturedState, type GuestData, type GuestMessage, type GuestResult, type Release, type RestoreSetup, type SpareBuffer,
} from '../engine/protocol.js';
import type { Program } from '../engine/program.js';
import type { FileGuard } from '../files/guard.js';
import { nativeInline } from '../wasi/native.js';
import { StdinPump, stdinChannel, stdinIsFile, wakeStdinWaiter } from '../wasi/stdin.js';
import { WriteBehind } from '../wasi/writebehind.js';
import { compileMode, useCompileMode, type CompileMode } from './compile.js';
import { takeThread } from './threads.js';

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

export type GuestSetup = Omit<GuestData, 'module' | 'writeBehind' | 'stdin' | 'checkpoint' | 'restore'> & {
  module: Program['module'];
  checkpoint?: Omit<NonNullable<GuestData['checkpoint']>, 'control' | 'spares' | 'guards'>;
  /** For a restart: its state, and what puts its files in place. */
  restore?: RestoreSetup;
  /** How V8 compiles the program (process-wide, see compile.ts); absent: as it is. */
  compile?: CompileMode;
};

/**
 * What the guest's thread and the supervising one share: shared memory and the supervisor's
 * ends of the ports. Made by the thread that starts first (openLink), and posted to the other
 * in the main-thread arrangement (launcher/main-thread.ts).
 */
export interface SessionLink {
  writeBehind: SharedArrayBuffer;
  /** A StdinPump's channel, or null (stdin is a regular file, or polled by the guest itself). */
  stdin: SharedArrayBuffer | null;
  /** Under checkpoint control: the control words and the ports of SpareBuffer and Release messages. */
  control: SharedArrayBuffer | null;
  spares: MessagePort | null;
  guards: MessagePort | null;
  /** When (ms) the supervisor re-enters the program (the re-entries at 0 are asked already). */
  reentries: number[];
  /** A restart: re-entries count from when the program is restored. */
  restart: boolean;
}

/**
 * The guest's program and the link to it, for a program about to start: its compile mode set,
 * its first re-entry asked. With `polled`, stdin is waited for by the guest's own thread with
 * poll(2) (a program on the main thread), else pumped by the supervisor's (StdinPump).
 */
export function openLink(setup: GuestSetup, polled: Program['stdin'] | null = null): { program: Program; link: SessionLink; transfer: MessagePort[] } {
  const file = stdinIsFile();
  const stdin = file || polled !== null ? null : stdinChannel();
  const control = setup.checkpoint ? new SharedArrayBuffer(4 * CONTROL_WORDS) : null;
  const { checkpoint, compile, ...rest } = setup;
  if (compile !== undefined) useCompileMode(compile);
  const writeBehind = new WriteBehind().shared;
  const program: Program = { ...rest, writeBehind, stdin: file ? null : polled ?? stdin };
  const link: SessionLink = { writeBehind, stdin, control, spares: null, guards: null, reentries: [], restart: setup.restore !== undefined };
  const transfer: MessagePort[] = [];
  if (checkpoint && control) {
    const spares = new MessageChannel();
    const guards = new MessageChannel();
    program.checkpoint = { ...checkpoint, control, spares: spares.port2, guards: guards.port2 };
    link.spares = spares.port1;
    link.guards = guards.port1;
    transfer.push(spares.port2, guards.port2);
    link.reentries = compileMode() !== 'optimized' ? reentrySchedule() : [];
    // A launch's re-entries at 0 ms are asked before the guest starts, so its first safe point
    // sees one however slow the machine (and serves it if the unwind buffer fits on the stack
    // there; else it is dropped, as every re-entry without room is).
    if (!setup.restore && link.reentries.includes(0)) Atomics.add(new Int32Array(control), Control.REENTER, 1);
  }
  return { program, link, transfer };
}

/** The guest in a worker (the API's arrangement, and the CLI's without the addon), its module compiled. */
export function guestInWorker(setup: GuestSetup & { module: WebAssembly.Module }): GuestSession {
  const { program, link, transfer } = openLink(setup);
  const { restore, stdin: _, ...rest } = program;
  const data: GuestData = { ...rest, module: setup.module, stdin: link.stdin };
  const files = restore ? new MessageChannel() : null;
  if (restore) {
    const { putFiles: _p, ...state } = restore;
    data.restore = { ...state, files: files!.port2 };
    transfer.push(files!.port2);
  }
  const worker = takeThread(GUEST_WORKER);
  worker.postMessage(data, transfer);
  return new GuestSession(link, worker, restore && (() => restore.putFiles().then((handles) => {
    files!.port1.postMessage(handles);
    files!.port1.close();
  })));
}

/** The guest's thread as the supervisor sees it: a worker it started, or the port the main
 *  thread running the program posts to (launcher/main-thread.ts). */
export type GuestEndpoint = Worker | MessagePort;

export class GuestSession {
  readonly result: Promise<GuestResult>;
  private readonly writeBehind: WriteBehind;
  private readonly stdin: SharedArrayBuffer | null;
  private readonly control: Int32Array | null;
  private readonly timer: NodeJS.Timeout;
  private readonly spares: MessagePort | null;
  private readonly guards: MessagePort | null;
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

  /** putFiles: a worker's restart has read its memory ('loaded'): put its files in place. */
  constructor(link: SessionLink, private readonly guest: GuestEndpoint, putFiles?: () => Promise<void>) {
    this.writeBehind = new WriteBehind(link.writeBehind);
    this.stdin = link.stdin;
    this.control = link.control && new Int32Array(link.control);
    this.spares = link.spares;
    this.guards = link.guards;
    if (this.stdin !== null) new StdinPump(this.stdin).start();

    // Flush a burst of small writes once no new one has come for a tick.
    let lastSeq = this.writeBehind.sequence();
    this.timer = setInterval(() => {
      const seq = this.writeBehind.sequence();
      if (seq === lastSeq && this.writeBehind.pending) this.writeBehind.flush();
      lastSeq = seq;
    }, FLUSH_INTERVAL_MS);

    this.restored = new Promise<void>((resolve) => { this.onRestored = resolve; });
    void (link.restart ? this.restored : Promise.resolve()).then(() => {
      for (const ms of link.reentries) {
        if (ms > 0 || link.restart) this.reentryTimers.push(setTimeout(() => this.reenter(), ms));
      }
    });
    this.result = new Promise<GuestResult>((resolve, reject) => {
      this.end = (exitCode) => resolve({ exitCode });
      guest.on('message', (m: GuestMessage) => {
        if (m.type === 'loaded') {
          putFiles!().catch(reject);
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
      if (guest instanceof Worker) {
        guest.once('error', reject);
        guest.once('exit', (code) => reject(new StasisError('INTERNAL', `guest thread exited (${code}) without a result`)));
      }
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
    // Wake the guest if it is sleeping in poll_oneoff or waiting for stdin (through this
    // thread's pump, or in poll(2) on its own thread).
    Atomics.notify(control, Control.REQUEST);
    if (this.stdin !== null) wakeStdinWaiter(this.stdin);
    else nativeInline?.wakePollIn();
    return captured;
  }

  /**
   * Lets the guest go on after a capture (it waits so that its files can be copied), with the
   * files whose copies are still being made (it copies a block before changing it).
   */
  release(guards: FileGuard[], generation: number): void {
    if (this.control === null) return;
    this.guards!.postMessage({ guards, generation } satisfies Release);
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
      this.spares!.postMessage({ copyId } satisfies SpareBuffer);
    } else {
      this.shared = memory;
      this.spares!.postMessage({ memory, copyId } satisfies SpareBuffer);
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
    this.spares?.close();
    this.guards?.close();
    this.writeBehind.flush();
    // Not awaited: the CLI exits right after, and nothing else holds the worker.
    if (this.guest instanceof Worker) void this.guest.terminate();
    else this.guest.close();
  }
}

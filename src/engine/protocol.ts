// The protocol between the main thread (src/launcher/session.ts) and the guest thread
// (src/engine/guest.ts): what the worker is given, the control words both sides share, and the
// messages the guest posts. Types and constants only, so either side imports it freely.
import type { MessagePort } from 'node:worker_threads';
import type { ImageErrorCode } from '../errors.js';
import type { GlobalValue } from '../image/schema.js';
import type { FileGuard } from '../files/guard.js';
import type { Written } from '../files/journal.js';
import type { FdState, Mount, Preopen, WasiState } from '../wasi/state.js';

/** The program the guest thread runs: its first message (its workerData.kind is GUEST_WORKER). */
export interface GuestData {
  module: WebAssembly.Module;
  modulePath: string;
  args: string[];
  env: string[];
  preopens: Preopen[];
  /** Directories below preopens that --path-map moved. */
  mounts?: Mount[];
  /** The coalesced-writes buffer (wasi/writebehind.ts). */
  writeBehind: SharedArrayBuffer;
  /** stdin handed over by the main thread (wasi/stdin.ts), or null when it is a regular file. */
  stdin: SharedArrayBuffer | null;
  /** Present under checkpoint control. */
  checkpoint?: CheckpointSetup;
  /** Present for a restart. */
  restore?: RestoreState;
}

export const GUEST_WORKER = 'guest';

export interface CheckpointSetup {
  /** Control words, see Control below. */
  control: SharedArrayBuffer;
  /** The main thread hands capture buffers back on this port once their image is written
   *  (SpareBuffer messages). */
  spares: MessagePort;
  /** With each release after a capture (a Release): the files still being copied
   *  (files/guard.ts), and the generation the capture is saved as. */
  guards: MessagePort;
  /** The undo journal (files/journal.ts): its directory, and the generation it records from
   *  the start (a restart's image; null for a launch: from its first checkpoint on). Absent:
   *  no journal (only the program's behaviour is recorded). */
  journal?: { dir: string; generation: number | null };
  /** Imports the module can unwind at (the instrumenter's list, without the module name). */
  unwindImports: string[];
  /** Export names of the mutable globals. */
  globals: { name: string; type: GlobalValue['type'] }[];
  /** Export name of the shadow stack pointer global, if the module has one. */
  stackPointer: string | null;
  /** Export name of the ending gate global (instrument/ending.ts): no unwind while it is set. */
  endingGate: string | null;
  /** Whether the module calls stasis.poll in loops. */
  poll: boolean;
  /** The largest frame the module can put in the asyncify buffer (stack.ts). */
  maxFrameBytes: number;
  /** Testing aid: request a checkpoint by itself at its Nth unwindable WASI call. */
  checkpointAtCall?: number;
}

/** A restart's state for the guest, besides the memory it reads from the image itself. */
export interface RestoreState {
  /** The image to read memory from (read in the guest thread, straight into its memory). */
  image: { path: string; generation: number };
  globals: GlobalValue[];
  asyncifyData: number;
  fds: FdState[];
  monotonicNs: string;
  stdinPending: Uint8Array;
  pollDeadlines?: string[];
  /**
   * Once the guest has read its memory (and so found the image sound) it posts 'loaded'; the
   * main thread then puts the program's files in place and sends here the [guest fd, host fd]
   * of the file fds it opened where its file plan put them.
   */
  files: MessagePort;
}

/** A restart's state as the thread running the program takes it: what puts its files in place
 *  once the guest has read its memory (and found the image sound), returning [guest fd, host fd]
 *  of the files it opened, instead of the worker's `files` port. */
export type RestoreSetup = Omit<RestoreState, 'files'> & { putFiles: () => Promise<[number, number][]> };

/**
 * A buffer for the guest's next capture: a capture's memory coming back once its image is
 * written (copyId names that capture's copy), or a fresh one (copyId null). Capture buffers
 * are shared memory, each handed across once: `memory` is absent when it is the buffer the
 * guest holds already. (A new handle on a big buffer, as a transfer makes each time, counts as
 * new external memory to V8, whose collections then pause both threads for milliseconds.)
 */
export interface SpareBuffer {
  memory?: Uint8Array;
  copyId: number | null;
}

/** What the main thread posts with each release after a capture. */
export interface Release {
  guards: FileGuard[];
  /** The capture's generation: changes from now on are undone by restarting from it. */
  generation: number;
}

/** Indexes of the Int32 control words shared by the two threads. */
export const Control = {
  /** Bumped by the main thread for each checkpoint request. */
  REQUEST: 0,
  /** Set by the main thread before a request: the program ends with this checkpoint. */
  STOP: 1,
  /** The guest's memory size in pages (WASM_PAGE), as it last published it. */
  MEMORY_PAGES: 2,
  /** Bumped by the main thread once it is done with a capture: the guest resumes. */
  RELEASE: 3,
  /** Bumped by the main thread: unwind and rewind at once, without a capture (a re-entry). */
  REENTER: 4,
  /** Never written: a guest that must do nothing more waits on it. */
  PARKED: 5,
  /** Set by the main thread before a request (1 or 0): a stop is expected soon, so from this
   *  capture on the guest has the kernel track the pages the program writes (memory-copy.ts). */
  TRACK_WRITES: 6,
} as const;
export const CONTROL_WORDS = 7;

/** Wasm's page size: memory sizes are counted in it, and captures compare memory by page. */
export const WASM_PAGE = 65536;

export interface GuestResult {
  exitCode: number;
  /** Set when the program trapped: a one-line description. */
  trap?: string;
  /** Set when a restart could not read its image. */
  imageError?: { reason: ImageErrorCode; message: string };
  /** Under checkpoint control: how many times the program's stack was re-entered (rewound
   *  without a capture) to run the optimized code V8 compiled meanwhile. */
  reentries?: number;
  /** The program's undo journals were sealed as it ended (files/journal.ts close()). */
  sealed?: boolean;
}

export type GuestMessage =
  | ({ type: 'result' } & GuestResult)
  // inShared: the capture is in the shared buffer the main thread handed over (snapshot.memory
  // is then empty; see SpareBuffer), else snapshot.memory is a new shared buffer.
  | { type: 'snapshot'; request: number; snapshot: CapturedState; inShared: boolean }
  | { type: 'loaded' } // a restart's memory is read and checked: its files may be put in place
  | { type: 'restored' }; // a restart's memory and state are in place; the program runs next

/** What the guest captures; the main thread adds names, hashes and generation. */
export interface CapturedState {
  memory: Uint8Array;
  /**
   * Which 64 KiB pages differ from the previous capture (one byte per page, 1 = changed), or
   * null when there was no previous capture to compare with (everything counts as changed).
   */
  dirtyPages: Uint8Array | null;
  /** Which of the guest's memory copies this is (counted from 1): the buffer comes back as a
   *  spare naming it. */
  copyId: number;
  globals: GlobalValue[];
  asyncifyData: number;
  wasi: WasiState;
  monotonicNs: string;
  stdinPending: Uint8Array;
  /** Bytes the checkpointed process had taken from its stdin. */
  stdinReceived: number;
  /**
   * [guest fd, host fd] of every file fd. The guest stays paused until the main thread
   * releases it, so the main thread can read the files through these (same process) while
   * they are as the program left them.
   */
  fileHandles: [number, number][];
  /** How the program has written its files, by "dev:ino" (files/journal.ts). */
  written: [string, Written][];
  pauseMs: number;
}

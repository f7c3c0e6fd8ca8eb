// Worker-thread entry: runs one WASI program. The main thread stays free to flush buffered
// writes on time, handle signals and serve the control socket while the guest computes.
//
// Under checkpoint control (`launch`, `restart`) the module is an Asyncify-instrumented one
// (src/instrument/). A checkpoint request (a counter in shared memory, bumped by the main
// thread) is honoured at the next safe point: a WASI call or a poll in a loop. There the
// guest unwinds its call stack into a buffer in its own memory, the state is captured and
// posted to the main thread, and the guest rewinds and goes on. A restart does the same
// rewind into a fresh instance whose memory, globals and WASI state come from an image.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { EXIT, type ImageErrorCode } from '../errors.js';
import type { GlobalValue } from '../image/schema.js';
import { ProcExit, WasiHost } from '../wasi/host.js';
import type { FdState, Mount, Preopen, WasiState } from '../wasi/state.js';
import { writeGuards, type FileGuard } from '../files/guard.js';
import { WriteBehind } from '../wasi/writebehind.js';
import { Interrupted, setInterruptWord } from '../wasi/interrupt.js';
import { wasmFrames } from './frames.js';

export interface GuestData {
  module: WebAssembly.Module;
  modulePath: string;
  args: string[];
  env: string[];
  preopens: Preopen[];
  /** Directories below preopens that --path-map moved. */
  mounts?: Mount[];
  writeBehind: SharedArrayBuffer;
  stdin: SharedArrayBuffer | null;
  /** Present under checkpoint control. */
  checkpoint?: CheckpointSetup;
  /** Present for a restart. */
  restore?: RestoreState;
}

export interface CheckpointSetup {
  /** Control words, see CONTROL_* below. */
  control: SharedArrayBuffer;
  /** The main thread hands capture buffers back on this port once their image is written. */
  spares: MessagePort;
  /** With each release after a capture: the files still being copied (files/guard.ts). */
  guards: MessagePort;
  /** Imports the module can unwind at (the instrumenter's list). */
  unwindImports: string[];
  /** Export names of the mutable globals, and which one is the shadow stack pointer. */
  globals: { name: string; type: GlobalValue['type'] }[];
  stackPointer: string | null;
  poll: boolean;
  /** The largest frame the module can put in the asyncify buffer (frames.ts). */
  maxFrameBytes: number;
  /** Testing aid: request a checkpoint by itself at its Nth unwindable WASI call. */
  checkpointAtCall?: number;
}

export interface RestoreState {
  /** The image to read memory from (read here, straight into the instance's memory). */
  image: { path: string; generation: number };
  globals: GlobalValue[];
  asyncifyData: number;
  fds: FdState[];
  monotonicNs: string;
  stdinPending: Uint8Array;
  pollDeadlines?: string[];
  /** [guest fd, host fd] of file fds the restart opened already (where its file plan put them). */
  handles?: [number, number][];
}

/** Control words (Int32) shared with the main thread. */
export const CONTROL_REQUEST = 0; // bumped by main for each checkpoint request
export const CONTROL_STOP = 1; // set by main before a request: stop after this checkpoint
export const CONTROL_MEMORY_PAGES = 2; // the guest's memory size in 64 KiB pages, as last seen
export const CONTROL_RELEASE = 3; // bumped by main once it is done with a capture: the guest resumes
export const CONTROL_REENTER = 4; // bumped by main: unwind and rewind at once, no capture (see Checkpointer)
export const CONTROL_WORDS = 6; // the last word is never written: a stopped guest waits on it

export interface GuestResult {
  exitCode: number;
  /** Set when the program trapped: a one-line description. */
  trap?: string;
  /** Set when a restart could not read its image (an ImageError's reason and message). */
  imageError?: { reason: ImageErrorCode; message: string };
  /** Under checkpoint control: how many times the program's stack was re-entered (rewound
   *  without a capture) to run the optimized code V8 compiled meanwhile. */
  reentries?: number;
}

export type GuestMessage =
  | ({ type: 'result' } & GuestResult)
  | { type: 'snapshot'; request: number; snapshot: CapturedState }
  | { type: 'restored' }; // a restart's memory and state are in place; the program runs next

/** What the guest captures; the main thread adds names, hashes and generation. */
export interface CapturedState {
  memory: Uint8Array;
  /**
   * Which 64 KiB pages differ from the previous capture (one byte per page, 1 = changed), or
   * null when there was no previous capture to compare with (everything counts as changed).
   */
  dirtyPages: Uint8Array | null;
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
  pauseMs: number;
}

const UNWINDING = 1;
/**
 * Loop back-edges and recursive calls between two polls: at the instrumenter's measured rates
 * this keeps a poll within a few ms in the hottest loops (well inside the 50 ms latency bound)
 * while the poll's own cost stays negligible.
 */
const POLL_BUDGET = 10_000;
/** Granularity of change detection between captures (the wasm page size). */
const PAGE = 65536;
/** Stack assumed below the initial stack pointer (wasm-ld's default stack size). */
const MIN_STACK = 64 * 1024;

type Exports = Record<string, unknown> & {
  memory: WebAssembly.Memory;
  _start: () => void;
  asyncify_start_unwind: (p: number) => void;
  asyncify_stop_unwind: () => void;
  asyncify_start_rewind: (p: number) => void;
  asyncify_stop_rewind: () => void;
  asyncify_get_state: () => number;
};

async function run(data: GuestData): Promise<GuestResult> {
  const host = new WasiHost({
    args: data.args, env: data.env, preopens: data.preopens, ...(data.mounts && { mounts: data.mounts }),
    writeBehind: new WriteBehind(data.writeBehind), stdin: data.stdin,
    ...(data.restore && {
      restore: {
        fds: data.restore.fds, monotonicNs: BigInt(data.restore.monotonicNs),
        stdinPending: data.restore.stdinPending,
        ...(data.restore.pollDeadlines && { pollDeadlines: data.restore.pollDeadlines }),
        ...(data.restore.handles && { handles: data.restore.handles }),
      },
    }),
  });
  const ck = data.checkpoint;
  const imports: WebAssembly.Imports = { wasi_snapshot_preview1: host.imports() };
  let engine: Checkpointer | null = null;
  if (ck !== undefined) {
    engine = new Checkpointer(ck, host);
    imports.wasi_snapshot_preview1 = engine.wrap(imports.wasi_snapshot_preview1 as Record<string, Call>);
    if (ck.poll) imports.stasis = { poll: () => engine!.poll() };
  }
  const instance = new WebAssembly.Instance(data.module, imports);
  const ex = instance.exports as Exports;
  engine?.attach(ex);
  // Under checkpoint control, publish the memory size: the main thread prepares a capture
  // buffer of that size ahead of the first checkpoint.
  const control = ck === undefined ? null : new Int32Array(ck.control, 0, CONTROL_WORDS);
  host.attach(ex.memory, control === null ? undefined : (bytes) => Atomics.store(control, CONTROL_MEMORY_PAGES, bytes / PAGE));
  if (data.restore !== undefined) {
    const { ImageError, readImage } = await import('../image/index.js');
    try {
      await readImage(data.restore.image.path, { generation: data.restore.image.generation, into: () => ex.memory });
    } catch (e) {
      if (e instanceof ImageError) return { exitCode: -1, imageError: { reason: e.reason, message: e.message } };
      throw e;
    }
    engine!.restore(data.restore);
    parentPort!.postMessage({ type: 'restored' } satisfies GuestMessage);
  }
  // Let the event loop turn once before the program starts: V8 finishes work for the new
  // instance in tasks on this thread, and a program that starts at once runs without it
  // (measured: a pure-compute program ran ~10 % slower to the end).
  await new Promise<void>((resolve) => setImmediate(resolve));
  const ended = (r: GuestResult): GuestResult => (engine === null ? r : { ...r, reentries: engine.reentries });
  try {
    for (;;) {
      ex._start();
      if (engine === null || !engine.unwound()) return ended({ exitCode: 0 });
      engine.serveAndRewind();
    }
  } catch (e) {
    if (e instanceof ProcExit) return ended({ exitCode: e.code & 0xff });
    return ended({ exitCode: EXIT.TRAP, trap: describeTrap(e, data.modulePath) });
  } finally {
    host.flushAll();
  }
}

type Call = (...a: never[]) => number;

/**
 * The guest side of checkpointing: unwind at a safe point, capture, rewind.
 *
 * The same unwind and rewind, without a capture, also re-enters the program's stack when the
 * main thread asks (CONTROL_REENTER, a few times early in a run): V8 has no on-stack
 * replacement for wasm, so a function already running (main's loop) keeps its baseline code
 * although V8 has compiled optimized code for it meanwhile; rewound, every frame on the stack
 * is entered again and runs that code.
 */
class Checkpointer {
  private ex!: Exports;
  private readonly control: Int32Array;
  /** The last request number this guest has served. */
  private served = 0;
  /** The last re-entry request seen. */
  private reentered = 0;
  /** Whether the unwind in progress is for a checkpoint (else for a re-entry only). */
  private checkpointDue = false;
  reentries = 0;
  private rewinding = false;
  /** A capture buffer handed back by the main thread, holding the previous capture. */
  private spare: Uint8Array | null = null;
  private stopAfter = false;
  private dataPtr = 0;
  private pauseStart = 0;

  constructor(
    private readonly ck: CheckpointSetup,
    private readonly host: WasiHost,
  ) {
    this.control = new Int32Array(ck.control, 0, CONTROL_WORDS);
    this.served = Atomics.load(this.control, CONTROL_REQUEST);
    // Not loaded: a re-entry asked before this thread got here is still to be done.
    this.reentered = 0;
    setInterruptWord(this.control, CONTROL_REQUEST, this.served);
  }

  attach(ex: Exports, spInit?: number): void {
    this.ex = ex;
    const sp = this.ck.stackPointer;
    this.spInit = spInit ?? (sp === null ? 0 : Number((ex[sp] as WebAssembly.Global).value));
  }

  /** The stack pointer's initial value (the top of the shadow stack). */
  spInit = 0;

  /** Wraps the unwindable imports: unwind on a pending request, finish a rewind. */
  wrap(imports: Record<string, Call>): Record<string, Call> {
    const out: Record<string, Call> = { ...imports };
    let calls = 0;
    const at = this.ck.checkpointAtCall ?? 0;
    for (const name of this.ck.unwindImports) {
      const base = imports[name];
      if (base === undefined) continue;
      // Nine parameters, the most any WASI function has: no rest array on this hot path
      // (extra arguments are undefined and ignored).
      out[name] = ((a: never, b: never, c: never, d: never, e: never, f: never, g: never, h: never, i: never) => {
        if (this.rewinding) this.finishRewind();
        else if (++calls === at) {
          this.stopAfter = true;
          Atomics.add(this.control, CONTROL_REQUEST, 1);
          return this.unwind();
        } else if (this.pending()) return this.unwind();
        try {
          return base(a, b, c, d, e, f, g, h, i);
        } catch (x) {
          if (x instanceof Interrupted) return this.unwind(); // a wait cut short by a request
          throw x;
        }
      }) as Call;
    }
    return out;
  }

  /** The instrumented loops' poll: returns the next budget. */
  poll(): number {
    if (this.rewinding) this.finishRewind();
    else if (this.pending()) this.unwind();
    return POLL_BUDGET;
  }

  unwound(): boolean {
    if (this.ex.asyncify_get_state() !== UNWINDING) return false;
    this.ex.asyncify_stop_unwind();
    return true;
  }

  /** After an unwind: captures if a checkpoint was asked, then rewinds. */
  serveAndRewind(): void {
    if (!this.checkpointDue) {
      this.reentries++;
      this.startRewind(this.dataPtr);
      return;
    }
    const ex = this.ex;
    this.host.flushAll();
    const { memory, dirtyPages } = this.copyMemory();
    const snapshot: CapturedState = {
      memory, dirtyPages,
      globals: this.ck.globals.map((g) => {
        const v = (ex[g.name] as WebAssembly.Global).value as number | bigint;
        return { name: g.name, type: g.type, value: typeof v === 'bigint' ? v.toString() : v };
      }),
      asyncifyData: this.dataPtr,
      wasi: this.host.state(),
      monotonicNs: this.host.clocks.monotonic().toString(),
      stdinPending: this.host.stdinPending(),
      stdinReceived: this.host.stdinReceived(),
      fileHandles: this.host.fileHandles(),
      pauseMs: 0,
    };
    snapshot.pauseMs = performance.now() - this.pauseStart;
    const released = Atomics.load(this.control, CONTROL_RELEASE);
    parentPort!.postMessage({ type: 'snapshot', request: this.served, snapshot } satisfies GuestMessage, [snapshot.memory.buffer as ArrayBuffer]);
    if (this.stopAfter || Atomics.load(this.control, CONTROL_STOP) !== 0) {
      // The program is to end with this checkpoint: do nothing more (no output, no writes)
      // while the launcher saves the image and exits.
      for (;;) Atomics.wait(this.control, CONTROL_WORDS - 1, 0);
    }
    // Stay paused while the main thread copies the files that go with this image.
    while (Atomics.load(this.control, CONTROL_RELEASE) === released) Atomics.wait(this.control, CONTROL_RELEASE, released);
    writeGuards.add(this.takeGuards());
    this.startRewind(this.dataPtr);
  }

  /** The guard list posted with a release (it is there by the time the release is seen). */
  private takeGuards(): FileGuard[] {
    for (let spins = 0; ; spins++) {
      const m = receiveMessageOnPort(this.ck.guards);
      if (m !== undefined) return m.message as FileGuard[];
      if (spins > 5000) throw new Error('no file guards came with the release');
      Atomics.wait(this.control, CONTROL_WORDS - 1, 0, 1);
    }
  }

  /**
   * Copies linear memory for the main thread. The buffer of the previous capture comes back
   * once its image is written: then only the pages that changed are copied into it (a compare
   * reads, it does not touch fresh pages), which keeps the pause short and the launcher's
   * memory at one copy, and tells the image store which chunks it need not hash again.
   */
  private copyMemory(): { memory: Uint8Array; dirtyPages: Uint8Array | null } {
    const mem = new Uint8Array(this.ex.memory.buffer);
    for (let m = receiveMessageOnPort(this.ck.spares); m !== undefined; m = receiveMessageOnPort(this.ck.spares)) {
      this.spare = m.message as Uint8Array;
    }
    const spare = this.spare;
    this.spare = null;
    if (spare === null || spare.length !== mem.length) return { memory: mem.slice(), dirtyPages: null };
    const pages = mem.length / PAGE;
    const dirty = new Uint8Array(pages);
    const a = Buffer.from(mem.buffer, mem.byteOffset, mem.length);
    const b = Buffer.from(spare.buffer, spare.byteOffset, spare.length);
    for (let p = 0, off = 0; p < pages; p++, off += PAGE) {
      if (a.compare(b, off, off + PAGE, off, off + PAGE) !== 0) {
        a.copy(b, off, off, off + PAGE);
        dirty[p] = 1;
      }
    }
    return { memory: spare, dirtyPages: dirty };
  }

  /** Sets globals from an image (memory is already restored) and arms the rewind. */
  restore(r: RestoreState): void {
    const ex = this.ex;
    for (const g of r.globals) {
      const glob = ex[g.name] as WebAssembly.Global | undefined;
      if (glob === undefined) throw new Error(`image names global ${g.name}, which the module lacks`);
      glob.value = g.type === 'i64' ? BigInt(g.value) : g.value;
    }
    this.startRewind(r.asyncifyData);
  }

  /** A checkpoint or re-entry request is waiting (checked at every safe point: cheap). */
  private pending(): boolean {
    if (Atomics.load(this.control, CONTROL_REQUEST) !== this.served) return true;
    const reenter = Atomics.load(this.control, CONTROL_REENTER);
    if (reenter === this.reentered) return false;
    this.reentered = reenter;
    // A re-entry only where the unwind buffer fits on the shadow stack: in fresh pages, it
    // would grow the program's memory each time.
    return this.stackRoom() !== null;
  }

  private unwind(): number {
    this.pauseStart = performance.now();
    const request = Atomics.load(this.control, CONTROL_REQUEST);
    this.checkpointDue = request !== this.served || this.stopAfter;
    this.served = request;
    setInterruptWord(this.control, CONTROL_REQUEST, this.served);
    this.dataPtr = this.placeBuffer();
    this.ex.asyncify_start_unwind(this.dataPtr);
    return 0;
  }

  private startRewind(ptr: number): void {
    this.rewinding = true;
    this.ex.asyncify_start_rewind(ptr);
  }

  private finishRewind(): void {
    this.rewinding = false;
    this.ex.asyncify_stop_rewind();
  }

  /**
   * Where the asyncify buffer goes. Asyncify does not check the buffer's end while unwinding,
   * so it is sized first: frames on the stack x the module's largest frame. If that fits in
   * the unused part of the shadow stack below the current stack pointer (nothing lives there
   * while the guest is unwound), it goes there. The stack's lower end is not recorded in a
   * linked module (zero-initialised data may sit right under it), so only the 64 KiB below the
   * initial stack pointer — wasm-ld's default stack size — counts. Otherwise (deep recursion)
   * fresh pages grown at the end of memory are used, never reused, so that no allocator can
   * have taken them over.
   */
  private placeBuffer(): number {
    const mem = this.ex.memory;
    let start: number;
    let end: number;
    const room = this.stackRoom();
    if (room !== null) {
      ({ start, end } = room);
    } else {
      const need = wasmFrames() * this.ck.maxFrameBytes + 64;
      const pages = Math.ceil((need + 8) / PAGE);
      start = mem.grow(pages) * PAGE;
      end = start + pages * PAGE;
    }
    const v = new DataView(mem.buffer);
    v.setUint32(start, start + 8, true);
    v.setUint32(start + 4, end, true);
    return start;
  }

  /** Where on the shadow stack, below the stack pointer, the unwind buffer fits; or null. */
  private stackRoom(): { start: number; end: number } | null {
    if (this.ck.stackPointer === null) return null;
    const need = wasmFrames() * this.ck.maxFrameBytes + 64;
    const sp = Number((this.ex[this.ck.stackPointer] as WebAssembly.Global).value);
    const low = Math.max(16, this.spInit - MIN_STACK);
    const top = (sp - 64) & ~15;
    if (top - low < need + 8) return null;
    return { start: Math.max(low, (top - need - 8) & ~15), end: top };
  }
}

/** "unreachable executed in function 'main' (prog.wasm)": the message and first wasm frame. */
export function describeTrap(e: unknown, modulePath: string): string {
  if (!(e instanceof WebAssembly.RuntimeError) && !(e instanceof RangeError)) throw e;
  const frame = (e.stack ?? '').split('\n').find((l) => l.includes('wasm://') || l.includes('wasm-function'));
  let where = '';
  if (frame !== undefined) {
    const named = /at (\S+) \(wasm:/.exec(frame);
    const index = /wasm-function\[(\d+)\]/.exec(frame);
    if (named) where = ` in function '${named[1]}'`;
    else if (index) where = ` in function #${index[1]} (module has no name section)`;
  }
  return `trap: ${e.message}${where} (${modulePath})`;
}

if (parentPort !== null && workerData?.kind === 'guest') {
  const port = parentPort;
  run(workerData.data as GuestData).then(
    (result) => port.postMessage({ type: 'result', ...result } satisfies GuestMessage),
    (e: unknown) => {
      throw e;
    },
  );
}

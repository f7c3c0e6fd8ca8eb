// The guest side of checkpointing, by phase: a request is noticed at a safe point (a WASI call
// or an instrumented loop's poll), the stack is unwound into a buffer in the program's own
// memory, the state is captured and posted, the guest waits until the main thread has copied
// its files, then rewinds and goes on. A restart arms the same rewind in a fresh instance.
//
// The same unwind and rewind, without a capture, also re-enters the program's stack when the
// main thread asks (Control.REENTER, a few times early in a run): V8 has no on-stack
// replacement for wasm, so a function already running (main's loop) keeps its baseline code
// although V8 has compiled optimized code for it meanwhile; rewound, every frame on the stack
// is entered again and runs that code.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { ChangeRecorder } from '../files/journal.js';
import { ASYNCIFY_BUFFER_HEADER, ASYNCIFY_STATE, POLL_BUDGET } from '../instrument/abi.js';
import { Interrupted, setInterruptWord } from '../wasi/interrupt.js';
import type { WasiHost } from '../wasi/host.js';
import { MemoryCopier } from './memory-copy.js';
import { CONTROL_WORDS, Control, type CapturedState, type CheckpointSetup, type GuestMessage, type Release, type RestoreState } from './protocol.js';
import { placeBuffer, stackRoom } from './stack.js';

export type AsyncifyExports = Record<string, unknown> & {
  memory: WebAssembly.Memory;
  _start: () => void;
  asyncify_start_unwind: (p: number) => void;
  asyncify_stop_unwind: () => void;
  asyncify_start_rewind: (p: number) => void;
  asyncify_stop_rewind: () => void;
  asyncify_get_state: () => number;
};

type Call = (...a: never[]) => number;

export class Checkpointer {
  /** How many unwinds were re-entries only. */
  reentries = 0;
  private ex!: AsyncifyExports;
  private readonly control: Int32Array;
  private readonly memory: MemoryCopier;
  /** The last request number this guest has served. Requests count from 0 in a fresh control
   *  array: one asked before this thread got here is still to be served. */
  private served = 0;
  /** The last re-entry request seen (likewise from 0). */
  private reentered = 0;
  /** Whether the unwind in progress is for a checkpoint (else for a re-entry only). */
  private checkpointDue = false;
  /** The program ends with this checkpoint (--checkpoint-at-call). */
  private stopAfter = false;
  private rewinding = false;
  /** Address of the unwind buffer's header. */
  private dataPtr = 0;
  private pauseStart = 0;
  /** The stack pointer's initial value (the top of the shadow stack). */
  private spInit = 0;
  /** The ending gate (instrument/ending.ts): set, the program is on its way to a trap, with
   *  frames on the stack that cannot be unwound. */
  private gate: WebAssembly.Global | null = null;
  /** Where a re-entry's unwind buffer goes, found when the re-entry was taken (finding it walks
   *  the stack, so it is not done twice). */
  private reentryRoom: { start: number; end: number } | null = null;
  /** Unwindable calls so far (--checkpoint-at-call). */
  private calls = 0;

  constructor(
    private readonly ck: CheckpointSetup,
    private readonly host: WasiHost,
    private readonly changes: ChangeRecorder,
    /** Sends a message to the main thread (the worker's parent port). */
    private readonly post: (m: GuestMessage, transfer: ArrayBuffer[]) => void,
  ) {
    this.control = new Int32Array(ck.control, 0, CONTROL_WORDS);
    this.memory = new MemoryCopier(ck.spares);
    setInterruptWord(this.control, Control.REQUEST, this.served);
  }

  /** The instance's exports, once instantiated. */
  attach(ex: AsyncifyExports): void {
    this.ex = ex;
    const sp = this.ck.stackPointer;
    this.spInit = sp === null ? 0 : Number((ex[sp] as WebAssembly.Global).value);
    this.gate = this.ck.endingGate === null ? null : ex[this.ck.endingGate] as WebAssembly.Global;
  }

  /** The WASI imports with a safe point before each unwindable one. */
  wrapImports(imports: Record<string, Call>): Record<string, Call> {
    const out: Record<string, Call> = { ...imports };
    for (const name of this.ck.unwindImports) {
      const base = imports[name];
      if (base === undefined) continue;
      // Nine parameters, the most any WASI function has: no rest array on this hot path
      // (extra arguments are undefined and ignored).
      const safe = ((a: never, b: never, c: never, d: never, e: never, f: never, g: never, h: never, i: never) => {
        if (this.rewinding) this.finishRewind();
        else if (this.pending()) return this.unwind();
        try {
          return base(a, b, c, d, e, f, g, h, i);
        } catch (x) {
          if (!(x instanceof Interrupted)) throw x;
          if (this.unwindable()) return this.unwind(); // a wait cut short by a request
        }
        return base(a, b, c, d, e, f, g, h, i); // on the way to a trap: the wait goes on
      }) as Call;
      out[name] = this.ck.checkpointAtCall === undefined ? safe : this.countCalls(safe);
    }
    return out;
  }

  /** Testing aid (--checkpoint-at-call): the Nth unwindable call asks for a checkpoint and a
   *  stop by itself. A separate layer, so that normal runs do not pay for the count. */
  private countCalls(safe: Call): Call {
    return ((a: never, b: never, c: never, d: never, e: never, f: never, g: never, h: never, i: never) => {
      if (!this.rewinding && ++this.calls === this.ck.checkpointAtCall) {
        this.stopAfter = true;
        Atomics.add(this.control, Control.REQUEST, 1);
      }
      return safe(a, b, c, d, e, f, g, h, i);
    }) as Call;
  }

  /** The instrumented loops' poll (a safe point); returns the next budget. */
  poll(): number {
    if (this.rewinding) this.finishRewind();
    else if (this.pending()) this.unwind();
    return POLL_BUDGET;
  }

  /** After _start returned: whether it returned because the stack was unwound. */
  unwound(): boolean {
    if (this.ex.asyncify_get_state() !== ASYNCIFY_STATE.unwinding) return false;
    this.ex.asyncify_stop_unwind();
    return true;
  }

  /** The stack is unwound: capture if a checkpoint was asked, then rewind. */
  serveUnwind(): void {
    if (this.checkpointDue) {
      this.awaitRelease(this.capture());
    } else {
      this.reentries++;
    }
    this.rewind(this.dataPtr);
  }

  /**
   * Why an image's engine state cannot be put into this module, or null: checked before a
   * restart changes any file (an image may come from elsewhere).
   */
  restoreProblem(r: Omit<RestoreState, 'files'>): string | null {
    for (const g of r.globals) {
      const glob = this.ex[g.name];
      if (!(glob instanceof WebAssembly.Global)) return `it names global ${g.name}, which the module lacks`;
      if ((typeof glob.value === 'bigint') !== (g.type === 'i64')) return `its global ${g.name} has the wrong type (${g.type})`;
    }
    const size = this.ex.memory.buffer.byteLength;
    const at = r.asyncifyData;
    if (at % 4 !== 0 || at + ASYNCIFY_BUFFER_HEADER > size) return `its unwind buffer address ${at} is outside the memory`;
    const view = new DataView(this.ex.memory.buffer);
    const current = view.getUint32(at, true);
    const end = view.getUint32(at + 4, true);
    if (current < at + ASYNCIFY_BUFFER_HEADER || current > end || end > size) return 'its unwind buffer is damaged';
    return null;
  }

  /** A restart: globals from the image (its memory is in place already, checked by restoreProblem), then the rewind. */
  restore(r: Omit<RestoreState, 'files'>): void {
    for (const g of r.globals) {
      const glob = this.ex[g.name] as WebAssembly.Global;
      glob.value = g.type === 'i64' ? BigInt(g.value!) : typeof g.value === 'string' ? Number(g.value) : (g.value ?? 0);
    }
    this.rewind(r.asyncifyData);
  }

  /** A checkpoint or re-entry request is waiting (checked at every safe point: cheap), and the
   *  stack can be unwound here. */
  private pending(): boolean {
    if (Atomics.load(this.control, Control.REQUEST) !== this.served) return this.unwindable();
    const reenter = Atomics.load(this.control, Control.REENTER);
    if (reenter === this.reentered) return false;
    this.reentered = reenter;
    if (!this.unwindable()) return false;
    // A re-entry only where the unwind buffer fits on the shadow stack: in fresh pages, it
    // would grow the program's memory each time.
    this.reentryRoom = this.room();
    return this.reentryRoom !== null;
  }

  /** False once the program is on its way to a trap (the ending gate is set). A request then
   *  stays unserved, and no longer cuts its blocking waits short (so they do not spin). */
  private unwindable(): boolean {
    if (this.gate === null || this.gate.value === 0) return true;
    setInterruptWord(this.control, Control.REQUEST, Atomics.load(this.control, Control.REQUEST));
    return false;
  }

  private room(): { start: number; end: number } | null {
    const sp = this.ck.stackPointer;
    if (sp === null) return null;
    return stackRoom(Number((this.ex[sp] as WebAssembly.Global).value), this.spInit, this.ck.maxFrameBytes);
  }

  private unwind(): number {
    this.pauseStart = performance.now();
    const request = Atomics.load(this.control, Control.REQUEST);
    this.checkpointDue = request !== this.served || this.stopAfter;
    this.served = request;
    setInterruptWord(this.control, Control.REQUEST, this.served);
    const room = this.reentryRoom ?? this.room(); // a pending() that said yes unwinds at once
    this.reentryRoom = null;
    this.dataPtr = placeBuffer(this.ex.memory, room, this.ck.maxFrameBytes);
    this.ex.asyncify_start_unwind(this.dataPtr);
    return 0;
  }

  /** Posts the program's state to the main thread; returns the release count as it was before.
   *  A program that ends with this checkpoint does nothing more (no output, no writes) while
   *  the launcher saves the image and exits. */
  private capture(): number {
    const ex = this.ex;
    this.host.flushAll();
    const { memory, inShared, dirtyPages, copyId } = this.memory.copy(ex.memory);
    const snapshot: CapturedState = {
      memory: inShared ? new Uint8Array(0) : memory, dirtyPages, copyId,
      globals: this.ck.globals.map((g) => {
        const v = (ex[g.name] as WebAssembly.Global).value as number | bigint;
        // JSON has no NaN or infinities: those floats are kept as strings, as i64 values are.
        return { name: g.name, type: g.type, value: typeof v === 'bigint' || !Number.isFinite(v) ? v.toString() : v };
      }),
      asyncifyData: this.dataPtr,
      wasi: this.host.state(),
      monotonicNs: this.host.clocks.monotonic().toString(),
      stdinPending: this.host.stdinPending(),
      stdinReceived: this.host.stdinReceived(),
      fileHandles: this.host.fileHandles(),
      written: this.ck.journal === undefined ? [] : this.changes.written(), // --no-rollback: offsets decide
      pauseMs: 0,
    };
    snapshot.pauseMs = performance.now() - this.pauseStart;
    const released = Atomics.load(this.control, Control.RELEASE);
    this.post({ type: 'snapshot', request: this.served, snapshot, inShared }, []);
    if (this.stopAfter || Atomics.load(this.control, Control.STOP) !== 0) {
      for (;;) Atomics.wait(this.control, Control.PARKED, 0);
    }
    // While the main thread copies the files: the memory is still as captured.
    this.memory.afterCapture(Atomics.load(this.control, Control.TRACK_WRITES) !== 0, ex.memory);
    return released;
  }

  /** Stays paused while the main thread copies the files that go with the image; then guards
   *  the big files it is still copying (their blocks are copied before the program changes them),
   *  and journals its changes from this checkpoint on. */
  private awaitRelease(seen: number): void {
    while (Atomics.load(this.control, Control.RELEASE) === seen) Atomics.wait(this.control, Control.RELEASE, seen);
    const release = takeRelease(this.ck.guards, this.control);
    this.changes.guards.add(release.guards);
    this.changes.startGeneration(release.generation);
  }

  private rewind(ptr: number): void {
    this.rewinding = true;
    this.ex.asyncify_start_rewind(ptr);
  }

  private finishRewind(): void {
    this.rewinding = false;
    this.ex.asyncify_stop_rewind();
  }
}

/** The message posted with a release (it is there by the time the release is seen). */
function takeRelease(port: MessagePort, control: Int32Array): Release {
  for (let spins = 0; ; spins++) {
    const m = receiveMessageOnPort(port);
    if (m !== undefined) return m.message as Release;
    if (spins > 5000) throw new Error('no file guards came with the release');
    Atomics.wait(control, Control.PARKED, 0, 1);
  }
}

// Standard input for the guest. A regular file is read directly. A terminal, pipe or socket is
// read by the launcher's main thread (StdinPump, with Node's non-blocking streams) and handed to
// the guest's thread through shared memory, on demand: the guest can then wait for input with a
// timeout (poll_oneoff) or not at all (fdflags.nonblock), which a blocking read(2) cannot do,
// and no thread is ever stuck in a read that would keep the process from exiting. A program on
// the main thread (`stasis run` with the native addon) waits with poll(2) instead (PolledStdin).
import { fstatSync, readSync } from 'node:fs';
import { Errno } from './constants.js';
import { WasiError } from './errno.js';
import { Interrupted, interruptPending } from './interrupt.js';

export interface StdinSource {
  /** Reads up to len bytes into buf at ptr; blocks unless nonblock (then EAGAIN). 0 = EOF. */
  read(buf: Buffer, ptr: number, len: number, nonblock: boolean): number;
  /** Waits up to timeoutMs for input; nbytes is how much is buffered (0 with ready = EOF). */
  ready(timeoutMs: number): { ready: boolean; nbytes: number };
  /** Bytes a read would return without waiting. */
  available(): number;
  /** Input received but not yet read by the program (saved by a checkpoint). */
  pending(): Uint8Array;
  /** Bytes taken from this process's stdin so far (pending ones included). */
  received: number;
}

const CHUNK = 64 * 1024;
// Control words at the start of the shared buffer.
const STATE = 0;
const LENGTH = 1; // bytes filled; 0 = end of input; -1 = read error
const IDLE = 0; // nothing asked
const REQUESTED = 1; // the guest wants input
const FILLED = 2; // the pump has put a chunk (or EOF) in

/** Shared memory between the guest's StreamStdin and the main thread's StdinPump. */
export function stdinChannel(): SharedArrayBuffer {
  return new SharedArrayBuffer(16 + CHUNK);
}

/** True if standard input is a regular file, which the guest reads directly. */
export function stdinIsFile(): boolean {
  try {
    return fstatSync(0).isFile();
  } catch {
    return false;
  }
}

/**
 * How the guest's thread gets stdin: a channel from a StdinPump (a worker's), or polled on its
 * own thread with the addon's pollIn (the main thread's; not a regular file), or null when
 * stdin is a regular file.
 */
export type StdinFrom = SharedArrayBuffer | { pollIn: (fd: number, timeoutMs: number) => number } | null;

/** The guest's stdin; `pending` is input a checkpointed run had received but not read. */
export function openStdin(from: StdinFrom, pending?: Uint8Array): StdinSource {
  if (from === null) return new FileStdin();
  return from instanceof SharedArrayBuffer ? new StreamStdin(from, pending) : new PolledStdin(from.pollIn, pending);
}

class FileStdin implements StdinSource {
  received = 0;
  read(buf: Buffer, ptr: number, len: number): number {
    const n = readSync(0, buf, ptr, len, null);
    this.received += n;
    return n;
  }
  ready(): { ready: boolean; nbytes: number } {
    return { ready: true, nbytes: 0 };
  }
  available(): number {
    return Infinity;
  }
  pending(): Uint8Array {
    return new Uint8Array(0);
  }
}

/** Input read ahead in chunks, handed out as the program reads; subclasses say how a chunk comes. */
abstract class ChunkedStdin implements StdinSource {
  /** Bytes received and not yet given to the guest. */
  protected buffered = Buffer.alloc(0);
  protected eof = false;
  received = 0;

  constructor(pending?: Uint8Array) {
    if (pending !== undefined) this.buffered = Buffer.from(pending);
  }

  /** Waits up to timeoutMs for a chunk (or EOF) and takes it in; true once one came. */
  protected abstract fill(timeoutMs: number): boolean;

  /** Takes in a chunk that has come (n > 0 bytes of data, 0 end of input, < 0 a read error). */
  protected got(data: Buffer, n: number): void {
    if (n > 0) {
      this.buffered = Buffer.concat([this.buffered, data.subarray(0, n)]);
      this.received += n;
    } else if (n === 0) this.eof = true;
    else throw new WasiError(Errno.IO);
  }

  read(buf: Buffer, ptr: number, len: number, nonblock: boolean): number {
    if (this.buffered.length === 0 && !this.eof) {
      if (!this.fill(nonblock ? 0 : Infinity)) throw new WasiError(Errno.AGAIN);
    }
    if (this.buffered.length === 0) {
      this.eof = false; // report end of input once per read, as read(2) does
      return 0;
    }
    const n = Math.min(len, this.buffered.length);
    this.buffered.copy(buf, ptr, 0, n);
    this.buffered = this.buffered.subarray(n);
    return n;
  }

  ready(timeoutMs: number): { ready: boolean; nbytes: number } {
    if (this.buffered.length > 0 || this.eof || this.fill(timeoutMs)) {
      return { ready: true, nbytes: this.buffered.length };
    }
    return { ready: false, nbytes: 0 };
  }

  available(): number {
    return this.buffered.length;
  }

  pending(): Uint8Array {
    return new Uint8Array(this.buffered);
  }
}

/** The guest's side in a worker: asks for a chunk and waits for the pump to fill it. */
class StreamStdin extends ChunkedStdin {
  private readonly ctl: Int32Array;
  private readonly data: Buffer;

  constructor(channel: SharedArrayBuffer, pending?: Uint8Array) {
    super(pending);
    this.ctl = new Int32Array(channel, 0, 4);
    this.data = Buffer.from(channel, 16, CHUNK);
  }

  override pending(): Uint8Array {
    this.take(); // a chunk delivered but not yet picked up belongs to the program too
    return super.pending();
  }

  protected fill(timeoutMs: number): boolean {
    const ctl = this.ctl;
    if (Atomics.compareExchange(ctl, STATE, IDLE, REQUESTED) === IDLE) Atomics.notify(ctl, STATE);
    const deadline = performance.now() + timeoutMs;
    while (Atomics.load(ctl, STATE) === REQUESTED) {
      // A checkpoint request notifies this word too: stop waiting so the engine can unwind.
      if (interruptPending()) throw new Interrupted();
      const left = deadline - performance.now();
      if (left <= 0) return false;
      Atomics.wait(ctl, STATE, REQUESTED, left);
    }
    return this.take();
  }

  /** Moves a delivered chunk (if any) into the buffer; true if one was there. */
  private take(): boolean {
    const ctl = this.ctl;
    if (Atomics.load(ctl, STATE) !== FILLED) return false;
    const n = ctl[LENGTH]!;
    Atomics.store(ctl, STATE, IDLE);
    this.got(this.data, n);
    return true;
  }
}

/**
 * Read on the program's own thread when that is the main one (`stasis run`; `launch` and
 * `restart` with the native addon): poll(2) waits with a timeout, and only then is the fd read,
 * so a non-blocking fd (shared with whoever started us) is never read before it has input.
 */
class PolledStdin extends ChunkedStdin {
  private readonly chunk = Buffer.alloc(CHUNK);

  constructor(private readonly pollIn: (fd: number, timeoutMs: number) => number, pending?: Uint8Array) {
    super(pending);
  }

  protected fill(timeoutMs: number): boolean {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (interruptPending()) throw new Interrupted();
      const left = Math.max(0, deadline - performance.now());
      const r = this.pollIn(0, left === Infinity ? -1 : left);
      if (r === 2) continue; // woken for a checkpoint request (wakePollIn), looked for above
      if (r === 0) return false;
      let n: number;
      try {
        n = r < 0 ? -1 : readSync(0, this.chunk, 0, CHUNK, null);
      } catch (e) {
        // Someone else read it first: wait again, for what is left of the time.
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') {
          if (left === 0) return false;
          continue;
        }
        n = -1;
      }
      this.got(this.chunk, n);
      return true;
    }
  }
}

/** Wakes a guest waiting for input (used when a checkpoint request arrives). */
export function wakeStdinWaiter(channel: SharedArrayBuffer): void {
  Atomics.notify(new Int32Array(channel, 0, 4), STATE);
}

/**
 * The main thread's side: reads process.stdin only while the guest is asking, so at most one
 * chunk is read ahead of the program.
 */
export class StdinPump {
  private readonly ctl: Int32Array;
  private readonly data: Buffer;
  private readonly queue: Buffer[] = [];
  private ended = false;
  private failed = false;
  private wake: (() => void) | null = null;

  constructor(channel: SharedArrayBuffer) {
    this.ctl = new Int32Array(channel, 0, 4);
    this.data = Buffer.from(channel, 16, CHUNK);
  }

  start(): void {
    const input = process.stdin;
    input.pause();
    input.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      input.pause();
      this.wake?.();
    });
    input.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    input.on('error', () => {
      this.failed = true;
      this.wake?.();
    });
    void this.serve(input);
  }

  private async serve(input: NodeJS.ReadStream): Promise<void> {
    const ctl = this.ctl;
    for (;;) {
      await this.waitWhile(IDLE);
      while (this.queue.length === 0 && !this.ended && !this.failed) {
        input.resume();
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
      }
      let n: number;
      if (this.queue.length > 0) {
        const chunk = this.queue[0]!;
        n = Math.min(chunk.length, CHUNK);
        chunk.copy(this.data, 0, 0, n);
        if (n === chunk.length) this.queue.shift();
        else this.queue[0] = chunk.subarray(n);
      } else {
        n = this.failed ? -1 : 0;
      }
      ctl[LENGTH] = n;
      Atomics.store(ctl, STATE, FILLED);
      Atomics.notify(ctl, STATE);
      await this.waitWhile(FILLED);
    }
  }

  private async waitWhile(value: number): Promise<void> {
    while (Atomics.load(this.ctl, STATE) === value) {
      const r = Atomics.waitAsync(this.ctl, STATE, value);
      if (r.async) await r.value;
    }
  }
}

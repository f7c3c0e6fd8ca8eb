// Standard input for the guest. A regular file is read directly. A terminal, pipe or socket is
// read by the launcher's main thread (StdinPump, with Node's non-blocking streams) and handed to
// the guest's thread through shared memory, on demand: the guest can then wait for input with a
// timeout (poll_oneoff) or not at all (fdflags.nonblock), which a blocking read(2) cannot do,
// and no thread is ever stuck in a read that would keep the process from exiting.
import * as fs from 'node:fs';
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
    return fs.fstatSync(0).isFile();
  } catch {
    return false;
  }
}

/** The guest's stdin; `pending` is input a checkpointed run had received but not read. */
export function openStdin(channel: SharedArrayBuffer | null, pending?: Uint8Array): StdinSource {
  return channel === null ? new FileStdin() : new StreamStdin(channel, pending);
}

class FileStdin implements StdinSource {
  received = 0;
  read(buf: Buffer, ptr: number, len: number): number {
    const n = fs.readSync(0, buf, ptr, len, null);
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

/** The guest's side: asks for a chunk and waits for the pump to fill it. */
class StreamStdin implements StdinSource {
  private readonly ctl: Int32Array;
  private readonly data: Buffer;
  /** Bytes received and not yet given to the guest. */
  private buffered = Buffer.alloc(0);
  private eof = false;
  received = 0;

  constructor(channel: SharedArrayBuffer, pending?: Uint8Array) {
    this.ctl = new Int32Array(channel, 0, 4);
    this.data = Buffer.from(channel, 16, CHUNK);
    if (pending !== undefined) this.buffered = Buffer.from(pending);
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
    this.take(); // a chunk delivered but not yet picked up belongs to the program too
    return new Uint8Array(this.buffered);
  }

  /** Asks for a chunk and waits up to timeoutMs; true once data or EOF arrived. */
  private fill(timeoutMs: number): boolean {
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
    if (n > 0) {
      this.buffered = Buffer.concat([this.buffered, this.data.subarray(0, n)]);
      this.received += n;
    } else if (n === 0) this.eof = true;
    Atomics.store(ctl, STATE, IDLE);
    if (n < 0) throw new WasiError(Errno.IO);
    return true;
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

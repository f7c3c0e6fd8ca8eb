// Standard input for the guest. A regular file is read directly. A terminal or pipe is read by a
// small helper thread, on demand, into shared memory: the guest's thread can then wait for
// input with a timeout (poll_oneoff) or without blocking (fdflags.nonblock), which a plain
// blocking read(2) from JavaScript cannot do. At most one chunk is read ahead, and only when
// the guest asked for input.
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Errno } from './constants.js';
import { WasiError } from './errno.js';

export interface StdinSource {
  /** Reads up to len bytes into buf at ptr; blocks unless nonblock (then EAGAIN). 0 = EOF. */
  read(buf: Buffer, ptr: number, len: number, nonblock: boolean): number;
  /** Waits up to timeoutMs for input; nbytes is how much is buffered (0 with ready = EOF). */
  ready(timeoutMs: number): { ready: boolean; nbytes: number };
  /** Bytes a read would return without waiting. */
  available(): number;
}

export function openStdin(): StdinSource {
  let isFile = false;
  try {
    isFile = fs.fstatSync(0).isFile();
  } catch {
    // stdin closed: reads will fail with EBADF from the stream reader
  }
  return isFile ? new FileStdin() : new StreamStdin();
}

class FileStdin implements StdinSource {
  read(buf: Buffer, ptr: number, len: number): number {
    return fs.readSync(0, buf, ptr, len, null);
  }
  ready(): { ready: boolean; nbytes: number } {
    return { ready: true, nbytes: 0 };
  }
  available(): number {
    return Infinity;
  }
}

const CHUNK = 64 * 1024;
// Control words in the shared buffer.
const STATE = 0; // IDLE, REQUESTED or FILLED
const LENGTH = 1; // bytes filled, 0 = EOF, -1 = error
const IDLE = 0;
const REQUESTED = 1;
const FILLED = 2;

const READER_SOURCE = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const ctl = new Int32Array(workerData, 0, 4);
const data = new Uint8Array(workerData, 16);
for (;;) {
  Atomics.wait(ctl, ${STATE}, ${IDLE});
  if (Atomics.load(ctl, ${STATE}) !== ${REQUESTED}) continue;
  let n;
  for (;;) {
    try { n = fs.readSync(0, data, 0, data.length, null); break; }
    catch (e) {
      if (e.code === 'EAGAIN') { Atomics.wait(ctl, 3, 0, 5); continue; }
      n = e.code === 'EOF' ? 0 : -1; break;
    }
  }
  ctl[${LENGTH}] = n;
  Atomics.store(ctl, ${STATE}, ${FILLED});
  Atomics.notify(ctl, ${STATE});
}
`;

class StreamStdin implements StdinSource {
  private readonly shared = new SharedArrayBuffer(16 + CHUNK);
  private readonly ctl = new Int32Array(this.shared, 0, 4);
  private readonly data = Buffer.from(this.shared, 16, CHUNK);
  private worker: Worker | null = null;
  /** Bytes read from the stream and not yet given to the guest. */
  private pending = Buffer.alloc(0);
  private eof = false;

  read(buf: Buffer, ptr: number, len: number, nonblock: boolean): number {
    if (this.pending.length === 0 && !this.eof) {
      if (!this.fill(nonblock ? 0 : Infinity)) throw new WasiError(Errno.AGAIN);
    }
    if (this.pending.length === 0) {
      this.eof = false; // a terminal may give more input after an end-of-file
      return 0;
    }
    const n = Math.min(len, this.pending.length);
    this.pending.copy(buf, ptr, 0, n);
    this.pending = this.pending.subarray(n);
    return n;
  }

  ready(timeoutMs: number): { ready: boolean; nbytes: number } {
    if (this.pending.length > 0 || this.eof || this.fill(timeoutMs)) {
      return { ready: true, nbytes: this.pending.length };
    }
    return { ready: false, nbytes: 0 };
  }

  available(): number {
    return this.pending.length;
  }

  /** Asks the reader for a chunk and waits up to timeoutMs; true once data or EOF arrived. */
  private fill(timeoutMs: number): boolean {
    if (this.worker === null) {
      this.worker = new Worker(READER_SOURCE, { eval: true, workerData: this.shared });
      this.worker.unref();
    }
    if (Atomics.compareExchange(this.ctl, STATE, IDLE, REQUESTED) === IDLE) {
      Atomics.notify(this.ctl, STATE);
    }
    if (Atomics.load(this.ctl, STATE) === REQUESTED) {
      Atomics.wait(this.ctl, STATE, REQUESTED, timeoutMs);
    }
    if (Atomics.load(this.ctl, STATE) !== FILLED) return false;
    const n = this.ctl[LENGTH]!;
    if (n < 0) {
      Atomics.store(this.ctl, STATE, IDLE);
      throw new WasiError(Errno.IO);
    }
    if (n === 0) this.eof = true;
    else this.pending = Buffer.concat([this.pending, this.data.subarray(0, n)]);
    Atomics.store(this.ctl, STATE, IDLE);
    return true;
  }
}

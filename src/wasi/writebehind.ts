// Coalescing of small file writes. A host call costs more than a write(2) in Node (~0.7 µs of
// binding overhead), so a program doing many small fd_writes would run slower than under a
// C host. Consecutive small writes to one file at contiguous offsets are gathered here and
// written with one syscall.
//
// What keeps this invisible to the program and to others:
// - the guest's thread flushes before every other WASI call (so reads, stats, seeks, closes,
//   renames... all see the data), when the buffer is full, at exit and at traps;
// - the buffer lives in shared memory with a lock, so the launcher's main thread flushes it
//   when it goes stale (a few ms after the last write) and before it exits on a signal (for a
//   program on the main thread, a thread of the native addon does: native/inline.c).
// A write error found by a deferred flush is reported by the next call on that fd.
import { writeSync } from 'node:fs';

const CAPACITY = 64 * 1024;
/** Writes at least this large skip the buffer. */
export const COALESCE_MAX = 4096;

// Int32 header words.
const LOCK = 0;
const LENGTH = 1;
const HANDLE = 2;
const SEQ = 3; // bumped by every buffered write, so the flusher can tell a burst has ended
const ERRNO_CODE = 4; // index into ERROR_CODES of a deferred failure, 0 = none
const ERROR_HANDLE = 5;
const HEADER = 32; // bytes: 6 int32 words, then a float64 for the start offset at byte 24

const ERROR_CODES = ['', 'ENOSPC', 'EIO', 'EFBIG', 'EDQUOT', 'EBADF', 'EROFS', 'EPERM', 'EINVAL'];

export class WriteBehind {
  private readonly words: Int32Array;
  private readonly start: Float64Array;
  private readonly data: Buffer;

  constructor(readonly shared = new SharedArrayBuffer(HEADER + CAPACITY)) {
    this.words = new Int32Array(shared, 0, 6);
    this.start = new Float64Array(shared, 24, 1);
    this.data = Buffer.from(shared, HEADER, CAPACITY);
  }

  /**
   * Buffers bytes[ptr, ptr+len) for file offset pos of handle; false if they must be written
   * directly (too big, or not contiguous and nothing could be flushed).
   */
  add(handle: number, bytes: Uint8Array, ptr: number, len: number, pos: number): boolean {
    if (len > COALESCE_MAX) return false;
    this.lock();
    try {
      const w = this.words;
      let n = w[LENGTH]!;
      if (n > 0 && (w[HANDLE] !== handle || this.start[0]! + n !== pos || n + len > CAPACITY)) {
        this.flushLocked();
        n = 0;
      }
      if (n === 0) {
        w[HANDLE] = handle;
        this.start[0] = pos;
      }
      const data = this.data;
      if (len <= 64) for (let i = 0; i < len; i++) data[n + i] = bytes[ptr + i]!;
      else data.set(bytes.subarray(ptr, ptr + len), n);
      w[LENGTH] = n + len;
      w[SEQ] = (w[SEQ]! + 1) | 0;
      return true;
    } finally {
      this.unlock();
    }
  }

  /**
   * True if data is waiting. Cheap, no lock, not even an atomic load (checked before every WASI
   * call): only the guest's thread adds data, so it never misses its own; a flush by another
   * thread seen late costs one flush of nothing, and the flusher's timer looks again next tick.
   */
  get pending(): boolean {
    return this.words[LENGTH]! > 0;
  }

  /** Writes out whatever is buffered. Safe from any thread. */
  flush(): void {
    this.lock();
    try {
      this.flushLocked();
    } finally {
      this.unlock();
    }
  }

  /** Throws (once) a deferred write failure recorded for handle. */
  takeError(handle: number): void {
    const w = this.words;
    if (w[ERRNO_CODE] === 0 || w[ERROR_HANDLE] !== handle) return;
    const code = ERROR_CODES[w[ERRNO_CODE]!]!;
    w[ERRNO_CODE] = 0;
    throw Object.assign(new Error(`deferred write failed: ${code}`), { code });
  }

  /** For the flusher thread: the write sequence number, to see whether a burst is over. */
  sequence(): number {
    return Atomics.load(this.words, SEQ);
  }

  private flushLocked(): void {
    const w = this.words;
    const n = w[LENGTH]!;
    if (n === 0) return;
    const handle = w[HANDLE]!;
    let pos = this.start[0]!;
    let done = 0;
    try {
      while (done < n) {
        const k = writeSync(handle, this.data, done, n - done, pos);
        done += k;
        pos += k;
      }
    } catch (e) {
      const i = ERROR_CODES.indexOf((e as NodeJS.ErrnoException).code ?? '');
      w[ERRNO_CODE] = i > 0 ? i : 2; // EIO for anything unlisted
      w[ERROR_HANDLE] = handle;
    }
    w[LENGTH] = 0;
  }

  // A futex-style lock: 0 free, 1 held, 2 held with waiters (only then does unlock notify).
  // A waiter also looks again every ms: the native flusher (native/inline.c) cannot notify.
  private lock(): void {
    const w = this.words;
    if (Atomics.compareExchange(w, LOCK, 0, 1) === 0) return;
    while (Atomics.exchange(w, LOCK, 2) !== 0) Atomics.wait(w, LOCK, 2, 1);
  }

  private unlock(): void {
    if (Atomics.exchange(this.words, LOCK, 0) === 2) Atomics.notify(this.words, LOCK, 1);
  }
}

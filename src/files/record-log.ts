// An append-only file of records in which each record is in the page cache before append()
// returns: a writer killed at any later instant (SIGKILL) leaves it in the file. The undo
// journal's log (journal.ts, records in journal-log.ts) is one.
//
// A record's first byte is never zero, and a reader stops where a record would start with a
// zero byte. With the native addon the file is written through a shared mapping of a window of
// it (stores instead of a write(2) per record: the journal writes one record per change the
// program makes), the first byte last, so that a writer killed in the middle of a record
// leaves a zero where it starts. The window's blocks are reserved first, so a full disk is an
// error here, not a SIGBUS later; the bytes after the last record are zeros until close() cuts
// them off. Without the addon, or where the file system cannot reserve blocks, each record is
// one positioned write(2): one cut short leaves the file shorter than the record says.
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { nativeWindows } from '../wasi/native.js';

/** Window offsets are multiples of this (a multiple of every page size in use). */
const ALIGN = 64 << 10;
const FIRST_WINDOW = 1 << 20;
const MAX_WINDOW = 16 << 20;

export class RecordLog {
  private readonly fd: number;
  /** Bytes of records in the file. */
  private end = 0;
  private window: Uint8Array | null = null;
  private windowAt = 0;
  private windowBytes = FIRST_WINDOW;
  private mapped = nativeWindows !== null;

  /** Creates (or empties) the file. */
  constructor(path: string, mode: number) {
    this.fd = openSync(path, 'w+', mode); // read-write: a shared mapping needs it
  }

  /** Appends rec[0, n); rec[0] must not be zero. */
  append(rec: Uint8Array, n: number): void {
    if (this.mapped && (this.window === null || this.end + n > this.windowAt + this.window.length)) this.remap(n);
    const w = this.window;
    if (w !== null) {
      const at = this.end - this.windowAt;
      for (let i = 1; i < n; i++) w[at + i] = rec[i]!;
      w[at] = rec[0]!; // last: until then, a reader sees no record here
    } else {
      for (let put = 0; put < n;) put += writeSync(this.fd, rec, put, n - put, this.end + put);
    }
    this.end += n;
  }

  /** Cuts the reserved zeros off and closes the file. */
  close(): void {
    this.unmap();
    try {
      if (fstatSync(this.fd).size !== this.end) ftruncateSync(this.fd, this.end);
    } finally {
      closeSync(this.fd);
    }
  }

  /** Maps a window from the last record's page on, with room for `n` more bytes. */
  private remap(n: number): void {
    this.unmap();
    const at = Math.floor(this.end / ALIGN) * ALIGN;
    const need = Math.ceil((this.end - at + n) / ALIGN) * ALIGN;
    const len = Math.max(need, this.windowBytes);
    this.windowBytes = Math.min(this.windowBytes * 2, MAX_WINDOW);
    const r = nativeWindows!.mapWindow(this.fd, at, len);
    if (typeof r !== 'number') {
      this.window = new Uint8Array(r);
      this.windowAt = at;
      return;
    }
    if (r === -28 /* ENOSPC */ || r === -122 /* EDQUOT */) {
      const e = new Error(`${r === -28 ? 'ENOSPC: no space left on device' : 'EDQUOT: disk quota exceeded'}, journal log`) as NodeJS.ErrnoException;
      e.code = r === -28 ? 'ENOSPC' : 'EDQUOT';
      e.errno = r;
      throw e;
    }
    this.mapped = false; // cannot reserve or map here: plain writes from now on
  }

  private unmap(): void {
    if (this.window === null) return;
    nativeWindows!.unmapWindow(this.window.buffer as ArrayBuffer);
    this.window = null;
  }
}

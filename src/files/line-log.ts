// An append-only file of lines in which each line is in the page cache before append()
// returns: a writer killed at any later instant (SIGKILL) leaves it in the file. The undo
// journal's log (journal.ts) is one.
//
// With the native addon the file is written through a shared mapping of a window of it (a
// store instead of a write(2) per line: the journal writes one line per change the program
// makes). The window's blocks are reserved first, so a full disk is an error here, not a
// SIGBUS later; the bytes after the last line are zeros until close() cuts them off, and a
// reader stops at the first zero byte (readLines). Without the addon, or where the file
// system cannot reserve blocks, each line is one positioned write(2).
import * as fs from 'node:fs';
import { nativeWindows } from '../wasi/native.js';

/** Window offsets are multiples of this (a multiple of every page size in use). */
const ALIGN = 64 << 10;
const FIRST_WINDOW = 1 << 20;
const MAX_WINDOW = 16 << 20;

export class LineLog {
  private readonly fd: number;
  /** Bytes of lines in the file. */
  private end = 0;
  private window: Buffer | null = null;
  private windowAt = 0;
  private windowBytes = FIRST_WINDOW;
  private mapped = nativeWindows !== null;

  /** Creates (or empties) the file. */
  constructor(path: string, mode: number) {
    this.fd = fs.openSync(path, 'w+', mode); // read-write: a shared mapping needs it
  }

  /** `line` must end with a newline and hold no zero byte. */
  append(line: string): void {
    const n = Buffer.byteLength(line);
    if (this.mapped && (this.window === null || this.end + n > this.windowAt + this.window.length)) this.remap(n);
    if (this.window !== null) {
      this.window.write(line, this.end - this.windowAt, n, 'utf8');
    } else {
      const b = Buffer.from(line);
      for (let w = 0; w < n;) w += fs.writeSync(this.fd, b, w, n - w, this.end + w);
    }
    this.end += n;
  }

  /** Cuts the reserved zeros off and closes the file. */
  close(): void {
    this.unmap();
    try {
      if (fs.fstatSync(this.fd).size !== this.end) fs.ftruncateSync(this.fd, this.end);
    } finally {
      fs.closeSync(this.fd);
    }
  }

  /** Maps a window from the last line's page on, with room for `n` more bytes. */
  private remap(n: number): void {
    this.unmap();
    const at = Math.floor(this.end / ALIGN) * ALIGN;
    const need = Math.ceil((this.end - at + n) / ALIGN) * ALIGN;
    const len = Math.max(need, this.windowBytes);
    this.windowBytes = Math.min(this.windowBytes * 2, MAX_WINDOW);
    const r = nativeWindows!.mapWindow(this.fd, at, len);
    if (typeof r !== 'number') {
      this.window = Buffer.from(r);
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

/** The text of a LineLog's file: its lines, without the zeros after them (a writer killed
 *  before close). */
export function readLines(path: string): string {
  const text = fs.readFileSync(path, 'utf8');
  const z = text.indexOf('\0');
  return z < 0 ? text : text.slice(0, z);
}

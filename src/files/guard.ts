// Copy-on-write for saved files, so a big file does not keep the program paused while it is
// copied: the launcher copies it block by block after the program resumes, and the program's
// host, before it changes a block that is not copied yet, copies that block first. Either
// side claims a block (0 -> 1) before copying it and marks it done (2); the other waits.
// The copy therefore holds the file exactly as it was at the checkpoint.
import { closeSync, read, write } from 'node:fs';
import { promisify } from 'node:util';
import { copyRangeSync } from '../util/fs.js';
import type { FileChangeHooks } from '../wasi/changes.js';

/** Files at least this big are guarded; smaller ones are copied while the program waits. */
export const GUARD_MIN = 8 << 20;
const BLOCK = 1 << 20;

const FREE = 0;
const CLAIMED = 1;
const COPIED = 2;

/** One guarded file, as sent to the program's thread (fds are the process's, shared). */
export interface FileGuard {
  /** "dev:ino" of the file (an open with O_TRUNC by another name must be caught too). */
  id: string;
  /** The program's host fds on the file. */
  handles: number[];
  /** The launcher's own fd on the file (it stays open until the copy is complete). */
  src: number;
  /** The staged copy, open for writing, already of the file's size. */
  dest: number;
  size: number;
  /** One Int32 per block (FREE, CLAIMED or COPIED), then one that is 1 once the launcher is done. */
  states: SharedArrayBuffer;
}

export function newGuard(id: string, handles: number[], src: number, dest: number, size: number): FileGuard {
  return { id, handles, src, dest, size, states: new SharedArrayBuffer(4 * (Math.ceil(size / BLOCK) + 1)) };
}

function copyBlock(g: FileGuard, i: number, buf: Buffer): void {
  // A file shorter now than at the checkpoint leaves zeros in the copy, as ftruncate made it.
  copyRangeSync(g.src, g.dest, i * BLOCK, Math.min(g.size, (i + 1) * BLOCK), buf);
}

/** The program's side: blocks it is about to change are copied first (one per program). */
export class WriteGuards implements FileChangeHooks {
  private readonly byHandle = new Map<number, { g: FileGuard; states: Int32Array }>();
  private buf: Buffer | null = null;

  get active(): boolean {
    return this.byHandle.size > 0;
  }

  add(guards: FileGuard[]): void {
    for (const g of guards) {
      const entry = { g, states: new Int32Array(g.states) };
      for (const h of g.handles) this.byHandle.set(h, entry);
    }
  }

  /** Call before writing [pos, pos + len) through host fd `handle`. */
  beforeWrite(handle: number, pos: number, len: number): void {
    const e = this.byHandle.get(handle);
    if (e === undefined || len <= 0 || pos >= e.g.size) return;
    const { g, states } = e;
    if (Atomics.load(states, states.length - 1) === 1) {
      for (const h of g.handles) this.byHandle.delete(h); // the copy is complete
      return;
    }
    const last = Math.min(g.size - 1, pos + len - 1);
    for (let i = Math.floor(pos / BLOCK); i <= Math.floor(last / BLOCK); i++) this.ensure(g, states, i);
  }

  /** Call before cutting the file at `size`. */
  beforeTruncate(handle: number, size: number): void {
    const e = this.byHandle.get(handle);
    if (e !== undefined && size < e.g.size) this.beforeWrite(handle, size, e.g.size - size);
  }

  /** Call before truncating the file with identity "dev:ino" some other way (open O_TRUNC). */
  beforeTruncateFile(id: string, _path: string): void {
    for (const [h, e] of this.byHandle) {
      if (e.g.id === id) return this.beforeTruncate(h, 0);
    }
  }

  private ensure(g: FileGuard, states: Int32Array, i: number): void {
    for (;;) {
      const s = Atomics.compareExchange(states, i, FREE, CLAIMED);
      if (s === COPIED) return;
      if (s === FREE) {
        copyBlock(g, i, (this.buf ??= Buffer.allocUnsafe(BLOCK)));
        Atomics.store(states, i, COPIED);
        Atomics.notify(states, i);
        return;
      }
      Atomics.wait(states, i, CLAIMED); // the launcher is copying it
    }
  }

}

const readAsync = promisify(read);
const writeAsync = promisify(write);

/** Blocks the launcher copies at once: with one, each block waits for its read and then its
 *  write on the thread pool; two in flight copied 1 GiB within the page cache in ~0.43 s instead
 *  of ~1.4 s (into memory the VM has to fault back in, both take ~3.5 s). */
const COPIERS = 2;

/**
 * The launcher's side: copies every block not copied yet, waits for those the program is
 * copying, then closes its fds. The staged copy is complete when this resolves.
 */
export async function copyGuarded(g: FileGuard): Promise<void> {
  const states = new Int32Array(g.states);
  const blocks = states.length - 1;
  let next = 0;
  let failed = false;
  const copier = async (): Promise<void> => {
    const buf = Buffer.allocUnsafe(BLOCK);
    let mine = -1; // the block being copied here
    try {
      while (!failed) {
        const i = next++;
        if (i >= blocks) return;
        if (Atomics.compareExchange(states, i, FREE, CLAIMED) !== FREE) continue;
        mine = i;
        const from = i * BLOCK;
        const len = Math.min(BLOCK, g.size - from);
        let done = 0;
        while (done < len) {
          const { bytesRead } = await readAsync(g.src, buf, done, len - done, from + done);
          if (bytesRead === 0) break; // shorter now: the rest stays zeros, as ftruncate made it
          done += bytesRead;
        }
        for (let w = 0; w < done;) w += (await writeAsync(g.dest, buf, w, done - w, from + w)).bytesWritten;
        Atomics.store(states, i, COPIED);
        Atomics.notify(states, i);
        mine = -1;
      }
    } catch (e) {
      failed = true; // the other copiers stop at their next block
      throw e;
    } finally {
      if (mine >= 0) {
        Atomics.store(states, mine, COPIED);
        Atomics.notify(states, mine);
      }
    }
  };
  // Every copier has stopped using the fds before they are closed (allSettled, not all).
  const results = await Promise.allSettled(Array.from({ length: COPIERS }, copier));
  // Done (or failed: then the copy is thrown away): the program stops guarding, and the fds
  // are closed once it has finished any block it is copying.
  Atomics.store(states, blocks, 1);
  for (let i = 0; i < blocks; i++) {
    Atomics.compareExchange(states, i, FREE, COPIED); // none left for the program to take
    while (Atomics.load(states, i) === CLAIMED) await Atomics.waitAsync(states, i, CLAIMED, 1000).value;
  }
  closeSync(g.src);
  closeSync(g.dest);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

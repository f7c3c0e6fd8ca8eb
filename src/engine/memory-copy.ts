// Copies the guest's linear memory for a capture. The buffer of the previous capture comes back
// once its image is written: then only the pages that changed are copied into it (a compare
// reads, it does not touch fresh pages), which keeps the pause short and the launcher's memory
// at one copy, and tells the image store which chunks it need not hash again.
//
// When a stop is expected soon (the main thread says so with a request), the kernel tracks
// the pages written after the capture (native/dirty.c), and the next capture looks only at
// those instead of comparing the whole memory. Not always: each first write to a tracked page
// costs the program a fault. Without the addon or the kernel's support, or when the memory
// grew or moved, or the buffer that came back is not that capture's, it compares as before.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { nativeWriteTracking } from '../wasi/native.js';
import { WASM_PAGE, type SpareBuffer } from './protocol.js';

/** Writes tracked since the capture that made copy copyId, in a memory of `bytes` bytes. */
interface Tracking {
  handle: number;
  copyId: number;
  bytes: number;
}

export class MemoryCopier {
  /** The capture buffer the main thread and this thread share (see SpareBuffer). */
  private shared: Uint8Array | null = null;
  /** A capture buffer handed back by the main thread (a previous capture, or a fresh one). */
  private spare: { memory: Uint8Array; copyId: number | null } | null = null;
  private copies = 0;
  /** Writes tracked since a capture, for the next one. */
  private tracking: Tracking | null = null;
  /** The last copy used the tracking and its marks are fresh: it may go on from that copy. */
  private rescanned: Tracking | null = null;

  constructor(private readonly spares: MessagePort) {}

  /** The memory copied into a capture buffer; inShared: into the shared one (else into a new one, shared from now on). */
  copy(memory: WebAssembly.Memory): { memory: Uint8Array; inShared: boolean; dirtyPages: Uint8Array | null; copyId: number } {
    const mem = new Uint8Array(memory.buffer);
    for (let m = receiveMessageOnPort(this.spares); m !== undefined; m = receiveMessageOnPort(this.spares)) {
      const given = m.message as SpareBuffer;
      if (given.memory !== undefined) this.shared = given.memory;
      this.spare = { memory: given.memory ?? this.shared!, copyId: given.copyId };
    }
    const spare = this.spare;
    this.spare = null;
    const copyId = ++this.copies;
    const tracking = this.tracking;
    this.tracking = null;
    if (spare === null || spare.memory.length !== mem.length) {
      this.endTracking(tracking);
      const fresh = new Uint8Array(new SharedArrayBuffer(mem.length));
      fresh.set(mem);
      this.shared = fresh;
      return { memory: fresh, inShared: false, dirtyPages: null, copyId };
    }
    const pages = mem.length / WASM_PAGE;
    const dirty = new Uint8Array(pages);
    const a = Buffer.from(mem.buffer, mem.byteOffset, mem.length);
    const b = Buffer.from(spare.memory.buffer, spare.memory.byteOffset, spare.memory.length);
    // Only the pages written since the spare's capture, if the kernel tracked them; else all.
    const written = this.written(tracking, spare, memory);
    for (let p = 0, off = 0; p < pages; p++, off += WASM_PAGE) {
      if (written !== null && written[p] === 0) continue;
      if (a.compare(b, off, off + WASM_PAGE, off, off + WASM_PAGE) !== 0) {
        a.copy(b, off, off, off + WASM_PAGE);
        dirty[p] = 1;
      }
    }
    return { memory: spare.memory, inShared: true, dirtyPages: dirty, copyId };
  }

  /**
   * Right after a capture (the program still paused, its memory equal to that copy): whether
   * to have the kernel track the program's writes for the next capture (track), or not.
   */
  afterCapture(track: boolean, memory: WebAssembly.Memory): void {
    const rescanned = this.rescanned;
    this.rescanned = null;
    if (!track || nativeWriteTracking === null) {
      this.endTracking(rescanned);
      return;
    }
    const bytes = memory.buffer.byteLength;
    if (rescanned !== null && rescanned.bytes === bytes) {
      // The copy's scan has just marked every page unwritten again: it goes on from here.
      this.tracking = { ...rescanned, copyId: this.copies };
      return;
    }
    this.endTracking(rescanned);
    const handle = nativeWriteTracking.trackWrites(memory.buffer);
    if (handle >= 0) this.tracking = { handle, copyId: this.copies, bytes };
  }

  /** Which pages were written since the spare's capture (one byte per wasm page), or null if
   *  that is not known; the tracking goes on in `rescanned` if it was used. */
  private written(tracking: Tracking | null, spare: SpareBuffer, memory: WebAssembly.Memory): Uint8Array | null {
    if (tracking === null) return null;
    const buffer = memory.buffer;
    if (tracking.copyId !== spare.copyId || tracking.bytes !== buffer.byteLength) {
      this.endTracking(tracking);
      return null;
    }
    const written = new Uint8Array(buffer.byteLength / WASM_PAGE);
    if (nativeWriteTracking!.writtenPages(tracking.handle, buffer, written, WASM_PAGE) !== 0) {
      this.endTracking(tracking);
      return null;
    }
    this.rescanned = tracking;
    return written;
  }

  private endTracking(tracking: Tracking | null): void {
    if (tracking !== null) nativeWriteTracking?.untrackWrites(tracking.handle);
  }
}

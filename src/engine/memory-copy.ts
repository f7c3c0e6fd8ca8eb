// Copies the guest's linear memory for a capture. The buffer of the previous capture comes back
// once its image is written: then only the pages that changed are copied into it (a compare
// reads, it does not touch fresh pages), which keeps the pause short and the launcher's memory
// at one copy, and tells the image store which chunks it need not hash again.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { WASM_PAGE } from './protocol.js';

export class MemoryCopier {
  /** A capture buffer handed back by the main thread, holding the previous capture. */
  private spare: Uint8Array | null = null;

  constructor(private readonly spares: MessagePort) {}

  copy(memory: WebAssembly.Memory): { memory: Uint8Array; dirtyPages: Uint8Array | null } {
    const mem = new Uint8Array(memory.buffer);
    for (let m = receiveMessageOnPort(this.spares); m !== undefined; m = receiveMessageOnPort(this.spares)) {
      this.spare = m.message as Uint8Array;
    }
    const spare = this.spare;
    this.spare = null;
    if (spare === null || spare.length !== mem.length) return { memory: mem.slice(), dirtyPages: null };
    const pages = mem.length / WASM_PAGE;
    const dirty = new Uint8Array(pages);
    const a = Buffer.from(mem.buffer, mem.byteOffset, mem.length);
    const b = Buffer.from(spare.buffer, spare.byteOffset, spare.length);
    for (let p = 0, off = 0; p < pages; p++, off += WASM_PAGE) {
      if (a.compare(b, off, off + WASM_PAGE, off, off + WASM_PAGE) !== 0) {
        a.copy(b, off, off, off + WASM_PAGE);
        dirty[p] = 1;
      }
    }
    return { memory: spare, dirtyPages: dirty };
  }
}

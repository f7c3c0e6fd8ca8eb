// The buffer a capture copies the guest's memory into. Until a capture's buffer comes back, a
// capture copies memory into new pages, and on this kind of VM touching 1 GiB of new pages
// takes seconds: the program would be paused that long. So a buffer of the guest's current
// size is prepared (touched) ahead, in slices between other work, and handed over just before
// a checkpoint that needs it. With the native addon it asks for huge pages, which the kernel
// faults in, and frees when the launcher exits, much faster.
import { nativeAdviseHugePages } from '../wasi/native.js';

/** Below this, fresh pages are cheap enough. */
const PREPARE_MIN = 64 << 20;
/** Bytes touched per slice before yielding to other work. */
const SLICE = 32 << 20;
/** How often the guest's memory size is looked at. */
const CHECK_MS = 100;

/** What the buffer is prepared for: the guest's memory size, and where buffers go. */
export interface BufferSink {
  /** The guest's memory size in bytes, as it last published it. */
  memoryBytes(): number;
  /** Hands a buffer to the guest for its next capture: a capture's memory (copyId names it)
   *  or a fresh one (null). */
  giveBuffer(memory: Uint8Array, copyId: number | null): void;
}

export class CaptureBuffer {
  /** Size of the buffer the guest holds for its next capture. */
  private held = 0;
  private prepared: Uint8Array | null = null;
  private preparing: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly guest: BufferSink) {
    this.timer = setInterval(() => void this.prepare(), CHECK_MS);
    this.timer.unref();
  }

  /** Whether a checkpoint now would find its buffer ready (else it first waits for it). */
  ready(): boolean {
    const want = this.guest.memoryBytes();
    return want < PREPARE_MIN || this.held === want || (this.preparing === null && this.prepared?.length === want);
  }

  /**
   * Before a capture: waits for a buffer being prepared and hands it to the guest. Returns
   * true if the guest got a fresh buffer (its next capture then finds no previous one to
   * compare with).
   */
  async handOver(): Promise<boolean> {
    if (this.preparing !== null) await this.preparing;
    const want = this.guest.memoryBytes();
    const prepared = this.prepared;
    this.prepared = null;
    if (prepared === null || prepared.length !== want || this.held === want) return false;
    this.guest.giveBuffer(prepared, null);
    this.held = want;
    return true;
  }

  /** After a capture: its buffer goes back to the guest for the next one. */
  giveBack(memory: Uint8Array, copyId: number): void {
    this.held = memory.length;
    this.guest.giveBuffer(memory, copyId);
  }

  dispose(): void {
    clearInterval(this.timer);
  }

  /** Prepares a buffer of the guest's current size if it needs one; resolves once it is ready. */
  prepare(): Promise<void> {
    const want = this.guest.memoryBytes();
    if (this.preparing !== null) return this.preparing;
    if (want < PREPARE_MIN || want === this.held || this.prepared?.length === want) return Promise.resolve();
    this.prepared = null;
    return this.preparing = new Promise<void>((done) => {
      const buf = new Uint8Array(new SharedArrayBuffer(want)); // see SpareBuffer
      nativeAdviseHugePages?.(buf);
      let off = 0;
      const touch = (): void => {
        for (const end = Math.min(want, off + SLICE); off < end; off += 4096) buf[off] = 0; // a write faults the page in
        if (off < want) {
          setImmediate(touch);
          return;
        }
        this.prepared = buf;
        this.preparing = null;
        done();
      };
      setImmediate(touch);
    });
  }
}

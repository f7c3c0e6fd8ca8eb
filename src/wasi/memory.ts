import { Errno } from './constants.js';
import { WasiError } from './errno.js';

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/**
 * Views over the guest's linear memory. Growing memory detaches the old ArrayBuffer, so every
 * call starts with refresh(), which re-derives the views only when the buffer changed.
 */
export class GuestMemory {
  private buffer: ArrayBuffer | null = null;
  view!: DataView;
  bytes!: Buffer;
  /** The memory's buffer when it is a plain ArrayBuffer (what the native addon takes); null
   *  for a shared memory. */
  plain: ArrayBuffer | null = null;

  constructor(
    private readonly memory: WebAssembly.Memory,
    /** Told the size in bytes at first and whenever the guest's memory has grown. */
    private readonly onGrow: ((bytes: number) => void) | null = null,
  ) {
    this.refresh();
  }

  refresh(): void {
    // Growing memory detaches the old buffer, whose views then read as empty: until then the
    // views are current, and this check is cheaper than the memory.buffer getter.
    if (this.buffer !== null && this.bytes.length !== 0) return;
    const buf = this.memory.buffer;
    if (buf !== this.buffer) {
      this.buffer = buf;
      this.view = new DataView(buf);
      this.bytes = Buffer.from(buf);
      this.plain = buf instanceof ArrayBuffer ? buf : null;
      this.onGrow?.(buf.byteLength);
    }
  }

  /** Throws EFAULT unless [ptr, ptr+len) lies inside memory. */
  check(ptr: number, len: number): void {
    if (ptr < 0 || len < 0 || ptr + len > this.bytes.length) throw new WasiError(Errno.FAULT);
  }

  u32(ptr: number): number {
    return this.view.getUint32(ptr, true);
  }
  setU32(ptr: number, v: number): void {
    this.view.setUint32(ptr, v, true);
  }
  setU64(ptr: number, v: bigint | number): void {
    if (typeof v === 'bigint') this.view.setBigUint64(ptr, v, true);
    else {
      // Without a BigInt: on hot paths (rights, sizes) converting costs more than the store.
      this.view.setUint32(ptr, v >>> 0, true);
      this.view.setUint32(ptr + 4, Math.floor(v / 0x1_0000_0000) >>> 0, true);
    }
  }
  u64(ptr: number): bigint {
    return this.view.getBigUint64(ptr, true);
  }

  /** Decodes a guest string; invalid UTF-8 is EILSEQ. */
  string(ptr: number, len: number): string {
    this.check(ptr, len);
    // Short ASCII (most paths): a plain slice, without TextDecoder's per-call cost.
    if (len <= 256) {
      const b = this.bytes;
      let i = ptr;
      while (i < ptr + len && b[i]! < 0x80) i++;
      if (i === ptr + len) return b.toString('latin1', ptr, ptr + len);
    }
    try {
      return decoder.decode(this.bytes.subarray(ptr, ptr + len));
    } catch {
      throw new WasiError(Errno.ILSEQ);
    }
  }

  /** Copies bytes into guest memory at ptr, truncated to max bytes; returns bytes written. */
  write(ptr: number, data: Uint8Array, max = data.length): number {
    const n = Math.min(max, data.length);
    this.check(ptr, n);
    this.bytes.set(n === data.length ? data : data.subarray(0, n), ptr);
    return n;
  }
}

export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

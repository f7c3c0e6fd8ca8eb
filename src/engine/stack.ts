// The asyncify buffer an unwind writes the program's stack into: how big it must be and where
// it goes. Asyncify stores each frame's live locals in the buffer and does not check its end
// while unwinding, so the buffer is sized before an unwind starts: (wasm frames on the stack)
// x (the largest frame of the module).
import { ASYNCIFY_BUFFER_HEADER } from '../instrument/abi.js';
import { WASM_PAGE } from './protocol.js';

/** The most bytes one frame can take in the asyncify buffer: all params and locals at 8 bytes each, plus its call index. */
export function maxFrameBytes(module: Uint8Array): number {
  const r = new Reader(module);
  r.pos = 8;
  const typeParams: number[] = [];
  const funcTypes: number[] = [];
  let max = 0;
  while (r.pos < module.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (id === 1) {
      for (let n = r.u32(); n > 0; n--) {
        r.byte(); // 0x60
        const params = r.u32();
        for (let i = 0; i < params; i++) r.byte();
        const results = r.u32();
        for (let i = 0; i < results; i++) r.byte();
        typeParams.push(params);
      }
    } else if (id === 2) {
      for (let n = r.u32(); n > 0; n--) {
        r.pos += r.u32(); // module name
        r.pos += r.u32(); // field name
        const kind = r.byte();
        if (kind === 0) r.u32();
        else if (kind === 1) { r.byte(); limits(r); }
        else if (kind === 2) limits(r);
        else if (kind === 3) { r.byte(); r.byte(); }
        else r.u32();
      }
    } else if (id === 3) {
      for (let n = r.u32(); n > 0; n--) funcTypes.push(r.u32());
    } else if (id === 10) {
      let f = 0;
      for (let n = r.u32(); n > 0; n--, f++) {
        const bodySize = r.u32();
        const bodyEnd = r.pos + bodySize;
        let locals = typeParams[funcTypes[f] ?? 0] ?? 0;
        for (let g = r.u32(); g > 0; g--) {
          locals += r.u32();
          r.byte();
        }
        max = Math.max(max, locals * 8 + 16);
        r.pos = bodyEnd;
      }
    }
    r.pos = end;
  }
  return max;
}

function limits(r: Reader): void {
  const flags = r.byte();
  r.u32();
  if (flags & 1) r.u32();
}

class Reader {
  pos = 0;
  constructor(private readonly b: Uint8Array) {}
  byte(): number {
    return this.b[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.b[this.pos++]!;
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
  }
}

/** Wasm frames on the current call stack (read from a stack trace; called only to unwind). */
export function wasmFrames(): number {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = Infinity;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  let n = 0;
  for (const line of stack.split('\n')) if (line.includes('wasm://') || line.includes('wasm-function')) n++;
  return n;
}

/** Stack assumed below the initial stack pointer (wasm-ld's default stack size). */
const MIN_STACK = 64 * 1024;

/** Bytes an unwind from here needs: every wasm frame on the stack at the module's largest. */
function bufferBytes(maxFrame: number): number {
  return wasmFrames() * maxFrame + 64;
}

/**
 * Where the unwind buffer fits on the shadow stack, below the stack pointer `sp` (nothing lives
 * there while the guest is unwound), or null. The stack's lower end is not recorded in a linked
 * module (zero-initialised data may sit right under it), so only the 64 KiB below the initial
 * stack pointer — wasm-ld's default stack size — counts.
 */
export function stackRoom(sp: number, spInit: number, maxFrame: number): { start: number; end: number } | null {
  const need = bufferBytes(maxFrame);
  const low = Math.max(16, spInit - MIN_STACK);
  const top = (sp - 64) & ~15;
  if (top - low < need + ASYNCIFY_BUFFER_HEADER) return null;
  return { start: Math.max(low, (top - need - ASYNCIFY_BUFFER_HEADER) & ~15), end: top };
}

/**
 * Places the unwind buffer and writes Asyncify's {current, end} header at its start; returns
 * the header's address. On the shadow stack where it fits (stackRoom), else in fresh pages grown
 * at the end of memory (deep recursion), never reused, so that no allocator can have taken them.
 */
export function placeBuffer(mem: WebAssembly.Memory, room: { start: number; end: number } | null, maxFrame: number): number {
  let start: number;
  let end: number;
  if (room !== null) {
    ({ start, end } = room);
  } else {
    const pages = Math.ceil((bufferBytes(maxFrame) + ASYNCIFY_BUFFER_HEADER) / WASM_PAGE);
    start = mem.grow(pages) * WASM_PAGE;
    end = start + pages * WASM_PAGE;
  }
  const v = new DataView(mem.buffer);
  v.setUint32(start, start + ASYNCIFY_BUFFER_HEADER, true);
  v.setUint32(start + 4, end, true);
  return start;
}

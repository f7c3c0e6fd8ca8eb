// The last step of instrumentation, done on the bytes of the instrumented module: every mutable
// global exported (a snapshot saves them) and the metadata section appended. Reading wasm-opt's
// output back into Binaryen to do this took longer than the rest of the step on a 30 MB program
// (read, validate, emit) and held a second copy of the module in memory. No binaryen here.
import type { GlobalType } from './types.js';

/** A module the byte-level step cannot read (the caller says which module and why). */
export class BinaryFormatError extends Error {}

const SECTION_IMPORT = 2;
const SECTION_GLOBAL = 6;
const SECTION_EXPORT = 7;
const EXTERNAL_GLOBAL = 3;

const VALTYPES: Record<number, GlobalType> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' };

/** Reads LEB128s and names from b[p..end). */
export class Reader {
  constructor(readonly b: Uint8Array, public p: number, readonly end: number = b.length) {}
  byte(): number {
    if (this.p >= this.end) throw new BinaryFormatError('truncated section');
    return this.b[this.p++]!;
  }
  u32(): number {
    let v = 0, shift = 0, x: number;
    do {
      x = this.byte();
      v += (x & 0x7f) * 2 ** shift;
      shift += 7;
    } while (x & 0x80);
    return v;
  }
  /** Skips a signed LEB128. */
  sleb(): void {
    while (this.byte() & 0x80) { /* continuation */ }
  }
  skip(n: number): void {
    if (this.p + n > this.end) throw new BinaryFormatError('truncated section');
    this.p += n;
  }
  name(): string {
    const n = this.u32();
    const start = this.p;
    this.skip(n);
    return new TextDecoder().decode(this.b.subarray(start, start + n));
  }
}

interface Section { id: number; start: number; payload: number; end: number }

function sections(b: Uint8Array): Section[] {
  if (b.length < 8 || b[0] !== 0 || b[1] !== 0x61 || b[2] !== 0x73 || b[3] !== 0x6d) throw new BinaryFormatError('no \\0asm header');
  const out: Section[] = [];
  const r = new Reader(b, 8, b.length);
  while (r.p < b.length) {
    const start = r.p;
    const id = r.byte();
    const size = r.u32();
    const payload = r.p;
    r.skip(size);
    out.push({ id, start, payload, end: r.p });
  }
  return out;
}

/** Skips a constant expression (a global's initialiser) up to its `end`. */
function skipConstExpr(r: Reader): void {
  for (;;) {
    const op = r.byte();
    switch (op) {
      case 0x0b: return;
      case 0x41: case 0x42: r.sleb(); break; // i32.const, i64.const
      case 0x43: r.skip(4); break; // f32.const
      case 0x44: r.skip(8); break; // f64.const
      case 0x23: case 0xd2: r.u32(); break; // global.get, ref.func
      case 0xd0: r.sleb(); break; // ref.null heaptype
      case 0x6a: case 0x6b: case 0x6c: case 0x7c: case 0x7d: case 0x7e: break; // extended-const arithmetic
      case 0xfd: {
        if (r.u32() !== 12) throw new BinaryFormatError('unexpected SIMD instruction in a constant expression');
        r.skip(16); // v128.const
        break;
      }
      default: throw new BinaryFormatError(`unexpected opcode 0x${op.toString(16)} in a constant expression`);
    }
  }
}

/** An unsigned LEB128. */
export function uleb(v: number): number[] {
  const out: number[] = [];
  do {
    let x = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) x |= 0x80;
    out.push(x);
  } while (v > 0);
  return out;
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function nameBytes(s: string): number[] {
  const b = utf8(s);
  return [...uleb(b.length), ...b];
}

export interface MutableGlobal { index: number; type: GlobalType | null }

/** The module's mutable globals, by index (imported ones count first). */
export function mutableGlobals(b: Uint8Array): MutableGlobal[] {
  const secs = sections(b);
  const out: MutableGlobal[] = [];
  let index = 0;
  const valtype = (r: Reader): GlobalType | null => {
    const t = r.byte();
    if (t === 0x63 || t === 0x64) r.sleb(); // (ref null? ht): never mutable-and-saved, but skip it right
    return VALTYPES[t] ?? null;
  };
  for (const s of secs) {
    if (s.id === SECTION_IMPORT) {
      const r = new Reader(b, s.payload, s.end);
      for (let n = r.u32(); n > 0; n--) {
        r.name(); r.name();
        const kind = r.byte();
        if (kind === 0) r.u32(); // function: type index
        else if (kind === 1) { r.byte(); limits(r); } // table: reftype, limits
        else if (kind === 2) limits(r); // memory
        else if (kind === EXTERNAL_GLOBAL) {
          const type = valtype(r);
          if (r.byte() === 1) out.push({ index, type });
          index++;
        } else if (kind === 4) { r.byte(); r.u32(); } // tag
        else throw new BinaryFormatError(`unknown import kind ${kind}`);
      }
    } else if (s.id === SECTION_GLOBAL) {
      const r = new Reader(b, s.payload, s.end);
      for (let n = r.u32(); n > 0; n--) {
        const type = valtype(r);
        const mutable = r.byte() === 1;
        skipConstExpr(r);
        if (mutable) out.push({ index, type });
        index++;
      }
    }
  }
  return out;
}

function limits(r: Reader): void {
  const flags = r.byte();
  r.u32();
  if (flags & 1) r.u32();
}

/** Export names already in the module. */
export function exportNames(b: Uint8Array): Set<string> {
  const out = new Set<string>();
  for (const s of sections(b)) {
    if (s.id !== SECTION_EXPORT) continue;
    const r = new Reader(b, s.payload, s.end);
    for (let n = r.u32(); n > 0; n--) {
      out.add(r.name());
      r.byte(); r.u32();
    }
  }
  return out;
}

/** The module with `add` appended to its exports (global exports, by global index). */
export function addGlobalExports(b: Uint8Array, add: { name: string; index: number }[]): Uint8Array {
  const s = sections(b).find((x) => x.id === SECTION_EXPORT);
  if (s === undefined) throw new BinaryFormatError('the module has no export section'); // vetted: memory is exported
  const r = new Reader(b, s.payload, s.end);
  const count = [...uleb(r.u32() + add.length)];
  const old = b.subarray(r.p, s.end);
  const entries: number[] = [];
  for (const e of add) entries.push(...nameBytes(e.name), EXTERNAL_GLOBAL, ...uleb(e.index));
  const payloadLength = count.length + old.length + entries.length;
  const head = [SECTION_EXPORT, ...uleb(payloadLength)];
  const out = new Uint8Array(s.start + head.length + payloadLength + (b.length - s.end));
  let p = 0;
  for (const part of [b.subarray(0, s.start), head, count, old, entries, b.subarray(s.end)]) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

/** The module with a custom section appended. */
export function appendCustomSection(b: Uint8Array, name: string, payload: Uint8Array): Uint8Array {
  const n = nameBytes(name);
  const head = [0, ...uleb(n.length + payload.length), ...n];
  const out = new Uint8Array(b.length + head.length + payload.length);
  out.set(b, 0);
  out.set(head, b.length);
  out.set(payload, b.length + head.length);
  return out;
}

// Asyncify in pieces. Binaryen's Asyncify (108, as Debian ships it) flattens and optimises every
// function of the module, instrumented or not, and keeps all of it in memory until the end:
// 3.6 GB for a 30 MB program. Given an only-list, how Asyncify rewrites a function depends on its
// own body and the lists alone, so each piece is the whole module with only some functions'
// bodies kept (the others are `unreachable`): wasm-opt runs on each (in parallel, one thread
// each), and the instrumented bodies are put back together here, on the bytes. Functions that
// are not instrumented keep their bodies from before Asyncify.
//
// The one thing that differs between the pieces' outputs, beside the bodies, is the order of the
// type section (Binaryen sorts it by use). The merged module keeps the first piece's types (plus
// any another one uses that it lacks) and renumbers the type indices in bodies taken from other
// modules: block types and call_indirect. No binaryen here.
import { BinaryFormatError, Reader, uleb } from './binary.js';

const STUB_BODY = [0x00, 0x00, 0x0b]; // no locals; unreachable; end

interface Parsed {
  b: Uint8Array;
  sections: { id: number; start: number; payload: number; end: number }[];
  /** Each type's encoding (a func type: 0x60 params results), as a key. */
  types: string[];
  importedFunctions: number;
  /** Each defined function's body: [start, end) of its bytes (without the size prefix). */
  bodies: [number, number][];
}



const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

function parse(b: Uint8Array): Parsed {
  const r = new Reader(b, 8);
  const out: Parsed = { b, sections: [], types: [], importedFunctions: 0, bodies: [] };
  while (r.p < b.length) {
    const start = r.p;
    const id = r.byte();
    const size = r.u32();
    const payload = r.p;
    const end = payload + size;
    if (end > b.length) throw new BinaryFormatError('truncated section');
    out.sections.push({ id, start, payload, end });
    if (id === 1) {
      for (let n = r.u32(); n > 0; n--) {
        const t0 = r.p;
        if (r.byte() !== 0x60) throw new BinaryFormatError('a type that is not a plain function type');
        for (let k = 0; k < 2; k++) {
          for (let m = r.u32(); m > 0; m--) {
            const v = r.byte();
            if (!VALTYPE_BYTES.has(v)) throw new BinaryFormatError(`value type 0x${v.toString(16)} in a function type`);
          }
        }
        out.types.push(latin1(b.subarray(t0, r.p)));
      }
    } else if (id === 2) {
      for (let n = r.u32(); n > 0; n--) {
        for (let k = 0; k < 2; k++) { const n = r.u32(); r.p += n; } // module and field names
        const kind = r.byte();
        if (kind === 0) { r.u32(); out.importedFunctions++; } else if (kind === 1) { r.byte(); limits(r); } else if (kind === 2) limits(r);
        else if (kind === 3) { r.byte(); r.byte(); } else if (kind === 4) { r.byte(); r.u32(); } else throw new BinaryFormatError(`import kind ${kind}`);
      }
    } else if (id === 10) {
      for (let n = r.u32(); n > 0; n--) {
        const s = r.u32();
        out.bodies.push([r.p, r.p + s]);
        r.p += s;
      }
    }
    r.p = end;
  }
  return out;
}

function limits(r: { u32(): number; byte(): number }): void {
  const flags = r.byte();
  r.u32();
  if (flags & 1) r.u32();
}

/** numeric, vector and the two MVP reference types: all a plain func type may hold here. */
const VALTYPE_BYTES = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]);

/** The module with the bodies of the defined functions not in `keep` replaced by `unreachable`,
 *  and without local and label names (they would name locals the stubs no longer have). */
export function piece(pre: Uint8Array, keep: (definedIndex: number) => boolean): Uint8Array {
  const m = parse(pre);
  const parts: Uint8Array[] = [pre.subarray(0, 8)];
  for (const s of m.sections) {
    if (s.id === 10) {
      const body: number[] = [];
      body.push(...uleb(m.bodies.length));
      const chunks: Uint8Array[] = [];
      let pending: number[] = body;
      m.bodies.forEach(([a, z], d) => {
        if (keep(d)) {
          pending.push(...uleb(z - a));
          chunks.push(Uint8Array.from(pending), pre.subarray(a, z));
          pending = [];
        } else {
          pending.push(...uleb(STUB_BODY.length));
          pending.push(...STUB_BODY);
        }
      });
      chunks.push(Uint8Array.from(pending));
      parts.push(...section(10, chunks));
    } else if (s.id === 0 && customName(pre, s.payload) === 'name') {
      parts.push(...section(0, [withoutLocalNames(pre, s.payload, s.end)]));
    } else {
      parts.push(pre.subarray(s.start, s.end));
    }
  }
  return concat(parts);
}

function customName(b: Uint8Array, payload: number): string {
  const r = new Reader(b, payload);
  const n = r.u32();
  return latin1(b.subarray(r.p, r.p + n));
}

/** A name section's payload without its local (2) and label (3) subsections. */
function withoutLocalNames(b: Uint8Array, payload: number, end: number): Uint8Array {
  const r = new Reader(b, payload);
  const nameLength = r.u32();
  r.p += nameLength;
  const keep: Uint8Array[] = [b.subarray(payload, r.p)];
  while (r.p < end) {
    const start = r.p;
    const kind = r.byte();
    const size = r.u32();
    r.p += size;
    if (kind !== 2 && kind !== 3) keep.push(b.subarray(start, r.p));
  }
  return concat(keep);
}

function section(id: number, payload: Uint8Array[]): Uint8Array[] {
  const head: number[] = [id];
  head.push(...uleb(payload.reduce((s, p) => s + p.length, 0)));
  return [Uint8Array.from(head), ...payload];
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let p = 0;
  for (const part of parts) { out.set(part, p); p += part.length; }
  return out;
}

/**
 * The instrumented module: `outputs[k]` is wasm-opt's output for piece k; `owner(d)` says where
 * defined function d's body comes from (a piece, or -1: `pre`, not instrumented). Functions
 * Asyncify added (after the original ones) come from the first piece, as does everything else.
 */
export function merge(pre: Uint8Array, outputs: Uint8Array[], owner: (definedIndex: number) => number): Uint8Array {
  const base = parse(outputs[0]!);
  const others = outputs.map((o, k) => (k === 0 ? base : parse(o)));
  const original = parse(pre);
  const added = base.bodies.length - original.bodies.length;
  for (const o of others) {
    if (o.bodies.length !== base.bodies.length || o.importedFunctions !== base.importedFunctions) throw new BinaryFormatError('the pieces have different functions');
  }
  if (original.importedFunctions !== base.importedFunctions || added < 0) throw new BinaryFormatError('Asyncify changed the imported functions');

  // The merged type section: the first piece's, then what the others use that it lacks.
  const types = [...base.types];
  const index = new Map(types.map((t, i) => [t, i]));
  const remapOf = (m: Parsed): number[] => m.types.map((t) => {
    let i = index.get(t);
    if (i === undefined) { i = types.length; types.push(t); index.set(t, i); }
    return i;
  });
  const remaps = others.map((o, k) => (k === 0 ? null : remapOf(o)));
  const preRemap = remapOf(original);

  const code: Uint8Array[] = [];
  const head: number[] = [];
  head.push(...uleb(base.bodies.length));
  code.push(Uint8Array.from(head));
  for (let d = 0; d < base.bodies.length; d++) {
    const k = d < original.bodies.length ? owner(d) : 0;
    const from = k < 0 ? original : others[k]!;
    const remap = k < 0 ? preRemap : remaps[k]!;
    const [a, z] = from.bodies[d]!;
    const body = remap === null ? from.b.subarray(a, z) : renumberTypes(from.b, a, z, remap);
    const size: number[] = [];
    size.push(...uleb(body.length));
    code.push(Uint8Array.from(size), body);
  }

  const parts: Uint8Array[] = [base.b.subarray(0, 8)];
  for (const s of base.sections) {
    if (s.id === 1 && types.length !== base.types.length) {
      const count: number[] = [];
      count.push(...uleb(types.length));
      parts.push(...section(1, [Uint8Array.from(count), ...types.map((t) => Buffer.from(t, 'latin1'))]));
    } else if (s.id === 10) {
      parts.push(...section(10, code));
    } else {
      parts.push(base.b.subarray(s.start, s.end));
    }
  }
  return concat(parts);
}

/** A function body (locals and code) with its type indices renumbered. */
export function renumberTypes(b: Uint8Array, start: number, end: number, remap: number[]): Uint8Array {
  const out: number[] = [];
  const r = new Reader(b, start);
  let copied = start;
  const flush = (to: number): void => {
    for (let i = copied; i < to; i++) out.push(b[i]!);
    copied = to;
  };
  /** Replaces the type index LEB that starts at r.p (unsigned, or a non-negative s33). */
  const typeIndex = (): void => {
    flush(r.p);
    const old = r.u32();
    const now = remap[old];
    if (now === undefined) throw new BinaryFormatError(`type index ${old} out of range`);
    if (now >= 2 ** 31) throw new BinaryFormatError('type index too large');
    sleb(now, out); // as an s33 (block types) it stays non-negative; as a u32 it reads the same
    copied = r.p;
  };
  const memarg = (): void => {
    const align = r.u32();
    if (align & 0x40) r.u32(); // memory index
    r.u32();
  };
  const skipSleb = (): void => { while (r.byte() & 0x80) { /* continuation */ } };
  const blockType = (): void => {
    const t = b[r.p]!;
    if (t === 0x40 || VALTYPE_BYTES.has(t)) { r.p++; return; }
    typeIndex();
  };
  // Locals: vec(count, valtype).
  for (let n = r.u32(); n > 0; n--) {
    r.u32();
    const v = r.byte();
    if (!VALTYPE_BYTES.has(v)) throw new BinaryFormatError(`local of type 0x${v.toString(16)}`);
  }
  while (r.p < end) {
    const op = r.byte();
    if (op <= 0x01 || op === 0x05 || op === 0x0b || op === 0x0f || op === 0x19 || op === 0x1a || op === 0x1b || op === 0xd1
      || (op >= 0x45 && op <= 0xc4)) continue;
    switch (op) {
      case 0x02: case 0x03: case 0x04: case 0x06: blockType(); break;
      case 0x07: case 0x08: case 0x09: case 0x18: case 0x0c: case 0x0d: case 0x10: case 0x12: case 0xd2:
      case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0x3f: case 0x40:
        r.u32(); break;
      case 0x0e: for (let n = r.u32(); n >= 0; n--) r.u32(); break; // targets and the default
      case 0x11: case 0x13: typeIndex(); r.u32(); break; // call_indirect: type, table
      case 0x1c: for (let n = r.u32(); n > 0; n--) { const v = r.byte(); if (!VALTYPE_BYTES.has(v)) throw new BinaryFormatError('typed select of a non-plain type'); } break;
      case 0x41: case 0x42: skipSleb(); break;
      case 0x43: r.p += 4; break;
      case 0x44: r.p += 8; break;
      case 0xd0: { const h = r.byte(); if (h !== 0x70 && h !== 0x6f) throw new BinaryFormatError('ref.null of a non-plain type'); break; }
      case 0xfc: {
        const sub = r.u32();
        if (sub <= 7) break;
        if (sub === 8 || sub === 10 || sub === 12 || sub === 14) { r.u32(); r.u32(); } else if (sub <= 17) r.u32();
        else throw new BinaryFormatError(`instruction 0xfc ${sub}`);
        break;
      }
      case 0xfd: {
        const sub = r.u32();
        if (sub <= 11 || sub === 92 || sub === 93) memarg();
        else if (sub === 12 || sub === 13) r.p += 16;
        else if (sub >= 21 && sub <= 34) r.p += 1;
        else if (sub >= 84 && sub <= 91) { memarg(); r.p += 1; }
        break;
      }
      case 0xfe: {
        const sub = r.u32();
        if (sub === 3) r.p += 1;
        else memarg();
        break;
      }
      default:
        if (op >= 0x28 && op <= 0x3e) { memarg(); break; }
        throw new BinaryFormatError(`unknown opcode 0x${op.toString(16)}`);
    }
  }
  if (r.p !== end) throw new BinaryFormatError('a function body overruns its size');
  flush(end);
  return Uint8Array.from(out);
}

function sleb(v: number, out: number[]): void {
  for (;;) {
    const x = v & 0x7f;
    v = Math.floor(v / 128);
    if ((v === 0 && (x & 0x40) === 0)) { out.push(x); return; }
    out.push(x | 0x80);
  }
}

/** The size of each defined function's body, in bytes. */
export function bodySizes(b: Uint8Array): number[] {
  return parse(b).bodies.map(([a, z]) => z - a);
}

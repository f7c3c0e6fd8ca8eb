// An instrumented module carries its metadata in a custom section, so that a module
// instrumented ahead of time (`stasis instrument -o`) is recognised and launched as it is.
// Free of binaryen: a launch reads the section without loading it.
import type { InstrumentMeta } from './types.js';

export const META_SECTION = 'stasis.instrumented';

/** What the section holds: the metadata and the hash of the module it was made from. */
export interface EmbeddedMeta { meta: InstrumentMeta; sourceHash: string }

export function encodeMeta(e: EmbeddedMeta): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(e));
}

/**
 * The embedded metadata of a module, null if it has none. Walks the section headers only
 * (a few per module). Throws on a section that is there but unreadable.
 */
export function embeddedMeta(bytes: Uint8Array): EmbeddedMeta | null {
  let p = 8;
  const leb = (): number => {
    let v = 0, shift = 0, b: number;
    do {
      if (p >= bytes.length) throw new Error('truncated module');
      b = bytes[p++]!;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return v;
  };
  const want = new TextEncoder().encode(META_SECTION);
  while (p < bytes.length) {
    const id = bytes[p++]!;
    const size = leb();
    const end = p + size;
    if (end > bytes.length) return null; // truncated: the compiler will say so
    if (id === 0) {
      const nameLen = leb();
      const nameEnd = p + nameLen;
      if (nameLen === want.length && want.every((c, i) => bytes[p + i] === c)) {
        const e = JSON.parse(new TextDecoder().decode(bytes.subarray(nameEnd, end))) as EmbeddedMeta;
        if (typeof e?.sourceHash !== 'string' || typeof e.meta?.version !== 'string') throw new Error(`malformed ${META_SECTION} section`);
        return e;
      }
    }
    p = end;
  }
  return null;
}

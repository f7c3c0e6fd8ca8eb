// XXH64 (seed 0) in WebAssembly. A Uint8Array is copied into the module's own memory and
// hashed there (~5.8 GB/s with the copy on the bench VM; node:crypto sha256: 1.4 GB/s); a
// WebAssembly.Memory is hashed in place (~11 GB/s).
// The binaries are xxh64Wat(false) and xxh64Wat(true) (bench/tools/xxh64-src.ts), compiled by
// bench/tools/build-xxh64.ts.

const OWN_MEMORY =
  'AGFzbQEAAAABEwNgAn5+AX5gA39/fgF+YAF+AX4DBAMCAAEFAwEAAQcSAgZtZW1vcnkCAAV4eGg2NAACCs4EAx4AIABCz9bTvtLHq9lCfkIfiUKHla+vmLbem55/fgshACABEAAgAIVCh5Wvr5i23puef35CnaO16oOxjYr6AH0LigQCAX8DfiAAIAFqIQMgAa0gAUEgTwR+IANBIGshASACQtbrgu7q/Yn14AB8IQQgAkKxqazBrbjUpj19IQUgAkL56tDQ58mh5OEAfCEGA0AgBCAAKQMAQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQQgBSAAKQMIQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQUgAiAAKQMQQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQIgBiAAKQMYQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQYgASAAQSBqIgBPDQALIARCAYkgBUIHiXwgAkIMiSAGQhKJfHwgBBABIAUQASACEAEgBhABBSACQsXP2bLx5brqJ3wLfCECA0AgAEEIaiIBIANLRQRAIAApAwAQACAChUIbiUKHla+vmLbem55/fkKdo7Xqg7GNivoAfSECIAEhAAwBCwsgAEEEaiIBIANNBEAgAiAANQIAQoeVr6+Ytt6bnn9+hUIXiULP1tO+0ser2UJ+Qvnz3fGZ9pmrFnwhAiABIQALA0AgACADT0UEQCACIAAxAABCxc/ZsvHluuonfoVCC4lCh5Wvr5i23puef34hAiAAQQFqIQAMAQsLIAIgAkIhiIVCz9bTvtLHq9lCfiICQh2IIAKFQvnz3fGZ9pmrFn4iAkIgiCAChQs=';
const IMPORTED_MEMORY =
  'AGFzbQEAAAABEwNgAn5+AX5gA39/fgF+YAF+AX4CDwEDZW52Bm1lbW9yeQIAAAMEAwIAAQcJAQV4eGg2NAACCs4EAx4AIABCz9bTvtLHq9lCfkIfiUKHla+vmLbem55/fgshACABEAAgAIVCh5Wvr5i23puef35CnaO16oOxjYr6AH0LigQCAX8DfiAAIAFqIQMgAa0gAUEgTwR+IANBIGshASACQtbrgu7q/Yn14AB8IQQgAkKxqazBrbjUpj19IQUgAkL56tDQ58mh5OEAfCEGA0AgBCAAKQMAQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQQgBSAAKQMIQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQUgAiAAKQMQQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQIgBiAAKQMYQs/W077Sx6vZQn58Qh+JQoeVr6+Ytt6bnn9+IQYgASAAQSBqIgBPDQALIARCAYkgBUIHiXwgAkIMiSAGQhKJfHwgBBABIAUQASACEAEgBhABBSACQsXP2bLx5brqJ3wLfCECA0AgAEEIaiIBIANLRQRAIAApAwAQACAChUIbiUKHla+vmLbem55/fkKdo7Xqg7GNivoAfSECIAEhAAwBCwsgAEEEaiIBIANNBEAgAiAANQIAQoeVr6+Ytt6bnn9+hUIXiULP1tO+0ser2UJ+Qvnz3fGZ9pmrFnwhAiABIQALA0AgACADT0UEQCACIAAxAABCxc/ZsvHluuonfoVCC4lCh5Wvr5i23puef34hAiAAQQFqIQAMAQsLIAIgAkIhiIVCz9bTvtLHq9lCfiICQh2IIAKFQvnz3fGZ9pmrFn4iAkIgiCAChQs=';

type Xxh64 = (ptr: number, len: number, seed: bigint) => bigint;

let own: { memory: WebAssembly.Memory; xxh64: Xxh64 } | undefined;
let heap: Uint8Array | undefined;
let importedModule: WebAssembly.Module | undefined;
const inPlace = new WeakMap<WebAssembly.Memory, Xxh64>();

const hex = (h: bigint) => BigInt.asUintN(64, h).toString(16).padStart(16, '0');

/** XXH64 of `data` with seed 0, as 16 lower-case hex digits. */
export function xxh64hex(data: Uint8Array): string {
  if (!own) {
    const module = new WebAssembly.Module(Buffer.from(OWN_MEMORY, 'base64'));
    own = new WebAssembly.Instance(module, {}).exports as unknown as typeof own;
  }
  const ex = own!;
  if (!heap || heap.buffer !== ex.memory.buffer || heap.length < data.length) {
    const have = ex.memory.buffer.byteLength;
    if (have < data.length) ex.memory.grow(Math.ceil((data.length - have) / 65536));
    heap = new Uint8Array(ex.memory.buffer);
  }
  heap.set(data, 0);
  return hex(ex.xxh64(0, data.length, 0n));
}

/** XXH64 (seed 0, hex) of bytes [offset, offset + length) of a wasm memory, without copying. */
export function xxh64hexInPlace(memory: WebAssembly.Memory, offset: number, length: number): string {
  let f = inPlace.get(memory);
  if (!f) {
    importedModule ??= new WebAssembly.Module(Buffer.from(IMPORTED_MEMORY, 'base64'));
    f = (new WebAssembly.Instance(importedModule, { env: { memory } }).exports as unknown as { xxh64: Xxh64 }).xxh64;
    inPlace.set(memory, f);
  }
  return hex(f(offset, length, 0n));
}

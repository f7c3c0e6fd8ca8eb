// Image store speed against plain fs calls on the same bytes, in the same run:
//   node dist/bench/image-store.js [--mib=1024] [--rounds=5] [--compress=none|deflate|brotli]
//        [--chunk-mib=N] [--content=random|heap] [--dir=DIR]
// "plain write" = open, 8 MiB writes, fsync, close (durable, as an image is; 8 MiB calls were
// the fastest of 1 MiB, 8 MiB and one call); "plain read" = a fresh Uint8Array filled by 8 MiB
// reads. Content "random" is incompressible; "heap" is small integers (compresses ~12x).
// On a VM whose free memory goes back to the host, the first touch of memory costs up to 3 s
// per GiB at random moments, to either side: minimum and median are both printed.
import { randomFillSync, createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshot } from '../src/image/schema.js';
import { readImage, writeImage, type Codec } from '../src/image/index.js';

const arg = (name: string, dflt: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const mib = Number(arg('mib', '1024'));
const rounds = Number(arg('rounds', '5'));
const compress = arg('compress', 'none') as Codec;
const chunkSize = arg('chunk-mib', '') ? Number(arg('chunk-mib', '')) * (1 << 20) : undefined;
const content = arg('content', 'random');
const root = mkdtempSync(join(arg('dir', tmpdir()), 'stasis-bench-image-'));
const N = mib << 20;

const memory = new Uint8Array(N);
if (content === 'heap') {
  const v = new DataView(memory.buffer);
  for (let o = 0; o < N; o += 8) v.setUint32(o, Math.imul(o, 2654435761) >>> 22, true);
} else {
  for (let o = 0; o < N; o += 1 << 16) randomFillSync(memory, o, Math.min(1 << 16, N - o));
}
const moduleBytes = new Uint8Array(1 << 20).fill(7);
const hash = createHash('sha256').update(moduleBytes).digest('hex');
const snap = (generation: number): Snapshot => ({
  moduleHash: hash, instrumentedHash: hash, memory, globals: [], asyncifyData: 0,
  engine: { unwindImports: [], poll: false, stackPointer: null, maxFrameBytes: 64 },
  wasi: { args: [], env: [], preopens: [], fds: [] }, monotonicNs: '0', stdinPending: new Uint8Array(0), stdinReceived: 0,
  meta: { name: 'bench', generation, createdAt: new Date().toISOString(), pauseMs: 0, host: { hostname: '', platform: '', arch: '', node: '', pid: 0 } },
});

// Plain I/O in 8 MiB calls: the fastest of 1 MiB, 8 MiB and one call measured on the bench VM.
const PIECE = 8 << 20;
async function plainWrite(file: string): Promise<void> {
  const fh = await open(file, 'w');
  let done = 0;
  while (done < N) done += (await fh.write(memory, done, Math.min(PIECE, N - done), done)).bytesWritten;
  await fh.sync();
  await fh.close();
}
async function plainRead(file: string): Promise<Uint8Array> {
  const fh = await open(file, 'r');
  const out = new Uint8Array(N);
  let done = 0;
  while (done < N) done += (await fh.read(out, done, Math.min(PIECE, N - done), done)).bytesRead;
  await fh.close();
  return out;
}
async function time<T>(f: () => Promise<T>): Promise<number> {
  const t = performance.now();
  await f();
  return performance.now() - t;
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const r = { pw: [] as number[], iw: [] as number[], pr: [] as number[], ir: [] as number[], irw: [] as number[], inc: [] as number[], incBytes: 0, fullBytes: 0 };
for (let k = 0; k < rounds; k++) {
  const plain = join(root, `plain-${k}`);
  const ckpt = join(root, `ckpt-${k}`);
  // Alternate the order so that neither side always meets a cold page cache / cold VM pages.
  const pw = () => time(() => plainWrite(plain));
  const iw = () => time(async () => { r.fullBytes = (await writeImage(ckpt, snap(1), { moduleBytes, compress, ...(chunkSize && { chunkSize }) })).bytesWritten; });
  if (k % 2) { r.iw.push(await iw()); r.pw.push(await pw()); } else { r.pw.push(await pw()); r.iw.push(await iw()); }
  const pr = () => time(() => plainRead(plain));
  const ir = () => time(() => readImage(ckpt, { into: (n) => new Uint8Array(n) }));
  if (k % 2) { r.ir.push(await ir()); r.pr.push(await pr()); } else { r.pr.push(await pr()); r.ir.push(await ir()); }
  // Into a fresh WebAssembly.Memory, as the engine can: read in place, hashed in place.
  r.irw.push(await time(() => readImage(ckpt, { into: () => new WebAssembly.Memory({ initial: 0, maximum: 65536 }) })));
  // Incremental: dirty 1% (contiguous) and checkpoint again, hashing everything (no hint).
  randomFillSync(memory, N >> 1, N / 100);
  r.inc.push(await time(async () => { r.incBytes = (await writeImage(ckpt, snap(2), { moduleBytes, compress, ...(chunkSize && { chunkSize }) })).bytesWritten; }));
  rmSync(plain, { force: true });
  rmSync(ckpt, { recursive: true, force: true });
}
rmSync(root, { recursive: true, force: true });
const f = (ms: number) => `${ms.toFixed(0)} ms (${(N / ms / 1e6).toFixed(2)} GB/s)`;
const row = (label: string, xs: number[], base: number[]) =>
  `  ${label.padEnd(34)} min ${f(Math.min(...xs))} x${(Math.min(...xs) / Math.min(...base)).toFixed(2)}   median ${f(med(xs))} x${(med(xs) / med(base)).toFixed(2)}`;
console.log(`image store bench: ${mib} MiB ${content} memory, compress=${compress}, chunks of ${chunkSize ? `${chunkSize >> 20} MiB` : 'default size'}, ${rounds} rounds`);
console.log(row('plain write+fsync', r.pw, r.pw));
console.log(row('writeImage', r.iw, r.pw));
console.log(row('plain read', r.pr, r.pr));
console.log(row('readImage into Uint8Array', r.ir, r.pr));
console.log(row('readImage into WebAssembly.Memory', r.irw, r.pr));
console.log(`  image ${r.fullBytes} bytes; after dirtying 1%: ${med(r.inc).toFixed(0)} ms, ${r.incBytes} bytes (${(100 * r.incBytes / r.fullBytes).toFixed(2)}%)`);
console.log(`  all rounds (ms): pw ${r.pw.map((x) => x.toFixed(0))} | iw ${r.iw.map((x) => x.toFixed(0))} | pr ${r.pr.map((x) => x.toFixed(0))} | ir ${r.ir.map((x) => x.toFixed(0))} | irw ${r.irw.map((x) => x.toFixed(0))}`);

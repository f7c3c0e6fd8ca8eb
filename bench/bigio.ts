// The plain-fs baseline of the 1 GiB checkpoint rows, run by bench.ts as a fresh child:
//   node dist/bench/bigio.js FILE MIB
// Fills MIB MiB of incompressible bytes (not timed), then times
//   write: open, 8 MiB positional writes, fsync, close   (durable, as a checkpoint image is)
//   read:  a fresh Uint8Array of MIB MiB filled by 8 MiB reads of FILE (just written, so from
//          the page cache, like the image `stasis restart` reads right after its checkpoint)
// and prints one JSON line {"writeMs":..,"readMs":..}. FILE is removed afterwards.
// 8 MiB calls: the fastest of 1 MiB, 8 MiB and one call on the bench VM (bench/image-store.ts).
import { randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { open } from 'node:fs/promises';

const PIECE = 8 << 20;

async function main(): Promise<void> {
  const [file, mibArg] = process.argv.slice(2);
  const mib = Number(mibArg);
  if (file === undefined || !(mib > 0)) throw new Error('usage: bigio.js FILE MIB');
  const n = mib << 20;
  let data: Uint8Array | null = new Uint8Array(n);
  for (let o = 0; o < n; o += 1 << 16) randomFillSync(data, o, Math.min(1 << 16, n - o));

  let t0 = performance.now();
  const w = await open(file, 'w');
  for (let done = 0; done < n;) done += (await w.write(data, done, Math.min(PIECE, n - done), done)).bytesWritten;
  await w.sync();
  await w.close();
  const writeMs = performance.now() - t0;
  const probe = data.slice(n - 4096);
  data = null;

  t0 = performance.now();
  const r = await open(file, 'r');
  const out = new Uint8Array(n);
  for (let done = 0; done < n;) {
    const got = (await r.read(out, done, Math.min(PIECE, n - done), done)).bytesRead;
    if (got === 0) throw new Error(`${file}: short read at ${done}`);
    done += got;
  }
  await r.close();
  const readMs = performance.now() - t0;
  if (Buffer.compare(Buffer.from(out.subarray(n - 4096)), Buffer.from(probe)) !== 0) throw new Error('read back different bytes');
  rmSync(file, { force: true });
  process.stdout.write(JSON.stringify({ writeMs, readMs }) + '\n');
}

await main();

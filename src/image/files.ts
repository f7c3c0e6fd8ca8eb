// Saved copies of open files (docs/image-format.md, "Saved files"). A copy is staged while the
// program is paused (a reflink where the file system offers one), then hashed in FILE_BLOCK
// pieces and published under its content's name, like a memory chunk: an unchanged file costs
// nothing in the next image, and copies are published with their image or not at all.
import { closeSync, constants, copyFileSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync } from 'node:fs';
import { link, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { SavedCopy } from './schema.js';
import { ImageError } from '../errors.js';
import { FILE_BLOCK, FILES, STAGE_PREFIX } from './format.js';
import type { ImageSource, StoredFile } from './source.js';
import { copyRangeSync, errno, tmpSuffix } from '../util/fs.js';
import { xxh64hex } from './xxh64.js';

let block: Buffer | undefined;
const blockBuffer = (): Buffer => (block ??= Buffer.allocUnsafe(FILE_BLOCK));

/** XXH64 of each FILE_BLOCK piece of the open file `fd` (of its `size` bytes from `start`:
 *  fewer when it ends before); `each` sees every piece read, at its position from `start`. */
export function hashBlocks(fd: number, each?: (piece: Buffer, pos: number) => void, start = 0, size = Infinity): { size: number; blocks: string[] } {
  const buf = blockBuffer();
  const blocks: string[] = [];
  let pos = 0;
  for (;;) {
    const want = Math.min(FILE_BLOCK, size - pos);
    let n = 0;
    while (n < want) {
      const got = readSync(fd, buf, n, want - n, start + pos + n);
      if (got === 0) break;
      n += got;
    }
    if (n === 0) break;
    const piece = buf.subarray(0, n);
    blocks.push(xxh64hex(piece));
    each?.(piece, pos);
    pos += n;
    if (n < want || pos === size) break;
  }
  return { size: pos, blocks };
}

/** A saved copy's name: XXH64 over its block hashes and size. */
function copyName(size: number, blocks: string[]): string {
  return `xxh64-${xxh64hex(Buffer.from(`${size}:${blocks.join('')}`))}`;
}

/**
 * Stages a copy of the file open as host fd `handle` (it may be unlinked) in the checkpoint
 * directory; call while the program is paused. A reflink is made where the file system has
 * them. Otherwise the bytes are copied now, or, with `later`, the staged file is only created
 * (at the file's size) and `guard` gives the fds to copy it with after the program resumes.
 */
export function stageFile(ckptDir: string, handle: number, later = false): { path: string; guard?: { src: number; dest: number } } {
  mkdirSync(join(ckptDir, FILES), { recursive: true });
  const staged = join(ckptDir, FILES, `${STAGE_PREFIX}${tmpSuffix()}`);
  const size = fstatSync(handle).size;
  // Through /proc the kernel copies (copy_file_range) or clones (FICLONE); a deleted file too.
  const proc = `/proc/self/fd/${handle}`;
  try {
    copyFileSync(proc, staged, later ? constants.COPYFILE_FICLONE_FORCE : constants.COPYFILE_FICLONE);
    if (fstatSize(staged) === size) return { path: staged };
  } catch {
    // no reflink (or no /proc): below
  }
  // An fd of our own on the file, which the program's closing its fd does not affect.
  const src = later ? openOwn(proc) : null;
  const dest = openSync(staged, 'w', 0o600);
  if (src !== null) {
    ftruncateSync(dest, size);
    return { path: staged, guard: { src, dest } };
  }
  try {
    copyRangeSync(handle, dest, 0, Infinity, blockBuffer());
  } finally {
    closeSync(dest);
  }
  return { path: staged };
}

function openOwn(proc: string): number | null {
  try {
    return openSync(proc, 'r');
  } catch {
    return null;
  }
}

function fstatSize(path: string): number {
  const fd = openSync(path, 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/**
 * Publishes a staged copy under its content name (durably; the caller fsyncs files/).
 * Returns the copy and the bytes it added (0 when the store already had that content).
 */
export async function publishStaged(ckptDir: string, staged: string): Promise<{ copy: SavedCopy; added: number }> {
  const fh = await open(staged, 'r');
  let size: number;
  let blocks: string[];
  try {
    ({ size, blocks } = hashBlocks(fh.fd));
    await fh.sync();
  } finally {
    await fh.close();
  }
  const name = copyName(size, blocks);
  const rel = `${FILES}/${name}`;
  let added = size;
  try {
    await link(staged, join(ckptDir, rel)); // never replaces a published copy
  } catch (e) {
    if (errno(e) !== 'EEXIST') throw e;
    added = 0;
  }
  await unlink(staged);
  return { copy: { file: rel, size, blockSize: FILE_BLOCK, blocks }, added };
}

/**
 * Reads a saved copy piece by piece, checking each piece against its hash; `each` gets the
 * checked pieces. Throws ImageError MISSING/CORRUPT naming the copy and the file it saves.
 */
export function readCopy(source: ImageSource, copy: SavedCopy, of: string, each: (piece: Buffer, pos: number) => void): void {
  const path = source.name(copy.file);
  let f: StoredFile | null;
  try {
    f = source.open(copy.file);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError('CORRUPT', `the saved copy of ${of} (${path}) cannot be read (${errno(e)}): fix its permissions, or ${source.remedy}`, path);
  }
  if (f === null) {
    const hint = source.kind === 'export' ? 'export the image again' : 'copy the whole checkpoint directory, or restart from another generation';
    throw new ImageError('MISSING', `the saved copy of ${of} (${path}) is missing: ${hint}`, path);
  }
  try {
    if (f.size !== copy.size) {
      throw new ImageError('CORRUPT', `the saved copy of ${of} (${path}) has ${f.size} bytes instead of ${copy.size}: ${source.remedy}`, path);
    }
    let i = 0;
    hashBlocks(f.fd, (piece, pos) => {
      if (copy.blockSize !== FILE_BLOCK || xxh64hex(piece) !== copy.blocks[i++]) {
        throw new ImageError('CORRUPT', `the saved copy of ${of} (${path}) is damaged (block at ${pos} does not match its hash): ${source.remedy}`, path);
      }
      each(piece, pos);
    }, f.start, f.size);
    if (i !== copy.blocks.length) {
      throw new ImageError('CORRUPT', `the saved copy of ${of} (${path}) is truncated (${i} of ${copy.blocks.length} blocks): ${source.remedy}`, path);
    }
  } finally {
    closeSync(f.fd);
  }
}

/** Whether the file at `path` has exactly the saved copy's contents (compared by block hashes). */
export function sameAsCopy(path: string, copy: SavedCopy): boolean {
  const fd = openSync(path, 'r');
  try {
    if (fstatSync(fd).size !== copy.size) return false;
    const { blocks } = hashBlocks(fd);
    return blocks.length === copy.blocks.length && blocks.every((b, i) => b === copy.blocks[i]);
  } finally {
    closeSync(fd);
  }
}

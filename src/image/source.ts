// Where an image's stored files (module, memory chunks, saved copies) are read from: the
// files of a checkpoint directory, or the entries of an export file (export.ts). Readers name
// a stored file by its path relative to the checkpoint directory, as the manifest does.
import { fstatSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { ImageError } from '../errors.js';
import { errno, openRegularFile, unreadable } from '../util/fs.js';

/** One stored file, open: its bytes are `size` bytes of `fd` from `start`. */
export interface StoredFile {
  fd: number;
  start: number;
  size: number;
  /** How messages name it (a path, or EXPORT:REL). */
  name: string;
}

export interface ImageSource {
  kind: 'directory' | 'export';
  /** The checkpoint directory, or the export file. */
  path: string;
  /** What to do about a damaged file of this source (the end of an error message). */
  remedy: string;
  /** Opens a stored file; null when it is not there. Close its fd when done. */
  open(rel: string): StoredFile | null;
  /** How messages name a stored file. */
  name(rel: string): string;
}

/** The stored files of a checkpoint directory. */
export function dirSource(ckptDir: string): ImageSource {
  return {
    kind: 'directory',
    path: ckptDir,
    remedy: 'restart from another generation (or take a new checkpoint)',
    name: (rel) => join(ckptDir, rel),
    open(rel) {
      const name = join(ckptDir, rel);
      try {
        // Without blocking or following a link: a FIFO, a device or a link put in the store
        // must be refused, not waited on or read without end.
        const fd = openRegularFile(name, true);
        return { fd, start: 0, size: fstatSync(fd).size, name };
      } catch (e) {
        if (errno(e) === 'ENOENT') return null;
        throw new ImageError('CORRUPT', `${name} cannot be read (${unreadable(e)}): the image cannot be used; restart from another generation (or take a new checkpoint)`, name);
      }
    },
  };
}

/** Reads `len` bytes of a stored file from `at` (relative to its start) into `dest`. */
export function readStored(f: StoredFile, dest: Uint8Array, at = 0, len = dest.length): void {
  for (let done = 0; done < len;) {
    const got = readSync(f.fd, dest, done, len - done, f.start + at + done);
    if (got === 0) throw new ImageError('CORRUPT', `${f.name} is truncated (ends before byte ${at + len} of ${f.size})`, f.name);
    done += got;
  }
}

/** The whole stored file (its size is bounded by the file it lies in). */
export function readStoredAll(f: StoredFile): Buffer {
  const buf = Buffer.allocUnsafe(f.size);
  readStored(f, buf);
  return buf;
}

// `stasis export`: one image in one file (image/export.ts), to restart it where its
// checkpoint directory is not. The image is checked whole first (a damaged image is not
// exported), then written to a temporary file beside the output, synced and renamed into place.
import { statSync, unlinkSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ImageError, StasisError } from '../errors.js';
import { EXPORT_MODE, readImage, verifyStored, writeExport } from '../image/index.js';
import { genName } from '../image/format.js';
import { parseManifest, readManifestFiles } from '../image/manifest.js';
import { errno, fsyncDir, tmpSuffix } from '../util/fs.js';
import { onTerminatingSignals } from './signals.js';

export interface ExportOptions {
  /** A checkpoint directory (its latest image), an image directory, or its manifest.json. */
  image: string;
  /** The file to write ('-': standard output). Default: ./NAME-gen-NNNNNN.tar. */
  out?: string;
}

export interface ExportResult {
  /** The file written (absolute), or '-'. */
  file: string;
  bytes: number;
  name: string;
  generation: number;
}

export async function exportImage(opts: ExportOptions): Promise<ExportResult> {
  const image = await readImage(opts.image, { memory: false });
  if (image.source.kind === 'export') {
    throw new StasisError('USAGE', `stasis export: ${image.ref.path} is an export file already; copy it as it is, or restart it`);
  }
  const { name, generation } = image.ref;
  const out = opts.out ?? `${name.replace(/\//g, '_')}-${genName(generation)}.tar`;
  const toStdout = out === '-';
  if (toStdout && process.stdout.isTTY) throw new StasisError('USAGE', 'stasis export: -o -: standard output is a terminal; redirect it, or give -o FILE');
  const file = toStdout ? '-' : checkOutput(out);
  await verifyStored(image);
  // The manifest as stored, checked again: the export carries these exact bytes.
  const raw = await readManifestFiles(image.ref.path);
  const m = parseManifest(raw.manifest, raw.sum, image.ref.path);
  if (JSON.stringify(m) !== JSON.stringify(image.manifest)) {
    throw new ImageError('BUSY', `stasis export: ${image.ref.path} was replaced while being exported (a checkpoint of the same generation); export again`, image.ref.path);
  }
  const files = { manifest: raw.manifest, sum: raw.sum! };
  if (toStdout) return { file, bytes: await writeStdout((write) => writeExport(m, files, image.source, write)), name, generation };
  return { file, bytes: await writeAtomically(file, (write) => writeExport(m, files, image.source, write)), name, generation };
}

/** Writes to standard output; a reader that goes away (EPIPE) is an error, not a crash. */
async function writeStdout(fill: (write: (data: Uint8Array) => Promise<void>) => Promise<number>): Promise<number> {
  const swallow = (): void => {}; // the failed write's callback reports it
  process.stdout.on('error', swallow);
  try {
    return await fill((data) => new Promise((ok, fail) => {
      process.stdout.write(data, (e) => (e ? fail(e) : ok()));
    }));
  } catch (e) {
    if (errno(e) !== undefined && !(e instanceof StasisError)) {
      throw new StasisError('FILE_ACCESS', `stasis export: writing to standard output failed (${errno(e)}): the export is incomplete; give -o FILE, or keep the reader open`);
    }
    throw e;
  } finally {
    process.stdout.off('error', swallow);
  }
}

/** The output path, absolute; refused if something other than a regular file is there. */
function checkOutput(out: string): string {
  const file = resolve(out);
  const st = statSync(file, { throwIfNoEntry: false });
  if (st !== undefined && !st.isFile()) {
    throw new StasisError('USAGE', `stasis export: -o ${out}: ${file} is ${st.isDirectory() ? 'a directory' : 'not a regular file'}; give the path of the file to write`);
  }
  const dir = statSync(dirname(file), { throwIfNoEntry: false });
  if (dir === undefined || !dir.isDirectory()) throw new StasisError('USAGE', `stasis export: -o ${out}: directory ${dirname(file)} does not exist; create it first`);
  return file;
}

/** Writes `file` through a temporary file beside it (fsynced, renamed over it, directory
 *  fsynced): a reader sees the old file or the complete new one, never a part. */
async function writeAtomically(file: string, fill: (write: (data: Uint8Array) => Promise<void>) => Promise<number>): Promise<number> {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${tmpSuffix()}`);
  // Stopped by a signal meanwhile: the temporary file goes, then the process.
  const offSignals = onTerminatingSignals((status) => {
    try {
      unlinkSync(tmp);
    } catch {
      // not created yet, or gone
    }
    process.exit(status);
  });
  try {
    const fh = await open(tmp, 'wx', EXPORT_MODE).catch((e: unknown) => {
      throw new StasisError('FILE_ACCESS', `stasis export: cannot create ${tmp} (${errno(e)}): make ${dirname(file)} writable, or give -o elsewhere`);
    });
    let bytes: number;
    try {
      bytes = await fill(async (data) => {
        for (let done = 0; done < data.length;) done += (await fh.write(data, done, data.length - done)).bytesWritten;
      });
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      if (errno(e) !== undefined && !(e instanceof StasisError)) {
        throw new StasisError('FILE_ACCESS', `stasis export: writing ${file} failed (${errno(e)}); nothing was written: free space there, or give -o elsewhere`);
      }
      throw e;
    }
    await fh.close();
    await rename(tmp, file);
    await fsyncDir(dirname(file));
    return bytes;
  } finally {
    offSignals();
  }
}

// Export files: one image of a checkpoint directory in one file, to move it where there is no
// shared storage (docs/image-format.md, "Export files"). The file is a POSIX ustar archive
// of the image's files under their checkpoint-directory paths (`tar -xf` gives a checkpoint
// directory that restarts), written in a fixed order with canonical headers, after an index
// entry that names every file with its size and ends with its own sha256. A reader checks the
// index, the file's size against it, every header against the one a writer would have
// written, the padding, and (through the manifest's hashes) every stored byte.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { ImageError, StasisError } from '../errors.js';
import { CHUNK_FILE_RE, FILE_NAME_RE, GEN_RE, IMAGES, MANIFEST, MANIFEST_SUM, MODULE_FILE_RE, PAGES, chunkFile, genName, moduleFile, pagesFile } from './format.js';
import type { Manifest } from './schema.js';
import { readStored, type ImageSource, type StoredFile } from './source.js';
import { errno, sha256hex } from '../util/fs.js';

/** The first entry's name; the file's first bytes are this name and a NUL. */
export const EXPORT_INDEX = 'stasis-export';
/** 2: may hold an image's pages file (image format 3); written only by exports that do. */
export const EXPORT_VERSION = 2;
const BLOCK = 512;
const MAGIC_BYTES = Buffer.from(`${EXPORT_INDEX}\0`);
/** An index names a few thousand files at most (chunks are 1-4 MiB); this bounds its read. */
const MAX_INDEX = 16 << 20;
/** Permission bits of every entry (and of the export file): an image holds the program's memory. */
export const EXPORT_MODE = 0o600;

/** An entry of an export: where its header and bytes are. */
interface Entry {
  header: number;
  start: number;
  size: number;
}

/** An export file, its index read and checked against the file's size. */
export interface ExportIndex {
  file: string;
  /** Bytes of the whole file. */
  size: number;
  /** The mtime every header has (the image's creation time, in seconds). */
  mtime: number;
  /** The image directory inside ("images/gen-000007"). */
  image: string;
  generation: number;
  /** The stored files after the index, in order. */
  entries: Map<string, Entry>;
}

const padded = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;

/** The ustar header a writer makes for a file of `size` bytes named `name`. */
export function tarHeader(name: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) > 99) throw new Error(`export: entry name too long: ${name}`);
  h.write(name, 0, 'utf8');
  const octal = (off: number, width: number, v: number): void => {
    h.write(v.toString(8).padStart(width - 1, '0') + '\0', off, 'ascii');
  };
  octal(100, 8, EXPORT_MODE);
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  if (size < 8 ** 11) octal(124, 12, size);
  else {
    // GNU's base-256 form for sizes of 8 GiB and more (GNU tar and bsdtar read it).
    let v = BigInt(size);
    for (let i = 135; i > 124; i--, v >>= 8n) h[i] = Number(v & 0xffn);
    h[124] = 0x80;
  }
  octal(136, 12, mtime);
  h[156] = 0x30; // typeflag '0': a regular file
  h.write('ustar\0' + '00', 257, 'ascii');
  octal(329, 8, 0); // devmajor
  octal(337, 8, 0); // devminor
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

/** The stored files an image references, in export order, with the size each must have
 *  (null: a compressed chunk, at most `max` bytes). */
export function storedFiles(m: Manifest): { rel: string; size: number | null; max: number }[] {
  const out: { rel: string; size: number | null; max: number }[] = [{ rel: moduleFile(m.module.sha256), size: m.module.size, max: m.module.size }];
  const seen = new Set<string>();
  for (const c of m.memory.chunks) {
    const rel = chunkFile(m.memory.hash, c.hash, c.codec);
    if (seen.has(rel)) continue;
    seen.add(rel);
    const len = Math.min(m.memory.chunkSize, m.memory.byteLength - c.index * m.memory.chunkSize);
    out.push({ rel, size: c.codec === 'none' ? len : null, max: len });
  }
  const pages = m.memory.pages;
  if (pages !== undefined) out.push({ rel: pagesFile(m.snapshot.meta.generation), size: pages.size, max: pages.size });
  for (const f of m.snapshot.files ?? []) {
    if (f.copy === undefined || seen.has(f.copy.file)) continue;
    seen.add(f.copy.file);
    out.push({ rel: f.copy.file, size: f.copy.size, max: f.copy.size });
  }
  return out;
}

/** Where a file's bytes go: written in order, each call's buffer free again once it resolves. */
export type ExportSink = (data: Uint8Array) => Promise<void>;

/**
 * Writes one image as an export: `files` are its manifest and sidecar as stored, `source` the
 * checkpoint directory it is in (the caller has checked every stored file's hash). Returns
 * the bytes written.
 */
export async function writeExport(
  m: Manifest, files: { manifest: Buffer; sum: Buffer }, source: ImageSource, write: ExportSink,
): Promise<number> {
  const image = `${IMAGES}/${genName(m.snapshot.meta.generation)}`;
  const mtime = Math.max(0, Math.floor(Date.parse(m.snapshot.meta.createdAt) / 1000) || 0);
  // Sizes first: the index, which comes first, names them all.
  const stored: { rel: string; size: number }[] = [];
  for (const s of storedFiles(m)) {
    const f = open(source, s.rel);
    closeSync(f.fd);
    stored.push({ rel: s.rel, size: f.size });
  }
  const list = [{ rel: `${image}/${MANIFEST}`, size: files.manifest.length }, { rel: `${image}/${MANIFEST_SUM}`, size: files.sum.length }, ...stored];
  let total = 0;
  const lines = (size: number): string => [
    `${EXPORT_INDEX} ${m.memory.pages !== undefined ? EXPORT_VERSION : 1}`, `image ${image}`, `size ${size}`, ...list.map((e) => `file ${e.rel} ${e.size}`), '',
  ].join('\n');
  // The index states the total size, which includes the index: its length settles in a few rounds.
  for (let guess = 0; ;) {
    const indexLen = Buffer.byteLength(lines(guess)) + `sha256 ${'0'.repeat(64)}\n`.length;
    total = BLOCK + padded(indexLen) + list.reduce((n, e) => n + BLOCK + padded(e.size), 0) + 2 * BLOCK;
    if (total === guess) break;
    guess = total;
  }
  const body = lines(total);
  const index = Buffer.from(`${body}sha256 ${sha256hex(Buffer.from(body))}\n`);
  let written = 0;
  const put = async (data: Uint8Array): Promise<void> => {
    if (data.length === 0) return;
    await write(data);
    written += data.length;
  };
  const entry = async (rel: string, size: number, bytes: (put: (b: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> => {
    await put(tarHeader(rel, size, mtime));
    await bytes(put);
    await put(Buffer.alloc(padded(size) - size));
  };
  await entry(EXPORT_INDEX, index.length, (p) => p(index));
  await entry(list[0]!.rel, files.manifest.length, (p) => p(files.manifest));
  await entry(list[1]!.rel, files.sum.length, (p) => p(files.sum));
  const buf = Buffer.allocUnsafe(4 << 20);
  for (const e of stored) {
    await entry(e.rel, e.size, async (p) => {
      const f = open(source, e.rel);
      try {
        if (f.size !== e.size) throw new ImageError('CORRUPT', `${f.name} changed size while being exported (${e.size} bytes, now ${f.size}): export again`, f.name);
        for (let at = 0; at < f.size; at += buf.length) {
          const n = Math.min(buf.length, f.size - at);
          readStored(f, buf, at, n);
          await p(buf.subarray(0, n));
        }
      } finally {
        closeSync(f.fd);
      }
    });
  }
  await put(Buffer.alloc(2 * BLOCK));
  if (written !== total) throw new Error(`export: wrote ${written} bytes, the index says ${total}`);
  return written;
}

function open(source: ImageSource, rel: string): StoredFile {
  const f = source.open(rel);
  if (f === null) throw new ImageError('MISSING', `${source.name(rel)} is missing: the image cannot be exported; export another generation`, source.name(rel));
  return f;
}

function damaged(file: string, what: string): ImageError {
  return new ImageError('CORRUPT', `export file ${file} ${what}: copy it again (or export the image again)`, file);
}

/** Opens the export file for reading without blocking (a FIFO is refused, not waited on). */
function openExportFile(file: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if (errno(e) === 'ENOENT') throw new ImageError('MISSING', `no checkpoint image at ${file}: the file does not exist`, file);
    throw new StasisError('FILE_ACCESS', `cannot read ${file} (${errno(e) ?? (e as Error).message}): fix its permissions`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new ImageError('NOT_AN_IMAGE', `${file} is not a regular file: give a Stasis export file, checkpoint directory or image`, file);
  }
  return { fd, size: st.size };
}

function readAt(fd: number, len: number, pos: number): Buffer {
  const b = Buffer.alloc(len);
  let n = 0;
  while (n < len) {
    const got = readSync(fd, b, n, len - n, pos + n);
    if (got === 0) break;
    n += got;
  }
  return b.subarray(0, n);
}

const INDEX_LINE: Record<string, RegExp> = {
  image: /^image (images\/gen-(\d{6,}))$/,
  size: /^size (\d{1,16})$/,
  file: /^file (\S+) (\d{1,16})$/,
  sha256: /^sha256 ([0-9a-f]{64})$/,
};

/** Whether a path inside an export is one a checkpoint directory can hold for `image`. */
function allowedName(rel: string, image: string): boolean {
  const [dir, name, ...rest] = rel.split('/');
  if (rest.length > 0 || name === undefined) return rel === `${image}/${MANIFEST}` || rel === `${image}/${MANIFEST_SUM}` || rel === `${image}/${PAGES}`;
  return (dir === 'chunks' && CHUNK_FILE_RE.test(name)) || (dir === 'modules' && MODULE_FILE_RE.test(name)) || (dir === 'files' && FILE_NAME_RE.test(name));
}

/**
 * Reads and checks an export's index: magic, first header, version, the index's sha256, its
 * lines, and the file's size against it. Throws NOT_AN_IMAGE (a foreign or empty file),
 * BAD_VERSION, or CORRUPT (truncated or damaged).
 */
export function openExport(file: string): ExportIndex {
  const { fd, size } = openExportFile(file);
  try {
    if (size === 0) throw new ImageError('NOT_AN_IMAGE', `${file} is empty (0 bytes), not a Stasis export: was its copy interrupted? Copy it again`, file);
    const head = readAt(fd, BLOCK, 0);
    const magic = head.subarray(0, MAGIC_BYTES.length);
    if (!MAGIC_BYTES.subarray(0, magic.length).equals(magic)) {
      throw new ImageError('NOT_AN_IMAGE', `${file} is not a Stasis export, checkpoint directory or image: give a file written by 'stasis export', or a checkpoint directory`, file);
    }
    if (head.length < BLOCK) throw damaged(file, `is truncated (${size} bytes)`);
    const digits = /^[0-7]{11}\0$/;
    const sizeField = head.toString('latin1', 124, 136);
    const mtimeField = head.toString('latin1', 136, 148);
    if (!digits.test(sizeField) || !digits.test(mtimeField)) throw damaged(file, 'has a damaged first header');
    const indexLen = parseInt(sizeField, 8);
    const mtime = parseInt(mtimeField, 8);
    if (!tarHeader(EXPORT_INDEX, indexLen, mtime).equals(head)) throw damaged(file, 'has a damaged first header');
    if (indexLen > MAX_INDEX) throw damaged(file, `has an index of ${indexLen} bytes (at most ${MAX_INDEX})`);
    if (size < BLOCK + indexLen) throw damaged(file, `is truncated (${size} bytes; its index alone ends at byte ${BLOCK + indexLen})`);
    const text = readAt(fd, indexLen, BLOCK).toString('latin1');
    const lines = text.split('\n');
    const version = /^stasis-export (\d+)$/.exec(lines[0] ?? '');
    if (!version) throw damaged(file, 'has a damaged index (first line)');
    if (Number(version[1]) > EXPORT_VERSION) {
      throw new ImageError('BAD_VERSION', `${file} is a Stasis export of format version ${version[1]}, newer than this Stasis reads (${EXPORT_VERSION}): restart it with a newer Stasis`, file);
    }
    const sumAt = text.lastIndexOf('sha256 ');
    const sum = INDEX_LINE.sha256!.exec(text.slice(sumAt).replace(/\n$/, ''));
    if (sumAt < 0 || !text.endsWith('\n') || !sum || sha256hex(Buffer.from(text.slice(0, sumAt), 'latin1')) !== sum[1]) {
      throw damaged(file, 'has a damaged index (it does not match its sha256)');
    }
    // Checked: now its lines are as a writer made them, or the file is not one of ours.
    const body = text.slice(0, sumAt).split('\n').slice(1, -1);
    const image = INDEX_LINE.image!.exec(body[0] ?? '');
    const declared = INDEX_LINE.size!.exec(body[1] ?? '');
    if (!image || !declared) throw damaged(file, 'has a malformed index');
    const total = Number(declared[1]);
    const entries = new Map<string, Entry>();
    let at = BLOCK + padded(indexLen);
    for (const line of body.slice(2)) {
      const f = INDEX_LINE.file!.exec(line);
      if (!f || !allowedName(f[1]!, image[1]!) || entries.has(f[1]!)) throw damaged(file, `has a malformed index line: ${JSON.stringify(line.slice(0, 120))}`);
      const len = Number(f[2]);
      entries.set(f[1]!, { header: at, start: at + BLOCK, size: len });
      at += BLOCK + padded(len);
    }
    at += 2 * BLOCK;
    if (at !== total) throw damaged(file, `has an inconsistent index (its files end at byte ${at}, it says ${total})`);
    if (size < total) throw damaged(file, `is truncated: ${size} bytes of ${total}`);
    if (size > total) throw damaged(file, `has ${size - total} bytes more than its index says (${total}): damaged, or something was appended`);
    if (!readAt(fd, 2 * BLOCK, total - 2 * BLOCK).equals(Buffer.alloc(2 * BLOCK))) throw damaged(file, 'has a damaged end (not two zero blocks)');
    return { file, size, mtime, image: image[1]!, generation: Number(GEN_RE.exec(image[1]!.slice(IMAGES.length + 1))![1]), entries };
  } finally {
    closeSync(fd);
  }
}

/**
 * The stored files of an export, as a source readers use: opening one checks its header
 * and padding (the bytes themselves are checked by the reader against the manifest's hashes).
 */
export function exportSource(idx: ExportIndex): ImageSource {
  const name = (rel: string): string => `${idx.file}:${rel}`;
  return {
    kind: 'export',
    path: idx.file,
    remedy: 'copy the export file again (or export the image again)',
    name,
    open(rel) {
      const e = idx.entries.get(rel);
      if (e === undefined) return null;
      const { fd, size } = openExportFile(idx.file);
      try {
        if (size !== idx.size) throw damaged(idx.file, `changed while being read (${idx.size} bytes, now ${size})`);
        if (!readAt(fd, BLOCK, e.header).equals(tarHeader(rel, e.size, idx.mtime))) throw damaged(idx.file, `has a damaged header for ${rel}`);
        const pad = padded(e.size) - e.size;
        if (pad > 0 && !readAt(fd, pad, e.start + e.size).equals(Buffer.alloc(pad))) throw damaged(idx.file, `has damaged padding after ${rel}`);
        return { fd, start: e.start, size: e.size, name: name(rel) };
      } catch (err) {
        closeSync(fd);
        throw err;
      }
    },
  };
}

/**
 * Checks that an export holds exactly the files its (checked) manifest references, in the
 * writer's order, with the sizes the manifest gives.
 */
export function checkExportEntries(idx: ExportIndex, m: Manifest): void {
  if (m.snapshot.meta.generation !== idx.generation) {
    throw damaged(idx.file, `holds an image of generation ${m.snapshot.meta.generation} under ${idx.image}`);
  }
  const want = [`${idx.image}/${MANIFEST}`, `${idx.image}/${MANIFEST_SUM}`, ...storedFiles(m).map((s) => s.rel)];
  const have = [...idx.entries.keys()];
  const diff = want.findIndex((rel, i) => have[i] !== rel);
  if (diff >= 0 || have.length !== want.length) {
    const i = diff >= 0 ? diff : want.length;
    throw damaged(idx.file, `does not hold the files its manifest references (entry ${i + 1}: ${have[i] ?? 'none'}, expected ${want[i] ?? 'none'})`);
  }
  for (const s of storedFiles(m)) {
    const e = idx.entries.get(s.rel)!;
    if (s.size !== null ? e.size !== s.size : e.size > s.max) {
      throw damaged(idx.file, `has ${e.size} bytes for ${s.rel}, ${s.size !== null ? `its manifest says ${s.size}` : `more than its chunk (${s.max})`}`);
    }
  }
}

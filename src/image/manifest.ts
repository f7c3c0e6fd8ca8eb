// Locating images and loading their manifests, with every check a reader needs. Never writes.
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ImageError } from '../errors.js';
import { FORMAT_VERSION, GEN_RE, IMAGES, LATEST, MAGIC, MANIFEST, MANIFEST_SUM, genName } from './format.js';
import { manifestShape, type Manifest } from './schema.js';
import { ShapeError } from './shape.js';
import { errno, readRegularFile, sha256hex, unreadable } from '../util/fs.js';

/** Where an image lives. */
export interface ImageRef {
  /** The checkpoint directory (holds images/, chunks/, modules/); for an export file, the file. */
  dir: string;
  /** The image directory (<dir>/images/gen-NNNNNN); for an export file, the file. */
  path: string;
  generation: number;
  /** Program name recorded in the image. */
  name: string;
}

async function statOrNull(p: string) {
  try {
    return await stat(p);
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return null;
    throw e;
  }
}

/** Generation numbers of the image directories in a checkpoint directory, ascending. */
export async function generations(ckptDir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(join(ckptDir, IMAGES));
  } catch (e) {
    if (errno(e) === 'ENOENT') return [];
    throw e;
  }
  const gens: number[] = [];
  for (const n of names) {
    const m = GEN_RE.exec(n);
    if (m) gens.push(Number(m[1]));
  }
  return gens.sort((a, b) => a - b);
}

/** The generation `latest` names, or null when it is absent or names no image directory. */
export async function latestPointer(ckptDir: string): Promise<number | null> {
  let text: string;
  try {
    text = readRegularFile(join(ckptDir, LATEST), { noFollow: true, limit: 4096 }).toString('utf8');
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    throw damaged(join(ckptDir, LATEST), `cannot be read: ${unreadable(e)}`);
  }
  const m = GEN_RE.exec(text.trim());
  if (!m) return null;
  const gen = Number(m[1]);
  return (await statOrNull(join(ckptDir, IMAGES, genName(gen), MANIFEST))) ? gen : null;
}

/**
 * The latest image of a checkpoint directory: the one `latest` names; if that is absent or
 * dangling (a crash between publishing an image and updating the pointer, or a copy that
 * lost it), the highest generation that has a manifest.
 */
export async function latestGeneration(ckptDir: string): Promise<number | null> {
  const p = await latestPointer(ckptDir);
  if (p !== null) return p;
  const gens = await generations(ckptDir);
  for (let i = gens.length - 1; i >= 0; i--) {
    if (await statOrNull(join(ckptDir, IMAGES, genName(gens[i]!), MANIFEST))) return gens[i]!;
  }
  return null;
}

/** An image in a checkpoint directory, or an export file (any other regular file: export.ts
 *  tells whether it is one). */
export type Resolved =
  | { kind: 'directory'; ckptDir: string; imageDir: string; generation: number | null }
  | { kind: 'export'; file: string };

/**
 * Resolves what the user pointed at — a checkpoint directory, an image directory, an
 * image's manifest.json, or an export file — to an image directory and its checkpoint
 * directory, or to the export file.
 */
export async function resolveImage(pathIn: string, generation?: number): Promise<Resolved> {
  const path = resolve(pathIn);
  const st = await statOrNull(path);
  if (!st) {
    throw new ImageError('MISSING', `no checkpoint image at ${path}: the path does not exist; check the path (a checkpoint directory or one of its images/gen-NNNNNN directories)`, path);
  }
  let imageDir: string;
  if (st.isFile()) {
    if (basename(path) !== MANIFEST) return { kind: 'export', file: path };
    imageDir = dirname(path);
  } else if (!st.isDirectory()) {
    throw new ImageError('NOT_AN_IMAGE', `${path} is not a Stasis checkpoint directory, image or export file (it is not a regular file or directory)`, path);
  } else if (await statOrNull(join(path, MANIFEST))) {
    imageDir = path;
  } else if ((await statOrNull(join(path, IMAGES)))?.isDirectory()) {
    const gen = generation ?? (await latestGeneration(path));
    if (gen === null) {
      throw new ImageError('MISSING', `checkpoint directory ${path} holds no complete image yet (no images/gen-NNNNNN/manifest.json): take a checkpoint first, or point at another directory`, path);
    }
    imageDir = join(path, IMAGES, genName(gen));
    if (!(await statOrNull(join(imageDir, MANIFEST)))) {
      const have = await generations(path);
      throw new ImageError('MISSING', `checkpoint directory ${path} has no complete image of generation ${gen} (generations present: ${have.length ? have.join(', ') : 'none'}): pick one of those`, imageDir);
    }
  } else {
    throw new ImageError('NOT_AN_IMAGE', `${path} is not a Stasis checkpoint directory (no images/ inside) nor an image directory (no manifest.json inside)`, path);
  }
  const m = GEN_RE.exec(basename(imageDir));
  const gen = m ? Number(m[1]) : null;
  if (generation !== undefined && gen !== generation) {
    throw new ImageError('MISSING', `${imageDir} is the image of generation ${gen ?? '?'}, not ${generation}: point at the checkpoint directory to choose a generation`, imageDir);
  }
  return { kind: 'directory', ckptDir: dirname(dirname(imageDir)), imageDir, generation: gen };
}

function damaged(file: string, what: string, remedy = 'restart from another generation (or take a new checkpoint)'): ImageError {
  return new ImageError('CORRUPT', `checkpoint image file ${file} ${what}: the image cannot be used; ${remedy}`, file);
}

/** A manifest larger than this is damaged (real ones are kilobytes; a long readdir listing, megabytes). */
const MANIFEST_LIMIT = 256 << 20;

/** Reads an image directory's manifest and its sidecar (null for a missing sidecar). */
export async function readManifestFiles(imageDir: string): Promise<{ manifest: Buffer; sum: Buffer | null }> {
  const file = join(imageDir, MANIFEST);
  let manifest: Buffer;
  try {
    manifest = readRegularFile(file, { noFollow: true, limit: MANIFEST_LIMIT });
  } catch (e) {
    if (errno(e) === 'ENOENT') throw new ImageError('MISSING', `checkpoint image ${imageDir} has no ${MANIFEST}: it is not a complete image; use another generation`, file);
    throw damaged(file, `cannot be read: ${unreadable(e)}`);
  }
  const sumFile = join(imageDir, MANIFEST_SUM);
  try {
    return { manifest, sum: readRegularFile(sumFile, { noFollow: true, limit: 4096 }) };
  } catch (e) {
    if (errno(e) === 'ENOENT') return { manifest, sum: null };
    throw damaged(sumFile, `cannot be read: ${unreadable(e)}`);
  }
}

/** Reads, checks (magic, version, sha256 sidecar, then manifestShape) and returns an image's manifest. */
export async function loadManifest(imageDir: string): Promise<Manifest> {
  const { manifest, sum } = await readManifestFiles(imageDir);
  return parseManifest(manifest, sum, imageDir);
}

/**
 * Checks a manifest and its sidecar's text (null: missing) as loadManifest does; `imageDir`
 * names them in messages (an image directory, or where they lie in an export file), `remedy`
 * ends the message about a damaged one.
 */
export function parseManifest(bytes: Buffer, sumBytes: Buffer | null, imageDir: string, remedy?: string): Manifest {
  const corrupt = (f: string, what: string): ImageError => damaged(f, what, remedy);
  const file = join(imageDir, MANIFEST);
  let m: unknown;
  try {
    m = JSON.parse(bytes.toString('utf8'));
  } catch {
    if (bytes.includes(`"${MAGIC}"`)) throw corrupt(file, 'is truncated or damaged (not valid JSON)');
    throw new ImageError('NOT_AN_IMAGE', `${file} is not a Stasis image manifest (not JSON with magic "${MAGIC}"): point at a checkpoint directory or image written by Stasis`, file);
  }
  if (typeof m !== 'object' || m === null || (m as { magic?: unknown }).magic !== MAGIC) {
    throw new ImageError('NOT_AN_IMAGE', `${file} is not a Stasis image manifest (no magic "${MAGIC}"): point at a checkpoint directory or image written by Stasis`, file);
  }
  const version = (m as { version?: unknown }).version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw corrupt(file, `has an invalid format version (${JSON.stringify(version)})`);
  }
  if (version > FORMAT_VERSION) {
    throw new ImageError('BAD_VERSION', `checkpoint image ${imageDir} uses image format version ${version}, newer than this Stasis reads (${FORMAT_VERSION}): restart it with a newer Stasis`, file);
  }
  const sumFile = join(imageDir, MANIFEST_SUM);
  if (sumBytes === null) throw corrupt(sumFile, 'is missing (every image has one next to its manifest)');
  const want = /^([0-9a-f]{64}) {2}manifest\.json\n?$/.exec(sumBytes.toString('utf8'));
  if (!want) throw corrupt(sumFile, 'is damaged (expected "<sha256>  manifest.json")');
  if (sha256hex(bytes) !== want[1]) throw corrupt(file, 'does not match its sha256 in manifest.sha256 (damaged or truncated)');
  try {
    manifestShape.check(m);
  } catch (e) {
    if (e instanceof ShapeError) throw corrupt(file, `is malformed (${e.message})`);
    throw e;
  }
  return m as Manifest;
}

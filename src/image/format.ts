// The on-disk format of a checkpoint directory (docs/image-format.md is the reference).
//
//   <ckptDir>/latest                      "gen-000007\n": the latest complete image
//   <ckptDir>/images/gen-000007/manifest.json
//   <ckptDir>/images/gen-000007/manifest.sha256   "<hex>  manifest.json\n"
//   <ckptDir>/images/gen-000007/pages             memory pages of this image alone (format 3)
//   <ckptDir>/chunks/<alg>-<hash>[.deflate|.br]   memory chunks, content-addressed, shared
//   <ckptDir>/modules/<sha256>.wasm               instrumented modules, content-addressed
//   <ckptDir>/files/xxh64-<hash>                  saved copies of open files, content-addressed
//   <ckptDir>/.lock                               held while a writer works
// Names starting with '.' are private to writers (temporaries, lock) and ignored by readers.
// The manifest's fields: schema.ts.

export const MAGIC = 'stasis-image';
/** 2: snapshot.files (saved open files); a version-1 reader would restart without them.
 *  3: memory.pages (pages stored in the image's own directory, over its chunks); written only
 *  by images that have them, so images without stay readable by version-2 readers. */
export const FORMAT_VERSION = 3;
/** The version an image without memory.pages is written with. */
export const FORMAT_VERSION_NO_PAGES = 2;
/** Granularity of memory.pages: a WebAssembly page. */
export const PAGE = 65536;

/**
 * Default memory chunk size: 1 MiB up to 256 MiB of memory, then the power of two that makes
 * about 256 chunks, at most 4 MiB (measurements in docs/image-format.md). Memory only grows,
 * so a program's chunk size changes at most twice.
 */
export function defaultChunkSize(byteLength: number): number {
  let size = 1 << 20;
  while (size < 4 << 20 && size * 256 < byteLength) size *= 2;
  return size;
}

export const IMAGES = 'images';
export const CHUNKS = 'chunks';
export const MODULES = 'modules';
export const FILES = 'files';
/** Saved files are hashed in pieces of this size (each XXH64), so a restart can compare as it reads. */
export const FILE_BLOCK = 4 << 20;
export const FILE_NAME_RE = /^xxh64-[0-9a-f]{16}$/;
/** Files being staged by a live launcher: other writers' leftover cleanup skips them. */
export const STAGE_PREFIX = '.tmp-stage-';
export const LATEST = 'latest';
export const LOCK = '.lock';
export const MANIFEST = 'manifest.json';
export const MANIFEST_SUM = 'manifest.sha256';
/** An image's own memory pages (memory.pages), in its directory. */
export const PAGES = 'pages';
/** Prefix of every temporary name a writer creates; readers skip them, writers remove them. */
export const TMP_PREFIX = '.tmp-';

/** How a memory chunk file is encoded. */
export const CODECS = ['none', 'deflate', 'brotli'] as const;
export type Codec = (typeof CODECS)[number];
const SUFFIX: Record<Codec, string> = { none: '', deflate: '.deflate', brotli: '.br' };

export const CHUNK_HASHES = ['xxh64', 'sha256'] as const;
export type ChunkHash = (typeof CHUNK_HASHES)[number];
export const HASH_RE: Record<ChunkHash, RegExp> = { xxh64: /^[0-9a-f]{16}$/, sha256: /^[0-9a-f]{64}$/ };

export const GEN_RE = /^gen-(\d{6,})$/;
export const HEX64_RE = /^[0-9a-f]{64}$/;
/** A chunk file name: 1 = its key (algorithm-hash), 2 = the codec suffix. */
export const CHUNK_FILE_RE = /^(xxh64-[0-9a-f]{16}|sha256-[0-9a-f]{64})(\.deflate|\.br)?$/;
export const MODULE_FILE_RE = /^([0-9a-f]{64})\.wasm$/;

export function genName(generation: number): string {
  return `gen-${String(generation).padStart(6, '0')}`;
}

/** The store key of a chunk: "<alg>-<hash>". */
export function chunkKey(alg: ChunkHash, hash: string): string {
  return `${alg}-${hash}`;
}

/** Path of a chunk file relative to the checkpoint directory ('/'-separated). */
export function chunkFile(alg: ChunkHash, hash: string, codec: Codec): string {
  return `${CHUNKS}/${chunkKey(alg, hash)}${SUFFIX[codec]}`;
}

export function codecOfSuffix(suffix: string | undefined): Codec {
  return suffix === '.deflate' ? 'deflate' : suffix === '.br' ? 'brotli' : 'none';
}

/** Path of image `generation`'s pages file relative to the checkpoint directory. */
export function pagesFile(generation: number): string {
  return `${IMAGES}/${genName(generation)}/${PAGES}`;
}

export function moduleFile(sha256: string): string {
  return `${MODULES}/${sha256}.wasm`;
}

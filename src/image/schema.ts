// What a checkpoint captures, as data, and the shape of an image's manifest.json
// (docs/image-format.md). The engine produces a Snapshot; the image store writes it and
// checks every manifest it reads against `manifestShape`. The types below come from the
// shapes, so what is checked is what the code is typed for; the WASI state keeps its types in
// src/wasi/state.ts, and its shapes here are declared against them.
import type { DirFdState, FdState, FileFdState, Location, Preopen, StdioFdState, WasiState } from '../wasi/state.js';
import { CHUNK_HASHES, CODECS, FILE_NAME_RE, FILES, FORMAT_VERSION, HASH_RE, HEX64_RE, MAGIC, PAGE } from './format.js';
import {
  array, boolean, checkAt, declared, fail, int, leaf, match, nullable, number, object, oneOf, optional, refine, string, tuple,
  uint, variant, type Infer,
} from './shape.js';

const sha256 = match(HEX64_RE, '64 lower-case hex digits');
/** 64-bit values (i64 globals, nanoseconds) are decimal strings: JSON numbers lose precision. */
const decimal = match(/^-?\d+$/, 'a decimal integer string');
const positive = refine(uint, (v) => { if (v === 0) fail('a positive integer', v); });

// ---- WASI state (types in src/wasi/state.ts) -----------------------------------------

/** A path below a preopen as the host makes them: '' or names joined by '/', none of them
 *  '', '.' or '..' (so that no image can name a place outside its preopens). */
const relPath = leaf<string>('a relative path without "..", "." or empty components',
  (v) => typeof v === 'string' && (v === '' || v.split('/').every((c) => c !== '' && c !== '.' && c !== '..' && !c.includes('\0'))));
const location = declared<Location>()(object({ preopen: string, rel: relPath }));
const fdCommon = { fd: uint, rightsBase: uint, rightsInheriting: uint, fdflags: uint };
const fdState = declared<FdState>()(variant('kind', {
  file: declared<FileFdState>()(object({
    ...fdCommon, kind: oneOf('file'), location, access: oneOf('r', 'w', 'rw'), offset: uint, filetype: uint,
  })),
  dir: declared<DirFdState>()(object({
    ...fdCommon, kind: oneOf('dir'), location, preopenName: optional(string), listing: nullable(array(string)),
  })),
  stdio: declared<StdioFdState>()(object({ ...fdCommon, kind: oneOf('stdio'), stream: oneOf(0, 1, 2), filetype: uint })),
}));
const preopen = declared<Preopen>()(object({ guest: string, host: string }));
const wasiState = declared<WasiState>()(object({
  args: array(string), env: array(string), preopens: array(preopen), fds: array(fdState), pollDeadlines: optional(array(decimal)),
}));

// ---- the snapshot ----------------------------------------------------------------------

const floatValue = leaf<number | string | null>('a number, "NaN", "Infinity", "-Infinity" or null',
  (v) => v === null || (typeof v === 'number' && Number.isFinite(v)) || v === 'NaN' || v === 'Infinity' || v === '-Infinity');

const globalValue = refine(object({
  /** Export name the instrumenter gave it ("stasis_g<index>"). */
  name: string,
  type: oneOf('i32', 'i64', 'f32', 'f64'),
  /**
   * i64 values are decimal strings (JSON-safe); f32/f64 ones that JSON has no number for are
   * "NaN", "Infinity" or "-Infinity". null: such a value in an image written before they were
   * kept (it restores as 0, as it always did).
   */
  value: leaf<number | string | null>('a number, a string or null', (v) => v === null || typeof v === 'string' || typeof v === 'number'),
}), (g) => checkAt(g.type === 'i64' ? decimal : g.type === 'i32' ? int : floatValue, g.value, 'value'));
/** A value of a wasm global, as saved. */
export type GlobalValue = Infer<typeof globalValue>;

const engineInfo = object({
  /** Imports the module can unwind at. */
  unwindImports: array(string),
  /** Whether the module calls stasis.poll at safe points in loops. */
  poll: boolean,
  /** Export name of the shadow stack pointer global, if any. */
  stackPointer: nullable(string),
  /** The largest frame the module can put in the asyncify buffer (absent in images written
   *  before it was recorded: a restart computes it from the module). */
  maxFrameBytes: optional(uint),
  /** Export name of the ending gate global (the engine does not unwind while it is set), or
   *  null; absent in images written before it existed (none). */
  endingGate: optional(nullable(string)),
});
/** How the instrumented module is driven (from the instrumenter); needed to restart it. */
export type EngineInfo = Infer<typeof engineInfo>;

const treatment = oneOf(
  'reopen', // reopened where it is, offsets restored (read-only files, or not saved by choice)
  'log', // cut back to its size at the checkpoint, the cut tail kept beside the image
  'save', // its contents are in the image and come back
);
/** What happens to an open file at restart (docs/files.md). */
export type FileTreatment = Infer<typeof treatment>;

const savedCopy = object({
  /** Path relative to the checkpoint directory: files/xxh64-<16 hex>. */
  file: refine(string, (f) => {
    if (!f.startsWith(`${FILES}/`) || !FILE_NAME_RE.test(f.slice(FILES.length + 1))) fail(`"${FILES}/xxh64-<16 hex digits>"`, f);
  }),
  size: uint,
  /** XXH64 (hex) of each blockSize piece, in order: checked on use, compared at restart. */
  blockSize: uint,
  blocks: array(match(HASH_RE.xxh64, '16 lower-case hex digits')),
});
/** A saved file's contents in the checkpoint directory (docs/image-format.md). */
export type SavedCopy = Infer<typeof savedCopy>;

const fileRecord = refine(object({
  /** The program's fds on it. */
  fds: array(uint),
  /** Where it was at the checkpoint (found by identity if it had been renamed). */
  location,
  /** Its host path then (before any --path-map), for messages, rules and maps. */
  hostPath: string,
  /** Unlinked while open (or moved where no preopen reaches): it comes back unlinked. */
  deleted: boolean,
  /** Size in bytes and permission bits at the checkpoint. */
  size: uint,
  mode: uint,
  treatment,
  /** Why (the rule, option or plugin that decided), for plans and inspect. */
  reason: string,
  /** A saved file that exists at restart and differs: refuse the restart, or replace it (keeping a backup). */
  onDiffer: oneOf('refuse', 'replace'),
  /** Where it goes at restart instead of its old host path (a rule's or plugin's choice). */
  restartPath: optional(string),
  /** The saved contents, for treatment 'save'. */
  copy: optional(savedCopy),
}), (f) => {
  if (f.treatment === 'save' && f.copy === undefined) fail('a saved copy (treatment "save")', undefined, 'copy');
});
/** One open regular file at a checkpoint (fds on the same file share one record). */
export type FileRecord = Infer<typeof fileRecord>;

const filePolicy = object({
  checkpointOpenFiles: boolean,
  allowFileOverwrite: boolean,
  /** ckptfiles rules in order: CLI flags first, then a rules file's lines. */
  rules: array(object({ action: oneOf('save', 'skip', 'log'), pattern: string, source: string, restartPath: optional(string) })),
  /** --path-map OLD=NEW pairs (host path prefixes). */
  pathMap: array(tuple(string, string)),
  /** --no-rollback: no undo journal, files classified by their offsets only (DMTCP's rules). */
  noRollback: optional(boolean),
  rollbackExempt: optional(array(string)),
});
/** File options given at launch (see src/files/policy.ts). */
export type FilePolicyOptions = Infer<typeof filePolicy>;

const snapshotMeta = object({
  /** Program name (--name, default: module file name without .wasm). */
  name: string,
  /** 1 for the first checkpoint of a launch, then 2, 3, ... (continues across restarts). */
  generation: uint,
  /** ISO time the state was captured. */
  createdAt: string,
  /** Milliseconds the program was paused to capture it. */
  pauseMs: number,
  /** Where and what ran: informational. */
  host: object({ hostname: string, platform: string, arch: string, node: string, pid: uint }),
});
export type SnapshotMeta = Infer<typeof snapshotMeta>;

const snapshotState = object({
  /** sha256 (hex) of the program as the user gave it. */
  moduleHash: sha256,
  /** sha256 (hex) of the instrumented module that actually ran (stored with the image). */
  instrumentedHash: sha256,
  /** Every mutable global of the module. */
  globals: array(globalValue),
  /** Address in memory of asyncify's {current, end} data header used for this unwind. */
  asyncifyData: uint,
  engine: engineInfo,
  /** The WASI host's state (fds, offsets, preopens, args, env). */
  wasi: wasiState,
  /** Monotonic nanoseconds the program had seen: time never runs back. */
  monotonicNs: decimal,
  /**
   * Bytes the checkpointed process had taken from its own stdin (pending ones included). A
   * restarted program reads its new process's stdin after the pending bytes: this says where
   * in an input that is fed again the program had got to. Absent in images written before it
   * was recorded.
   */
  stdinReceived: optional(uint),
  /** The open regular files and what a restart does with each (absent in version-1 images). */
  files: optional(array(fileRecord)),
  /** The launch's file options, kept so that a restarted program checkpoints the same way. */
  filePolicy: optional(filePolicy),
  meta: snapshotMeta,
});
/** The Snapshot fields that live in the manifest itself (memory and stdin are stored apart). */
export type SnapshotState = Infer<typeof snapshotState>;

export interface Snapshot extends SnapshotState {
  /** Linear memory at the checkpoint (includes the asyncify buffer). */
  memory: Uint8Array;
  /** Bytes read from stdin by Stasis but not yet by the program. */
  stdinPending: Uint8Array;
}

// ---- the manifest ----------------------------------------------------------------------

const chunkEntry = object({
  /** Chunk number: it covers bytes [index * chunkSize, min((index + 1) * chunkSize, byteLength)). */
  index: uint,
  /** Hash (hex, algorithm memory.hash) of the chunk's raw bytes: its identity and its check. */
  hash: string,
  /** How the chunk file is encoded; its name is chunkFile(memory.hash, hash, codec). */
  codec: oneOf(...CODECS),
});
/** One stored (non-zero) chunk of linear memory. */
export type ChunkEntry = Infer<typeof chunkEntry>;

const pageRun = object({
  /** Where the run lies in memory: a multiple of PAGE. */
  offset: uint,
  /** Its bytes: a multiple of PAGE, or up to byteLength. */
  length: positive,
  /** Hash (hex, algorithm memory.hash) of the run's bytes. */
  hash: string,
});
/** A run of memory pages stored in the image's pages file. */
export type PageRun = Infer<typeof pageRun>;

const memory = refine(object({
  byteLength: uint,
  chunkSize: positive,
  hash: oneOf(...CHUNK_HASHES),
  /** The non-zero chunks, by increasing index. */
  chunks: array(chunkEntry),
  /** (Format 3) Pages stored in the image's own `pages` file, which replace what the chunks
   *  hold there: the runs' bytes one after another, `size` bytes in all. */
  pages: optional(object({ size: uint, runs: array(pageRun) })),
}), (mem) => {
  const n = Math.ceil(mem.byteLength / mem.chunkSize);
  const re = HASH_RE[mem.hash];
  let prev = -1;
  mem.chunks.forEach((c, i) => {
    if (c.index <= prev || c.index >= n) fail(`above ${prev} and below ${n} (chunks by increasing index)`, c.index, 'chunks', i, 'index');
    if (!re.test(c.hash)) fail(`a ${mem.hash} hash in lower-case hex`, c.hash, 'chunks', i, 'hash');
    prev = c.index;
  });
  if (mem.pages === undefined) return;
  let end = 0;
  let size = 0;
  mem.pages.runs.forEach((r, i) => {
    if (r.offset % PAGE !== 0 || r.offset < end) fail(`a multiple of ${PAGE} from ${end} on (runs by increasing offset, apart)`, r.offset, 'pages', 'runs', i, 'offset');
    if (r.offset + r.length > mem.byteLength || (r.length % PAGE !== 0 && r.offset + r.length !== mem.byteLength)) {
      fail(`a multiple of ${PAGE} within byteLength (${mem.byteLength})`, r.length, 'pages', 'runs', i, 'length');
    }
    if (!re.test(r.hash)) fail(`a ${mem.hash} hash in lower-case hex`, r.hash, 'pages', 'runs', i, 'hash');
    end = r.offset + r.length;
    size += r.length;
  });
  if (mem.pages.size !== size) fail(`the runs' total length (${size})`, mem.pages.size, 'pages', 'size');
});

export const manifestShape = refine(object({
  magic: oneOf(MAGIC),
  /** 1 to FORMAT_VERSION (1: no snapshot.files). */
  version: refine(uint, (v) => { if (v < 1 || v > FORMAT_VERSION) fail(`1 to ${FORMAT_VERSION}`, v); }),
  /** The instrumented module: modules/<sha256>.wasm. */
  module: object({ sha256, size: uint }),
  memory,
  stdinPending: object({ size: uint, sha256, base64: string }),
  snapshot: snapshotState,
}), (m) => {
  // A reader of format 2 would ignore the pages and restore the wrong memory: never written so.
  if (m.memory.pages !== undefined && m.version < 3) fail('3 or more (the image has memory.pages)', m.version, 'version');
  const s = m.snapshot;
  if (s.instrumentedHash !== m.module.sha256) fail(`module.sha256 (${m.module.sha256})`, s.instrumentedHash, 'snapshot', 'instrumentedHash');
  // Every place an image names is below one of its preopens.
  const preopens = new Set(s.wasi.preopens.map((p) => p.guest));
  const named = `one of the preopens (${[...preopens].join(', ') || 'none'})`;
  s.wasi.fds.forEach((f, i) => {
    if (f.kind !== 'stdio' && !preopens.has(f.location.preopen)) fail(named, f.location.preopen, 'snapshot', 'wasi', 'fds', i, 'location', 'preopen');
  });
  s.files?.forEach((f, i) => {
    if (!preopens.has(f.location.preopen)) fail(named, f.location.preopen, 'snapshot', 'files', i, 'location', 'preopen');
  });
});
export type Manifest = Infer<typeof manifestShape>;

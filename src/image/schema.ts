// What a checkpoint captures, as data. The engine produces a Snapshot; the image store
// (src/image/) writes and reads it; a restart rebuilds a running program from it.
import type { Location, WasiState } from '../wasi/state.js';

/** A value of a wasm global, as saved. i64 values are decimal strings (JSON-safe). */
export interface GlobalValue {
  /** Export name the instrumenter gave it ("stasis_g<index>"). */
  name: string;
  type: 'i32' | 'i64' | 'f32' | 'f64';
  value: number | string;
}

export interface Snapshot {
  /** sha256 (hex) of the program as the user gave it. */
  moduleHash: string;
  /** sha256 (hex) of the instrumented module that actually ran (stored with the image). */
  instrumentedHash: string;
  /** Linear memory at the checkpoint (includes the asyncify buffer). */
  memory: Uint8Array;
  /** Every mutable global of the module. */
  globals: GlobalValue[];
  /** Address in memory of asyncify's {current, end} data header used for this unwind. */
  asyncifyData: number;
  /** How the instrumented module is driven (from the instrumenter); needed to restart it. */
  engine: EngineInfo;
  /** The WASI host's state (fds, offsets, preopens, args, env). */
  wasi: WasiState;
  /** Monotonic nanoseconds the program had seen (decimal string): time never runs back. */
  monotonicNs: string;
  /** Bytes read from stdin by Stasis but not yet by the program. */
  stdinPending: Uint8Array;
  /**
   * Bytes the checkpointed process had taken from its own stdin (pending ones included). A
   * restarted program reads its new process's stdin after the pending bytes: this says where
   * in an input that is fed again the program had got to.
   */
  stdinReceived: number;
  /** The open regular files and what a restart does with each (absent in older images). */
  files?: FileRecord[];
  /** The launch's file options, kept so that a restarted program checkpoints the same way. */
  filePolicy?: FilePolicyOptions;
  meta: SnapshotMeta;
}

/** What happens to an open file at restart (DESIGN.md section 3). */
export type FileTreatment =
  | 'reopen' // reopened where it is, offsets restored (read-only files, or not saved by choice)
  | 'log' // cut back to its size at the checkpoint, the cut tail kept beside the image
  | 'save'; // its contents are in the image and come back

/** One open regular file at a checkpoint (fds on the same file share one record). */
export interface FileRecord {
  /** The program's fds on it. */
  fds: number[];
  /** Where it was at the checkpoint (found by identity if it had been renamed). */
  location: Location;
  /** Its host path then (before any --path-map), for messages, rules and maps. */
  hostPath: string;
  /** Unlinked while open (or moved where no preopen reaches): it comes back unlinked. */
  deleted: boolean;
  /** Size in bytes and permission bits at the checkpoint. */
  size: number;
  mode: number;
  treatment: FileTreatment;
  /** Why (the rule, option or plugin that decided), for plans and inspect. */
  reason: string;
  /** A saved file that exists at restart and differs: refuse the restart, or replace it (keeping a backup). */
  onDiffer: 'refuse' | 'replace';
  /** Where it goes at restart instead of its old host path (a rule's or plugin's choice). */
  restartPath?: string;
  /** The saved contents, for treatment 'save'. */
  copy?: SavedCopy;
}

/** A saved file's contents in the checkpoint directory (docs/image-format.md). */
export interface SavedCopy {
  /** Path relative to the checkpoint directory: files/xxh64-<16 hex>. */
  file: string;
  size: number;
  /** XXH64 (hex) of each blockSize piece, in order: checked on use, compared at restart. */
  blockSize: number;
  blocks: string[];
}

/** File options given at launch (see src/files/policy.ts). */
export interface FilePolicyOptions {
  checkpointOpenFiles: boolean;
  allowFileOverwrite: boolean;
  /** ckptfiles rules in order: CLI flags first, then a rules file's lines. */
  rules: { action: 'save' | 'skip' | 'log'; pattern: string; source: string; restartPath?: string }[];
  /** --path-map OLD=NEW pairs (host path prefixes). */
  pathMap: [string, string][];
}

export interface EngineInfo {
  /** Imports the module can unwind at. */
  unwindImports: string[];
  /** Whether the module calls stasis.poll at safe points in loops. */
  poll: boolean;
  /** Export name of the shadow stack pointer global, if any. */
  stackPointer: string | null;
  /** The largest frame the module can put in the asyncify buffer. */
  maxFrameBytes: number;
}

export interface SnapshotMeta {
  /** Program name (--name, default: module file name without .wasm). */
  name: string;
  /** 1 for the first checkpoint of a launch, then 2, 3, ... (continues across restarts). */
  generation: number;
  /** ISO time the state was captured. */
  createdAt: string;
  /** Milliseconds the program was paused to capture it. */
  pauseMs: number;
  /** Where and what ran: informational. */
  host: { hostname: string; platform: string; arch: string; node: string; pid: number };
}

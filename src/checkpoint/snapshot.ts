// What a checkpoint captures, as data. The engine produces a Snapshot; the image store
// (src/image/) writes and reads it; a restart rebuilds a running program from it.
import type { WasiState } from '../wasi/state.js';

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
  meta: SnapshotMeta;
}

export interface EngineInfo {
  /** Imports the module can unwind at. */
  unwindImports: string[];
  /** Whether the module calls stasis.poll at safe points in loops. */
  poll: boolean;
  /** Export name of the shadow stack pointer global, if any. */
  stackPointer: string | null;
  /** Lowest address of the shadow stack region. */
  stackLow: number;
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

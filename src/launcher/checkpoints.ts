// Taking checkpoints of a supervised program, step by step: ask the guest for its state at its
// next safe point, capture its open files while it waits, let it go on, write the image.
import { hostname } from 'node:os';
import { rmSync } from 'node:fs';
import { WASM_PAGE, type CapturedState } from '../engine/protocol.js';
import { captureFiles, type CopyCache, type FileCapture } from '../files/capture.js';
import { copyGuarded, type FileGuard } from '../files/guard.js';
import { emit, type StasisPlugin } from '../files/plugin.js';
import { physicalPath, type PlanOptions } from '../files/restore.js';
import { listImages, writeImage, type Codec } from '../image/index.js';
import { pruneJournals } from '../files/journal.js';
import type { EngineInfo, FilePolicyOptions, Snapshot } from '../image/schema.js';
import { CaptureBuffer } from './capture-buffer.js';
import { pauseForTest } from './signals.js';

export interface CheckpointResult {
  /** The image directory written. */
  image: string;
  generation: number;
  /** How long the program was paused (unwind, capture, rewind). */
  pauseMs: number;
  /** Request to captured state (the guest reached a safe point and copied its memory). */
  latencyMs: number;
  /** Request to durable image. */
  ms: number;
  /** Bytes this checkpoint added to the checkpoint directory. */
  bytesWritten: number;
  /** Memory chunks written, reused from earlier images, omitted as all-zero. */
  chunks: { written: number; reused: number; zero: number };
  /** Open files saved with the image, and how many of them were copied for it (the others were
   *  unchanged since an earlier copy, which the image shares). */
  files: { saved: number; copied: number };
}

/** Runs steps one at a time, in the order asked: a step waits for the ones before it, whether
 *  they succeed or fail. */
export class CheckpointQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(step: () => Promise<T>): Promise<T> {
    const next = this.tail.then(step);
    this.tail = next.catch(() => {});
    return next;
  }
}

/** The guest as the checkpoints see it (a GuestSession). */
export interface CapturableGuest {
  /** trackWrites: a stop is expected soon (memory-copy.ts). */
  capture(stop: boolean, trackWrites: boolean): Promise<CapturedState>;
  /** Lets the paused guest go on, guarding the files still being copied. */
  release(guards: FileGuard[], generation: number): void;
  memoryBytes(): number;
  giveBuffer(memory: Uint8Array, copyId: number | null): void;
}

/** What is constant across the checkpoints of one run. */
export interface CheckpointSetting {
  name: string;
  ckptDir: string;
  moduleBytes: Uint8Array;
  moduleHash: string;
  instrumentedHash: string;
  engine: Required<EngineInfo>;
  policy: FilePolicyOptions;
  /** The built-in file policy, then --plugin ones. */
  plugins: StasisPlugin[];
  /** Where things are: the preopens as the program's state names them, and how they moved. */
  where: PlanOptions;
  keep?: number;
  compress?: Codec;
}

type Files = FileCapture & { copied: Promise<unknown> };

export class Checkpoints {
  /** The latest generation in the checkpoint directory. */
  generation: number;
  private readonly queue = new CheckpointQueue();
  private readonly buffer: CaptureBuffer;
  /** The generation whose memory the guest's next change detection is relative to. */
  private base: number | null = null;
  /** Copies of saved files by identity, to skip files unchanged since their last copy. */
  private readonly copies: CopyCache;
  /** A stop is expected soon (expectStop): captures have the guest's writes tracked. */
  private stopExpected = false;

  constructor(
    private readonly guest: CapturableGuest,
    private readonly s: CheckpointSetting,
    generation: number,
    /** For a restart: saved files it reopened identical to their copies (filled when its files
     *  are put in place, before any checkpoint; kept up to date from then on). */
    copies: CopyCache = new Map(),
  ) {
    this.generation = generation;
    this.copies = copies;
    this.buffer = new CaptureBuffer(guest);
  }

  /**
   * A stop is expected soon (a scheduler's warning came): from the next capture on, the guest
   * has the kernel track the pages it writes, so that the capture before the stop looks at
   * those only. Not before: each first write to a tracked page costs the program a fault.
   */
  expectStop(): void {
    this.stopExpected = true;
  }

  /** Whether a checkpoint now would find its capture buffer ready. */
  captureReady(): boolean {
    return this.buffer.ready();
  }

  /** Takes a checkpoint (after any in progress); with stopAfter the program does nothing more. */
  take(stopAfter = false): Promise<CheckpointResult> {
    return this.queue.run(async () => {
      const event = { name: this.s.name, ckptDir: this.s.ckptDir };
      await emit(this.s.plugins, 'beforeCheckpoint', event);
      const t0 = performance.now();
      if (await this.buffer.handOver()) this.base = null; // a fresh buffer: nothing to compare with
      const beforeStop = !stopAfter && this.stopExpected;
      const captured = await this.guest.capture(stopAfter, beforeStop);
      const latencyMs = performance.now() - t0;
      const done = await this.persist(captured, await this.captureFiles(captured), t0, latencyMs, beforeStop);
      await emit(this.s.plugins, 'afterCheckpoint', { ...event, image: done.image, generation: done.generation, resumed: !stopAfter });
      return done;
    });
  }

  /** Saves a capture the guest made by itself (--checkpoint-at-call). */
  saveUnrequested(captured: CapturedState): Promise<CheckpointResult> {
    return this.queue.run(async () => this.persist(captured, await this.captureFiles(captured), performance.now(), 0));
  }

  /** Stops preparing capture buffers (the program has ended). */
  dispose(): void {
    this.buffer.dispose();
  }

  /** The file side of a capture, while the guest waits; then it goes on. */
  private async captureFiles(captured: CapturedState): Promise<Files> {
    const from = performance.now();
    let files: FileCapture | undefined;
    try {
      files = await captureFiles(captured, {
        ckptDir: this.s.ckptDir, plugins: this.s.plugins, cache: this.copies, named: this.s.where.saved,
        physical: (loc) => physicalPath(this.s.where, loc),
      });
      // Big files are copied from here on, while the program goes on (files/guard.ts).
      const copied = Promise.all(files.guards.map(copyGuarded));
      copied.catch(() => {}); // persist awaits it; a failure is reported there
      return { ...files, copied };
    } catch (e) {
      // The buffer goes back holding this capture, which no image has: the next capture's
      // changed pages are not relative to any image.
      this.base = null;
      this.buffer.giveBack(captured.memory, captured.copyId);
      throw e;
    } finally {
      // Checkpoints are taken one at a time: this capture is saved as the next generation.
      this.guest.release(files?.guards ?? [], this.generation + 1);
      captured.pauseMs += performance.now() - from; // the program waited for its files too
    }
  }

  /**
   * Writes the image; the capture's buffer then goes back to the guest. Before a stop (after a
   * scheduler's warning), changed chunks are stored whole, with no pages carried over from
   * earlier images: the stop's image then writes only the pages changed after this one.
   */
  private async persist(captured: CapturedState, files: Files, t0: number, latencyMs: number, beforeStop = false): Promise<CheckpointResult> {
    const snapshot = this.snapshot(captured, files, ++this.generation);
    const pages = captured.dirtyPages;
    const base = this.base;
    const dirty = pages !== null && base !== null
      ? { base, pages: !beforeStop, isDirty: (off: number, len: number) => pages.subarray(Math.floor(off / WASM_PAGE), Math.ceil((off + len) / WASM_PAGE)).includes(1) }
      : undefined;
    this.base = null;
    try {
      await pauseForTest('checkpoint');
      await files.copied;
      const ref = await writeImage(this.s.ckptDir, snapshot, {
        moduleBytes: this.s.moduleBytes, stagedFiles: files.staged,
        ...(this.s.keep !== undefined && { keep: this.s.keep }),
        ...(this.s.compress !== undefined && { compress: this.s.compress }),
        ...(dirty !== undefined && { dirty }),
      });
      this.base = ref.generation;
      // --keep pruned the oldest images: the journals only they needed go too.
      if (this.s.keep !== undefined) pruneJournals(this.s.ckptDir, Math.min(...(await listImages(this.s.ckptDir)).map((i) => i.generation)));
      for (const [record, r] of files.remember) {
        this.copies.set(r.key, { size: r.st.size, mtimeNs: r.st.mtimeNs, ctimeNs: r.st.ctimeNs, copiedAt: r.copiedAt, copy: record.copy! });
      }
      return {
        image: ref.path, generation: ref.generation, pauseMs: captured.pauseMs, latencyMs,
        ms: performance.now() - t0, bytesWritten: ref.bytesWritten, chunks: ref.chunks,
        files: { saved: files.records.filter((r) => r.treatment === 'save').length, copied: files.staged.size },
      };
    } finally {
      this.buffer.giveBack(captured.memory, captured.copyId);
      for (const staged of files.staged.values()) rmSync(staged, { force: true }); // published ones are gone already
    }
  }

  private snapshot(c: CapturedState, files: FileCapture, generation: number): Snapshot {
    const s = this.s;
    return {
      moduleHash: s.moduleHash, instrumentedHash: s.instrumentedHash,
      memory: c.memory, globals: c.globals, asyncifyData: c.asyncifyData, engine: s.engine,
      // The preopens as the program's state names them, not where --path-map put them.
      wasi: { ...c.wasi, preopens: s.where.saved.map((p) => ({ ...p })) },
      monotonicNs: c.monotonicNs, stdinPending: c.stdinPending,
      stdinReceived: c.stdinReceived, files: files.records, filePolicy: s.policy,
      meta: {
        name: s.name, generation, createdAt: new Date().toISOString(), pauseMs: c.pauseMs,
        host: { hostname: hostname(), platform: process.platform, arch: process.arch, node: process.version, pid: process.pid },
      },
    };
  }
}

// The optional native addon (native/, built at install time by
// scripts/build-native.mjs), and what Stasis does without it.
//
// Nanosecond-exact file timestamps: Node's fs.utimes/futimes/lutimes take
// seconds as doubles and libuv truncates them to whole microseconds, and they
// always set both times. WASI's fd_filestat_set_times / path_filestat_set_times
// need exact nanoseconds and per-field "leave unchanged" / "now"; the addon
// calls futimens/utimensat directly. Without it we fall back to the fs
// functions: times are then accurate to within 0.5 µs and a "leave unchanged"
// time is re-written from its current value (so it, too, is rounded to the µs).
//
// File I/O: the addon's iovecIo moves an fd_read/fd_write's iovecs in one
// readv/writev straight into/out of wasm memory (native/io.c); without it,
// fds.ts loops over the iovecs with fs.readSync/writeSync.
//
// The launcher's process (native/process.c): an exit that does not wait for V8's background
// compilations, and huge pages for its capture buffer; without them, process.exit and 4 KiB pages.
//
// The pages written since a capture (native/dirty.c, Linux >= 6.7): without them (or where the
// kernel refuses), a capture compares the whole memory with the previous one.
import { createRequire } from 'node:module';
import { existsSync, fstatSync, futimesSync, lstatSync, lutimesSync, statSync, utimesSync, type BigIntStats } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';

/** A time to set: nanoseconds since the epoch, null = leave unchanged, 'now'. */
export type TimeSpec = bigint | null | 'now';

/** The addon's raw interface (see native/utimens.c). */
interface Addon {
  futimens(fd: number, atimeNs: bigint, mtimeNs: bigint, flags: number): void;
  utimensat(
    path: string | Buffer,
    atimeNs: bigint,
    mtimeNs: bigint,
    flags: number,
    nofollow: boolean,
  ): void;
  /** Bytes moved, or -errno (see native/io.c). Absent from addons built before it. */
  iovecIo?: (fd: number, memory: ArrayBuffer, iovs: number, n: number, pos: number, write: boolean) => number;
  /** Bytes copied by copy_file_range, or -errno if none (see native/io.c). Absent from older addons. */
  copyRange?: (fdIn: number, posIn: number, fdOut: number, posOut: number, len: number) => number;
  /** A file window mapped shared, or -errno (native/mapped.c). Absent from older addons. */
  mapWindow?: (fd: number, offset: number, length: number) => ArrayBuffer | number;
  unmapWindow?: (window: ArrayBuffer) => void;
  /** Operations confined beneath a directory fd (native/beneath.c). Absent from older addons. */
  openBeneath?: (dirfd: number, path: string, flags: number, mode: number) => number;
  statBeneath: (dirfd: number, path: string, out: BigInt64Array) => number;
  mkdirBeneath: (dirfd: number, path: string, mode: number) => number;
  unlinkBeneath: (dirfd: number, path: string, removeDir: boolean) => number;
  symlinkBeneath: (target: string, dirfd: number, path: string) => number;
  readlinkBeneath: (dirfd: number, path: string) => Buffer | number;
  renameBeneath: (fromfd: number, from: string, tofd: number, to: string) => number;
  /** renameat2 RENAME_NOREPLACE. Absent from older addons. */
  renameNoReplaceBeneath?: (fromfd: number, from: string, tofd: number, to: string) => number;
  linkBeneath: (fromfd: number, from: string, tofd: number, to: string) => number;
  utimensBeneath: (dirfd: number, path: string, atimeNs: bigint, mtimeNs: bigint, flags: number) => number;
  openPath: (path: string, flags: number) => number;
  closeFd: (fd: number) => number;
  openat2Used: () => boolean;
  /** _exit (native/process.c). Absent from older addons. */
  exitNow?: (status: number) => never;
  /** madvise(MADV_HUGEPAGE) on a buffer: 0 or -errno (native/process.c). Absent from older addons. */
  adviseHugePages?: (buffer: Uint8Array) => number;
  /** Write tracking (native/dirty.c). Absent from older addons. */
  trackWrites?: (memory: ArrayBuffer) => number;
  writtenPages?: (handle: number, memory: ArrayBuffer, out: Uint8Array, unit: number) => number;
  untrackWrites?: (handle: number) => number;
  /** A program on the main thread (native/inline.c). Absent from older addons. */
  pollIn?: (fd: number, timeoutMs: number) => number;
  wakePollIn?: () => void;
  exitOnSignals?: (pairs: number[], writeBehind?: Int32Array) => void;
  /** Signals noted natively and handed to another thread's callback (native/inline.c). */
  forwardSignals?: (signals: number[]) => void;
  onSignals?: (callback: (signal: number) => void) => void;
  /** A listening Unix socket's fd, or -errno (native/inline.c). */
  listenUnix?: (path: string) => number;
}

/** The addon's confined operations (see native/beneath.c). */
export type BeneathOps = Required<Pick<Addon, 'openBeneath'>> & Omit<Addon, 'futimens' | 'utimensat' | 'iovecIo' | 'openBeneath' | 'mapWindow' | 'unmapWindow' | 'exitNow' | 'adviseHugePages' | 'trackWrites' | 'writtenPages' | 'untrackWrites' | 'pollIn' | 'wakePollIn' | 'exitOnSignals' | 'forwardSignals' | 'onSignals' | 'listenUnix'>;

// Flag encoding shared with native/utimens.c.
const ATIME_OMIT = 1;
const ATIME_NOW = 2;
const MTIME_OMIT = 4;
const MTIME_NOW = 8;

// Compiled to dist/src/wasi/native.js, so the repo root is three levels up;
// the two-levels-up candidate covers running the .ts source directly.
const CANDIDATES = [
  '../../../native/build/stasis_native.node',
  '../../../native/build/Release/stasis_native.node',
  '../../native/build/stasis_native.node',
];

let loadError: string | null = null;

function loadAddon(): Addon | null {
  if (process.env.STASIS_NO_NATIVE) {
    loadError = 'disabled by STASIS_NO_NATIVE';
    return null;
  }
  const require = createRequire(import.meta.url);
  for (const rel of CANDIDATES) {
    const file = new URL(rel, import.meta.url);
    if (!existsSync(file)) continue;
    try {
      const m = require(fileURLToPath(file)) as Partial<Addon>;
      if (typeof m.futimens === 'function' && typeof m.utimensat === 'function') {
        return m as Addon;
      }
      loadError = `${rel}: missing exports`;
    } catch (e) {
      loadError = `${rel}: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  loadError ??= 'native/build/stasis_native.node not built';
  return null;
}

const addon: Addon | null = loadAddon();

/** True when the native addon is in use (nanosecond-exact timestamps). */
export const nativeTimestamps: boolean = addon !== null;

/** The addon's direct file I/O, or null (see native/io.c). */
export const nativeIovecIo: NonNullable<Addon['iovecIo']> | null =
  typeof addon?.iovecIo === 'function' ? addon.iovecIo : null;

/** The kernel's copy between two files (copy_file_range), or null. */
export const nativeCopyRange: NonNullable<Addon['copyRange']> | null =
  typeof addon?.copyRange === 'function' ? addon.copyRange : null;

/** Shared file windows (native/mapped.c), or null. */
export const nativeWindows: Required<Pick<Addon, 'mapWindow' | 'unmapWindow'>> | null =
  typeof addon?.mapWindow === 'function' && typeof addon.unmapWindow === 'function' ? (addon as Required<Pick<Addon, 'mapWindow' | 'unmapWindow'>>) : null;

/** The addon's operations confined beneath a directory fd, or null (see src/wasi/beneath.ts). */
export const nativeBeneath: BeneathOps | null = typeof addon?.openBeneath === 'function' ? (addon as BeneathOps) : null;

/** Ends the process at once (_exit), without Node's teardown; or null (see native/process.c). */
export const nativeExitNow: NonNullable<Addon['exitNow']> | null =
  typeof addon?.exitNow === 'function' ? addon.exitNow : null;

/** Asks the kernel for huge pages under a buffer not touched yet; or null (see native/process.c). */
export const nativeAdviseHugePages: NonNullable<Addon['adviseHugePages']> | null =
  typeof addon?.adviseHugePages === 'function' ? addon.adviseHugePages : null;

/** The kernel's record of the pages written to a buffer, or null (see native/dirty.c). Each
 *  function returns -errno where the kernel lacks or refuses it. */
export const nativeWriteTracking: Required<Pick<Addon, 'trackWrites' | 'writtenPages' | 'untrackWrites'>> | null =
  typeof addon?.trackWrites === 'function' && typeof addon.writtenPages === 'function' && typeof addon.untrackWrites === 'function'
    ? { trackWrites: addon.trackWrites, writtenPages: addon.writtenPages, untrackWrites: addon.untrackWrites }
    : null;

/** What running a program on the main thread needs (native/inline.c), or null. */
export const nativeInline: Required<Pick<Addon, 'pollIn' | 'wakePollIn' | 'exitOnSignals' | 'forwardSignals' | 'onSignals' | 'listenUnix'>> | null =
  typeof addon?.pollIn === 'function' && typeof addon.wakePollIn === 'function' && typeof addon.exitOnSignals === 'function' && typeof addon.forwardSignals === 'function'
    && typeof addon.onSignals === 'function' && typeof addon.listenUnix === 'function'
    ? { pollIn: addon.pollIn, wakePollIn: addon.wakePollIn, exitOnSignals: addon.exitOnSignals, forwardSignals: addon.forwardSignals, onSignals: addon.onSignals, listenUnix: addon.listenUnix }
    : null;

/** Why the addon is not in use (null when it is). For diagnostics. */
export const nativeLoadError: string | null = addon ? null : loadError;

/** The time flags of native/utimens.c and native/beneath.c for a pair of times. */
export function timeFlags(atime: TimeSpec, mtime: TimeSpec): number {
  let f = 0;
  if (atime === null) f |= ATIME_OMIT;
  else if (atime === 'now') f |= ATIME_NOW;
  if (mtime === null) f |= MTIME_OMIT;
  else if (mtime === 'now') f |= MTIME_NOW;
  return f;
}

/** A time as the addon takes it (ignored when its flag says omit or now). */
export const timeNs = (t: TimeSpec): bigint => (typeof t === 'bigint' ? t : 0n);

/** Native errors carry code 'UNKNOWN' for errnos missing from the C name table. */
function fixCode(e: unknown): unknown {
  const err = e as NodeJS.ErrnoException;
  if (err && err.code === 'UNKNOWN' && typeof err.errno === 'number') {
    try {
      err.code = getSystemErrorName(err.errno);
    } catch {
      /* keep UNKNOWN */
    }
  }
  return err;
}

// ---- fallback (fs.*utimes*) -------------------------------------------------

const floorDiv = (a: bigint, b: bigint): bigint => {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
};

/**
 * Nanoseconds -> seconds as a Number for fs.utimes. libuv converts the double
 * to a timespec and truncates to whole microseconds, and a double near the
 * present epoch only resolves ~240 ns. So round to the nearest µs in exact
 * bigint arithmetic and aim at the middle of that µs: the double's rounding
 * error can't then push libuv's truncation into a neighbouring µs.
 * Result: within 0.5 µs of the requested time.
 */
export function nsToSeconds(t: bigint): number {
  const us = floorDiv(t + 500n, 1000n);
  const sec = floorDiv(us, 1_000_000n);
  const frac = us - sec * 1_000_000n;
  return Number(sec) + (Number(frac) + 0.5) / 1e6;
}

function fallbackTime(t: TimeSpec, current: () => bigint): number {
  if (t === 'now') return Date.now() / 1000;
  const v = t === null ? current() : t;
  if (v < 0n) {
    // Node's fs.utimes treats negative times as "now"; refuse instead.
    const err = new Error('EINVAL: pre-1970 timestamps need the native addon, utimes') as NodeJS.ErrnoException;
    err.code = 'EINVAL';
    err.errno = -22;
    err.syscall = 'utimes';
    throw err;
  }
  return nsToSeconds(v);
}

function fallback(
  atime: TimeSpec,
  mtime: TimeSpec,
  stat: () => BigIntStats,
  set: (a: number, m: number) => void,
): void {
  let st: BigIntStats | undefined;
  const cur = (): BigIntStats => (st ??= stat());
  const a = fallbackTime(atime, () => cur().atimeNs);
  const m = fallbackTime(mtime, () => cur().mtimeNs);
  set(a, m);
}

// ---- public API -------------------------------------------------------------

/** Sets an open file's access/modification times (futimens). */
export function setTimesFd(fd: number, atimeNs: TimeSpec, mtimeNs: TimeSpec): void {
  if (atimeNs === null && mtimeNs === null) {
    fstatSync(fd); // nothing to change, but still report a bad fd
    return;
  }
  if (addon) {
    try {
      addon.futimens(fd, timeNs(atimeNs), timeNs(mtimeNs), timeFlags(atimeNs, mtimeNs));
    } catch (e) {
      throw fixCode(e);
    }
    return;
  }
  fallback(
    atimeNs,
    mtimeNs,
    () => fstatSync(fd, { bigint: true }),
    (a, m) => futimesSync(fd, a, m),
  );
}

/**
 * Sets a path's access/modification times (utimensat relative to the cwd).
 * followSymlinks=false changes a symlink's own times (AT_SYMLINK_NOFOLLOW).
 */
export function setTimesPath(
  path: string | Buffer,
  atimeNs: TimeSpec,
  mtimeNs: TimeSpec,
  followSymlinks: boolean,
): void {
  if (atimeNs === null && mtimeNs === null) {
    // Nothing to change, but report a missing path (Linux utimensat with both
    // UTIME_OMIT succeeds even when the file does not exist).
    if (followSymlinks) statSync(path);
    else lstatSync(path);
    return;
  }
  if (addon) {
    try {
      addon.utimensat(path, timeNs(atimeNs), timeNs(mtimeNs), timeFlags(atimeNs, mtimeNs), !followSymlinks);
    } catch (e) {
      throw fixCode(e);
    }
    return;
  }
  fallback(
    atimeNs,
    mtimeNs,
    () => (followSymlinks ? statSync(path, { bigint: true }) : lstatSync(path, { bigint: true })),
    (a, m) => (followSymlinks ? utimesSync(path, a, m) : lutimesSync(path, a, m)),
  );
}

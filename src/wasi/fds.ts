// One class per kind of file descriptor, all with the same methods; the syscall layer
// (host.ts) checks rights and dispatches to them instead of switching on the kind.
// Each fd holds its plain state (offset, flags, rights, location) next to its live host handle,
// and state() returns the former as data.
import { existsSync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, readSync, readdirSync, readlinkSync, writeSync, type BigIntStats, type Stats } from 'node:fs';
import { Errno, Fdflags, Filetype, RIGHTS_FILE, Whence } from './constants.js';
import { WasiError } from './errno.js';
import { pause } from './interrupt.js';
import type { GuestMemory } from './memory.js';
import type { FileChangeHooks } from './changes.js';
import type { Mounts } from './paths.js';
import type { DirFdState, FdState, FileFdState, Location, StdioFdState } from './state.js';
import { closeFd, openHostDir } from './beneath.js';
import { nativeIovecIo, setTimesFd, type TimeSpec } from './native.js';
import { getSystemErrorName } from 'node:util';
import type { StdinSource } from './stdin.js';
import type { WriteBehind } from './writebehind.js';

export abstract class Fd {
  constructor(
    public rightsBase: number,
    public rightsInheriting: number,
    public fdflags: number,
  ) {}

  abstract readonly filetype: number;
  abstract state(fd: number): FdState;
  /** Releases the live host handle. */
  abstract close(): void;
  /** Host metadata, for fd_filestat_get. */
  abstract stat(): BigIntStats;

  /** Reads into the guest's iovecs; returns bytes read. */
  read(_mem: GuestMemory, _iovs: number, _n: number): number {
    throw new WasiError(Errno.BADF);
  }
  /** Writes the guest's ciovecs; returns bytes written. */
  write(_mem: GuestMemory, _iovs: number, _n: number): number {
    throw new WasiError(Errno.BADF);
  }
  pread(_mem: GuestMemory, _iovs: number, _n: number, _pos: number): number {
    throw new WasiError(Errno.SPIPE);
  }
  pwrite(_mem: GuestMemory, _iovs: number, _n: number, _pos: number): number {
    throw new WasiError(Errno.SPIPE);
  }
  seek(_delta: number, _whence: number): number {
    throw new WasiError(Errno.SPIPE);
  }
  setSize(_size: number): void {
    throw new WasiError(Errno.BADF);
  }
  allocate(_offset: number, _len: number): void {
    throw new WasiError(Errno.BADF);
  }
  setTimes(_atime: TimeSpec, _mtime: TimeSpec): void {
    throw new WasiError(Errno.BADF);
  }
  sync(_dataOnly: boolean): void {}
  /** Bytes that a read would return without blocking, for poll_oneoff (0 = not ready). */
  readReady(_timeoutMs: number): { ready: boolean; nbytes: number } {
    return { ready: true, nbytes: 0 };
  }
}

/** A copy of the iovecs of one call (pointer, length pairs), reused up to a size. */
let scratch = new Uint32Array(128);

/**
 * Reads n iovecs at iovs into a copy, checking that each lies in memory (EFAULT before a byte
 * moves; a read may then overwrite the guest's array without redirecting later entries).
 */
function decodeIovecs(mem: GuestMemory, iovs: number, n: number): Uint32Array {
  mem.check(iovs, n * 8);
  let out = scratch;
  if (out.length < n * 2) {
    out = new Uint32Array(n * 2);
    if (n <= 32768) scratch = out; // a bigger one is not kept
  }
  const view = mem.view;
  for (let i = 0; i < n; i++) {
    const ptr = view.getUint32(iovs + i * 8, true);
    const len = view.getUint32(iovs + i * 8 + 4, true);
    mem.check(ptr, len);
    out[2 * i] = ptr;
    out[2 * i + 1] = len;
  }
  return out;
}

/**
 * Positional I/O between the guest's iovecs and a host fd, starting at pos (null = the host's
 * own file position). This is the fd_read/fd_write hot path: with the native addon one
 * readv/writev; without (or for a shared memory), a plain loop of fs calls. Either way every
 * iovec is checked before a byte moves (EFAULT), and a copy of the array is used (a read may
 * overwrite the guest's); it stops at the first short transfer, and bytes moved before an
 * error are returned rather than lost.
 */
function iovecIo(
  mem: GuestMemory, iovs: number, n: number, handle: number, pos: number | null, write: boolean,
): number {
  if (nativeIovecIo !== null && mem.plain !== null) {
    const r = nativeIovecIo(handle, mem.plain, iovs, n, pos ?? -1, write);
    if (r < 0) throw Object.assign(new Error(`${write ? 'write' : 'read'} failed`), { code: getSystemErrorName(r) });
    return r;
  }
  const decoded = decodeIovecs(mem, iovs, n);
  const bytes = mem.bytes;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const ptr = decoded[2 * i]!;
    const len = decoded[2 * i + 1]!;
    if (len === 0) continue;
    let done: number;
    try {
      done = write ? writeSync(handle, bytes, ptr, len, pos) : readSync(handle, bytes, ptr, len, pos);
    } catch (e) {
      if (total > 0) break;
      throw e;
    }
    total += done;
    if (pos !== null) pos += done;
    if (done < len) break;
  }
  return total;
}

/** Total length of n iovecs. */
function iovecBytes(mem: GuestMemory, iovs: number, n: number): number {
  let total = 0;
  for (let i = 0; i < n; i++) total += mem.view.getUint32(iovs + i * 8 + 4, true);
  return total;
}

export function filetypeOf(st: Pick<Stats, 'isFile' | 'isDirectory' | 'isSymbolicLink' | 'isCharacterDevice' | 'isBlockDevice' | 'isSocket'>): number {
  if (st.isFile()) return Filetype.REGULAR_FILE;
  if (st.isDirectory()) return Filetype.DIRECTORY;
  if (st.isSymbolicLink()) return Filetype.SYMBOLIC_LINK;
  if (st.isCharacterDevice()) return Filetype.CHARACTER_DEVICE;
  if (st.isBlockDevice()) return Filetype.BLOCK_DEVICE;
  if (st.isSocket()) return Filetype.SOCKET_STREAM;
  return Filetype.UNKNOWN;
}

/**
 * A file opened by path: usually a regular file; rights keep what was asked for at open, and
 * the type is looked up lazily (an fd opened without O_DIRECTORY may turn out a directory).
 */
export class FileFd extends Fd {
  private type: number | undefined;

  constructor(
    private readonly writeBehind: WriteBehind,
    private readonly changes: FileChangeHooks,
    public handle: number,
    /** The host path it was opened by (may go stale; location is what is kept). */
    public readonly openedAt: string,
    public location: Location,
    public readonly access: 'r' | 'w' | 'rw',
    filetype: number | undefined,
    rightsBase: number,
    rightsInheriting: number,
    fdflags: number,
    public offset = 0,
    /** Opened with O_CREAT|O_EXCL: the file is new. */
    created = false,
  ) {
    super(rightsBase, rightsInheriting, fdflags);
    this.type = filetype;
    if (changes.active) changes.opened?.(handle, openedAt, created);
  }

  get filetype(): number {
    this.type ??= filetypeOf(fstatSync(this.handle));
    if (this.type !== Filetype.DIRECTORY) this.rightsBase &= RIGHTS_FILE;
    return this.type;
  }

  /** Regular files take positional I/O at our offset; pipes and terminals opened by path don't. */
  private get seekable(): boolean {
    // Kept once known: this is asked on every read and write.
    if (this.seekableKnown === undefined) {
      const t = this.filetype;
      this.seekableKnown = t === Filetype.REGULAR_FILE || t === Filetype.BLOCK_DEVICE;
    }
    return this.seekableKnown;
  }
  private seekableKnown: boolean | undefined;

  state(fd: number): FileFdState {
    return {
      kind: 'file', fd, location: { ...this.location }, access: this.access,
      offset: this.offset, filetype: this.filetype, rightsBase: this.rightsBase,
      rightsInheriting: this.rightsInheriting, fdflags: this.fdflags,
    };
  }

  close(): void {
    if (this.changes.active) this.changes.closed?.(this.handle);
    closeFd(this.handle);
    this.writeBehind.takeError(this.handle);
  }

  stat(): BigIntStats {
    return fstatSync(this.handle, { bigint: true });
  }

  override read(mem: GuestMemory, iovs: number, n: number): number {
    if (!this.seekable) return iovecIo(mem, iovs, n, this.handle, null, false);
    const got = iovecIo(mem, iovs, n, this.handle, this.offset, false);
    this.offset += got;
    return got;
  }

  override pread(mem: GuestMemory, iovs: number, n: number, pos: number): number {
    return iovecIo(mem, iovs, n, this.handle, pos, false);
  }

  override write(mem: GuestMemory, iovs: number, n: number): number {
    const wb = this.writeBehind;
    wb.takeError(this.handle);
    if (!this.seekable) return iovecIo(mem, iovs, n, this.handle, null, true);
    if (this.fdflags === 0) {
      if (this.changes.active) this.changes.beforeWrite(this.handle, this.offset, iovecBytes(mem, iovs, n));
      // Small writes at the current offset are gathered (see writebehind.ts); as in
      // iovecIo, a bad iovec is EFAULT before anything is taken.
      const v = decodeIovecs(mem, iovs, n);
      let total = 0;
      for (let i = 0; i < n; i++) {
        const ptr = v[2 * i]!;
        const len = v[2 * i + 1]!;
        if (len === 0) continue;
        if (!wb.add(this.handle, mem.bytes, ptr, len, this.offset + total)) {
          wb.flush();
          try {
            total += iovecIo(mem, iovs + i * 8, n - i, this.handle, this.offset + total, true);
          } catch (e) {
            if (total === 0) throw e; // else the bytes gathered so far count, as in iovecIo
          }
          break;
        }
        total += len;
      }
      this.offset += total;
      return total;
    }
    // Append mode is kept here, not in the host handle, so that it is plain state.
    if (this.fdflags & Fdflags.APPEND) this.offset = Number(this.stat().size);
    const put = this.pwrite(mem, iovs, n, this.offset); // (listeners are told there)
    this.offset += put;
    return put;
  }

  override pwrite(mem: GuestMemory, iovs: number, n: number, pos: number): number {
    if (this.changes.active) this.changes.beforeWrite(this.handle, pos, iovecBytes(mem, iovs, n));
    const sync = this.fdflags & (Fdflags.SYNC | Fdflags.DSYNC | Fdflags.RSYNC);
    const put = iovecIo(mem, iovs, n, this.handle, pos, true);
    if (sync) this.sync((sync & Fdflags.SYNC) === 0);
    return put;
  }

  override seek(delta: number, whence: number): number {
    let base: number;
    if (whence === Whence.SET) base = 0;
    else if (whence === Whence.CUR) base = this.offset;
    else if (whence === Whence.END) base = Number(this.stat().size);
    else throw new WasiError(Errno.INVAL);
    const next = base + delta;
    if (next < 0 || !Number.isSafeInteger(next)) throw new WasiError(Errno.INVAL);
    this.offset = next;
    return next;
  }

  override setSize(size: number): void {
    if (this.changes.active) this.changes.beforeTruncate(this.handle, size);
    ftruncateSync(this.handle, size);
  }

  override allocate(offset: number, len: number): void {
    // Node has no posix_fallocate: extending the file gives the same visible result.
    const end = offset + len;
    if (end <= Number(this.stat().size)) return;
    if (this.changes.active) this.changes.beforeTruncate(this.handle, end);
    ftruncateSync(this.handle, end);
  }

  override setTimes(atime: TimeSpec, mtime: TimeSpec): void {
    if (this.changes.active) this.changes.beforeSetTimes?.(this.handle);
    setTimesFd(this.handle, atime, mtime);
  }

  override sync(dataOnly: boolean): void {
    this.writeBehind.takeError(this.handle);
    if (dataOnly) fdatasyncSync(this.handle);
    else fsyncSync(this.handle);
  }

  override readReady(): { ready: boolean; nbytes: number } {
    const size = Number(this.stat().size);
    return { ready: true, nbytes: Math.max(0, size - this.offset) };
  }
}

/** On Linux, /proc/self/fd/N names the very directory a handle was opened on. */
const PROC_FD = existsSync('/proc/self/fd') ? '/proc/self/fd/' : null;

/** A directory: an open host handle (its identity), and a readdir listing. */
export class DirFd extends Fd {
  readonly filetype = Filetype.DIRECTORY;
  /**
   * The host path guest paths are resolved under: the directory's real path, which is
   * cheaper for the kernel than /proc/self/fd/N. The host re-derives it from the handle
   * (refreshRoot) whenever the guest renames or removes something, so that a directory moved
   * away and replaced by a symlink cannot redirect this fd outside its sandbox.
   */
  root: string;
  /** Sorted entry names that readdir cookies index into; taken when a listing starts. */
  listing: string[] | null = null;
  /** Directories --path-map mounted below this one (see paths.ts). */
  mounts: Mounts = null;

  constructor(
    public readonly handle: number,
    openedAt: string,
    public location: Location,
    rightsBase: number,
    rightsInheriting: number,
    fdflags: number,
    /** For preopens: the guest-visible name reported by fd_prestat_dir_name. */
    public readonly preopenName?: string,
  ) {
    super(rightsBase, rightsInheriting, fdflags);
    this.root = openedAt;
  }

  /** Re-derives root from the handle; a deleted directory is then reached through /proc. */
  refreshRoot(): void {
    if (PROC_FD === null) return; // no way to ask the kernel; keep the path
    const link = PROC_FD + this.handle;
    const now = readlinkSync(link);
    this.root = now.startsWith('/') && !now.endsWith(' (deleted)') ? now : link;
  }

  /** Opens a host directory (for a preopen). */
  static open(host: string, location: Location, rightsBase: number, rightsInheriting: number, name?: string): DirFd {
    const handle = openHostDir(host);
    const d = new DirFd(handle, host, location, rightsBase, rightsInheriting, 0, name);
    d.refreshRoot(); // the real path: symlinks in what the user gave are resolved once
    return d;
  }

  state(fd: number): DirFdState {
    const s: DirFdState = {
      kind: 'dir', fd, location: { ...this.location }, listing: this.listing,
      rightsBase: this.rightsBase, rightsInheriting: this.rightsInheriting, fdflags: this.fdflags,
    };
    if (this.preopenName !== undefined) s.preopenName = this.preopenName;
    return s;
  }

  close(): void {
    closeFd(this.handle);
  }

  stat(): BigIntStats {
    return fstatSync(this.handle, { bigint: true });
  }

  override read(): number {
    throw new WasiError(Errno.ISDIR);
  }
  override write(): number {
    throw new WasiError(Errno.ISDIR);
  }
  override pread(): number {
    throw new WasiError(Errno.ISDIR);
  }
  override pwrite(): number {
    throw new WasiError(Errno.ISDIR);
  }
  override seek(): number {
    throw new WasiError(Errno.ISDIR);
  }
  override setSize(): void {
    throw new WasiError(Errno.ISDIR);
  }
  override allocate(): void {
    throw new WasiError(Errno.ISDIR);
  }
  override setTimes(atime: TimeSpec, mtime: TimeSpec): void {
    setTimesFd(this.handle, atime, mtime);
  }
  override sync(): void {
    fsyncSync(this.handle);
  }

  /**
   * The entries from cookie on, '.' and '..' first, then the names in sorted order, so a cookie
   * names the same entry as long as the directory is unchanged (even across a restart).
   */
  entries(cookie: number): string[] {
    if (cookie === 0 || this.listing === null) {
      this.listing = readdirSync(this.root).sort();
    }
    return ['.', '..', ...this.listing].slice(cookie);
  }
}

/** One of the process's standard streams (terminal, pipe, or a file the shell redirected). */
export class StdioFd extends Fd {
  constructor(
    public readonly stream: 0 | 1 | 2,
    public readonly filetype: number,
    rightsBase: number,
    rightsInheriting: number,
    fdflags: number,
    private readonly stdin: StdinSource | null,
  ) {
    super(rightsBase, rightsInheriting, fdflags);
  }

  state(fd: number): StdioFdState {
    return {
      kind: 'stdio', fd, stream: this.stream, filetype: this.filetype,
      rightsBase: this.rightsBase, rightsInheriting: this.rightsInheriting, fdflags: this.fdflags,
    };
  }

  close(): void {}

  stat(): BigIntStats {
    return fstatSync(this.stream, { bigint: true });
  }

  override read(mem: GuestMemory, iovs: number, n: number): number {
    if (this.stdin === null) throw new WasiError(Errno.BADF);
    const nonblock = (this.fdflags & Fdflags.NONBLOCK) !== 0;
    // Like read(2) on a pipe: fill iovecs from what is there, stop at the first short one.
    const v = decodeIovecs(mem, iovs, n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const ptr = v[2 * i]!;
      const len = v[2 * i + 1]!;
      if (len === 0) continue;
      const done = this.stdin.read(mem.bytes, ptr, len, nonblock && total === 0);
      total += done;
      if (done < len || this.stdin.available() === 0) break;
    }
    return total;
  }

  override write(mem: GuestMemory, iovs: number, n: number): number {
    if (this.stream === 0) throw new WasiError(Errno.BADF);
    const v = decodeIovecs(mem, iovs, n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      try {
        total += writeAll(this.stream, mem.bytes, v[2 * i]!, v[2 * i + 1]!);
      } catch (e) {
        if (total === 0) throw e; // else what was written counts, as for files
        break;
      }
    }
    return total;
  }

  override sync(dataOnly: boolean): void {
    try {
      if (dataOnly) fdatasyncSync(this.stream);
      else fsyncSync(this.stream);
    } catch (e) {
      // Terminals and pipes cannot be synced; there is nothing to make durable.
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
    }
  }

  override setTimes(atime: TimeSpec, mtime: TimeSpec): void {
    setTimesFd(this.stream, atime, mtime);
  }

  override readReady(timeoutMs: number): { ready: boolean; nbytes: number } {
    if (this.stdin === null) return { ready: true, nbytes: 0 };
    return this.stdin.ready(timeoutMs);
  }
}

/** Writes all of buf[ptr, ptr+len) to a stream, waiting out EAGAIN on non-blocking pipes. */
function writeAll(h: number, buf: Buffer, ptr: number, len: number): number {
  let done = 0;
  while (done < len) {
    try {
      done += writeSync(h, buf, ptr + done, len - done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') {
        if (done > 0) return done;
        throw e;
      }
      pause(1);
    }
  }
  return done;
}

// Small file-system helpers for durable, atomic publication.
// node:fs's callbacks, promisified, not node:fs/promises: loading that costs every command's
// start-up ~1.5 ms (and its allocations a collection of the young generation, sooner).
import { closeSync, constants, fstatSync, fsync, openSync, readFileSync, readSync, renameSync, rm, rmSync, unlinkSync, write, writeFileSync, writeSync, type Stats } from 'node:fs';
import { promisify } from 'node:util';
import { nodeCrypto } from './builtins.js';

/**
 * File times move in the kernel's coarse clock ticks: a write just after a look at a file can
 * leave its mtime and ctime as they were. Times are trusted to tell "unchanged since" only for
 * files whose ctime is older than the look by this much.
 */
const RACY_NS = 100_000_000n;

/** Wall-clock time in ns, the clock file times are in: take it before looking at a file. */
export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** Whether a file whose ctime is `ctimeNs` can be trusted unchanged since a look at it taken at
 *  `lookedAt` (nowNs) while its times stay the same: it had settled before the look. */
export function settledBefore(ctimeNs: bigint, lookedAt: bigint): boolean {
  return ctimeNs + RACY_NS < lookedAt;
}

export function sha256hex(data: Uint8Array): string {
  return nodeCrypto().createHash('sha256').update(data).digest('hex');
}

export function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

/** How a file that may come from elsewhere is read (see readRegularFile). */
export interface PlainRead {
  /** Refuse a symlink in the last component (ELOOP) instead of following it: an image's files. */
  noFollow?: boolean;
  /** Refuse a file larger than this many bytes (EFBIG) instead of reading it. */
  limit?: number;
}

/**
 * The contents of a file the user named (a module, a rules file) or an image holds, refusing
 * anything but a regular file: opened without blocking and checked on the handle, so a FIFO
 * or a device (which would hang or never end a read) is an error, not a hang. Errors carry a
 * `code`: the open's (ENOENT, EACCES, ELOOP...), EISDIR, ENOTREG for other kinds of file, EFBIG.
 */
export function readRegularFile(path: string, how: PlainRead = {}): Buffer {
  const fd = openRegularFile(path, how.noFollow === true);
  try {
    if (how.limit !== undefined && fstatSync(fd).size > how.limit) {
      throw Object.assign(new Error(`${path} is larger than ${how.limit} bytes`), { code: 'EFBIG' });
    }
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Checks that `path` is a regular file, as readRegularFile does, without reading it. */
export function checkRegularFile(path: string): void {
  closeSync(openRegularFile(path));
}

/** Opens a regular file for reading as readRegularFile does; the caller closes it. */
export function openRegularFile(path: string, noFollow = false): number {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (noFollow ? constants.O_NOFOLLOW : 0));
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  if (st.isFile()) return fd;
  closeSync(fd);
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a regular file';
  throw Object.assign(new Error(`${path} is ${kind}`), { code: st.isDirectory() ? 'EISDIR' : 'ENOTREG', kind });
}

/** Why a file named by the user could not be read, in a few words. */
export function unreadable(e: unknown): string {
  const err = e as NodeJS.ErrnoException & { kind?: string };
  if (err.kind !== undefined) return err.code === 'EISDIR' ? `it is ${err.kind}` : `it is ${err.kind}, not a regular file`;
  const known: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', ELOOP: 'it is a symbolic link', EFBIG: 'it is too large' };
  return known[err.code ?? ''] ?? String(err.code ?? err.message);
}

let tmpCount = 0;

/** A temporary name unique to this process and call (the pid, a count), and not one another
 *  process could guess (random; not node:crypto's, whose loading costs a launch tens of ms). */
export function tmpSuffix(): string {
  return `${process.pid}-${(tmpCount++).toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0')}`;
}

// Durable writes: the steps that wait for the disk (fsync) or move bulk data go to the thread
// pool, where they overlap each other and the caller's work; the rest (open, rename, small
// writes: microseconds each) are done in place, cheaper than a trip to the pool and back.

/** Writes up to this many bytes in place; more go to the thread pool. */
const SMALL_WRITE = 64 << 10;

const fsyncAsync = promisify(fsync);
const writeAsync = promisify(write);

/** fsync a directory so that entries created or renamed in it survive a crash. */
export async function fsyncDir(path: string): Promise<void> {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
    await fsyncAsync(fd);
  } catch (e) {
    // Some platforms (Windows) cannot open or fsync a directory; there is nothing more to do.
    const c = errno(e);
    if (c !== 'EISDIR' && c !== 'EPERM' && c !== 'EINVAL' && c !== 'EBADF' && c !== 'EACCES') throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** All of `data` written at `at` in the file `fd`. */
async function writeAll(fd: number, data: Uint8Array, at = 0): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const n = data.length - done <= SMALL_WRITE
      ? writeSync(fd, data, done, data.length - done, at + done)
      : (await writeAsync(fd, data, done, data.length - done, at + done)).bytesWritten;
    if (n <= 0) throw new Error('write returned 0 bytes');
    done += n;
  }
}

/**
 * Writes `data` to `final` atomically and durably: into `tmp` (which must not exist), fsync,
 * rename. The caller fsyncs the directory once it has renamed everything it needs.
 */
export async function writeFileAtomic(tmp: string, final: string, data: Uint8Array): Promise<void> {
  await writeFileSynced(tmp, data);
  renameOrRemove(tmp, final);
}

/**
 * The first half of writeFileAtomic: `data` durable in `tmp` (which must not exist), or no
 * `tmp`. The file exists once this returns its promise (an fsync of its directory issued after
 * the call covers it).
 */
export async function writeFileSynced(tmp: string, data: Uint8Array): Promise<void> {
  const fd = openSync(tmp, 'wx');
  try {
    await writeAll(fd, data);
    await fsyncAsync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
}

/** A new file's content: its bytes, or pieces of them one after another. */
export interface NewFile { path: string; data: Uint8Array | readonly Uint8Array[] }

/**
 * New files (which must not exist) and directories made durable in one round: every file is
 * written first, then every fsync issued at once, so that one journal commit can serve them all
 * (an fsync issued while the commit of another runs waits for the next one). On failure none of
 * the files is left.
 */
export async function writeFilesSynced(files: readonly NewFile[], dirs: readonly string[] = []): Promise<void> {
  const fds: number[] = [];
  try {
    for (const f of files) fds.push(openSync(f.path, 'wx'));
    await allSettled(files.map(async (f, i) => {
      let at = 0;
      for (const piece of f.data instanceof Uint8Array ? [f.data] : f.data) {
        await writeAll(fds[i]!, piece, at);
        at += piece.length;
      }
    }));
    await allSettled([...fds.map((fd) => fsyncAsync(fd)), ...dirs.map(fsyncDir)]);
  } catch (e) {
    fds.forEach((fd, i) => {
      closeSync(fd);
      rmSync(files[i]!.path, { force: true });
    });
    throw e;
  }
  for (const fd of fds) closeSync(fd);
}

/** The second half: `tmp` renamed to `final`, or removed if it cannot be. */
export function renameOrRemove(tmp: string, final: string): void {
  try {
    renameSync(tmp, final);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Waits for all of `steps`, then throws the first failure if any (none is left running). */
export async function allSettled(steps: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(steps)).find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** Writes all of `bytes` to `fd`, synchronously (a pipe may take them in parts). */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off);
}

/**
 * Replaces `path` with `data` in one step, for files readers may look at any time (a registry
 * entry, a cache entry): written beside it under a unique name, then renamed over it. Not
 * fsynced: for files that can be rebuilt.
 */
export function replaceFileSync(path: string, data: Uint8Array | string, mode = 0o666): void {
  const tmp = `${path}.${tmpSuffix()}.tmp`;
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // not created, or gone already
    }
    throw e;
  }
}

export async function rmrf(path: string): Promise<void> {
  await promisify(rm)(path, { recursive: true, force: true, maxRetries: 2 });
}

/**
 * Runs jobs with at most `limit` in flight. `next()` yields the next job or undefined when
 * there are no more; it may itself do synchronous work (hashing) that overlaps the jobs' I/O.
 * The first error stops new jobs; it is thrown after the running ones settle.
 */
export async function pool(limit: number, next: () => (() => Promise<void>) | undefined): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: { e: unknown } | undefined;
  for (;;) {
    if (failure) break;
    let job: (() => Promise<void>) | undefined;
    try {
      job = next();
    } catch (e) {
      failure = { e };
      break;
    }
    if (!job) break;
    const p: Promise<void> = job().then(
      () => { running.delete(p); },
      (e: unknown) => { running.delete(p); failure ??= { e }; },
    );
    running.add(p);
    if (running.size >= limit) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.e;
}

/**
 * Copies bytes [from, to) of fd `src` to fd `dest` at `destAt` + (pos - from), positionally,
 * through `buf`; stops early at the end of src. Returns the bytes copied.
 */
export function copyRangeSync(src: number, dest: number, from: number, to: number, buf: Buffer, destAt = from): number {
  let pos = from;
  while (pos < to) {
    const n = readSync(src, buf, 0, Math.min(buf.length, to - pos), pos);
    if (n === 0) break;
    for (let w = 0; w < n;) w += writeSync(dest, buf, w, n - w, destAt + (pos - from) + w);
    pos += n;
  }
  return pos - from;
}

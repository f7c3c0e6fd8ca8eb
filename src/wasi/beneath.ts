// File operations at a place beneath a directory handle: the sandbox's last step.
//
// paths.ts turns a guest path into a directory handle and plain names below it. With the
// native addon (native/beneath.c) every operation is then done relative to that handle and
// the kernel never follows a link, so a directory swapped for a symlink at any instant — by
// the program, another program, or any process on the host — makes the call fail instead of
// leaving the sandbox. Without the addon the same operations go by host path: paths.ts's
// checks still keep the program's own calls inside, but a concurrent swap between the check
// and the use can escape (`sandboxWeakness` says why, once, at start-up).
import { BigIntStats, closeSync, constants, linkSync, lstatSync, mkdirSync, openSync, readlinkSync, renameSync, rmdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { nativeBeneath, nativeLoadError, setTimesPath, timeFlags, timeNs, type TimeSpec } from './native.js';

/** A place beneath a directory: the directory's handle and host path, and plain names below it ('' = itself). */
export interface At {
  fd: number;
  host: string;
  path: string;
}

/** What the host reads of a file's status (lstat semantics: a symlink is reported as one). */
export type FileStat = Pick<
  BigIntStats,
  'dev' | 'ino' | 'mode' | 'nlink' | 'size' | 'atimeNs' | 'mtimeNs' | 'ctimeNs'
  | 'isFile' | 'isDirectory' | 'isSymbolicLink' | 'isCharacterDevice' | 'isBlockDevice' | 'isSocket' | 'isFIFO'
>;

const ops = nativeBeneath;

/** Null when every path is resolved beneath a handle; otherwise why the sandbox is weaker. */
export const sandboxWeakness: string | null = ops !== null
  ? null
  : `the native addon is not in use (${nativeLoadError ?? 'built without confined operations'}), so paths are resolved by name and a directory swapped for a symlink during a call could lead outside a --dir; rebuild it with \`node scripts/build-native.mjs\``;

/** Whether the kernel's openat2 does the resolution (else openat one name at a time). */
export const openat2Used: boolean = ops?.openat2Used() ?? false;

/** The host path of a place, for messages and the path fallback. */
export const hostOfAt = (at: At): string => (at.path === '' ? at.host + '/.' : at.host + '/' + at.path);

/** The host path of a place as a plain path (a directory itself without its '/.'). */
export const pathOfAt = (at: At): string => (at.path === '' ? at.host : at.host + '/' + at.path);

/** The directory a place is in ('' = the handle's directory itself, whose own parent is not beneath). */
export function parentAt(at: At): At {
  const i = at.path.lastIndexOf('/');
  return { fd: at.fd, host: at.host, path: i < 0 ? '' : at.path.slice(0, i) };
}

/**
 * Without the addon: the host path of a place whose directories on the way were just seen
 * to be directories, not links (racy, but a link planted beforehand is refused).
 */
function checkedHostOf(at: At): string {
  for (let i = at.path.indexOf('/'); i > 0; i = at.path.indexOf('/', i + 1)) {
    const st = lstatSync(at.host + '/' + at.path.slice(0, i), { throwIfNoEntry: false });
    if (st !== undefined && !st.isDirectory()) fail(st.isSymbolicLink() ? -40 /* ELOOP */ : -20 /* ENOTDIR */, 'lstat', at);
  }
  return hostOfAt(at);
}

/** A Node-style error for a -errno from the addon. */
function fail(r: number, syscall: string, at: At): never {
  let code: string;
  try {
    code = getSystemErrorName(r);
  } catch {
    code = 'EIO';
  }
  const e = new Error(`${code}: ${syscall} '${hostOfAt(at)}'`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = r;
  e.syscall = syscall;
  e.path = hostOfAt(at);
  throw e;
}

const check = (r: number, syscall: string, at: At): void => {
  if (r < 0) fail(r, syscall, at);
};

/** Opens a directory the user named (a --dir): the root places are beneath. Closed with closeFd. */
export function openHostDir(path: string): number {
  if (ops === null) return openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  const r = ops.openPath(path, constants.O_RDONLY | constants.O_DIRECTORY);
  check(r, 'open', { fd: -1, host: path, path: '' });
  return r;
}

/** Closes an fd opened here (openAt, openHostDir). */
export function closeFd(fd: number): void {
  if (ops === null) return closeSync(fd);
  const r = ops.closeFd(fd);
  if (r < 0) fail(r, 'close', { fd, host: `fd ${fd}`, path: '' });
}

/** Opens a place without following a symlink in its last name (O_NOFOLLOW is added). Closed with closeFd. */
export function openAt(at: At, flags: number, mode: number): number {
  if (ops === null) return openSync(checkedHostOf(at), flags | constants.O_NOFOLLOW, mode);
  const r = ops.openBeneath(at.fd, at.path, flags, mode);
  check(r, 'open', at);
  return r;
}

const S_IFMT = 0o170000n;
const types = { file: 0o100000n, dir: 0o040000n, link: 0o120000n, chr: 0o020000n, blk: 0o060000n, sock: 0o140000n, fifo: 0o010000n };

class NativeStat implements FileStat {
  constructor(private readonly v: BigInt64Array) {}
  get dev(): bigint { return BigInt.asUintN(64, this.v[0]!); }
  get ino(): bigint { return BigInt.asUintN(64, this.v[1]!); }
  get mode(): bigint { return this.v[2]!; }
  get nlink(): bigint { return this.v[3]!; }
  get size(): bigint { return this.v[4]!; }
  get atimeNs(): bigint { return this.v[5]!; }
  get mtimeNs(): bigint { return this.v[6]!; }
  get ctimeNs(): bigint { return this.v[7]!; }
  private is(t: bigint): boolean { return (this.v[2]! & S_IFMT) === t; }
  isFile(): boolean { return this.is(types.file); }
  isDirectory(): boolean { return this.is(types.dir); }
  isSymbolicLink(): boolean { return this.is(types.link); }
  isCharacterDevice(): boolean { return this.is(types.chr); }
  isBlockDevice(): boolean { return this.is(types.blk); }
  isSocket(): boolean { return this.is(types.sock); }
  isFIFO(): boolean { return this.is(types.fifo); }
}

/** The status of a place (not following a symlink in its last name); undefined if nothing is there. */
export function statAt(at: At, throwIfNoEntry: false): FileStat | undefined;
export function statAt(at: At): FileStat;
export function statAt(at: At, throwIfNoEntry = true): FileStat | undefined {
  if (ops === null) return lstatSync(checkedHostOf(at), { bigint: true, throwIfNoEntry });
  const out = new BigInt64Array(8);
  const r = ops.statBeneath(at.fd, at.path, out);
  if (r === -2 /* ENOENT */ && !throwIfNoEntry) return undefined;
  check(r, 'lstat', at);
  return new NativeStat(out);
}

export function mkdirAt(at: At): void {
  if (ops === null) return mkdirSync(hostOfAt(at));
  check(ops.mkdirBeneath(at.fd, at.path, 0o777), 'mkdir', at);
}

/** unlink, or rmdir with `dir`. */
export function removeAt(at: At, dir: boolean): void {
  if (ops === null) return dir ? rmdirSync(hostOfAt(at)) : unlinkSync(hostOfAt(at));
  check(ops.unlinkBeneath(at.fd, at.path, dir), dir ? 'rmdir' : 'unlink', at);
}

export function symlinkAt(target: string, at: At): void {
  if (ops === null) return symlinkSync(target, hostOfAt(at));
  check(ops.symlinkBeneath(target, at.fd, at.path), 'symlink', at);
}

export function readlinkAt(at: At): Buffer {
  if (ops === null) return readlinkSync(hostOfAt(at), { encoding: 'buffer' });
  const r = ops.readlinkBeneath(at.fd, at.path);
  if (typeof r === 'number') fail(r, 'readlink', at);
  return r;
}

/** Whether renameAt can be asked not to replace what is at `to`. */
export const renameNoReplaceAvailable: boolean = typeof ops?.renameNoReplaceBeneath === 'function';

/** With `noReplace` (only where renameNoReplaceAvailable): EEXIST if something is at `to`, or
 *  EINVAL where its file system cannot tell. */
export function renameAt(from: At, to: At, noReplace = false): void {
  if (noReplace) return check(ops!.renameNoReplaceBeneath!(from.fd, from.path, to.fd, to.path), 'rename', from);
  if (ops === null) return renameSync(hostOfAt(from), hostOfAt(to));
  check(ops.renameBeneath(from.fd, from.path, to.fd, to.path), 'rename', from);
}

/** A hard link; a symlink as `from` is linked itself, not followed. */
export function linkAt(from: At, to: At): void {
  if (ops === null) return linkSync(hostOfAt(from), hostOfAt(to));
  check(ops.linkBeneath(from.fd, from.path, to.fd, to.path), 'link', from);
}

/** Sets a place's times (of a symlink itself, not its target). */
export function setTimesAt(at: At, atime: TimeSpec, mtime: TimeSpec): void {
  if (ops === null) return setTimesPath(hostOfAt(at), atime, mtime, false);
  if (atime === null && mtime === null) {
    statAt(at); // nothing to change, but a missing file is still reported
    return;
  }
  check(ops.utimensBeneath(at.fd, at.path, timeNs(atime), timeNs(mtime), timeFlags(atime, mtime)), 'utimensat', at);
}

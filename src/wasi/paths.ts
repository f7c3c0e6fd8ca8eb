// Secure resolution of guest paths below a directory capability.
//
// Every directory fd is a capability root: a path relative to it may never name anything
// outside it. Node has no openat()/RESOLVE_BENEATH, so resolution is done here, one
// component at a time: `..` may not climb above the root, absolute paths are refused, and
// every symlink met on the way is read and expanded in place (its target must be relative and
// stays subject to the same rules). What reaches the host is a path with no symlink left in
// it except, when not following, the final component — which the caller opens O_NOFOLLOW.
// Limit: a concurrent *host* process swapping a checked directory for a symlink between the
// check and the use could race this; the guest itself cannot (it is single-threaded).
import { lstatSync, readlinkSync } from 'node:fs';
import { Errno } from './constants.js';
import { WasiError } from './errno.js';

/**
 * Directories mounted below a root by --path-map: [path below the root, host directory],
 * longest first. Null (the usual case) costs nothing.
 */
export type Mounts = readonly (readonly [string, string])[] | null;

/** The host path of `rel` below `root`, through the mounts. */
function hostOf(root: string, rel: string, mounts: Mounts): string {
  if (mounts !== null) {
    for (const [at, dir] of mounts) {
      if (rel === at) return dir;
      if (rel.startsWith(at) && rel.charCodeAt(at.length) === 47) return dir + rel.slice(at.length);
    }
  }
  return root + '/' + rel;
}

/** Same bound as Linux's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

export interface Resolved {
  /** Host path of the result: root + '/' + rel, or root + '/.' for the root itself. */
  host: string;
  /** Path below the root, components joined with '/'; '' is the root itself. */
  rel: string;
  /** The guest path ended in '/', '/.' or '..': the result must be a directory. */
  dirOnly: boolean;
}

/**
 * Resolves `path` below the directory `root` (a host path). With `follow`, a symlink in the
 * last position is expanded too; intermediate symlinks always are.
 */
export function resolvePath(root: string, path: string, follow: boolean, mounts: Mounts = null): Resolved {
  if (path.length === 0) throw new WasiError(Errno.NOENT);
  if (path.includes('\0')) throw new WasiError(Errno.INVAL);
  if (path.charCodeAt(0) === 47 /* '/' */) throw new WasiError(Errno.NOTCAPABLE);

  // Fast path: one plain component and nothing to follow (the common "open this file").
  if (!follow && path.indexOf('/') < 0 && path !== '.' && path !== '..') {
    return { host: mounts === null ? root + '/' + path : hostOf(root, path, mounts), rel: path, dirOnly: false };
  }

  const done: string[] = [];
  let todo = path.split('/');
  let dirOnly = isDirSuffix(todo[todo.length - 1]);
  let links = 0;
  while (todo.length > 0) {
    const c = todo.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (done.length === 0) throw new WasiError(Errno.NOTCAPABLE);
      done.pop();
      continue;
    }
    const last = !todo.some((t) => t !== '' && t !== '.' && t !== '..') && !hasDotDot(todo);
    done.push(c);
    if (last && !follow && !dirOnly) break; // remaining todo is only '' / '.'
    const host = hostOf(root, done.join('/'), mounts);
    const st = lstatSync(host, { throwIfNoEntry: false });
    if (st === undefined) {
      if (last) continue; // may be created by the caller
      throw new WasiError(Errno.NOENT);
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw new WasiError(Errno.LOOP);
      const target = readlinkSync(host, 'utf8');
      if (target.length === 0) throw new WasiError(Errno.NOENT);
      if (target.charCodeAt(0) === 47) throw new WasiError(Errno.NOTCAPABLE);
      done.pop();
      const expanded = target.split('/');
      if (todo.length === 0 && isDirSuffix(expanded[expanded.length - 1])) dirOnly = true;
      todo = expanded.concat(todo);
      continue;
    }
    if (!st.isDirectory() && (!last || dirOnly)) throw new WasiError(Errno.NOTDIR);
  }
  const rel = done.join('/');
  // root + '/.' rather than root: a root under /proc/self/fd is a magic symlink itself.
  return { host: rel === '' ? root + '/.' : hostOf(root, rel, mounts), rel, dirOnly };
}

function isDirSuffix(c: string | undefined): boolean {
  return c === '' || c === '.' || c === '..';
}

function hasDotDot(todo: string[]): boolean {
  for (const t of todo) if (t === '..') return true;
  return false;
}

/** Joins a root-relative path onto another ('' is the root). */
export function joinRel(base: string, rel: string): string {
  if (base === '') return rel;
  if (rel === '') return base;
  return base + '/' + rel;
}

// Resolution of guest paths below a directory capability.
//
// Every directory fd is a capability root: a path relative to it may never name anything
// outside it. The path is resolved here one component at a time: `..` may not climb above
// the root, absolute paths are refused, and every symlink met on the way is read and
// expanded in place (its target must be relative and stays subject to the same rules). The
// result is a place beneath a directory handle (the root's, or a --path-map mount's) made of
// plain names with no symlink left, except, when not following, the last one: beneath.ts
// then operates there without letting the kernel follow any link, so what was checked here
// is what is used even if the tree changes meanwhile (the checks read names, the use holds
// the handle).
import { statAt, readlinkAt, type At } from './beneath.js';
import { Errno } from './constants.js';
import { WasiError } from './errno.js';

/**
 * Directories mounted below a root by --path-map: [path below the root, host directory, its
 * handle], longest first. Null (the usual case) costs nothing.
 */
export type Mounts = readonly (readonly [string, string, number])[] | null;

/** A directory paths are resolved below: its host path, its handle, the mounts below it. */
export interface Root {
  root: string;
  handle: number;
  mounts: Mounts;
}

/** Where `rel` below the root is: beneath the root's handle, or a mount's. */
function placeOf(d: Root, rel: string): At {
  if (d.mounts !== null) {
    for (const [at, dir, fd] of d.mounts) {
      if (rel === at) return { fd, host: dir, path: '' };
      if (rel.startsWith(at) && rel.charCodeAt(at.length) === 47) return { fd, host: dir, path: rel.slice(at.length + 1) };
    }
  }
  return { fd: d.handle, host: d.root, path: rel };
}

/** Same bound as Linux's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

export interface Resolved {
  /** Where the result is, to operate on it (beneath.ts). */
  at: At;
  /** Path below the root, components joined with '/'; '' is the root itself. */
  rel: string;
  /** The guest path ended in '/', '/.' or '..': the result must be a directory. */
  dirOnly: boolean;
}

/**
 * Resolves `path` below the directory `d`. With `follow`, a symlink in the
 * last position is expanded too; intermediate symlinks always are.
 */
export function resolvePath(d: Root, path: string, follow: boolean): Resolved {
  if (path.length === 0) throw new WasiError(Errno.NOENT);
  if (path.includes('\0')) throw new WasiError(Errno.INVAL);
  if (path.charCodeAt(0) === 47 /* '/' */) throw new WasiError(Errno.NOTCAPABLE);

  // Fast path: one plain component and nothing to follow (the common "open this file").
  if (!follow && path.indexOf('/') < 0 && path !== '.' && path !== '..') {
    return { at: d.mounts === null ? { fd: d.handle, host: d.root, path } : placeOf(d, path), rel: path, dirOnly: false };
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
    const at = placeOf(d, done.join('/'));
    const st = statAt(at, false);
    if (st === undefined) {
      if (last) continue; // may be created by the caller
      throw new WasiError(Errno.NOENT);
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw new WasiError(Errno.LOOP);
      const target = readlinkAt(at).toString('utf8');
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
  return { at: placeOf(d, rel), rel, dirOnly };
}

function isDirSuffix(c: string | undefined): boolean {
  return c === '' || c === '.' || c === '..';
}

function hasDotDot(todo: string[]): boolean {
  for (const t of todo) if (t === '..') return true;
  return false;
}

/** The place to hand an operation whose kernel rules depend on a trailing slash (mkdir, rename...): kept. */
export function withSlash(r: Resolved): At {
  return r.dirOnly && r.at.path !== '' ? { ...r.at, path: r.at.path + '/' } : r.at;
}

/** Joins a root-relative path onto another ('' is the root). */
export function joinRel(base: string, rel: string): string {
  if (base === '') return rel;
  if (rel === '') return base;
  return base + '/' + rel;
}

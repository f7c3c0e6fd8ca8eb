// The file side of a restart: a plan (one line per open file: reopen, cut a log, restore a
// copy, or refuse), checked completely before anything on disk changes; then carried out so
// that every byte replaced or cut is kept in <ckptDir>/kept/ and reported.
import { closeSync, constants, copyFileSync, existsSync, fchmodSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { FileRecord, SavedCopy, Snapshot } from '../image/schema.js';
import { ImageError, StasisError } from '../errors.js';
import { readCopy, sameAsCopy } from '../image/files.js';
import type { ImageSource } from '../image/source.js';
import { genName } from '../image/format.js';
import { copyRangeSync, nowNs, settledBefore } from '../util/fs.js';
import { guestPath as guestPathOf, hostPathOf, insidePreopens, type FileFdState, type Location, type Preopen } from '../wasi/state.js';
import { closeFd, mkdirAt, openAt, openHostDir, statAt, type At } from '../wasi/beneath.js';
import { mapPath, type PathMap } from './pathmap.js';
import type { CopyCache } from './capture.js';

type Refusal = 'MISSING_FILE' | 'FILE_CHANGED' | 'FILE_ACCESS' | 'CORRUPT_IMAGE';

export type StepKind = 'reopen' | 'cut' | 'create-empty' | 'restore' | 'replace' | 'restore-deleted';

export interface Step {
  kind: StepKind;
  record: FileRecord;
  /** Host path the file is opened at. */
  target: string;
  /** Where the target is beneath a directory the user gave (see anchorOf); opened there. */
  anchor: Anchor | null;
  /** The program's name for it. */
  guestPath: string;
  /** Size of the file there now (null: missing). */
  current: number | null;
  /** One line for the plan. */
  line: string;
  /** A saved file found identical to its copy: when the comparison started (ns, wall clock). */
  comparedAt?: bigint;
}

export interface FilePlan {
  steps: Step[];
  /** Why the restart cannot be done (empty: it can). */
  refusals: { code: Refusal; text: string }[];
}

export interface PlanOptions {
  /** Preopens as saved (host paths as launched). */
  saved: Preopen[];
  /** --dir NEWHOST::GUEST given at restart, by guest name. */
  dirs: Preopen[];
  pathMap: PathMap;
  /** --allow-file-overwrite at restart: differing saved files are replaced (kept as backups). */
  allowOverwrite: boolean;
  /** Files a rule or plugin moved at restart, by location key (locationKey). */
  moved?: Map<string, string>;
}

export const locationKey = (loc: { preopen: string; rel: string }): string => `${loc.preopen}\0${loc.rel}`;

/** Where a saved host path is now: a --dir remap of its preopen wins, then the longest --path-map. */
export function physicalPath(o: PlanOptions, loc: { preopen: string; rel: string }): string | null {
  const to = o.moved?.get(locationKey(loc));
  if (to !== undefined) return to;
  const moved = o.dirs.find((d) => d.guest === loc.preopen);
  if (moved !== undefined) return hostPathOf([moved], loc);
  const saved = hostPathOf(o.saved, loc);
  return saved === null ? null : mapPath(o.pathMap, saved);
}

/** The records of an image; images from before saved files get plain reopen records. */
export function fileRecords(snap: Snapshot): FileRecord[] {
  if (snap.files !== undefined) return snap.files;
  return snap.wasi.fds.filter((f): f is FileFdState => f.kind === 'file').map((f) => ({
    fds: [f.fd], location: f.location, hostPath: hostPathOf(snap.wasi.preopens, f.location) ?? '', deleted: false,
    size: 0, mode: 0o644, treatment: 'reopen', reason: 'image without file records', onDiffer: 'refuse',
  }));
}

/** The program's directories at this restart: as saved, or as --dir gives them anew. */
function effectivePreopens(o: PlanOptions): Preopen[] {
  return o.saved.map((p) => o.dirs.find((d) => d.guest === p.guest) ?? p);
}

/** A rule's restart path (from the image) must be a plain absolute path inside the program's directories. */
function allowedRestartPath(o: PlanOptions, path: string): boolean {
  const plain = path.endsWith('/') ? path.slice(0, -1) : path;
  return isAbsolute(plain) && resolve(plain) === plain && insidePreopens(plain, effectivePreopens(o));
}

/** A preopen's host directory and the program's path below it. */
interface Anchor {
  root: string;
  rel: string;
}

/**
 * Where a location is when nothing (a rule, --path-map) moved it: below its preopen's
 * directory as given at launch or by --dir at restart. There the restart looks and opens
 * beneath that directory's handle, never through a link: the program may have replaced a
 * directory on the way by a symlink out of its sandbox after the checkpoint.
 */
function anchorOf(o: PlanOptions, loc: Location, restartPath?: string): Anchor | null {
  if (restartPath !== undefined || o.moved?.has(locationKey(loc))) return null;
  const moved = o.dirs.find((d) => d.guest === loc.preopen);
  if (moved !== undefined) return { root: moved.host, rel: loc.rel };
  const saved = o.saved.find((p) => p.guest === loc.preopen);
  const full = hostPathOf(o.saved, loc);
  if (saved === undefined || full === null || mapPath(o.pathMap, full) !== full) return null;
  return { root: saved.host, rel: loc.rel };
}

/** Runs fn with the anchor as a place beneath a handle on its root. */
function beneath<T>(a: Anchor, fn: (at: At) => T): T {
  const fd = openSync(a.root, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    return fn({ fd, host: a.root, path: a.rel });
  } finally {
    closeSync(fd);
  }
}

/** Why the anchored file cannot be used as it is, or null: a link on its way or in its place. */
function linkOnTheWay(a: Anchor): string | null {
  try {
    const st = beneath(a, (at) => statAt(at, false));
    return st?.isSymbolicLink() ? 'is a symbolic link now' : null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'EXDEV') return 'is reached through a symbolic link now (a directory on its way was replaced by one)';
    return null; // reported by the lookup that follows
  }
}

/** Size of the regular file at p, null if nothing is there; a string says why it can't be used. */
const sizeOf = (p: string): number | null | string => {
  let st;
  try {
    st = statSync(p, { throwIfNoEntry: false });
  } catch (e) {
    return `cannot be looked at (${(e as NodeJS.ErrnoException).code})`;
  }
  if (st === undefined) return null;
  return st.isFile() ? st.size : 'is not a regular file now';
};

/** Whether the file has the copy's contents; a string says why it could not be read. */
function sameContents(path: string, copy: SavedCopy): boolean | string {
  try {
    return sameAsCopy(path, copy);
  } catch (e) {
    return `cannot be read (${(e as NodeJS.ErrnoException).code})`;
  }
}

/** `rolledBack`: whether the rollback (rollback.ts) puts a path back as it was at the
 *  checkpoint; such files are planned as reopened (the plan is made again, and checked, once
 *  the rollback is done). */
export function planFiles(snap: Snapshot, o: PlanOptions, rolledBack: (path: string) => boolean = () => false): FilePlan {
  const plan: FilePlan = { steps: [], refusals: [] };
  const changed: string[] = [];
  for (const r of fileRecords(snap)) {
    const guestPath = guestPathOf(r.location);
    // (The manifest's schema has checked that the location is below one of the preopens.)
    if (r.restartPath !== undefined && !allowedRestartPath(o, r.restartPath)) {
      plan.refusals.push({ code: 'CORRUPT_IMAGE', text: `the image puts ${guestPath} at ${r.restartPath}, outside the program's directories (${effectivePreopens(o).map((p) => p.host).join(', ')}); an image cannot name a place outside them` });
      continue;
    }
    const target = r.restartPath ?? physicalPath(o, r.location)!;
    const anchor = r.deleted ? null : anchorOf(o, r.location, r.restartPath);
    const found = r.deleted ? null : (anchor !== null ? linkOnTheWay(anchor) : null) ?? sizeOf(target);
    const at = target === r.hostPath ? target : `${target} (was ${r.hostPath})`;
    const current = typeof found === 'string' ? null : found;
    const step = (kind: StepKind, line: string, comparedAt?: bigint): void => {
      plan.steps.push({ kind, record: r, target, anchor, guestPath, current, line, ...(comparedAt !== undefined && { comparedAt }) });
    };
    if (!r.deleted && rolledBack(target)) {
      step('reopen', `reopen   ${at}: as at the checkpoint once rolled back (${r.reason})`);
      continue;
    }
    if (typeof found === 'string') {
      refuse(plan, step, 'FILE_ACCESS', `${at} (the program's ${guestPath}) ${found}; fix it, or map the file elsewhere with --path-map OLD=NEW`);
      continue;
    }
    if (r.deleted) {
      step('restore-deleted', `restore  ${guestPath}: deleted while open; its saved copy (${r.size} bytes) comes back unlinked`);
      continue;
    }
    if (r.treatment === 'save') {
      const comparedAt = nowNs();
      const same = current === null ? false : sameContents(target, r.copy!);
      if (current === null) {
        step('restore', `restore  ${at}: missing; recreated from its saved copy (${r.size} bytes, mode ${octal(r.mode)})`);
      } else if (same === true) {
        step('reopen', `reopen   ${at}: same as its saved copy`, comparedAt);
      } else if (typeof same === 'string') {
        refuse(plan, step, 'FILE_ACCESS', `${at} (the program's ${guestPath}) ${same}; fix its permissions`);
      } else if (r.onDiffer === 'replace' || o.allowOverwrite) {
        step('replace', `replace  ${at}: differs from its saved copy (${current} bytes now, ${r.size} saved); saved copy restored, current version kept as a backup`);
      } else {
        changed.push(at);
        step('replace', `refuse   ${at}: differs from its saved copy (${current} bytes now, ${r.size} saved)`);
      }
      continue;
    }
    if (r.treatment === 'log') {
      if (current === null) {
        if (r.size === 0) step('create-empty', `create   ${at}: missing, was empty at the checkpoint; recreated empty (mode ${octal(r.mode)})`);
        else refuse(plan, step, 'MISSING_FILE', `${at} (the program's ${guestPath}, a log of ${r.size} bytes at the checkpoint) is missing; put it back, map it with --path-map OLD=NEW, or launch with --checkpoint-open-files so logs are saved`);
      } else if (current < r.size) {
        refuse(plan, step, 'FILE_CHANGED', `${at} (the program's ${guestPath}) is a log of ${current} bytes, shorter than the ${r.size} it had at the checkpoint (truncated or replaced); put the old file back, or launch with --checkpoint-open-files so it is saved`);
      } else if (current > r.size) {
        step('cut', `cut log  ${at}: from ${current} to ${r.size} bytes (the ${current - r.size} bytes written after the checkpoint are kept)`);
      } else {
        step('reopen', `reopen   ${at}: log, unchanged since the checkpoint (${r.size} bytes)`);
      }
      continue;
    }
    if (current === null) {
      refuse(plan, step, 'MISSING_FILE', `${at} (the program's ${guestPath}, ${r.reason}) is missing; put it back, map it with --path-map OLD=NEW or --dir NEWHOST::${r.location.preopen}, or launch with --checkpoint-open-files so it is saved`);
    } else {
      step('reopen', `reopen   ${at}: ${r.reason}, offsets restored`);
    }
  }
  checkDirs(plan, snap, o, rolledBack);
  if (changed.length > 0) {
    plan.refusals.push({
      code: 'FILE_CHANGED',
      text: `${changed.length === 1 ? `${changed[0]} differs` : `${changed.length} files differ (${changed.join(', ')})`} from the saved ${changed.length === 1 ? 'copy' : 'copies'} taken at the checkpoint; restart with --allow-file-overwrite to replace ${changed.length === 1 ? 'it (the current version is kept as a backup)' : 'them (the current versions are kept as backups)'}, or put back the checkpoint-time ${changed.length === 1 ? 'version' : 'versions'}`,
    });
  }
  return plan;
}

/** The program's directory fds: each must still be a directory reached through no link. */
function checkDirs(plan: FilePlan, snap: Snapshot, o: PlanOptions, rolledBack: (path: string) => boolean): void {
  for (const d of snap.wasi.fds) {
    if (d.kind !== 'dir' || d.location.rel === '') continue;
    const a = anchorOf(o, d.location);
    if (a === null || rolledBack(join(a.root, a.rel))) continue; // checked again once rolled back
    const at = `${a.root}/${a.rel} (the program's directory ${guestPathOf(d.location)}, fd ${d.fd})`;
    const link = linkOnTheWay(a);
    let st;
    try {
      st = link === null ? beneath(a, (p) => statAt(p, false)) : undefined;
    } catch (e) {
      plan.refusals.push({ code: 'FILE_ACCESS', text: `${at} cannot be looked at (${(e as NodeJS.ErrnoException).code}); fix its permissions` });
      continue;
    }
    if (link !== null) plan.refusals.push({ code: 'FILE_ACCESS', text: `${at} ${link}; put the directory back where it was, or map it elsewhere with --path-map OLD=NEW` });
    else if (st === undefined) plan.refusals.push({ code: 'MISSING_FILE', text: `${at} is missing; put it back, or map it elsewhere with --path-map OLD=NEW` });
    else if (!st.isDirectory()) plan.refusals.push({ code: 'FILE_ACCESS', text: `${at} is not a directory now; put the directory back where it was` });
  }
}

function refuse(plan: FilePlan, step: (k: StepKind, line: string) => void, code: Refusal, text: string): void {
  plan.refusals.push({ code, text });
  step('reopen', `refuse   ${text}`);
}

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`;

/** Throws the plan's first refusal (all of them in the message), if any. */
export function checkPlan(plan: FilePlan): void {
  if (plan.refusals.length === 0) return;
  const text = plan.refusals.map((r) => r.text).join('; ');
  throw new StasisError(plan.refusals[0]!.code, `restart refused, nothing changed: ${text}`);
}

export interface Applied {
  /** [guest fd, host fd] for every file fd, opened where the plan says. */
  handles: [number, number][];
  /** Saved files reopened identical to their copies, as the launcher's copy cache knows files
   *  it has copied: the next checkpoint need not copy them again while they stay unchanged. */
  unchanged: CopyCache;
  /** What was kept, one line each (also in kept/<...>/kept.json). */
  kept: string[];
}

/**
 * Carries out a checked plan. Copies are first written beside their targets and checked
 * (a damaged copy stops the restart with nothing changed); only then are files replaced,
 * logs cut and backups taken.
 */
export function applyPlan(plan: FilePlan, snap: Snapshot, source: ImageSource, ckptDir: string): Applied {
  const places = new Places();
  try {
    const temps = stageCopies(plan, source, ckptDir, places);
    const kept = putFiles(plan, temps, places, join(ckptDir, 'kept', `${genName(snap.meta.generation)}-restart-${new Date().toISOString().replace(/[:.]/g, '-')}`));
    return { ...reopen(plan, snap, temps), kept };
  } finally {
    places.close();
  }
}

const PROC_FD = existsSync('/proc/self/fd') ? '/proc/self/fd/' : null;

/**
 * Paths to the steps' targets through handles on their directories, opened beneath the
 * directory the user gave (anchorOf) through no link, missing ones made there: what the
 * restart writes cannot be led elsewhere by a directory swapped for a link meanwhile.
 * Targets a rule or --path-map moved (places the user named) are used as they are.
 */
class Places {
  private readonly dirs = new Map<string, number>();
  /** Directories made for targets (removed again if the restart is refused), deepest last. */
  readonly made: string[] = [];

  /** The target of a step, or `name` beside it. */
  path(s: Step, name = basename(s.target)): string {
    if (s.anchor === null || PROC_FD === null) {
      const made = mkdirSync(dirname(s.target), { recursive: true });
      if (made !== undefined) this.made.push(made);
      return join(dirname(s.target), name);
    }
    return `${PROC_FD}${this.dir(s.anchor)}/${name}`;
  }

  private dir(a: Anchor): number {
    const rel = a.rel.includes('/') ? a.rel.slice(0, a.rel.lastIndexOf('/')) : '';
    const key = `${a.root}\0${rel}`;
    let fd = this.dirs.get(key);
    if (fd !== undefined) return fd;
    fd = openHostDir(a.root);
    let host = a.root;
    for (const name of rel === '' ? [] : rel.split('/')) {
      const at: At = { fd, host, path: name };
      let next: number;
      try {
        next = openAt(at, constants.O_RDONLY | constants.O_DIRECTORY, 0);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          closeFd(fd);
          throw e;
        }
        mkdirAt(at);
        this.made.push(join(host, name));
        next = openAt(at, constants.O_RDONLY | constants.O_DIRECTORY, 0);
      }
      closeFd(fd);
      fd = next;
      host = join(host, name);
    }
    this.dirs.set(key, fd);
    return fd;
  }

  close(): void {
    for (const fd of this.dirs.values()) closeFd(fd);
    this.dirs.clear();
  }
}

/** Every saved copy that comes back, written and synced beside its target (or in the
 *  checkpoint directory, for files deleted while open). Nothing else is changed: on failure
 *  what was written is removed and the restart refused. */
function stageCopies(plan: FilePlan, source: ImageSource, ckptDir: string, places: Places): Map<Step, string> {
  const temps = new Map<Step, string>();
  const madeDirs = places.made;
  try {
    for (const s of plan.steps) {
      if (s.kind !== 'restore' && s.kind !== 'replace' && s.kind !== 'restore-deleted') continue;
      const name = `.stasis-restore-${process.pid}-${temps.size}-${basename(s.target)}`;
      if (s.kind === 'restore-deleted') {
        const made = mkdirSync(ckptDir, { recursive: true });
        if (made !== undefined) madeDirs.push(made);
      }
      const tmp = s.kind === 'restore-deleted' ? join(ckptDir, name) : places.path(s, name);
      temps.set(s, tmp);
      const fd = openSync(tmp, 'wx', s.record.mode & 0o777);
      try {
        readCopy(source, s.record.copy!, s.record.hostPath, (piece, pos) => {
          for (let w = 0; w < piece.length;) w += writeSync(fd, piece, w, piece.length - w, pos + w);
        });
        fchmodSync(fd, s.record.mode & 0o7777);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  } catch (e) {
    for (const t of temps.values()) rmSync(t, { force: true });
    for (const d of madeDirs.reverse()) rmSync(d, { recursive: true, force: true });
    if (e instanceof ImageError) throw new StasisError(e.code, `restart refused, nothing changed: ${e.message}`);
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string') throw new StasisError('FILE_ACCESS', `restart refused, nothing changed: cannot prepare ${err.path ?? 'a file'} (${err.code}); fix the permissions or free space there, or map the file elsewhere with --path-map OLD=NEW`);
    throw e;
  }
  return temps;
}

/** The files put as the plan says: logs cut, copies renamed into place, missing ones created.
 *  Everything cut or replaced is kept in `keptDir` first; returns one line per kept thing. */
function putFiles(plan: FilePlan, temps: Map<Step, string>, places: Places, keptDir: string): string[] {
  const kept: string[] = [];
  const report: { path: string; kept: string; what: string; bytes: number }[] = [];
  const keep = (s: Step, what: string, bytes: number, put: (dest: string) => void): void => {
    mkdirSync(keptDir, { recursive: true });
    const dest = join(keptDir, `${report.length + 1}-${basename(s.target)}${what === 'tail' ? '.tail' : ''}`);
    put(dest);
    report.push({ path: s.target, kept: dest, what, bytes });
    kept.push(what === 'tail'
      ? `cut ${bytes} bytes written after the checkpoint from ${s.target}; kept in ${dest}`
      : `replaced ${s.target} by its saved copy; its previous version (${bytes} bytes) kept in ${dest}`);
  };
  for (const s of plan.steps) {
    const r = s.record;
    if (s.kind === 'reopen' || s.kind === 'restore-deleted') continue;
    const target = places.path(s);
    if (s.kind === 'cut') {
      const fd = openSync(target, constants.O_RDWR | constants.O_NOFOLLOW);
      try {
        keep(s, 'tail', s.current! - r.size, (dest) => copyRange(fd, dest, r.size, s.current!));
        ftruncateSync(fd, r.size);
      } finally {
        closeSync(fd);
      }
    } else if (s.kind === 'create-empty') {
      writeFileSync(target, '', { mode: r.mode & 0o7777, flag: 'wx' });
    } else if (s.kind === 'replace') {
      keep(s, 'backup', s.current!, (dest) => moveFile(target, dest));
      renameSync(temps.get(s)!, target);
    } else if (s.kind === 'restore') {
      renameSync(temps.get(s)!, target);
    }
  }
  if (report.length > 0) writeFileSync(join(keptDir, 'kept.json'), JSON.stringify(report, null, 1) + '\n');
  return kept;
}

/** Every fd opened where its file now is; files deleted at the checkpoint are unlinked once
 *  open. Saved files found identical to their copies are remembered (the next checkpoint
 *  shares the copy). */
function reopen(plan: FilePlan, snap: Snapshot, temps: Map<Step, string>): Omit<Applied, 'kept'> {
  const access = (a: 'r' | 'w' | 'rw'): number => (a === 'rw' ? constants.O_RDWR : a === 'w' ? constants.O_WRONLY : constants.O_RDONLY);
  const byFd = new Map(snap.wasi.fds.filter((f): f is FileFdState => f.kind === 'file').map((f) => [f.fd, f]));
  const handles: [number, number][] = [];
  const unchanged: CopyCache = new Map();
  for (const s of plan.steps) {
    const path = s.kind === 'restore-deleted' ? temps.get(s)! : s.target;
    let opened: number | undefined;
    for (const fd of s.record.fds) {
      const st = byFd.get(fd);
      if (st === undefined) continue;
      const flags = access(st.access) | constants.O_NOFOLLOW;
      const handle = s.anchor !== null && s.kind !== 'restore-deleted' ? beneath(s.anchor, (at) => openAt(at, flags, 0)) : openSync(path, flags);
      handles.push([fd, handle]);
      opened ??= handle;
    }
    if (s.comparedAt !== undefined && s.record.copy !== undefined && opened !== undefined) {
      // As at a checkpoint (capture.ts): trusted only if the file had not changed for a while
      // before the comparison, so that a later write cannot hide in the same timestamp.
      const now = fstatSync(opened, { bigint: true });
      if (settledBefore(now.ctimeNs, s.comparedAt)) {
        unchanged.set(`${now.dev}:${now.ino}`, { size: now.size, mtimeNs: now.mtimeNs, ctimeNs: now.ctimeNs, copiedAt: s.comparedAt, copy: s.record.copy });
      }
    }
  }
  for (const s of plan.steps) if (s.kind === 'restore-deleted') unlinkSync(temps.get(s)!);
  return { handles, unchanged };
}

/** Copies bytes [from, to) of the open file src into a new file dest. */
function copyRange(src: number, dest: string, from: number, to: number): void {
  const o = openSync(dest, 'wx', 0o600);
  try {
    copyRangeSync(src, o, from, to, Buffer.allocUnsafe(Math.min(4 << 20, Math.max(1, to - from))), 0);
    fsyncSync(o);
  } finally {
    closeSync(o);
  }
}

/** Moves a file (a rename, or a copy and unlink across file systems). */
function moveFile(src: string, dest: string): void {
  try {
    renameSync(src, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    copyFileSync(src, dest, constants.COPYFILE_EXCL);
    unlinkSync(src);
  }
}

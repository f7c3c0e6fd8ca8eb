// The restart's side of rollback: the undo journals (journal.ts) of the image restarted from
// and of every later generation, undone newest first, entry by entry in reverse, so that each
// preopen holds what the program saw at the checkpoint. Every entry undoes to nothing when its
// change never happened (the launcher was killed between the entry and the change), so an
// interrupted rollback can simply be run again. What the rollback replaces or removes is kept
// (moved, not deleted) in CKPT_DIR/kept/ and reported.
import { Stats, closeSync, constants, copyFileSync, existsSync, fchmodSync, ftruncateSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { StasisError } from '../errors.js';
import { genName } from '../image/format.js';
import { closeFd, mkdirAt, openAt, openHostDir, readlinkAt, removeAt, renameAt, setTimesAt, statAt, symlinkAt, type At } from '../wasi/beneath.js';
import { setTimesFd } from '../wasi/native.js';
import { guestPath } from '../wasi/state.js';
import { copyRangeSync } from '../util/fs.js';
import { JOURNAL_DIR, listJournals, pathsOf, readJournal, readSeal, stateOf, unseal, type JournalEntry, type SealedState } from './journal.js';
import { decideRollback, type ChangedPath, type StasisPlugin } from './plugin.js';

/** One of the program's directories: its host path as the journals name it, and where it is now. */
export interface RollbackRoot {
  guest: string;
  was: string;
  now: string;
}

interface Journal {
  generation: number;
  dir: string;
  /** Those not undone yet, with the paths where they are now. */
  entries: JournalEntry[];
  /** Each entry's line in the log (from 0). */
  lines: number[];
  /** Lines in the log. */
  count: number;
}

/** In a journal's directory: how many of its last entries a rollback has undone (it goes on
 *  from there if it was stopped). */
const UNDONE = 'undone';

export interface RollbackPlan {
  ckptDir: string;
  /** Journals to undo, newest first. */
  journals: Journal[];
  /** One line per path, for `restart --dry-run`. */
  lines: string[];
  /** Host paths (now) the rollback may change. */
  touched: Set<string>;
  /** Each of them beneath its directory: the rollback works through a handle on `root`. */
  places: Map<string, { root: string; rel: string }>;
  /** Those another process changed since the program stopped (rolled back with --allow-file-overwrite). */
  conflicts: Set<string>;
}

/** A restart with --no-rollback: nothing to undo. */
export const NO_ROLLBACK: RollbackPlan = { ckptDir: '', journals: [], lines: [], touched: new Set(), places: new Map(), conflicts: new Set() };

export interface RollbackOptions {
  /** Files the image has copies of: their contents come back from the copy, under the
   *  restart plan's rules for a file that differs, so the journal's bytes are not used. */
  saved?: readonly string[];
  /** Stasis's rules and --plugin modules: each path's decideRollback. */
  plugins?: readonly StasisPlugin[];
  /** --allow-file-overwrite: roll back paths another process changed too (kept aside). */
  allowOverwrite?: boolean;
}

/**
 * The journals a restart from `generation` undoes (that one and every later one), read and
 * checked; nothing is changed. Entries are placed beneath the program's directories as they
 * are now (`roots`, after --dir); those outside them are left alone, and said so.
 */
export async function planRollback(ckptDir: string, generation: number, roots: readonly RollbackRoot[], o: RollbackOptions = {}): Promise<RollbackPlan> {
  const root = join(ckptDir, JOURNAL_DIR);
  const places = new Map<string, { root: string; rel: string }>();
  const wasOf = new Map<string, string>();
  const guestOf = new Map<string, string>();
  const bases = roots.flatMap((r) => [...new Set([r.was, realOr(r.was)])].map((w) => ({ w, r }))).sort((a, b) => b.w.length - a.w.length);
  /** Where a recorded path is now; null outside the program's directories. Plain absolute
   *  paths only: a damaged or forged journal cannot name a place outside with `..`. */
  const now = (p: string): string | null => {
    if (typeof p !== 'string' || !isAbsolute(p) || resolve(p) !== p) return null;
    const hit = bases.find(({ w }) => p === w || p.startsWith(w + '/'));
    if (hit === undefined) return null;
    const rel = p === hit.w ? '' : p.slice(hit.w.length + 1);
    const q = rel === '' ? hit.r.now : join(hit.r.now, rel);
    places.set(q, { root: hit.r.now, rel });
    wasOf.set(q, p);
    guestOf.set(q, guestPath({ preopen: hit.r.guest, rel }));
    return q;
  };
  const outside = new Set<string>();
  const journals = listJournals(root)
    .filter((j) => j.generation >= generation)
    .map((j) => {
      const dir = join(root, j.name);
      const all = readJournal(dir, (entry) => new StasisError('CORRUPT_IMAGE', `restart refused, nothing changed: the undo journal ${join(dir, 'log')} is damaged at entry ${entry}; restart with --no-rollback to leave the files as they are`));
      const todo = all.length - undoneOf(dir);
      const entries: JournalEntry[] = [];
      const lines: number[] = [];
      for (let i = 0; i < todo; i++) {
        for (const e of placed(all[i]!, now, outside)) {
          entries.push(e);
          lines.push(i);
        }
      }
      return { generation: j.generation, dir, entries, lines, count: all.length };
    })
    .sort((a, b) => b.generation - a.generation);
  const lost = journals.flatMap((j) => j.entries.filter((e): e is Extract<JournalEntry, { op: 'lost' }> => e.op === 'lost'));
  if (lost.length > 0) {
    const what = [...new Set(lost.map((e) => `${e.path} (${e.why})`))].join(', ');
    throw new StasisError('FILE_ACCESS', `restart refused, nothing changed: the program changed files after the checkpoint that could not be saved for rollback: ${what}; restart with --no-rollback to keep the files as they are`);
  }
  const fromCopy = new Set((o.saved ?? []).map(realPath));
  for (const j of journals) {
    const keep = j.entries.map((e) => !((e.op === 'size' || e.op === 'block') && fromCopy.has(realPath(e.path))));
    j.entries = j.entries.filter((_, k) => keep[k]);
    j.lines = j.lines.filter((_, k) => keep[k]);
  }

  // Each path's decision (Stasis's exempt rules, then plugins); a rename is undone whole or not at all.
  const changes = new Map<string, Set<ChangedPath['changes'][number]>>();
  for (const j of journals) {
    for (const e of j.entries) {
      const what = e.op === 'size' || e.op === 'block' ? 'contents' : e.op === 'lost' ? 'contents' : e.op;
      for (const p of pathsOf(e)) (changes.get(p) ?? changes.set(p, new Set()).get(p)!).add(what);
    }
  }
  const kept = new Map<string, string>();
  for (const [path, what] of [...changes].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const d = await decideRollback(o.plugins ?? [], { path, launchPath: wasOf.get(path)!, guestPath: guestOf.get(path)!, changes: [...what] });
    if (!d.rollback) kept.set(path, d.reason);
  }
  // What is left as it is keeps what it needs: both names of a rename, and the directories
  // the program made that it is in (until nothing more changes).
  const renames = journals.flatMap((j) => j.entries.filter((e): e is Extract<JournalEntry, { op: 'renamed' }> => e.op === 'renamed'));
  for (let grew = true; grew;) {
    grew = false;
    const keep = (p: string, why: string): void => {
      if (kept.has(p) || !changes.has(p)) return;
      kept.set(p, why);
      grew = true;
    };
    for (const e of renames) {
      const why = kept.get(e.from) ?? kept.get(e.to);
      if (why !== undefined) for (const p of [e.from, e.to]) keep(p, why);
    }
    for (const [p, why] of [...kept]) {
      for (let up = dirname(p); up !== dirname(up); up = dirname(up)) keep(up, `holds ${p}, ${why}`);
    }
  }
  const touched = new Set([...changes.keys()].filter((p) => !kept.has(p)));

  const conflicts = changedByOthers(ckptDir, journals, touched, wasOf);
  // A file the program renamed and another process then changed in place: what it held at the
  // checkpoint is in no journal (the program never wrote it), so it cannot come back.
  const lostByRename = [...new Set(journals.flatMap((j) => j.entries.flatMap((e) => (e.op === 'renamed' && touched.has(e.to) && conflicts.has(e.to) ? [e.to] : []))))];
  if (lostByRename.length > 0) {
    throw new StasisError('FILE_CHANGED', `restart refused, nothing changed: since the program stopped, another process changed ${lostByRename.sort().join(', ')}, which the program had renamed after the checkpoint; what it held at the checkpoint was never saved, so it cannot be rolled back; leave it as it is with --rollback-exempt PATH, or restart with --no-rollback`);
  }
  if (conflicts.size > 0 && o.allowOverwrite !== true) {
    const list = [...conflicts].sort();
    throw new StasisError('FILE_CHANGED', `restart refused, nothing changed: since the program stopped, another process changed ${list.length === 1 ? list[0] : `${list.length} paths (${list.join(', ')})`}, which the program had changed after the checkpoint too; restart with --allow-file-overwrite to roll ${list.length === 1 ? 'it' : 'them'} back anyway (the current ${list.length === 1 ? 'version is' : 'versions are'} kept in ${join(ckptDir, 'kept')}), or leave ${list.length === 1 ? 'it' : 'them'} as ${list.length === 1 ? 'it is' : 'they are'} with --rollback-exempt PATH`);
  }
  const lines = [
    ...describe(journals, touched),
    ...[...conflicts].sort().map((p) => `rollback ${p}: changed by another process since the program stopped; rolled back anyway (--allow-file-overwrite), that version kept`),
    ...[...kept].sort().map(([p, why]) => `rollback ${p}: left as it is (${why})`),
    ...[...outside].sort().map((p) => `rollback ${p}: left alone, outside the program's directories now (moved with --path-map?)`),
  ];
  return { ckptDir, journals, lines, touched, places, conflicts };
}

/** How many of a journal's last entries an earlier rollback undid (0 if none). */
function undoneOf(dir: string): number {
  let text: string;
  try {
    text = readFileSync(join(dir, UNDONE), 'utf8');
  } catch {
    return 0;
  }
  const n = Number(text.trim() || '0');
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/** An entry with its paths where they are now, or none if one is outside (noted in `outside`). */
function placed(e: JournalEntry, now: (p: string) => string | null, outside: Set<string>): JournalEntry[] {
  if (typeof e !== 'object' || e === null) return [];
  if (e.op === 'renamed') {
    const from = now(e.from);
    const to = now(e.to);
    if (from === null || to === null) {
      for (const p of [e.from, e.to]) outside.add(String(p));
      return [];
    }
    return [{ ...e, from, to }];
  }
  if (e.op === 'removed' && e.kind === 'file' && !/^files\/\d+$/.test(String(e.saved))) {
    throw new StasisError('CORRUPT_IMAGE', `restart refused, nothing changed: the undo journal names ${JSON.stringify(e.saved)} as a saved file; restart with --no-rollback to leave the files as they are`);
  }
  const path = now(e.path);
  if (path === null) {
    outside.add(String(e.path));
    return [];
  }
  return [{ ...e, path }];
}

/**
 * The touched paths that are no longer as the program left them when it stopped (the seal,
 * journal.ts): another process changed them since. Where a directory was moved (--dir), only
 * what a copy keeps (kind, size, modification time) is compared.
 */
function changedByOthers(ckptDir: string, journals: readonly Journal[], touched: Set<string>, wasOf: Map<string, string>): Set<string> {
  const seal = readSeal(ckptDir);
  const out = new Set<string>();
  if (seal === null) return out;
  const named = new Set(journals.filter((j) => seal.covers(j.generation)).flatMap((j) => j.entries.flatMap(pathsOf)));
  for (const p of touched) {
    const was = wasOf.get(p)!;
    const then = seal.stateOf(was, named.has(p));
    if (then === undefined) continue;
    const cur = stateOf(p);
    if (!sameState(then, cur, was === p || realPath(was) === realPath(p))) out.add(p);
  }
  return out;
}

function sameState(a: SealedState | null, b: SealedState | null, samePlace: boolean): boolean {
  if (a === null || b === null) return a === b;
  if (a.kind !== b.kind) return false;
  // A directory's size and times change with any entry made in it (a job's log beside the
  // program's files): only its identity counts; what is in it is checked path by path.
  if (a.kind === 'dir') return !samePlace || (a.dev === b.dev && a.ino === b.ino);
  if (a.size !== b.size || a.mtimeNs !== b.mtimeNs) return false;
  return !samePlace || (a.dev === b.dev && a.ino === b.ino && a.ctimeNs === b.ctimeNs);
}

/**
 * One line per path: what undoing the journals does to it, worked out on a picture of the
 * directories (what is on disk, changed as each entry would change it); nothing is changed.
 */
function describe(journals: Journal[], touched: Set<string>): string[] {
  interface Node { from: string | null; kind: string; contents: boolean }
  const overlay = new Map<string, Node | null>();
  const onDisk = (p: string): Stats | undefined => lstatSync(p, { throwIfNoEntry: false });
  const get = (p: string): Node | null => {
    if (overlay.has(p)) return overlay.get(p)!;
    const st = onDisk(p);
    return st === undefined ? null : { from: p, kind: st.isDirectory() ? 'dir' : 'file', contents: false };
  };
  for (const j of journals) {
    for (const e of [...j.entries].reverse()) {
      if (!touched.has(e.op === 'renamed' ? e.from : e.path)) continue;
      if (e.op === 'created') {
        if (get(e.path) !== null) overlay.set(e.path, null);
      } else if (e.op === 'removed') {
        if (get(e.path) === null) overlay.set(e.path, { from: null, kind: e.kind, contents: false });
      } else if (e.op === 'renamed') {
        const n = get(e.to);
        if (n !== null && get(e.from) === null) {
          overlay.set(e.from, n);
          overlay.set(e.to, null);
        }
      } else if (e.op === 'size' || e.op === 'block') {
        const n = get(e.path);
        if (n !== null) overlay.set(e.path, { ...n, contents: true });
      }
    }
  }
  const endsAt = new Map<string, string>();
  for (const [q, n] of overlay) if (n?.from) endsAt.set(n.from, q);
  const lines: string[] = [];
  for (const p of [...overlay.keys()].sort()) {
    const what: string[] = [];
    const now = onDisk(p);
    const n = overlay.get(p);
    const to = now === undefined ? p : endsAt.get(p);
    if (to === undefined && n?.from === null) {
      what.push(`replaced after the checkpoint: its checkpoint version put back (${n.kind}), the current one moved to kept/`);
    } else {
      if (to === undefined) what.push(now!.isDirectory() ? 'made after the checkpoint: removed' : 'made after the checkpoint: moved to kept/');
      else if (to !== p) what.push(`renamed back to ${to}`);
      if (n?.from === null) what.push(`removed after the checkpoint: put back (${n.kind})`);
    }
    if (n?.contents) what.push('contents put back as at the checkpoint (the current version kept)');
    if (what.length > 0) lines.push(`rollback ${p}: ${what.join('; ')}`);
  }
  return lines;
}

/**
 * Undoes the plan's journals, then removes them. Every change is made beneath a handle on the
 * program's directory, never through a link: a directory swapped for a symlink meanwhile
 * makes the rollback stop (ELOOP, ENOTDIR or EXDEV) instead of changing a file outside.
 * Returns one line per thing kept (also listed in `keptDir`/kept.json).
 */
export function applyRollback(plan: RollbackPlan, keptDir: string): string[] {
  const fds = new Map<string, number>();
  const dirFd = (dir: string): number => fds.get(dir) ?? fds.set(dir, openHostDir(dir)).get(dir)!;
  const at = (path: string): At => {
    const p = plan.places.get(path)!;
    return { fd: dirFd(p.root), host: p.root, path: p.rel };
  };
  const kept: string[] = [];
  const report: { path: string; kept: string; what: string }[] = [];
  // Where what is at a path now was before the rollback renamed it back: named so in reports.
  const was = new Map<string, string>();
  const keepAside = (path: string, what: string, move: boolean): void => {
    if (!existsSync(keptDir)) mkdirSync(keptDir, { recursive: true });
    const shown = was.get(path) ?? path;
    const name = `${report.length + 1}-${basename(shown)}`;
    if (move) moveOut(at(path), { fd: dirFd(keptDir), host: keptDir, path: name });
    else copyOut(at(path), join(keptDir, name));
    report.push({ path: shown, kept: join(keptDir, name), what });
    kept.push(`rolled back ${shown} (${what}); kept in ${join(keptDir, name)}`);
  };
  const exists = (path: string): boolean => statAt(at(path), false) !== undefined;
  const keptContents = new Set<string>();
  const times = new Map<string, { atimeNs?: string; mtimeNs?: string }>();
  try {
    for (const j of plan.journals) {
      let blocks = -1;
      const progress = openSync(join(j.dir, UNDONE), constants.O_WRONLY | constants.O_CREAT, 0o600);
      try {
        for (let k = j.entries.length - 1; k >= 0; k--) {
          const e = j.entries[k]!;
          // Entries before this one in the log are all that is left to undo, from now on.
          if (k < j.entries.length - 1) writeSync(progress, `${String(j.count - j.lines[k + 1]!).padStart(12)}\n`, 0);
          if (!pathsOf(e).every((p) => plan.touched.has(p))) continue;
          switch (e.op) {
            case 'created': {
              const st = statAt(at(e.path), false);
              if (st === undefined) break;
              if (st.isDirectory() && isEmptyDir(at(e.path))) removeAt(at(e.path), true);
              else keepAside(e.path, 'made after the checkpoint', true);
              break;
            }
            case 'removed': {
              if (exists(e.path)) {
                if (!plan.conflicts.has(e.path)) break; // never removed
                keepAside(e.path, 'made by another process where the program had removed it', true);
              }
              if (e.kind === 'dir') {
                mkdirAt(at(e.path));
                withFd(at(e.path), constants.O_RDONLY | constants.O_DIRECTORY, (fd) => fchmodSync(fd, e.mode));
              } else if (e.kind === 'symlink') {
                symlinkAt(e.target!, at(e.path));
              } else {
                putBack({ fd: dirFd(j.dir), host: j.dir, path: e.saved! }, at(e.path), e.mode);
              }
              if (e.mtimeNs !== undefined) times.set(e.path, e);
              break;
            }
            case 'renamed':
              if (exists(e.to) && exists(e.from) && plan.conflicts.has(e.from)) keepAside(e.from, 'made by another process where the program had renamed it away', true);
              if (exists(e.to) && !exists(e.from)) {
                renameAt(at(e.to), at(e.from));
                was.set(e.from, was.get(e.to) ?? e.to);
                was.delete(e.to);
                // Times taken under its later name belong to it under this one.
                const t = times.get(e.to);
                if (t !== undefined) {
                  times.delete(e.to);
                  times.set(e.from, t);
                }
              }
              break;
            case 'size':
            case 'block': {
              const st = statAt(at(e.path), false);
              if (st === undefined || !st.isFile()) break;
              if (!keptContents.has(e.path)) {
                keptContents.add(e.path);
                keepAside(e.path, 'its contents changed after the checkpoint', false);
              }
              if (e.op === 'size') {
                withFd(at(e.path), constants.O_WRONLY, (fd) => ftruncateSync(fd, e.size));
                if (e.mtimeNs !== undefined) times.set(e.path, e); // the oldest wins: set once the contents are back
              } else {
                if (blocks < 0) blocks = openSync(join(j.dir, 'blocks'), 'r');
                const buf = Buffer.allocUnsafe(e.len);
                const got = readSync(blocks, buf, 0, e.len, e.at);
                if (got !== e.len) throw new StasisError('CORRUPT_IMAGE', `the undo journal ${j.dir} is missing saved bytes of ${e.path}; its rollback is incomplete`);
                withFd(at(e.path), constants.O_WRONLY, (fd) => {
                  for (let w = 0; w < got;) w += writeSync(fd, buf, w, got - w, e.pos + w);
                });
              }
              break;
            }
            case 'times':
              times.set(e.path, e);
              break;
          }
        }
      } finally {
        if (blocks >= 0) closeSync(blocks);
        closeSync(progress);
      }
    }
    // Last: putting things back changed the times of their directories.
    for (const [path, t] of times) {
      const a = t.atimeNs === undefined ? null : BigInt(t.atimeNs);
      const m = t.mtimeNs === undefined ? null : BigInt(t.mtimeNs);
      const place = at(path);
      if (place.path === '') setTimesFd(place.fd, a, m);
      else if (statAt(place, false) !== undefined) setTimesAt(place, a, m);
    }
  } finally {
    for (const fd of fds.values()) closeFd(fd);
  }
  if (report.length > 0) writeFileSync(join(keptDir, 'kept.json'), JSON.stringify(report, null, 1) + '\n');
  for (const j of plan.journals) rmSync(j.dir, { recursive: true, force: true });
  if (plan.journals.length > 0) unseal(plan.ckptDir); // it was about the journals just undone
  return kept;
}

/** Runs fn with the place opened (not through a link), and closes it. */
function withFd<T>(place: At, flags: number, fn: (fd: number) => T): T {
  const fd = openAt(place, flags, 0);
  try {
    return fn(fd);
  } finally {
    closeFd(fd);
  }
}

function isEmptyDir(place: At): boolean {
  return withFd(place, constants.O_RDONLY | constants.O_DIRECTORY, (fd) => listFd(fd, place).length === 0);
}

const PROC_FD = existsSync('/proc/self/fd') ? '/proc/self/fd/' : null;

/** The names in a directory open as fd (by its host path where there is no /proc). */
function listFd(fd: number, place: At): string[] {
  return readdirSync(PROC_FD !== null ? PROC_FD + fd : join(place.host, place.path));
}

/** A file or tree moved to `dest` (kept/): a rename, or a copy and removal across file systems. */
function moveOut(src: At, dest: At): void {
  try {
    renameAt(src, dest);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
  }
  copyOut(src, join(dest.host, dest.path));
  removeTree(src);
}

/** Copies a file, symlink or tree from beneath a handle to a host path of ours. */
function copyOut(src: At, dest: string): void {
  const st = statAt(src);
  if (st.isSymbolicLink()) {
    symlinkSync(readlinkAt(src), dest);
  } else if (st.isDirectory()) {
    mkdirSync(dest);
    withFd(src, constants.O_RDONLY | constants.O_DIRECTORY, (fd) => {
      for (const name of listFd(fd, src)) copyOut({ fd, host: join(src.host, src.path), path: name }, join(dest, name));
    });
  } else if (st.isFile()) {
    withFd(src, constants.O_RDONLY, (fd) => {
      // Through the open fd itself: a reflink where the file system has them.
      if (PROC_FD !== null) return copyFileSync(PROC_FD + fd, dest, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      const out = openSync(dest, 'wx', 0o600);
      try {
        copyRangeSync(fd, out, 0, Number(st.size), Buffer.allocUnsafe(1 << 20));
      } finally {
        closeSync(out);
      }
    });
  }
}

function removeTree(place: At): void {
  const st = statAt(place, false);
  if (st === undefined) return;
  if (st.isDirectory()) {
    withFd(place, constants.O_RDONLY | constants.O_DIRECTORY, (fd) => {
      for (const name of listFd(fd, place)) removeTree({ fd, host: join(place.host, place.path), path: name });
    });
  }
  removeAt(place, st.isDirectory());
}

/** A removed file back in place from the journal: its hard link renamed, or its copy copied. */
function putBack(saved: At, to: At, mode: number): void {
  try {
    renameAt(saved, to);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
  }
  const st = statAt(saved);
  withFd(saved, constants.O_RDONLY, (src) => withFd(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, (out) => {
    copyRangeSync(src, out, 0, Number(st.size), Buffer.allocUnsafe(1 << 20));
    fchmodSync(out, mode);
  }));
}

/** Whether the rollback changes what `path` names (compared by real directory). */
export function rollsBack(plan: RollbackPlan, path: string): boolean {
  if (plan.touched.size === 0) return false;
  // The path, or a directory on its way (renamed away, replaced by a link), comes back.
  for (let p = path; p !== dirname(p); p = dirname(p)) {
    if (plan.touched.has(p) || plan.touched.has(realPath(p))) return true;
  }
  return false;
}

/** A path with its directory's symlinks resolved (as the host's paths are). */
function realPath(path: string): string {
  return join(realOr(dirname(path)), basename(path));
}

/** The name of the directory a rollback keeps things in. */
export function rollbackKeptDir(ckptDir: string, generation: number): string {
  return join(ckptDir, 'kept', `${genName(generation)}-rollback-${new Date().toISOString().replace(/[:.]/g, '-')}`);
}

function realOr(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

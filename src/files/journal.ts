// The program's side of rollback: what it does to its files, recorded before it happens.
//
// - Behaviour: for every file it writes, whether it only ever appended (a log) or wrote over
//   existing bytes or truncated them (a database). A checkpoint classifies open files by it.
// - The undo journal: from each checkpoint on, every change below the preopens is recorded
//   *before* it is made, once per block or path per generation, in
//   CKPT_DIR/journal/gen-NNNNNN/ (`log`: the entries, journal-log.ts; `blocks`: the bytes the
//   entries point into; `files/`: removed files, hard-linked there, or copied when the checkpoint
//   directory is on another file system). A restart undoes it (rollback.ts).
//
// Each entry is in the page cache before the change is made (record-log.ts): a launcher killed
// at any instant leaves a journal that covers every change made (an entry whose change never happened undoes to
// nothing). Nothing is fsynced: after a power loss the last entries may be lost with the
// page cache, while the program's own writes may have reached the disk (docs/files.md).
import { BigIntStats, closeSync, constants, copyFileSync, existsSync, fstatSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { genName } from '../image/format.js';
import { parentAt, pathOfAt, readlinkAt, renameNoReplaceAvailable, statAt, type At, type FileStat } from '../wasi/beneath.js';
import type { FileChangeHooks } from '../wasi/changes.js';
import { nativeCopyRange } from '../wasi/native.js';
import { WriteGuards } from './guard.js';
import { PathStates } from './path-states.js';
import { decodeEntries, EntryEncoder, type Cancel, type JournalEntry } from './journal-log.js';
import { RecordLog } from './record-log.js';

export type { JournalEntry } from './journal-log.js';

/** The journals' directory, in the checkpoint directory. */
export const JOURNAL_DIR = 'journal';
/** Paths the recorder keeps what it knows of (ChangeRecorder.paths). */
const PATHS_MAX = 16_384;
/** Paths a run keeps in memory to seal its journals without reading them back. */
const NAMED_MAX = 100_000;
/** Bytes saved per first write to a block. */
export const JOURNAL_BLOCK = 64 << 10;
/** The most saved in one go, for a write over many blocks not saved yet. */
const JOURNAL_RUN = 1 << 20;

/** Removes the journals older than generation `oldest` (no image left to restart from needs
 *  them: a restart from image G undoes journals G and later). */
export function pruneJournals(ckptDir: string, oldest: number): void {
  const root = join(ckptDir, JOURNAL_DIR);
  for (const j of listJournals(root)) if (j.generation < oldest) rmSync(join(root, j.name), { recursive: true, force: true });
}

/** How the program has written a file: only at its end, or over existing bytes. */
export type Written = 'append' | 'overwrite';

interface FileState {
  /** "dev:ino" ('' for a file this run made, until a checkpoint asks: see written). */
  id: string;
  /** The end of the file as the program's writes left it (behaviour: a write before it overwrites). */
  end: number;
  overwrote: boolean;
  /** The generation the fields below are about. */
  gen: number;
  /** Created in that generation: nothing of it needs saving. */
  created: boolean;
  /** Its size when first changed in that generation. */
  origSize: number;
  /** Blocks saved in that generation (null: none yet). */
  saved: Set<number> | null;
}

interface HandleState {
  /** Where the file is now, as far as the program's own renames tell ('' = nowhere to undo to). */
  path: string;
  file: FileState | null;
}

const PROC_FD = existsSync('/proc/self/fd') ? '/proc/self/fd/' : null;

/**
 * The listener the host of a checkpointed program gets: records behaviour and the journal,
 * and passes writes on to the copy-on-write guards of a checkpoint still copying big files.
 */
export class ChangeRecorder implements FileChangeHooks {
  readonly active = true;
  readonly guards = new WriteGuards();
  private readonly handles = new Map<number, HandleState>();
  private readonly files = new Map<string, FileState>();
  /** Journal generation being recorded (null: none yet, before a launch's first checkpoint). */
  private gen: number | null;
  private log: RecordLog | null = null;
  private encoder = new EntryEncoder();
  /** Entries in the log. */
  private entries = 0;
  /** Whether renames may be tried with RENAME_NOREPLACE (until a file system says it cannot). */
  private noReplace = renameNoReplaceAvailable;
  private blocks = -1;
  private blocksEnd = 0;
  private savedFiles = 0;
  /**
   * What this generation's own changes tell of each path they touched (see PathState): whether
   * what is there was made in this generation, and what is there now, a lookup saved before
   * the next change there. One map, so that a change costs one lookup per path. (Another
   * process's changes while the program runs are not seen, with or without it.)
   */
  private paths = new PathStates();
  /** Moves on when a change fails: what `paths` says is there is then forgotten. */
  private epoch = 1;
  /** The last create's entry, made without looking whether something was there, until the
   *  next create or remove: failed() cancels it. */
  private unsure: { entry: number; at: At; was: PathState | undefined } | null = null;
  private timed = new Set<string>();
  /** The path last found in `timed`. */
  private lastTimed = '';
  /** The generations journaled by this run, and every path their entries name that may be
   *  there (null: more than NAMED_MAX, no longer kept; the launcher then seals from the
   *  journals on disk). The paths in `paths` are added when it is let go of, not at each entry. */
  private readonly journaled = new Set<number>();
  private named: PathStates | null = new PathStates();
  private buf: Buffer | null = null;

  /** `root`: CKPT_DIR/journal, or null for no journal (behaviour only). */
  constructor(private readonly root: string | null, generation: number | null) {
    this.gen = root === null ? null : generation;
  }

  /** From now on, changes are undone by restarting from image `generation`. */
  startGeneration(generation: number): void {
    if (this.root === null) return;
    this.closeJournal();
    this.gen = generation;
    this.unsure = null;
    this.letGoOfPaths();
    this.timed = new Set();
    this.lastTimed = '';
    // What is known of files no fd is open on now is not needed any more (a checkpoint only
    // classifies open files; the journal starts afresh): memory stays bounded.
    const open = new Set<FileState>();
    for (const h of this.handles.values()) if (h.file !== null) open.add(h.file);
    for (const [id, f] of this.files) if (!open.has(f)) this.files.delete(id);
  }

  /**
   * The program has ended: the journal is complete, and sealed (see sealJournals) from what
   * this run recorded, without reading it back. False if there was nothing to seal or it
   * could not be written (then the launcher seals from the journals on disk).
   */
  close(): boolean {
    this.closeJournal();
    this.letGoOfPaths();
    this.gen = null;
    if (this.root === null || this.journaled.size === 0 || this.named === null) return false;
    try {
      writeSeal(this.root, Math.min(...this.journaled), [...this.journaled], this.named);
      return true;
    } catch {
      return false;
    }
  }

  /** How the program has written the files it has open, by "dev:ino", where it has. */
  written(): [string, Written][] {
    const out = new Map<string, Written>();
    for (const [handle, h] of this.handles) {
      const f = h.file;
      if (f === null) continue;
      if (f.id === '') {
        try {
          f.id = idOf(fstatSync(handle, { bigint: true }));
        } catch {
          continue;
        }
        if (!this.files.has(f.id)) this.files.set(f.id, f);
      }
      out.set(f.id, f.overwrote ? 'overwrite' : 'append');
    }
    return [...out];
  }

  opened(handle: number, path: string, created = false): void {
    const h: HandleState = { path, file: null };
    this.handles.set(handle, h);
    if (created) {
      // New and empty: nothing to look up, and nothing of it to save in this generation.
      h.file = { id: '', end: 0, overwrote: false, gen: this.gen ?? -1, created: true, origSize: 0, saved: null };
      return;
    }
    if (this.gen !== null && this.paths.size !== 0 && isMade(this.paths.get(path))) {
      const f = this.fileOf(h, handle);
      if (f !== null) {
        this.resetFor(f, 0);
        f.created = true;
      }
    }
  }

  closed(handle: number): void {
    this.handles.delete(handle);
  }

  beforeWrite(handle: number, pos: number, len: number): void {
    if (this.guards.active) this.guards.beforeWrite(handle, pos, len);
    if (len <= 0) return;
    const h = this.handles.get(handle);
    if (h === undefined) return;
    const f = h.file ?? this.fileOf(h, handle);
    if (f === null) return;
    if (pos < f.end) f.overwrote = true;
    if (pos + len > f.end) f.end = pos + len;
    if (this.gen === null || h.path === '') return;
    if (f.gen !== this.gen) this.begin(f, h.path, handle);
    if (!f.created && pos < f.origSize) this.saveBlocks(f, h.path, handle, pos, Math.min(pos + len, f.origSize));
  }

  beforeTruncate(handle: number, size: number): void {
    if (this.guards.active) this.guards.beforeTruncate(handle, size);
    const h = this.handles.get(handle);
    if (h === undefined) return;
    const f = h.file ?? this.fileOf(h, handle);
    if (f === null) return;
    if (size < f.end) f.overwrote = true;
    f.end = size;
    if (this.gen === null || h.path === '') return;
    if (f.gen !== this.gen) this.begin(f, h.path, handle);
    if (!f.created && size < f.origSize) this.saveBlocks(f, h.path, handle, size, f.origSize);
  }

  beforeTruncateFile(id: string, path: string): void {
    if (this.guards.active) this.guards.beforeTruncateFile(id, path);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      return; // the open will fail too, or truncates nothing we could read
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return;
      let f = this.files.get(id);
      if (f === undefined) {
        f = { id, end: st.size, overwrote: false, gen: -1, created: false, origSize: 0, saved: null };
        this.files.set(id, f);
      }
      if (st.size > 0) f.overwrote = true;
      f.end = 0;
      if (this.gen === null) return;
      if (f.gen !== this.gen) this.begin(f, path, fd);
      if (!f.created && f.origSize > 0) this.saveBlocks(f, path, fd, 0, f.origSize, fd);
    } finally {
      closeSync(fd);
    }
  }

  beforeCreate(at: At, made: 'file' | 'dir' | 'symlink' | 'link'): void {
    this.unsure = null;
    if (this.gen === null) return;
    const was = this.paths.getAt(at);
    const known = this.seen(was);
    if (known === undefined && made === 'file') {
      // An open with O_CREAT may find a file there: whether it makes one is looked up.
      const st = statAt(at, false);
      if (st !== undefined) {
        this.note(at, kindOf(st), isMade(was));
        return;
      }
    } else if (known !== undefined && known !== null) {
      return;
    }
    this.dirTimes(at);
    const entry = this.append({ op: 'created', path: pathOfAt(at) });
    // A directory, symlink or link is made only where nothing is (else EEXIST): rather than
    // look first, the entry is cancelled if the change fails (failed).
    if (known === undefined) this.unsure = { entry, at, was };
    // A new name for an old file is undone as made, but the file itself is not new.
    this.note(at, made === 'dir' ? 'dir' : made === 'file' ? 'file' : 'other', made !== 'link');
  }

  beforeRemove(at: At): void {
    this.unsure = null;
    if (this.gen === null) return;
    const was = this.paths.getAt(at);
    const known = this.seen(was);
    if (known === null) return; // nothing there: the removal fails
    const made = isMade(was);
    // Made in this generation: nothing of it to keep.
    if (known !== undefined && made) {
      this.note(at, null, made);
      return;
    }
    const st = statAt(at, false);
    if (st === undefined) {
      this.note(at, null, made);
      return;
    }
    const path = pathOfAt(at);
    this.dirTimes(at);
    const times = { atimeNs: String(st.atimeNs), mtimeNs: String(st.mtimeNs) };
    if (st.isDirectory()) {
      if (!made) this.append({ op: 'removed', path, kind: 'dir', mode: Number(st.mode & 0o7777n), ...times });
    } else if (st.isSymbolicLink()) {
      this.append({ op: 'removed', path, kind: 'symlink', mode: 0o777, target: readlinkAt(at).toString('utf8') });
    } else {
      const f = this.files.get(idOf(st));
      // A file made in this generation did not exist at the checkpoint.
      if (f === undefined || f.gen !== this.gen || !f.created) this.saveRemoved(path, Number(st.mode & 0o7777n), times);
    }
    this.note(at, null, made);
  }

  rename(fromAt: At, toAt: At, rename: (noReplace: boolean) => void): void {
    this.unsure = null;
    if (this.gen === null) return rename(false);
    const from = pathOfAt(fromAt);
    const to = pathOfAt(toAt);
    const was = this.paths.getAt(fromAt);
    let srcKind = this.seen(was);
    let src: FileStat | undefined;
    const lookUp = (): Kind | null => {
      src = statAt(fromAt, false);
      if (src === undefined) this.note(fromAt, null, isMade(was));
      return src === undefined ? null : kindOf(src);
    };
    srcKind ??= lookUp();
    if (srcKind === null) return this.unrecorded(rename); // nothing there: the rename fails
    this.dirTimes(fromAt);
    this.dirTimes(toAt);
    let refused: string | undefined;
    const atTo = this.seen(this.paths.getAt(toAt));
    if (atTo === undefined && this.noReplace) {
      // Nothing known at `to`: rather than look, let the kernel rename only if nothing is
      // there. The entry is written first; if the rename fails, `from` is still there (it
      // was just seen or made), so the entry undoes to nothing even before it is cancelled.
      const k = this.append({ op: 'renamed', from, to });
      if (PAUSE_AT_RENAME) pauseForTest();
      try {
        rename(true);
        return this.renamed(fromAt, toAt, from, to, srcKind, isMade(was));
      } catch (e) {
        this.append({ op: 'failed', entry: k });
        // EEXIST: something is there, kept below. Otherwise the plain rename below says
        // what the program gets (EINVAL, ENOSYS...: if it works, this one cannot be used here).
        refused = (e as NodeJS.ErrnoException).code;
      }
    }
    if (atTo !== null) {
      const dst = statAt(toAt, false);
      if (dst !== undefined) {
        if (src === undefined && lookUp() === null) return this.unrecorded(rename);
        if (dst.dev === src!.dev && dst.ino === src!.ino) return this.unrecorded(rename); // two names of one file: nothing happens
        this.beforeRemove(toAt);
      }
    }
    const k = this.append({ op: 'renamed', from, to });
    try {
      rename(false);
    } catch (e) {
      this.append({ op: 'failed', entry: k });
      this.epoch++;
      throw e;
    }
    if (refused !== undefined && refused !== 'EEXIST') this.noReplace = false;
    this.renamed(fromAt, toAt, from, to, srcKind, isMade(was));
  }

  /** A rename that changes nothing to record (it fails, or renames a file onto itself). */
  private unrecorded(rename: (noReplace: boolean) => void): void {
    try {
      rename(false);
    } catch (e) {
      this.epoch++;
      throw e;
    }
  }

  /** After `from` was renamed to `to`: what is known moves with it. `made`: what `from` held was
   *  made in this generation. */
  private renamed(fromAt: At, toAt: At, from: string, to: string, srcKind: Kind, made: boolean): void {
    const moved = (p: string): string | null => (p === from ? to : p.startsWith(from + '/') ? to + p.slice(from.length) : null);
    for (const h of this.handles.values()) {
      const now = moved(h.path);
      if (now !== null) h.path = now;
    }
    // Below a directory: what was below `to` is gone; below `from`, what is there is no longer
    // known, but what was made in this generation moves with it.
    if (srcKind === 'dir') {
      const below = [...this.paths.takeBelow(from), ...this.paths.takeBelow(to)];
      this.addNamed(below.map(([p]) => p));
      for (const [p, v] of below) {
        const now = moved(p);
        if (now !== null && isMade(v)) this.paths.set(now, MADE);
      }
    }
    // `from` keeps its mark: whatever comes there next is made in this generation too, unless
    // an old file is linked or renamed there, which clears it.
    this.note(fromAt, null, made);
    this.note(toAt, srcKind, made);
  }

  failed(): void {
    if (this.unsure !== null) {
      // Nothing was made: the entry undoes nothing, and what was known of the place stands.
      this.append({ op: 'failed', entry: this.unsure.entry });
      this.paths.setAt(this.unsure.at, this.unsure.was ?? 0);
      this.unsure = null;
    }
    this.epoch++;
  }

  beforeSetTimes(target: At | number): void {
    if (this.gen === null) return;
    const path = this.untimed(typeof target === 'number' ? this.handles.get(target)?.path : pathOfAt(target));
    if (path === null) return;
    this.recordTimes(path, typeof target === 'number' ? lstatSync(path, { bigint: true, throwIfNoEntry: false }) : statAt(target, false));
  }

  /** Before an entry is made, removed or renamed in the directory `at` is in: its times. */
  private dirTimes(at: At): void {
    const i = at.path.indexOf('/') < 0 ? -1 : at.path.lastIndexOf('/');
    // Most changes are in a directory of the program's own: its path is a string already made.
    const path = this.untimed(i <= 0 ? at.host : at.host + '/' + at.path.slice(0, i));
    if (path !== null) this.recordTimes(path, statAt(parentAt(at), false));
  }

  /** The path whose times are to be recorded before it changes, or null: none, recorded
   *  already, or made in this generation (it had no times at the checkpoint). */
  private untimed(path: string | undefined): string | null {
    if (path === undefined || path === '') return null;
    if (path === this.lastTimed) return null; // most changes are in the directory of the last
    if (this.timed.has(path)) {
      this.lastTimed = path;
      return null;
    }
    return isMade(this.paths.get(path)) ? null : path;
  }

  private recordTimes(path: string, st: FileStat | undefined): void {
    if (st === undefined) return;
    this.timed.add(path);
    this.lastTimed = path;
    this.append({ op: 'times', path, atimeNs: String(st.atimeNs), mtimeNs: String(st.mtimeNs) });
  }

  /** The state of the file open as `handle` (shared by every handle on it). */
  private fileOf(h: HandleState, handle: number): FileState | null {
    let st: BigIntStats;
    try {
      st = fstatSync(handle, { bigint: true });
    } catch {
      return null;
    }
    if (!st.isFile()) return null;
    const id = idOf(st);
    let f = this.files.get(id);
    if (f === undefined) {
      f = { id, end: Number(st.size), overwrote: false, gen: -1, created: false, origSize: 0, saved: null };
      this.files.set(id, f);
    }
    h.file = f;
    return f;
  }

  private resetFor(f: FileState, size: number): void {
    f.gen = this.gen!;
    f.created = false;
    f.origSize = size;
    f.saved = null;
  }

  /** The file's first change in this generation: its size then is recorded. */
  private begin(f: FileState, path: string, handle: number): void {
    const st = fstatSync(handle, { bigint: true });
    const size = Number(st.size);
    this.resetFor(f, size);
    this.append({ op: 'size', path, size, atimeNs: String(st.atimeNs), mtimeNs: String(st.mtimeNs) });
  }

  /** Saves the blocks of [from, to) not saved yet in this generation, before they change:
   *  runs of adjacent ones in one read and one write (up to JOURNAL_RUN bytes). */
  private saveBlocks(f: FileState, path: string, handle: number, from: number, to: number, readable?: number): void {
    const first = Math.floor(from / JOURNAL_BLOCK);
    const last = Math.floor((to - 1) / JOURNAL_BLOCK);
    let fd = readable ?? -1;
    try {
      for (let i = first; i <= last;) {
        if (f.saved?.has(i) === true) {
          i++;
          continue;
        }
        let n = 1;
        while (i + n <= last && n < JOURNAL_RUN / JOURNAL_BLOCK && f.saved?.has(i + n) !== true) n++;
        if (fd < 0) {
          try {
            fd = openReadable(handle, path);
          } catch (e) {
            this.lost(path, e);
            f.created = true; // nothing more to save of it in this generation
            return;
          }
        }
        const pos = i * JOURNAL_BLOCK;
        const want = Math.max(0, Math.min(n * JOURNAL_BLOCK, f.origSize - pos));
        this.openJournal();
        const at = this.blocksEnd;
        // In the kernel where it can (a reflink on some file systems); else through a buffer.
        let got = want > 0 && nativeCopyRange !== null ? nativeCopyRange(fd, pos, this.blocks, at, want) : -1;
        if (got < 0) {
          const buf = (this.buf ??= Buffer.allocUnsafe(JOURNAL_RUN));
          got = 0;
          while (got < want) {
            const r = readSync(fd, buf, got, want - got, pos + got);
            if (r === 0) break; // shorter now than when first changed (another process)
            got += r;
          }
          for (let w = 0; w < got;) w += writeSync(this.blocks, buf, w, got - w, at + w);
        }
        this.blocksEnd += got;
        this.append({ op: 'block', path, pos, len: got, at });
        f.saved ??= new Set();
        for (let k = 0; k < n; k++) f.saved.add(i + k);
        i += n;
      }
    } finally {
      if (fd >= 0 && fd !== readable) closeSync(fd);
    }
  }

  /** Keeps a file about to be removed: a hard link in the journal (O(1)), else a copy. */
  private saveRemoved(path: string, mode: number, times: { atimeNs: string; mtimeNs: string }): void {
    this.openJournal();
    const saved = join('files', String(++this.savedFiles));
    const dest = join(this.dir(), saved);
    let linked = true;
    try {
      linkSync(path, dest);
    } catch {
      linked = false;
      try {
        copyFileSync(path, dest, constants.COPYFILE_FICLONE);
      } catch (e) {
        this.lost(path, e);
        return;
      }
    }
    this.append({ op: 'removed', path, kind: 'file', mode, saved, ...times });
    // Writes through fds still open on it change the linked copy from now on (undone there
    // first); a copy is no longer the file they write to.
    for (const h of this.handles.values()) if (h.path === path) h.path = linked ? dest : '';
  }

  private lost(path: string, e: unknown): void {
    this.append({ op: 'lost', path, why: (e as NodeJS.ErrnoException).code ?? String(e) });
  }

  private dir(): string {
    return join(this.root!, genName(this.gen!));
  }

  /** Opens this generation's journal, replacing any left over from an earlier run. */
  private openJournal(): void {
    if (this.log !== null) return;
    const dir = this.dir();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'files'), { recursive: true });
    this.blocks = openSync(join(dir, 'blocks'), 'w', 0o600);
    this.blocksEnd = 0;
    this.savedFiles = 0;
    this.entries = 0;
    this.log = new RecordLog(join(dir, 'log'), 0o600);
    this.encoder = new EntryEncoder();
    this.journaled.add(this.gen!);
  }

  private closeJournal(): void {
    if (this.log === null) return;
    this.log.close();
    closeSync(this.blocks);
    this.log = null;
    this.blocks = -1;
  }

  /** One entry: it is in the journal before the change it undoes is made. Returns its number. */
  private append(e: JournalEntry | Cancel): number {
    this.openJournal();
    const n = this.encoder.encode(e);
    this.log!.append(this.encoder.bytes, n);
    this.encoder.written();
    // The paths of the other entries are in `paths`, added to `named` later.
    if (e.op === 'size' || e.op === 'block' || e.op === 'times' || e.op === 'lost') this.addNamed([e.path]);
    return this.entries++;
  }

  /** What `paths` says is at a path (state `v`): a kind, null (nothing), undefined (not known). */
  private seen(v: PathState | undefined): Kind | null | undefined {
    if (v === undefined || Math.floor(v / EPOCH) !== this.epoch) return undefined;
    return KINDS[v % MADE]!;
  }

  /** Records what is at `at` now, and whether it was made in this generation. */
  private note(at: At, kind: Kind | null, made: boolean): void {
    // What `paths` says only saves work (a lookup, a file saved that needed none, which its
    // `created` entry undoes anyway): past PATHS_MAX it is let go of, so that it stays small
    // and quick to look things up in.
    if (this.paths.size >= PATHS_MAX) this.letGoOfPaths();
    this.paths.setAt(at, this.epoch * EPOCH + (made ? MADE : 0) + KINDS.indexOf(kind));
  }

  /** Forgets what `paths` knows, keeping for the seal the paths that may be there (one this
   *  generation's own changes left nothing at is unlisted in the seal, which says absent). */
  private letGoOfPaths(): void {
    if (this.named !== null) {
      for (const [dir, names] of this.paths.byDir()) for (const [name, v] of names) if (this.seen(v) !== null) this.named.setIn(dir, name, 1);
      if (this.named.size > NAMED_MAX) this.named = null;
    }
    this.paths = new PathStates();
  }

  /** Paths the journals name, for the seal. */
  private addNamed(paths: Iterable<string>): void {
    if (this.named === null) return;
    for (const p of paths) this.named.set(p, 1);
    if (this.named.size > NAMED_MAX) this.named = null;
  }
}

const idOf = (st: { dev: bigint; ino: bigint }): string => `${st.dev}:${st.ino}`;

type Kind = 'dir' | 'file' | 'other';
const kindOf = (st: FileStat): Kind => (st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other');

/**
 * A path's state in ChangeRecorder.paths, in one number: epoch * EPOCH + (MADE if what is
 * there was made in this generation: nothing of it existed at the checkpoint) + the index in
 * KINDS of what is there (null: nothing). What is there holds only while the epoch is the
 * recorder's (epoch 0: never, only MADE is known).
 */
type PathState = number;
const KINDS: readonly (Kind | null)[] = [null, 'dir', 'file', 'other'];
const MADE = 4;
const EPOCH = 8;
const isMade = (v: PathState | undefined): boolean => v !== undefined && v % EPOCH >= MADE;

/**
 * Testing aid: with STASIS_TEST_PAUSE=journal-rename, the program's thread says so on stderr
 * and stops for ever once a rename's entry is in the log and before the rename is made, so
 * that a test can kill the launcher at that instant.
 */
const PAUSE_AT_RENAME = process.env['STASIS_TEST_PAUSE'] === 'journal-rename';
function pauseForTest(): void {
  writeSync(2, 'stasis: paused at journal-rename (STASIS_TEST_PAUSE)\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

/** A read-only fd on the file open as `handle` (which may be write-only). */
function openReadable(handle: number, path: string): number {
  return openSync(PROC_FD !== null ? PROC_FD + handle : path, 'r');
}

/** What a path was when the program stopped: lstat's identity, size and times, or null if absent. */
export interface SealedState {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  dev: string;
  ino: string;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
}

/** The seal: what every path the journals name was when the program stopped. */
const SEAL = 'sealed.json';
/** Journaled names in one directory above which it is listed once rather than each looked up. */
const LIST_AT = 16;

export function stateOf(path: string): SealedState | null {
  const st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
  if (st === undefined) return null;
  const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  return { kind, dev: String(st.dev), ino: String(st.ino), size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
}

/** The paths a journal's entries name. */
export function pathsOf(e: JournalEntry): string[] {
  return e.op === 'renamed' ? [e.from, e.to] : [e.path];
}

/**
 * Seals the journals of generation `from` and later once the program has stopped for good
 * (it ended, or stopped after a checkpoint): a later restart that finds a path no longer as
 * sealed knows another process changed it, a conflict. Without a seal (the launcher was
 * killed) the program's changes cannot be told from others'. Only paths that exist are
 * written: a path the journals name and the seal does not was absent.
 */
export function sealJournals(ckptDir: string, from: number): void {
  const root = join(ckptDir, JOURNAL_DIR);
  const paths = new PathStates();
  const gens: number[] = [];
  for (const n of listJournals(root)) {
    if (n.generation < from) continue;
    gens.push(n.generation);
    for (const e of readJournal(join(root, n.name), () => null)) for (const p of pathsOf(e)) paths.set(p, 1);
  }
  writeSeal(root, from, gens, paths);
}

/** Writes the seal of journals `gens` (of generation `from` and later), which name `paths`. */
function writeSeal(root: string, from: number, gens: number[], paths: PathStates): void {
  if (paths.size === 0) return;
  const states: Record<string, SealedState> = {};
  for (const [dir, names] of paths.byDir()) {
    // A job that makes and removes many files in one directory: one listing tells which are gone.
    const listed = names.size > LIST_AT ? namesIn(dir === '' ? '/' : dir) : null;
    for (const name of names.keys()) {
      if (listed !== null && plainName(name) && !listed.has(name)) continue;
      const p = `${dir}/${name}`;
      const s = stateOf(p);
      if (s !== null) states[p] = s;
    }
  }
  const tmp = join(root, `.${SEAL}.${process.pid}`);
  writeFileSync(tmp, JSON.stringify({ from, gens: [...gens].sort((a, b) => a - b), unlisted: 'absent', states }) + '\n', { mode: 0o600 });
  renameSync(tmp, join(root, SEAL));
}

/** The names in a directory (none if it cannot be listed: then each path is looked up). */
function namesIn(dir: string): Set<string> | null {
  try {
    const names = readdirSync(dir);
    // A name that is not UTF-8 does not come back as it was given: look each up instead.
    return names.some((n) => n.includes('\ufffd')) ? null : new Set(names);
  } catch {
    return null;
  }
}

const plainName = (n: string): boolean => n !== '' && n !== '.' && n !== '..' && !n.includes('/');

/** What a seal says: each path's state as the program left it, for the paths named by the
 *  journals of generation `from` and later. */
export interface Seal {
  from: number;
  /** The journals it covers (all of `from` and later when not said). */
  covers(generation: number): boolean;
  /** A sealed path's state (null: absent), or undefined if the seal says nothing of it:
   *  `named` tells whether the journals of `from` and later name it. */
  stateOf(path: string, named: boolean): SealedState | null | undefined;
}

/** The seal, or null: none (the launcher was killed), or unreadable (then nothing is known). */
export function readSeal(ckptDir: string): Seal | null {
  try {
    const s = JSON.parse(readFileSync(join(ckptDir, JOURNAL_DIR, SEAL), 'utf8')) as { from?: unknown; gens?: unknown; unlisted?: unknown; states?: unknown };
    if (typeof s.states !== 'object' || s.states === null || typeof s.from !== 'number') return null;
    const from = s.from;
    const states = new Map(Object.entries(s.states as Record<string, SealedState | null>));
    const unlistedAbsent = s.unlisted === 'absent';
    const gens = Array.isArray(s.gens) ? new Set(s.gens) : null;
    return {
      from,
      covers: (g) => (gens === null ? g >= from : gens.has(g)),
      stateOf: (path, named) => (states.has(path) ? states.get(path)! : unlistedAbsent && named ? null : undefined),
    };
  } catch {
    return null;
  }
}

/** A run about to change files: a seal left by an earlier one says nothing of what this one does. */
export function unseal(ckptDir: string): void {
  // unlink, not rmSync: on every launch's path, and rmSync loads Node's recursive remover.
  try {
    unlinkSync(join(ckptDir, JOURNAL_DIR, SEAL));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
  }
}

/** The journals in `root` (CKPT_DIR/journal), by generation. */
export function listJournals(root: string): { name: string; generation: number }[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const m = /^gen-(\d{6,})$/.exec(name);
    return m === null ? [] : [{ name, generation: Number(m[1]) }];
  });
}

/**
 * The entries of one journal; a last one cut short (the launcher killed while writing it) is
 * not there yet, and its change was not made. `damaged` says what to throw for a bad entry
 * (null: stop reading there).
 */
export function readJournal(dir: string, damaged: (entry: number) => Error | null): JournalEntry[] {
  let log: Buffer;
  try {
    log = readFileSync(join(dir, 'log'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const all: (JournalEntry | null)[] = [];
  for (const e of decodeEntries(log, damaged)) {
    if (e.op === 'failed') {
      all[e.entry] = null; // its change never happened
      all.push(null);
    } else {
      all.push(e);
    }
  }
  return all.filter((e): e is JournalEntry => e !== null);
}

// The restart's side of rollback: the undo journals (journal.ts) of the image restarted from
// and of every later generation, undone newest first, entry by entry in reverse, so that each
// preopen holds what the program saw at the checkpoint. Every entry undoes to nothing when its
// change never happened (the launcher was killed between the entry and the change), so an
// interrupted rollback can simply be run again. What the rollback replaces or removes is kept
// (moved, not deleted) in CKPT_DIR/kept/ and reported.
import * as fs from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { exemptMatcher } from './rules.js';
import { StasisError } from '../errors.js';
import { genName } from '../image/format.js';
import { setTimesPath } from '../wasi/native.js';
import { JOURNAL_DIR, type JournalEntry } from './journal.js';

interface Journal {
  generation: number;
  dir: string;
  entries: JournalEntry[];
}

export interface RollbackPlan {
  /** Journals to undo, newest first. */
  journals: Journal[];
  /** One line per path, for `restart --dry-run`. */
  lines: string[];
  /** Host paths the rollback may change. */
  touched: Set<string>;
}

/** A restart with --no-rollback: nothing to undo. */
export const NO_ROLLBACK: RollbackPlan = { journals: [], lines: [], touched: new Set() };

const GEN_RE = /^gen-(\d{6,})$/;

/**
 * The journals a restart from `generation` undoes (that one and every later one), read and
 * checked; nothing is changed. `roots`: the preopens' host directories now: entries outside
 * them (the program's directories moved since) are left alone, and said so. `saved`: files
 * the image has copies of: their contents come back from the copy, under the restart plan's
 * rules for a file that differs, so the journal's bytes for them are not used.
 */
export function planRollback(ckptDir: string, generation: number, roots: string[], saved: string[] = [], exempt: readonly string[] = []): RollbackPlan {
  const root = join(ckptDir, JOURNAL_DIR);
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    names = [];
  }
  const journals = names
    .map((n) => ({ n, m: GEN_RE.exec(n) }))
    .filter((x): x is { n: string; m: RegExpExecArray } => x.m !== null && Number(x.m[1]) >= generation)
    .map(({ n, m }) => ({ generation: Number(m[1]), dir: join(root, n), entries: readLog(join(root, n)) }))
    .sort((a, b) => b.generation - a.generation);
  const real = roots.map((r) => realOr(r));
  // Plain absolute paths only: a damaged or forged journal cannot name a place outside with `..`.
  const inside = (p: string): boolean => isAbsolute(p) && resolve(p) === p && real.some((r) => p === r || p.startsWith(r + '/'));
  const fromCopy = new Set(saved.map(realPath));
  for (const j of journals) j.entries = j.entries.filter((e) => !((e.op === 'size' || e.op === 'block') && fromCopy.has(e.path)));
  const lost = journals.flatMap((j) => j.entries.filter((e): e is Extract<JournalEntry, { op: 'lost' }> => e.op === 'lost' && inside(e.path)));
  if (lost.length > 0) {
    const what = [...new Set(lost.map((e) => `${e.path} (${e.why})`))].join(', ');
    throw new StasisError('FILE_ACCESS', `restart refused, nothing changed: the program changed files after the checkpoint that could not be saved for rollback: ${what}; restart with --no-rollback to keep the files as they are`);
  }
  const touched = new Set<string>();
  const outside = new Set<string>();
  const exemptOf = exemptMatcher(exempt);
  const exempted = new Map<string, string>();
  for (const j of journals) {
    for (const e of j.entries) {
      const paths = e.op === 'renamed' ? [e.from, e.to] : [e.path];
      const by = paths.map(exemptOf).find((x) => x !== undefined);
      if (by !== undefined) for (const p of paths) exempted.set(p, by);
      else if (paths.every(inside)) for (const p of paths) touched.add(p);
      else for (const p of paths) outside.add(p);
    }
  }
  const lines = [
    ...describe(journals, touched),
    ...[...exempted].sort().map(([p, by]) => `rollback ${p}: left as it is (--rollback-exempt ${by})`),
    ...[...outside].sort().map((p) => `rollback ${p}: left alone, outside the program's directories now (moved with --dir or --path-map?)`),
  ];
  return { journals, lines, touched };
}

/**
 * One line per path: what undoing the journals does to it, worked out on a picture of the
 * directories (what is on disk, changed as each entry would change it); nothing is changed.
 */
function describe(journals: Journal[], touched: Set<string>): string[] {
  interface Node { from: string | null; kind: string; contents: boolean }
  const overlay = new Map<string, Node | null>();
  const onDisk = (p: string): fs.Stats | undefined => fs.lstatSync(p, { throwIfNoEntry: false });
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

/** The entries of one journal; a last line cut short (the launcher killed while writing it) is
 *  not there yet, and its change was not made. */
function readLog(dir: string): JournalEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(join(dir, 'log'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new StasisError('FILE_ACCESS', `restart refused, nothing changed: cannot read the undo journal ${dir} (${(e as NodeJS.ErrnoException).code}); fix its permissions`);
  }
  const lines = text.split('\n');
  lines.pop(); // '' after the last newline, or an entry cut short
  return lines.map((line, i) => {
    try {
      const e = JSON.parse(line) as JournalEntry;
      if (typeof e !== 'object' || e === null || typeof e.op !== 'string') throw new Error('not an entry');
      return e;
    } catch {
      throw new StasisError('CORRUPT_IMAGE', `restart refused, nothing changed: the undo journal ${join(dir, 'log')} is damaged at line ${i + 1}; restart with --no-rollback to leave the files as they are`);
    }
  });
}

/**
 * Undoes the plan's journals, then removes them. Returns one line per thing kept (also listed
 * in `keptDir`/kept.json).
 */
export function applyRollback(plan: RollbackPlan, keptDir: string): string[] {
  const kept: string[] = [];
  const report: { path: string; kept: string; what: string }[] = [];
  // Where what is at a path now was before the rollback renamed it back: named so in reports.
  const was = new Map<string, string>();
  const keepAside = (path: string, what: string, move: boolean): void => {
    fs.mkdirSync(keptDir, { recursive: true });
    const shown = was.get(path) ?? path;
    const dest = join(keptDir, `${report.length + 1}-${basename(shown)}`);
    if (move) moveAside(path, dest);
    else fs.copyFileSync(path, dest, fs.constants.COPYFILE_FICLONE);
    report.push({ path: shown, kept: dest, what });
    kept.push(`rolled back ${shown} (${what}); kept in ${dest}`);
  };
  const keptContents = new Set<string>();
  const times = new Map<string, { atimeNs: string; mtimeNs: string }>();
  for (const j of plan.journals) {
    let blocks = -1;
    try {
      for (const e of [...j.entries].reverse()) {
        if (e.op === 'renamed' ? !plan.touched.has(e.from) : !plan.touched.has(e.path)) continue;
        switch (e.op) {
          case 'created': {
            const st = fs.lstatSync(e.path, { throwIfNoEntry: false });
            if (st === undefined) break;
            if (st.isDirectory() && fs.readdirSync(e.path).length === 0) fs.rmdirSync(e.path);
            else keepAside(e.path, 'made after the checkpoint', true);
            break;
          }
          case 'removed': {
            if (exists(e.path)) break; // never removed
            if (e.kind === 'dir') fs.mkdirSync(e.path, { mode: e.mode });
            else if (e.kind === 'symlink') fs.symlinkSync(e.target!, e.path);
            else moveAside(join(j.dir, e.saved!), e.path);
            if (e.kind !== 'symlink') fs.chmodSync(e.path, e.mode);
            break;
          }
          case 'renamed':
            if (exists(e.to) && !exists(e.from)) {
              fs.renameSync(e.to, e.from);
              was.set(e.from, was.get(e.to) ?? e.to);
              was.delete(e.to);
            }
            break;
          case 'size':
          case 'block': {
            const st = fs.lstatSync(e.path, { throwIfNoEntry: false });
            if (st === undefined || !st.isFile()) break;
            if (!keptContents.has(e.path)) {
              keptContents.add(e.path);
              keepAside(e.path, 'its contents changed after the checkpoint', false);
            }
            if (e.op === 'size') {
              fs.truncateSync(e.path, e.size);
            } else {
              if (blocks < 0) blocks = fs.openSync(join(j.dir, 'blocks'), 'r');
              const buf = Buffer.allocUnsafe(e.len);
              const got = fs.readSync(blocks, buf, 0, e.len, e.at);
              if (got !== e.len) throw new StasisError('CORRUPT_IMAGE', `the undo journal ${j.dir} is missing saved bytes of ${e.path}; its rollback is incomplete`);
              const fd = fs.openSync(e.path, 'r+');
              try {
                for (let w = 0; w < got;) w += fs.writeSync(fd, buf, w, got - w, e.pos + w);
              } finally {
                fs.closeSync(fd);
              }
            }
            break;
          }
          case 'times':
            times.set(e.path, e); // the oldest wins: set once the contents are back
            break;
        }
      }
    } finally {
      if (blocks >= 0) fs.closeSync(blocks);
    }
  }
  for (const [path, t] of times) {
    if (exists(path)) setTimesPath(path, BigInt(t.atimeNs), BigInt(t.mtimeNs), false);
  }
  if (report.length > 0) fs.writeFileSync(join(keptDir, 'kept.json'), JSON.stringify(report, null, 1) + '\n');
  for (const j of plan.journals) fs.rmSync(j.dir, { recursive: true, force: true });
  return kept;
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

function exists(p: string): boolean {
  return fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined;
}

function realOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/** Moves a file or directory (a rename, or a copy and removal across file systems). */
function moveAside(src: string, dest: string): void {
  fs.mkdirSync(dirname(dest), { recursive: true });
  try {
    fs.renameSync(src, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    fs.cpSync(src, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true, errorOnExist: true, force: false });
    fs.rmSync(src, { recursive: true });
  }
}

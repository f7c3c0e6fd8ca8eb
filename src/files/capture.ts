// The file side of a checkpoint, run by the launcher while the program is paused: which
// regular files are open (one record per file, however many fds), where they are now (found
// by identity if renamed), what the policy decides for each, and copies of the saved ones.
import { closeSync, existsSync, fstatSync, lstatSync, readdirSync, rmSync, type BigIntStats } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FileRecord, SavedCopy } from '../image/schema.js';
import { stageFile } from '../image/files.js';
import { nowNs, settledBefore } from '../util/fs.js';
import { guestPath, hostPathOf, type FileFdState, type Location, type Preopen, type WasiState } from '../wasi/state.js';
import { Fdflags } from '../wasi/constants.js';
import { GUARD_MIN, newGuard, type FileGuard } from './guard.js';
import type { Written } from './journal.js';
import { decide, type OpenFile, type StasisPlugin } from './plugin.js';

/** What a launcher remembers of the copies it saved, to skip copying unchanged files. */
export type CopyCache = Map<string, { size: bigint; mtimeNs: bigint; ctimeNs: bigint; copiedAt: bigint; copy: SavedCopy }>;

export interface FileCapture {
  records: FileRecord[];
  /** Copies staged for this image, to publish with it (or delete if it fails). */
  staged: Map<FileRecord, string>;
  /** Cache entries to remember once the image is written. */
  remember: Map<FileRecord, { key: string; st: BigIntStats; copiedAt: bigint }>;
  /** Big files copied after the program resumes (guard.ts): their staged copies are complete once copied. */
  guards: FileGuard[];
}

/** How many directory entries an identity search may look at before giving up. */
const SEARCH_LIMIT = 20_000;

/** Where the preopens and files are, and how the policy is reached, for one capture. */
export interface CaptureContext {
  ckptDir: string;
  plugins: readonly StasisPlugin[];
  cache: CopyCache;
  /** The preopens as the program's state names them (before --path-map): records and rules use those. */
  named: Preopen[];
  /** A location's host path now (through --path-map and restart moves). */
  physical: (loc: Location) => string | null;
}

/** A paused program's fds: its WASI state and the host fds behind its file fds. */
export interface PausedFds {
  wasi: WasiState;
  /** [guest fd, host fd], open in this process while the program waits. */
  fileHandles: [number, number][];
  /** How the program has written its files, by "dev:ino" (journal.ts). */
  written?: [string, Written][];
}

interface OpenGroup { key: string; st: BigIntStats; handles: number[]; fds: FileFdState[]; written?: Written }

export async function captureFiles(c: PausedFds, ctx: CaptureContext): Promise<FileCapture> {
  const out: FileCapture = { records: [], staged: new Map(), remember: new Map(), guards: [] };
  const states = new Map(c.wasi.fds.filter((f): f is FileFdState => f.kind === 'file').map((f) => [f.fd, f]));
  // Group the fds by the file they are open on.
  const groups = new Map<string, OpenGroup>();
  for (const [fd, handle] of c.fileHandles) {
    const s = states.get(fd);
    if (s === undefined) continue;
    const st = fstatSync(handle, { bigint: true });
    if (!st.isFile()) continue; // devices and the like are reopened, never saved
    const key = `${st.dev}:${st.ino}`;
    const g = groups.get(key);
    if (g === undefined) groups.set(key, { key, st, handles: [handle], fds: [s] });
    else {
      g.fds.push(s);
      g.handles.push(handle);
    }
  }
  const written = new Map(c.written ?? []);
  for (const g of groups.values()) {
    const w = written.get(g.key);
    if (w !== undefined) g.written = w;
  }
  try {
    for (const g of groups.values()) out.records.push(await captureFile(g, c.wasi.preopens, ctx, out));
  } catch (e) {
    for (const g of out.guards) {
      closeSync(g.src);
      closeSync(g.dest);
    }
    for (const staged of out.staged.values()) rmSync(staged, { force: true });
    throw e;
  }
  return out;
}

/** One file: where it is, the policy's decision, and its copy if saved. `preopens`: where they are now. */
async function captureFile({ key, st, handles, fds, written }: OpenGroup, preopens: Preopen[], ctx: CaptureContext, out: FileCapture): Promise<FileRecord> {
  let location = fds[0]!.location;
  let deleted = st.nlink === 0n;
  if (!deleted && !sameFile(ctx.physical(location), st)) {
    // Renamed while open: find it by identity, or treat it as gone from the program's view.
    const found = findByIdentity(preopens, location, st);
    if (found === null) deleted = true;
    else location = found;
  }
  for (const f of fds) f.location = { ...location };
  const hostPath = hostPathOf(ctx.named, location) ?? '';
  const size = Number(st.size);
  const writable = fds.filter((f) => f.access !== 'r');
  const file: OpenFile = {
    path: hostPath,
    guestPath: guestPath(location),
    fds: fds.map((f) => f.fd),
    writable: writable.length > 0,
    append: writable.length > 0 && writable.every((f) => (f.fdflags & Fdflags.APPEND) !== 0),
    atEnd: writable.every((f) => (f.fdflags & Fdflags.APPEND) !== 0 || f.offset >= size),
    size, mode: Number(st.mode & 0o7777n), deleted,
    ...(written !== undefined && { written }),
  };
  const d = await decide(ctx.plugins, file, { treatment: 'reopen', reason: 'default', onDiffer: 'refuse' });
  const record: FileRecord = {
    fds: [...file.fds], location, hostPath, deleted, size, mode: file.mode,
    treatment: d.treatment, reason: d.reason, onDiffer: d.onDiffer,
    ...(d.restartPath !== undefined && { restartPath: d.restartPath }),
  };
  if (d.treatment === 'save') {
    const known = ctx.cache.get(key);
    const now = nowNs();
    if (known && known.size === st.size && known.mtimeNs === st.mtimeNs && known.ctimeNs === st.ctimeNs && settledBefore(st.ctimeNs, known.copiedAt)
      // ...and the copy is still in the store (no image may reference it any more, once the file was closed).
      && existsSync(join(ctx.ckptDir, known.copy.file))) {
      record.copy = known.copy; // unchanged since it was saved: not copied again
    } else {
      const staged = stageFile(ctx.ckptDir, handles[0]!, size >= GUARD_MIN);
      out.staged.set(record, staged.path);
      if (staged.guard) out.guards.push(newGuard(key, handles, staged.guard.src, staged.guard.dest, size));
      out.remember.set(record, { key, st, copiedAt: now });
    }
  }
  return record;
}

function sameFile(path: string | null, st: BigIntStats): boolean {
  if (path === null) return false;
  const now = lstatSync(path, { bigint: true, throwIfNoEntry: false });
  return now !== undefined && now.dev === st.dev && now.ino === st.ino;
}

/**
 * Looks for the file with st's identity below the preopens: first in the directory it was
 * in, then everywhere (breadth first, bounded). Null if it is nowhere the program can reach.
 */
function findByIdentity(preopens: Preopen[], was: Location, st: BigIntStats): Location | null {
  let budget = SEARCH_LIMIT;
  const search = (p: Preopen, startRel: string): Location | null => {
    const queue = [startRel];
    while (queue.length > 0 && budget > 0) {
      const rel = queue.shift()!;
      let names: string[];
      try {
        names = readdirSync(rel === '' ? p.host : `${p.host}/${rel}`);
      } catch {
        continue;
      }
      for (const n of names) {
        if (--budget < 0) return null;
        const childRel = rel === '' ? n : `${rel}/${n}`;
        const s = lstatSync(`${p.host}/${childRel}`, { bigint: true, throwIfNoEntry: false });
        if (s === undefined) continue;
        if (s.dev === st.dev && s.ino === st.ino) return { preopen: p.guest, rel: childRel };
        if (s.isDirectory() && startRel === '') queue.push(childRel);
      }
      if (startRel !== '') return null; // the first pass looks at one directory only
    }
    return null;
  };
  const home = preopens.find((p) => p.guest === was.preopen);
  const dir = dirname(`/${was.rel}`).slice(1);
  return (home && search(home, dir === '' ? '' : dir))
    ?? preopens.reduce<Location | null>((hit, p) => hit ?? search(p, ''), null);
}

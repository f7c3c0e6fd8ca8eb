// Where running programs can be found: one entry per launched program in a private runtime
// directory (mode 0700), next to its control socket. Targets are named by program name,
// launcher pid, or checkpoint directory.
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { StasisError } from '../errors.js';
import { replaceFileSync } from '../util/fs.js';
import { alive } from '../util/proc.js';

export interface Entry {
  name: string;
  pid: number;
  socket: string;
  ckptDir: string;
  module: string;
  startedAt: string;
}

/**
 * The directory of control sockets and registry entries: $XDG_RUNTIME_DIR/stasis-UID, else
 * stasis-UID in the temporary directory, where another user may have made that name first. It
 * is used only if it is a real directory (not a link), this user's, and private (0700); a
 * directory of another user's in a sticky /tmp cannot be swapped once checked.
 */
export function runtimeDir(): string {
  // The effective uid, as userInfo() has it, without its look-up in the user database.
  const uid = process.geteuid?.() ?? userInfo().uid;
  const base = process.env.XDG_RUNTIME_DIR ?? tmpdir();
  const dir = join(base, `stasis-${uid}`);
  // Made when missing (looked at first: a launch asks several times, and a refused mkdir costs
  // an exception each time).
  let st = lstatSync(dir, { throwIfNoEntry: false });
  if (st === undefined) {
    mkdirSync(base, { recursive: true });
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    st = lstatSync(dir);
  }
  const way = `remove it if it is not yours to keep, or set XDG_RUNTIME_DIR to a directory only you can write`;
  if (st.isSymbolicLink()) throw new StasisError('FILE_ACCESS', `runtime directory ${dir} is a symbolic link (to ${readlinkSync(dir)}), not a directory Stasis made; ${way}`);
  if (!st.isDirectory()) throw new StasisError('FILE_ACCESS', `runtime directory ${dir} is not a directory; ${way}`);
  if (st.uid !== uid) throw new StasisError('FILE_ACCESS', `runtime directory ${dir} belongs to uid ${st.uid}, not to you (uid ${uid}); ${way}`);
  if ((st.mode & 0o077) !== 0) throw new StasisError('FILE_ACCESS', `runtime directory ${dir} has mode 0${(st.mode & 0o777).toString(8)}, not 0700: others could reach its sockets; chmod 700 it, or ${way}`);
  return dir;
}

/** Programs launched by this process so far (an embedding application may launch several). */
let launched = 0;

/** A fresh key for a program launched by this process: its pid, then pid-1, pid-2, ... */
export function newKey(): string {
  const key = launched === 0 ? String(process.pid) : `${process.pid}-${launched}`;
  launched++;
  return key;
}

export function socketPath(key: string): string {
  return join(runtimeDir(), `${key}.sock`);
}

export function register(key: string, e: Entry): void {
  replaceFileSync(join(runtimeDir(), `${key}.json`), JSON.stringify(e) + '\n', 0o600);
}

export function unregister(key: string): void {
  for (const f of [`${key}.json`, `${key}.sock`]) rmSync(join(runtimeDir(), f), { force: true });
}

/** Live entries (stale ones, whose launcher is gone, are removed). */
export function entries(): Entry[] {
  const dir = runtimeDir();
  const out: Entry[] = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    let e: Entry;
    try {
      e = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Entry;
    } catch {
      continue;
    }
    if (alive(e.pid)) out.push(e);
    else unregister(f.slice(0, -'.json'.length));
  }
  return out.sort((a, b) => a.pid - b.pid);
}

/** The running program a TARGET names: a pid, a name, or a checkpoint directory. */
export function findTarget(target: string | undefined): Entry {
  const all = entries();
  if (target === undefined) {
    if (all.length === 1) return all[0]!;
    if (all.length === 0) throw new StasisError('NO_TARGET', 'no program is running under stasis launch');
    throw new StasisError('NO_TARGET', `${all.length} programs are running (${all.map((e) => `${e.name}/${e.pid}`).join(', ')}); name one`);
  }
  const byPid = /^\d+$/.test(target) ? all.filter((e) => e.pid === Number(target)) : [];
  const byName = all.filter((e) => e.name === target);
  const dir = resolve(target);
  const byDir = all.filter((e) => e.ckptDir === dir);
  const found = [...new Set([...byPid, ...byName, ...byDir])];
  if (found.length === 1) return found[0]!;
  if (found.length === 0) throw new StasisError('NO_TARGET', `no running program named ${target} (by name, pid or checkpoint directory); see 'stasis status'`);
  const pids = new Set(found.map((e) => e.pid));
  if (pids.size < found.length) throw new StasisError('NO_TARGET', `${target} names ${found.length} programs (${found.map((e) => e.name).join(', ')}); use a name`);
  throw new StasisError('NO_TARGET', `${target} names ${found.length} programs (pids ${found.map((e) => e.pid).join(', ')}); use a pid`);
}

// A map from host paths to small numbers, kept by directory then name. The undo journal looks a
// path up before nearly every change (journal.ts), and most changes name one entry of a
// directory the program holds a handle on: its host path is then a string the host already
// has, so a lookup hashes only the entry's name, not a full path built for it.
import type { At } from '../wasi/beneath.js';

export class PathStates {
  private dirs = new Map<string, Map<string, number>>();
  /** Entries in all directories. */
  size = 0;
  /** The place last split (see place): its directory, the names known there, its name. A
   *  change looks its place up and then records it: one split and one directory lookup. */
  private at: At | null = null;
  private dir = '';
  private names: Map<string, number> | undefined;
  private name = '';

  /** The state at `at`, or undefined. */
  getAt(at: At): number | undefined {
    this.place(at);
    return this.names?.get(this.name);
  }

  setAt(at: At, v: number): void {
    this.place(at);
    if (this.names === undefined) this.dirs.set(this.dir, (this.names = new Map()));
    const before = this.names.size;
    this.names.set(this.name, v);
    this.size += this.names.size - before;
  }

  /** The state at a full host path. */
  get(path: string): number | undefined {
    const i = path.lastIndexOf('/');
    return this.dirs.get(path.slice(0, i))?.get(path.slice(i + 1));
  }

  set(path: string, v: number): void {
    const i = path.lastIndexOf('/');
    this.setIn(path.slice(0, i), path.slice(i + 1), v);
  }

  /** The state of `name` in the directory `dir` ('' for the root directory). */
  setIn(dir: string, name: string, v: number): void {
    let names = this.dirs.get(dir);
    if (names === undefined) {
      this.dirs.set(dir, (names = new Map()));
      this.at = null; // it may be the directory place() last found nothing in
    }
    const before = names.size;
    names.set(name, v);
    this.size += names.size - before;
  }

  /** Each directory ('' for the root directory) with its names' states. */
  byDir(): IterableIterator<[string, ReadonlyMap<string, number>]> {
    return this.dirs.entries();
  }

  /** Takes out the paths below `dir` (not `dir` itself), with their states. */
  takeBelow(dir: string): [string, number][] {
    const out: [string, number][] = [];
    for (const [d, names] of this.dirs) {
      if (d !== dir && !d.startsWith(dir + '/')) continue;
      for (const [name, v] of names) out.push([`${d}/${name}`, v]);
      this.dirs.delete(d);
      this.size -= names.size;
      this.at = null;
    }
    return out;
  }

  /**
   * Splits `at` into its directory's host path and its name. One place has one host path
   * (directory handles' paths are real paths), so it has one key, whichever handle it was
   * reached through.
   */
  private place(at: At): void {
    if (at === this.at) return;
    this.at = at;
    const p = at.path;
    const host = at.host === '/' ? '' : at.host;
    const i = p.indexOf('/') < 0 ? -1 : p.lastIndexOf('/'); // indexOf is the quicker call, and most paths have no '/'
    if (i >= 0) {
      this.dir = host + '/' + p.slice(0, i);
      this.name = p.slice(i + 1);
    } else if (p !== '') {
      this.dir = host;
      this.name = p;
    } else {
      const j = host.lastIndexOf('/');
      this.dir = host.slice(0, Math.max(j, 0));
      this.name = host.slice(j + 1);
    }
    this.names = this.dirs.get(this.dir);
  }
}

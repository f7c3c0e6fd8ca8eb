// The WASI preview-1 host: every wasi_snapshot_preview1 function, over the real file system.
// Calls check rights here and dispatch to the fd objects (fds.ts); paths are resolved by
// paths.ts. Errors travel as WasiError / Node errors and become errnos at the boundary.
import { constants as fsConstants, fstatSync } from 'node:fs';
import {
  Errno, Eventtype, EVENTRW_HANGUP, Fdflags, FDFLAGS_ALL, Filetype, Fstflags, Lookupflags,
  Oflags, OFLAGS_ALL, Right, RIGHTS_ALL, RIGHTS_DIR, RIGHTS_NEED_WRITE,
  RIGHTS_STDIO, SIGNAL_TO_HOST, SIGNALS_IGNORED, SUBCLOCK_ABSTIME, Whence,
} from './constants.js';
import { NO_CHANGE_HOOKS, type FileChangeHooks } from './changes.js';
import { Clocks } from './clocks.js';
import { errnoOf, WasiError } from './errno.js';
import { DirFd, Fd, FileFd, filetypeOf, StdioFd } from './fds.js';
import { Interrupted, sleep } from './interrupt.js';
import { GuestMemory, utf8 } from './memory.js';
import { closeFd, hostOfAt, linkAt, mkdirAt, openAt, openHostDir, pathOfAt, readlinkAt, removeAt, renameAt, setTimesAt, statAt, symlinkAt, type At, type FileStat } from './beneath.js';
import { joinRel, resolvePath, withSlash, type Resolved } from './paths.js';
import { hostPathOf, type FdState, type Location, type Mount, type Preopen, type WasiState } from './state.js';
import { type TimeSpec } from './native.js';
import { openStdin, type StdinFrom, type StdinSource } from './stdin.js';
import { WriteBehind } from './writebehind.js';
import { nodeCrypto } from '../util/builtins.js';

/** Thrown by proc_exit (and fatal proc_raise) to leave the guest; carries the exit status. */
export class ProcExit {
  constructor(
    readonly code: number,
    readonly signal?: string,
  ) {}
}

export interface HostOptions {
  args: string[];
  /** "KEY=VALUE" strings. */
  env: string[];
  preopens: Preopen[];
  /** Directories --path-map moved below preopens: later opens there go to the new place. */
  mounts?: Mount[];
  /** Shared write-behind buffer; pass one whose memory another thread can flush. */
  writeBehind?: WriteBehind;
  /** Where stdin comes from (stdin.ts): a StdinPump's channel, poll(2), or null when it is a regular file. */
  stdin: StdinFrom;
  /** Told before file bytes change (default: nobody). */
  changes?: FileChangeHooks;
  /** Rebuild this state instead of starting fresh (a restart); the fds follow (restoreFds). */
  restore?: { monotonicNs: bigint; stdinPending: Uint8Array; pollDeadlines?: string[] };
}

const O = fsConstants;
const SIGNAL_NAMES = [
  '', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGKILL',
  'SIGUSR1', 'SIGSEGV', 'SIGUSR2', 'SIGPIPE', 'SIGALRM', 'SIGTERM', 'SIGCHLD', 'SIGCONT',
  'SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGURG', 'SIGXCPU', 'SIGXFSZ', 'SIGVTALRM',
  'SIGPROF', 'SIGWINCH', 'SIGPOLL', 'SIGPWR', 'SIGSYS',
];

/** An i32 argument as the unsigned number it is; i64 arguments (BigInt) as they are. */
function unsigned<T>(x: T): T {
  return (typeof x === 'number' ? x >>> 0 : x) as T;
}

export class WasiHost {
  readonly fds: (Fd | undefined)[] = [];
  readonly clocks: Clocks;
  private readonly stdin: StdinSource;
  private mem!: GuestMemory;
  private readonly args: string[];
  private readonly env: string[];
  private readonly preopens: Preopen[];
  private readonly mounts: Mount[];
  /** A handle on each mount's host directory, in the order of `mounts`. */
  private readonly mountHandles: number[];
  /** Handles on the preopens' host directories, by guest name: what a restart reopens beneath. */
  private readonly rootHandles = new Map<string, number>();
  private readonly writeBehind: WriteBehind;
  private readonly changes: FileChangeHooks;
  /** Deadlines of a poll_oneoff a checkpoint interrupted (see poll). */
  private pollDeadlines: string[] | null = null;
  /** Reused scratch space for dirents and other small structs. */
  private readonly scratch = Buffer.alloc(64);

  constructor(opts: HostOptions) {
    this.args = opts.args;
    this.env = opts.env;
    this.preopens = opts.preopens;
    this.mounts = [...(opts.mounts ?? [])].sort((a, b) => b.rel.length - a.rel.length); // longest first
    this.mountHandles = this.mounts.map((m) => openHostDir(m.host));
    this.writeBehind = opts.writeBehind ?? new WriteBehind();
    this.changes = opts.changes ?? NO_CHANGE_HOOKS;
    this.clocks = new Clocks(opts.restore?.monotonicNs ?? 0n);
    this.stdin = openStdin(opts.stdin, opts.restore?.stdinPending);
    if (opts.restore !== undefined) {
      this.pollDeadlines = opts.restore.pollDeadlines ?? null;
      return;
    }
    for (const stream of [0, 1, 2] as const) {
      this.fds.push(new StdioFd(stream, stdioFiletype(stream), RIGHTS_STDIO, 0, 0, stream === 0 ? this.stdin : null));
    }
    for (const p of opts.preopens) {
      this.fds.push(this.mounted(DirFd.open(p.host, { preopen: p.guest, rel: '' }, RIGHTS_DIR, RIGHTS_ALL, p.guest)));
    }
  }

  /**
   * A restart's fds, rebuilt from their saved state once their files are in place. `handles`:
   * host fds (this process's) already open for some file fds, by guest fd.
   */
  restoreFds(fds: FdState[], handles: [number, number][]): void {
    const open = new Map(handles);
    for (const s of fds) this.fds[s.fd] = this.reopen(s, open.get(s.fd));
  }

  /** Rebuilds an fd from its saved state: the same number, rights, flags and offset. */
  private reopen(s: FdState, handle?: number): Fd {
    if (s.kind === 'stdio') {
      return new StdioFd(s.stream, stdioFiletype(s.stream), s.rightsBase, s.rightsInheriting, s.fdflags, s.stream === 0 ? this.stdin : null);
    }
    // Beneath the preopen's handle, never through a link: the program may have planted one
    // where a directory was since the checkpoint.
    const at = this.placeOf(s.location);
    if (s.kind === 'dir') {
      const d = this.mounted(new DirFd(openAt(at, O.O_RDONLY | O.O_DIRECTORY, 0), hostOfAt(at), s.location, s.rightsBase, s.rightsInheriting, 0, s.preopenName));
      d.refreshRoot();
      d.fdflags = s.fdflags;
      d.listing = s.listing;
      return d;
    }
    const access = s.access === 'rw' ? O.O_RDWR : s.access === 'w' ? O.O_WRONLY : O.O_RDONLY;
    handle ??= openAt(at, access, 0);
    return new FileFd(this.writeBehind, this.changes, handle, hostOfAt(at), s.location, s.access, s.filetype, s.rightsBase, s.rightsInheriting, s.fdflags, s.offset);
  }

  /** Where a location is: beneath its mount's handle or its (possibly remapped) preopen's. */
  private placeOf(loc: Location): At {
    const i = this.mounts.findIndex((m) => m.preopen === loc.preopen && (loc.rel === m.rel || loc.rel.startsWith(m.rel + '/')));
    if (i >= 0) {
      const m = this.mounts[i]!;
      return { fd: this.mountHandles[i]!, host: m.host, path: loc.rel.slice(m.rel.length + 1) };
    }
    const host = hostPathOf(this.preopens, { preopen: loc.preopen, rel: '' });
    if (host === null) throw new Error(`no preopen named ${loc.preopen}`);
    let fd = this.rootHandles.get(loc.preopen);
    if (fd === undefined) this.rootHandles.set(loc.preopen, (fd = openHostDir(host)));
    return { fd, host, path: loc.rel };
  }

  /** Gives a directory fd the mounts below it (paths relative to it), longest first. */
  private mounted(d: DirFd): DirFd {
    if (this.mounts.length === 0) return d;
    const base = d.location.rel;
    const below = this.mounts
      .map((m, i) => ({ ...m, fd: this.mountHandles[i]! }))
      .filter((m) => m.preopen === d.location.preopen && (base === '' ? m.rel !== '' : m.rel.startsWith(base + '/')))
      .map((m) => [base === '' ? m.rel : m.rel.slice(base.length + 1), m.host, m.fd] as const)
      .sort((a, b) => b[0].length - a[0].length);
    d.mounts = below.length > 0 ? below : null;
    return d;
  }


  /** Bytes read from stdin for the program that it has not consumed yet. */
  stdinPending(): Uint8Array {
    return this.stdin.pending();
  }

  /** Bytes this process has taken from its stdin for the program. */
  stdinReceived(): number {
    return this.stdin.received;
  }

  /** Gives the host the guest's memory; call once the instance exists. */
  attach(memory: WebAssembly.Memory, onGrow?: (bytes: number) => void): void {
    this.mem = new GuestMemory(memory, onGrow);
  }

  /** The host's state as plain data (see state.ts). */
  state(): WasiState {
    const fds = [];
    for (let i = 0; i < this.fds.length; i++) {
      const f = this.fds[i];
      if (f) fds.push(f.state(i));
    }
    return {
      args: [...this.args], env: [...this.env],
      preopens: this.preopens.map((p) => ({ ...p })), fds,
      ...(this.pollDeadlines !== null && { pollDeadlines: [...this.pollDeadlines] }),
    };
  }

  /** [guest fd, host fd] of every fd opened by path on a file (not a directory). */
  fileHandles(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < this.fds.length; i++) {
      const f = this.fds[i];
      if (f instanceof FileFd) out.push([i, f.handle]);
    }
    return out;
  }

  /** Makes every pending write visible on the host (at exit, trap, checkpoint). */
  flushAll(): void {
    this.writeBehind.flush();
  }

  // ---- helpers ---------------------------------------------------------------------------

  private get(fd: number, rights: number): Fd {
    const f = this.fds[fd];
    if (f === undefined) throw new WasiError(Errno.BADF);
    if ((f.rightsBase & rights) !== rights) throw new WasiError(Errno.NOTCAPABLE);
    return f;
  }

  /** After a rename or removal: directories at or below the places `gone` (a rename's source
   *  and the directory it may replace) have moved (see DirFd.root; roots are real paths, so
   *  a moved one starts with a gone place's path). */
  private refreshRoots(...gone: At[]): void {
    const paths = gone.map(pathOfAt);
    const moved = (f: DirFd): boolean => paths.some((p) => f.root === p || f.root.startsWith(p + '/'));
    if (!this.fds.some((f) => f instanceof DirFd && moved(f))) return;
    for (const f of this.fds) if (f instanceof DirFd) f.refreshRoot();
  }

  /** For fd_tell: the spec says the fd_seek right implies fd_tell. */
  private getTell(fd: number): Fd {
    const f = this.get(fd, 0);
    if (!(f.rightsBase & (Right.FD_TELL | Right.FD_SEEK))) throw new WasiError(Errno.NOTCAPABLE);
    return f;
  }

  private dir(fd: number, rights: number): DirFd {
    let f = this.fds[fd];
    if (f === undefined) throw new WasiError(Errno.BADF);
    f = this.asDir(fd, f);
    if (!(f instanceof DirFd)) throw new WasiError(Errno.NOTDIR);
    if ((f.rightsBase & rights) !== rights) throw new WasiError(Errno.NOTCAPABLE);
    return f;
  }

  private insert(f: Fd): number {
    let i = 0;
    while (this.fds[i] !== undefined) i++;
    this.fds[i] = f;
    return i;
  }

  private path(ptr: number, len: number): string {
    return this.mem.string(ptr, len);
  }

  private writeFilestat(ptr: number, st: FileStat): void {
    const m = this.mem;
    m.check(ptr, 64);
    m.bytes.fill(0, ptr, ptr + 64);
    m.setU64(ptr, st.dev);
    m.setU64(ptr + 8, st.ino);
    m.view.setUint8(ptr + 16, filetypeOf(st));
    m.setU64(ptr + 24, st.nlink);
    m.setU64(ptr + 32, st.size);
    m.setU64(ptr + 40, st.atimeNs);
    m.setU64(ptr + 48, st.mtimeNs);
    m.setU64(ptr + 56, st.ctimeNs);
  }

  /** Decodes the (atim, mtim, fstflags) of a set-times call. */
  private times(atim: bigint, mtim: bigint, flags: number): [TimeSpec, TimeSpec] {
    if (flags & ~15) throw new WasiError(Errno.INVAL);
    if ((flags & Fstflags.ATIM && flags & Fstflags.ATIM_NOW) || (flags & Fstflags.MTIM && flags & Fstflags.MTIM_NOW)) {
      throw new WasiError(Errno.INVAL);
    }
    const pick = (set: number, setNow: number, value: bigint): TimeSpec =>
      flags & set ? value : flags & setNow ? 'now' : null;
    return [pick(Fstflags.ATIM, Fstflags.ATIM_NOW, atim), pick(Fstflags.MTIM, Fstflags.MTIM_NOW, mtim)];
  }

  // ---- the imports -----------------------------------------------------------------------

  /** The wasi_snapshot_preview1 import object. */
  imports(): Record<string, (...a: never[]) => number> {
    const calls = this.calls();
    const wrapped: Record<string, (...a: never[]) => number> = {};
    for (const [name, fn] of Object.entries(calls)) {
      wrapped[name] = this.boundary(fn as Call, name !== 'fd_write');
    }
    return wrapped;
  }

  /**
   * Wraps a call for the import boundary: refresh memory views, turn errors into errnos, and
   * read i32 arguments as unsigned: every one in WASI preview 1 is (pointers, sizes, fds,
   * flags), and a pointer above 2 GiB of memory arrives as a negative number. i64 arguments
   * stay signed BigInts: the calls read them as u64 (u64ToNumber) or s64 (fd_seek's delta).
   * Fixed arities rather than rest parameters, so the hot path allocates nothing.
   */
  private boundary(f: Call, flushFirst: boolean): (...a: never[]) => number {
    const wb = this.writeBehind;
    const mem = (): void => {
      if (flushFirst && wb.pending) wb.flush();
      this.mem.refresh();
    };
    const done = (r: number | void): number => r ?? 0;
    const u = unsigned;
    switch (f.length) {
      case 0: return () => { try { mem(); return done(f()); } catch (e) { return errnoOf(e); } };
      case 1: return (a: never) => { try { mem(); return done(f(u(a))); } catch (e) { return errnoOf(e); } };
      case 2: return (a: never, b: never) => { try { mem(); return done(f(u(a), u(b))); } catch (e) { return errnoOf(e); } };
      case 3: return (a: never, b: never, c: never) => { try { mem(); return done(f(u(a), u(b), u(c))); } catch (e) { return errnoOf(e); } };
      case 4: return (a: never, b: never, c: never, d: never) => { try { mem(); return done(f(u(a), u(b), u(c), u(d))); } catch (e) { return errnoOf(e); } };
      // Up to nine, the most any WASI function has (extra arguments are undefined, ignored).
      default: return (a: never, b: never, c: never, d: never, e: never, g: never, h: never, i: never, j: never) => {
        try { mem(); return done(f(u(a), u(b), u(c), u(d), u(e), u(g), u(h), u(i), u(j))); } catch (x) { return errnoOf(x); }
      };
    }
  }

  private calls() {
    const h = this;
    return {
      args_sizes_get(argc: number, size: number) {
        h.mem.setU32(argc, h.args.length);
        h.mem.setU32(size, byteSize(h.args));
      },
      args_get(argv: number, buf: number) {
        writeStrings(h.mem, h.args, argv, buf);
      },
      environ_sizes_get(count: number, size: number) {
        h.mem.setU32(count, h.env.length);
        h.mem.setU32(size, byteSize(h.env));
      },
      environ_get(environ: number, buf: number) {
        writeStrings(h.mem, h.env, environ, buf);
      },

      clock_res_get(id: number, out: number) {
        h.mem.setU64(out, h.clocks.resolution(id));
      },
      clock_time_get(id: number, _precision: bigint, out: number) {
        h.mem.setU64(out, h.clocks.now(id));
      },

      fd_advise(fd: number, _offset: bigint, _len: bigint, advice: number) {
        const f = h.get(fd, Right.FD_ADVISE);
        if (advice > 5) throw new WasiError(Errno.INVAL);
        if (f instanceof StdioFd && f.filetype !== Filetype.REGULAR_FILE) throw new WasiError(Errno.SPIPE);
      },
      fd_allocate(fd: number, offset: bigint, len: bigint) {
        const f = h.get(fd, Right.FD_ALLOCATE);
        if (len === 0n) throw new WasiError(Errno.INVAL);
        f.allocate(u64ToNumber(offset), u64ToNumber(len));
      },
      fd_close(fd: number) {
        const f = h.get(fd, 0);
        h.fds[fd] = undefined;
        f.close();
      },
      fd_datasync(fd: number) {
        h.get(fd, Right.FD_DATASYNC).sync(true);
      },
      fd_sync(fd: number) {
        h.get(fd, Right.FD_SYNC).sync(false);
      },
      fd_fdstat_get(fd: number, out: number) {
        const f = h.asDir(fd, h.get(fd, 0));
        const m = h.mem;
        m.check(out, 24);
        m.view.setUint32(out, f.filetype, true); // filetype, padding, then fdflags and padding
        m.view.setUint32(out + 4, 0, true);
        m.view.setUint16(out + 2, f.fdflags, true);
        m.setU64(out + 8, f.rightsBase);
        m.setU64(out + 16, f.rightsInheriting);
      },
      fd_fdstat_set_flags(fd: number, flags: number) {
        const f = h.get(fd, Right.FD_FDSTAT_SET_FLAGS);
        if (flags & ~FDFLAGS_ALL) throw new WasiError(Errno.INVAL);
        f.fdflags = flags;
      },
      fd_fdstat_set_rights(fd: number, base: bigint, inheriting: bigint) {
        const f = h.get(fd, 0);
        const b = rightsOf(base);
        const i = rightsOf(inheriting);
        if ((b & ~f.rightsBase) !== 0 || (i & ~f.rightsInheriting) !== 0) {
          throw new WasiError(Errno.NOTCAPABLE);
        }
        f.rightsBase = b;
        f.rightsInheriting = i;
      },
      fd_filestat_get(fd: number, out: number) {
        const f = h.get(fd, Right.FD_FILESTAT_GET);
        h.writeFilestat(out, f.stat());
      },
      fd_filestat_set_size(fd: number, size: bigint) {
        const f = h.get(fd, Right.FD_FILESTAT_SET_SIZE);
        f.setSize(u64ToNumber(size));
      },
      fd_filestat_set_times(fd: number, atim: bigint, mtim: bigint, flags: number) {
        const f = h.get(fd, Right.FD_FILESTAT_SET_TIMES);
        const [a, m] = h.times(atim, mtim, flags);
        f.setTimes(a, m);
      },
      fd_pread(fd: number, iovs: number, n: number, offset: bigint, out: number) {
        const f = h.get(fd, Right.FD_READ | Right.FD_SEEK);
        h.mem.setU32(out, f.pread(h.mem, iovs, n, u64ToNumber(offset)));
      },
      fd_pwrite(fd: number, iovs: number, n: number, offset: bigint, out: number) {
        const f = h.get(fd, Right.FD_WRITE | Right.FD_SEEK);
        h.mem.setU32(out, f.pwrite(h.mem, iovs, n, u64ToNumber(offset)));
      },
      fd_read(fd: number, iovs: number, n: number, out: number) {
        const f = h.get(fd, Right.FD_READ);
        h.mem.setU32(out, f.read(h.mem, iovs, n));
      },
      fd_write(fd: number, iovs: number, n: number, out: number) {
        const f = h.get(fd, Right.FD_WRITE);
        if (!(f instanceof FileFd) && h.writeBehind.pending) h.writeBehind.flush();
        h.mem.setU32(out, f.write(h.mem, iovs, n));
      },
      fd_seek(fd: number, delta: bigint, whence: number, out: number) {
        const tellOnly = delta === 0n && whence === Whence.CUR;
        const f = tellOnly ? h.getTell(fd) : h.get(fd, Right.FD_SEEK);
        h.mem.setU64(out, f.seek(Number(BigInt.asIntN(64, delta)), whence));
      },
      fd_tell(fd: number, out: number) {
        const f = h.getTell(fd);
        h.mem.setU64(out, f.seek(0, Whence.CUR));
      },
      fd_prestat_get(fd: number, out: number) {
        const f = h.get(fd, 0);
        if (!(f instanceof DirFd) || f.preopenName === undefined) throw new WasiError(Errno.BADF);
        h.mem.check(out, 8);
        h.mem.bytes.fill(0, out, out + 8);
        h.mem.setU32(out + 4, utf8(f.preopenName).length);
      },
      fd_prestat_dir_name(fd: number, buf: number, len: number) {
        const f = h.get(fd, 0);
        if (!(f instanceof DirFd) || f.preopenName === undefined) throw new WasiError(Errno.BADF);
        const name = utf8(f.preopenName);
        if (len < name.length) throw new WasiError(Errno.NAMETOOLONG);
        h.mem.write(buf, name);
      },
      fd_readdir(fd: number, buf: number, len: number, cookie: bigint, out: number) {
        const d = h.dir(fd, Right.FD_READDIR);
        h.mem.setU32(out, h.readdir(d, buf, len, cookie));
      },
      fd_renumber(from: number, to: number) {
        const f = h.get(from, 0);
        const g = h.get(to, 0);
        if (from === to) return;
        g.close();
        h.fds[to] = f;
        h.fds[from] = undefined;
      },

      path_create_directory(fd: number, p: number, l: number) {
        const d = h.dir(fd, Right.PATH_CREATE_DIRECTORY);
        const r = resolvePath(d, h.path(p, l), false);
        if (r.rel === '') throw new WasiError(Errno.EXIST);
        if (h.changes.active) h.changes.beforeCreate?.(r.at, 'dir');
        h.changing(() => mkdirAt(r.at));
      },
      path_filestat_get(fd: number, flags: number, p: number, l: number, out: number) {
        const d = h.dir(fd, Right.PATH_FILESTAT_GET);
        const r = resolvePath(d, h.path(p, l), follows(flags));
        h.writeFilestat(out, statAt(r.at));
      },
      path_filestat_set_times(
        fd: number, flags: number, p: number, l: number, atim: bigint, mtim: bigint, fst: number,
      ) {
        const d = h.dir(fd, Right.PATH_FILESTAT_SET_TIMES);
        const follow = follows(flags);
        const r = resolvePath(d, h.path(p, l), follow);
        const [a, m] = h.times(atim, mtim, fst);
        if (h.changes.active) h.changes.beforeSetTimes?.(r.at);
        setTimesAt(r.at, a, m); // any symlink to follow was expanded by resolvePath
      },
      path_link(
        oldFd: number, oldFlags: number, op: number, ol: number, newFd: number, np: number, nl: number,
      ) {
        const src = h.dir(oldFd, Right.PATH_LINK_SOURCE);
        const dst = h.dir(newFd, Right.PATH_LINK_TARGET);
        const from = resolvePath(src, h.path(op, ol), follows(oldFlags));
        const to = resolvePath(dst, h.path(np, nl), false);
        if (h.changes.active) h.changes.beforeCreate?.(to.at, 'link');
        h.changing(() => linkAt(withSlash(from), withSlash(to)));
      },
      path_open(
        fd: number, dirflags: number, p: number, l: number, oflags: number,
        base: bigint, inheriting: bigint, fdflags: number, out: number,
      ) {
        const d = h.dir(fd, Right.PATH_OPEN);
        const newFd = h.open(d, dirflags, h.path(p, l), oflags, rightsOf(base), rightsOf(inheriting), fdflags);
        h.mem.setU32(out, h.insert(newFd));
      },
      path_readlink(fd: number, p: number, l: number, buf: number, len: number, out: number) {
        const d = h.dir(fd, Right.PATH_READLINK);
        const r = resolvePath(d, h.path(p, l), false);
        const target = readlinkAt(r.at);
        h.mem.setU32(out, h.mem.write(buf, target, len));
      },
      path_remove_directory(fd: number, p: number, l: number) {
        const d = h.dir(fd, Right.PATH_REMOVE_DIRECTORY);
        const r = resolvePath(d, h.path(p, l), false);
        if (r.rel === '') throw new WasiError(Errno.BUSY);
        if (h.changes.active) h.changes.beforeRemove?.(r.at);
        h.changing(() => removeAt(r.at, true));
        h.refreshRoots(r.at);
      },
      path_rename(fd: number, op: number, ol: number, newFd: number, np: number, nl: number) {
        const src = h.dir(fd, Right.PATH_RENAME_SOURCE);
        const dst = h.dir(newFd, Right.PATH_RENAME_TARGET);
        const from = resolvePath(src, h.path(op, ol), false);
        const to = resolvePath(dst, h.path(np, nl), false);
        if (from.rel === '' || to.rel === '') throw new WasiError(Errno.BUSY);
        const rename = (noReplace: boolean): void => renameAt(withSlash(from), withSlash(to), noReplace);
        if (h.changes.active && h.changes.rename !== undefined) h.changes.rename(from.at, to.at, rename);
        else rename(false);
        h.refreshRoots(from.at, to.at);
      },
      path_symlink(op: number, ol: number, fd: number, np: number, nl: number) {
        const d = h.dir(fd, Right.PATH_SYMLINK);
        const target = h.path(op, ol);
        if (target.includes('\0')) throw new WasiError(Errno.INVAL);
        // An absolute target could never be followed inside the sandbox (as in wasmtime: EPERM).
        if (target.startsWith('/')) throw new WasiError(Errno.PERM);
        const r = resolvePath(d, h.path(np, nl), false);
        if (h.changes.active) h.changes.beforeCreate?.(r.at, 'symlink');
        h.changing(() => symlinkAt(target, withSlash(r)));
      },
      path_unlink_file(fd: number, p: number, l: number) {
        const d = h.dir(fd, Right.PATH_UNLINK_FILE);
        const r = resolvePath(d, h.path(p, l), false);
        if (h.changes.active) h.changes.beforeRemove?.(r.at);
        h.changing(() => removeAt(withSlash(r), false));
      },

      poll_oneoff(inPtr: number, outPtr: number, n: number, outCount: number) {
        h.mem.setU32(outCount, h.poll(inPtr, outPtr, n));
      },
      proc_exit(code: number): number {
        throw new ProcExit(code >>> 0);
      },
      proc_raise(sig: number) {
        if (sig < 0 || sig > 30) throw new WasiError(Errno.INVAL);
        if (sig === 0 || SIGNALS_IGNORED.has(sig)) return;
        if (sig >= 18 && sig <= 21) throw new WasiError(Errno.NOTSUP); // stop signals
        throw new ProcExit(128 + SIGNAL_TO_HOST[sig]!, SIGNAL_NAMES[sig]);
      },
      sched_yield() {},
      random_get(buf: number, len: number) {
        h.mem.check(buf, len);
        for (let off = 0; off < len; off += 65536) {
          nodeCrypto().randomFillSync(h.mem.bytes, buf + off, Math.min(65536, len - off));
        }
      },

      sock_accept(fd: number, _flags: number, _out: number) {
        h.get(fd, 0);
        throw new WasiError(Errno.NOTSOCK);
      },
      sock_recv(fd: number) {
        h.get(fd, 0);
        throw new WasiError(Errno.NOTSOCK);
      },
      sock_send(fd: number) {
        h.get(fd, 0);
        throw new WasiError(Errno.NOTSOCK);
      },
      sock_shutdown(fd: number) {
        h.get(fd, 0);
        throw new WasiError(Errno.NOTSOCK);
      },
    };
  }

  // ---- larger calls ----------------------------------------------------------------------

  private open(
    d: DirFd, dirflags: number, path: string, oflags: number, base: number, inheriting: number,
    fdflags: number,
  ): Fd {
    if (oflags & ~OFLAGS_ALL || fdflags & ~FDFLAGS_ALL) throw new WasiError(Errno.INVAL);
    let need = 0;
    if (oflags & Oflags.CREAT) need |= Right.PATH_CREATE_FILE;
    if (oflags & Oflags.TRUNC) need |= Right.PATH_FILESTAT_SET_SIZE;
    if ((d.rightsBase & need) !== need) throw new WasiError(Errno.NOTCAPABLE);
    if ((base & ~d.rightsInheriting) !== 0 || (inheriting & ~d.rightsInheriting) !== 0) {
      throw new WasiError(Errno.NOTCAPABLE);
    }
    const follow = follows(dirflags);
    const read = (base & Right.FD_READ) !== 0;
    const write = (base & RIGHTS_NEED_WRITE) !== 0;
    let flags = O.O_NOFOLLOW | (write ? (read ? O.O_RDWR : O.O_WRONLY) : O.O_RDONLY);
    if (oflags & Oflags.CREAT) flags |= O.O_CREAT;
    if (oflags & Oflags.EXCL) flags |= O.O_EXCL;
    if (oflags & Oflags.TRUNC) flags |= O.O_TRUNC;
    if (oflags & Oflags.DIRECTORY) flags |= O.O_DIRECTORY;
    if (fdflags & Fdflags.NONBLOCK) flags |= O.O_NONBLOCK;

    // Resolve all but the last component, open that one O_NOFOLLOW, and only if it turns out
    // to be a symlink that should be followed, resolve it too: one syscall in the common case.
    let r = resolvePath(d, path, false);
    let handle: number;
    try {
      handle = this.openHost(r, flags);
    } catch (e) {
      // O_NOFOLLOW met a symlink: ELOOP, or ENOTDIR when O_DIRECTORY was asked for.
      const code = (e as NodeJS.ErrnoException).code;
      if (!follow || (code !== 'ELOOP' && code !== 'ENOTDIR')) throw e;
      r = resolvePath(d, path, true);
      handle = this.openHost(r, flags);
    }
    const location = { preopen: d.location.preopen, rel: joinRel(d.location.rel, r.rel) };
    if (r.dirOnly || oflags & Oflags.DIRECTORY) {
      // Opened O_DIRECTORY: the kernel has checked it is one.
      if (oflags & (Oflags.CREAT | Oflags.TRUNC) || write) {
        closeFd(handle);
        throw new WasiError(Errno.ISDIR);
      }
      // Its plain path (no '/.'): one place has one host path, as the undo journal keys them.
      return this.mounted(new DirFd(handle, pathOfAt(r.at), location, base & RIGHTS_DIR, inheriting, fdflags));
    }
    // Without O_DIRECTORY a read-only open may still have found a directory; its type is
    // looked up when first needed (asDir), saving an fstat on every open.
    const access = write ? (read ? 'rw' : 'w') : 'r';
    const filetype = oflags & Oflags.CREAT ? Filetype.REGULAR_FILE : undefined;
    const created = (oflags & Oflags.CREAT) !== 0 && (oflags & Oflags.EXCL) !== 0;
    return new FileFd(this.writeBehind, this.changes, handle, hostOfAt(r.at), location, access, filetype, base, inheriting, fdflags, 0, created);
  }

  /** If fd is a FileFd that turns out to be a directory, replaces it by a DirFd. */
  private asDir(fd: number, f: Fd): Fd {
    if (!(f instanceof FileFd) || f.filetype !== Filetype.DIRECTORY) return f;
    const d = this.mounted(new DirFd(f.handle, f.openedAt, f.location, f.rightsBase & RIGHTS_DIR, f.rightsInheriting, f.fdflags));
    this.fds[fd] = d;
    return d;
  }

  private openHost(r: Resolved, flags: number): number {
    if (r.dirOnly) flags |= O.O_DIRECTORY;
    if (r.rel === '' && flags & O.O_CREAT) {
      throw new WasiError(flags & O.O_EXCL ? Errno.EXIST : Errno.ISDIR);
    }
    if (this.changes.active) {
      if (flags & O.O_CREAT) this.changes.beforeCreate?.(r.at, 'file');
      if (flags & O.O_TRUNC) {
        // Truncating a file whose checkpoint copy is still being made: its blocks go first.
        const st = statAt(r.at, false);
        if (st?.isFile()) this.changes.beforeTruncateFile(`${st.dev}:${st.ino}`, hostOfAt(r.at));
      }
    }
    return flags & O.O_CREAT ? this.changing(() => openAt(r.at, flags, 0o666)) : openAt(r.at, flags, 0o666);
  }

  /** Makes a change the listener was told of; if it fails, the listener hears so. */
  private changing<T>(change: () => T): T {
    try {
      return change();
    } catch (e) {
      if (this.changes.active) this.changes.failed?.();
      throw e;
    }
  }

  /** Fills buf with dirents from cookie on; returns bytes used (== len means maybe more). */
  private readdir(d: DirFd, buf: number, len: number, cookie: bigint): number {
    const m = this.mem;
    m.check(buf, len);
    // A cookie past any listing (2^64-1 included) reads as its end.
    const start = Number(BigInt.asUintN(64, cookie));
    const names = d.entries(start);
    const head = this.scratch;
    let used = 0;
    for (let i = 0; i < names.length && used < len; i++) {
      const name = names[i]!;
      const st = statAt({ fd: d.handle, host: d.root, path: name }, false);
      if (st === undefined) continue; // removed since the listing was taken
      const nameBytes = utf8(name);
      head.fill(0, 0, 24);
      head.writeBigUInt64LE(BigInt(start + i + 1), 0);
      head.writeBigUInt64LE(st.ino, 8);
      head.writeUInt32LE(nameBytes.length, 16);
      head.writeUInt8(filetypeOf(st), 20);
      used += m.write(buf + used, head.subarray(0, 24), len - used);
      used += m.write(buf + used, nameBytes, len - used);
    }
    return used;
  }

  /** poll_oneoff: events ready now are reported at once; else it waits for the first. */
  private poll(inPtr: number, outPtr: number, n: number): number {
    if (n === 0) throw new WasiError(Errno.INVAL);
    this.mem.check(inPtr, n * 48);
    this.mem.check(outPtr, n * 32);
    const out = new PollEvents(this.mem, outPtr);
    const { clocks, stdin } = this.subscribe(inPtr, n, out);
    // The call is being made again after a checkpoint cut its wait short: the sleep goes on
    // to the deadlines first computed (monotonic time is carried across a restart).
    const resumed = this.pollDeadlines;
    this.pollDeadlines = null;
    if (resumed !== null && resumed.length === clocks.length) clocks.forEach((s, i) => (s.deadline = BigInt(resumed[i]!)));
    try {
      this.awaitEvents(clocks, stdin, out);
    } catch (e) {
      if (e instanceof Interrupted) this.pollDeadlines = clocks.map((s) => String(s.deadline ?? 0n));
      throw e;
    }
    return out.count;
  }

  /** Reads the subscriptions, reporting those that are ready (or wrong) at once; returns the
   *  clocks to wait for and the stdin to wait on, if any. */
  private subscribe(inPtr: number, n: number, out: PollEvents): { clocks: PollSub[]; stdin: { sub: PollSub; fd: Fd } | null } {
    const m = this.mem;
    const clocks: PollSub[] = [];
    let stdin: { sub: PollSub; fd: Fd } | null = null;
    for (let i = 0; i < n; i++) {
      const base = inPtr + i * 48;
      const sub: PollSub = { userdata: m.u64(base), type: m.view.getUint8(base + 8) };
      if (sub.type === Eventtype.CLOCK) {
        const id = m.u32(base + 16);
        const timeout = m.u64(base + 24);
        const abs = (m.view.getUint16(base + 40, true) & SUBCLOCK_ABSTIME) !== 0;
        try {
          const now = this.clocks.now(id);
          sub.clock = id;
          sub.deadline = abs ? timeout : now + timeout;
          clocks.push(sub);
        } catch (e) {
          out.emit(sub, errnoOf(e));
        }
      } else if (sub.type === Eventtype.FD_READ || sub.type === Eventtype.FD_WRITE) {
        const f = this.fds[m.u32(base + 16)];
        const needed = Right.POLL_FD_READWRITE | (sub.type === Eventtype.FD_READ ? Right.FD_READ : Right.FD_WRITE);
        if (f === undefined) out.emit(sub, Errno.BADF);
        else if ((f.rightsBase & needed) !== needed) out.emit(sub, Errno.NOTCAPABLE);
        else if (sub.type === Eventtype.FD_WRITE) out.emit(sub, 0);
        else if (f instanceof StdioFd) {
          const r = f.readReady(0);
          if (r.ready) out.emit(sub, 0, r.nbytes, r.nbytes === 0 ? EVENTRW_HANGUP : 0);
          else stdin ??= { sub, fd: f };
        } else if (f instanceof DirFd) out.emit(sub, Errno.ISDIR);
        else {
          try {
            out.emit(sub, 0, f.readReady(0).nbytes);
          } catch (e) {
            out.emit(sub, errnoOf(e));
          }
        }
      } else {
        throw new WasiError(Errno.INVAL); // not an eventtype
      }
    }
    return { clocks, stdin };
  }

  /** Until an event is reported: clocks already due count as ready; otherwise sleeps until the
   *  first deadline, or waits for input on stdin that long. */
  private awaitEvents(clocks: PollSub[], stdin: { sub: PollSub; fd: Fd } | null, out: PollEvents): void {
    const expired = (): void => {
      for (const s of clocks) {
        if (s.deadline !== undefined && this.clocks.now(s.clock!) >= s.deadline) {
          out.emit(s, 0);
          s.deadline = undefined;
        }
      }
    };
    expired();
    while (out.count === 0) {
      let waitMs = Infinity;
      for (const s of clocks) {
        if (s.deadline === undefined) continue;
        const ms = Number(s.deadline - this.clocks.now(s.clock!)) / 1e6;
        if (ms < waitMs) waitMs = ms;
      }
      if (stdin !== null) {
        const r = stdin.fd.readReady(Math.max(0, waitMs));
        if (r.ready) out.emit(stdin.sub, 0, r.nbytes, r.nbytes === 0 ? EVENTRW_HANGUP : 0);
      } else if (waitMs === Infinity) {
        throw new WasiError(Errno.INVAL); // nothing can ever become ready
      } else {
        sleep(waitMs);
      }
      expired();
    }
  }
}

/** One poll_oneoff subscription; a clock's deadline is cleared once it has been reported. */
interface PollSub { userdata: bigint; type: number; deadline?: bigint; clock?: number }

/** The events poll_oneoff writes out, in order. */
class PollEvents {
  count = 0;
  constructor(
    private readonly m: GuestMemory,
    private readonly outPtr: number,
  ) {}

  emit(s: PollSub, error: number, nbytes = 0, flags = 0): void {
    const m = this.m;
    const o = this.outPtr + this.count++ * 32;
    m.bytes.fill(0, o, o + 32);
    m.setU64(o, s.userdata);
    m.view.setUint16(o + 8, error, true);
    m.view.setUint8(o + 10, s.type);
    m.setU64(o + 16, nbytes);
    m.view.setUint16(o + 24, flags, true);
  }
}

type Call = (...a: never[]) => number | void;

function stdioFiletype(stream: number): number {
  try {
    return filetypeOf(fstatSync(stream));
  } catch {
    return Filetype.UNKNOWN;
  }
}

function byteSize(strings: string[]): number {
  let n = 0;
  for (const s of strings) n += Buffer.byteLength(s) + 1;
  return n;
}

function writeStrings(mem: GuestMemory, strings: string[], ptrs: number, buf: number): void {
  for (const s of strings) {
    mem.setU32(ptrs, buf);
    ptrs += 4;
    buf += mem.write(buf, utf8(s));
    mem.write(buf++, new Uint8Array(1));
  }
}

/** Decodes lookupflags: unknown bits are EINVAL. */
function follows(flags: number): boolean {
  if (flags & ~Lookupflags.SYMLINK_FOLLOW) throw new WasiError(Errno.INVAL);
  return flags !== 0;
}

const RIGHTS_ALL_BIG = BigInt(RIGHTS_ALL);
function rightsOf(v: bigint): number {
  return Number(v & RIGHTS_ALL_BIG);
}

/** A u64 argument (wasm passes i64s signed: 2^64-5 arrives as -5n) as a Number. */
function u64ToNumber(v: bigint): number {
  const u = BigInt.asUintN(64, v);
  if (u > BigInt(Number.MAX_SAFE_INTEGER)) throw new WasiError(Errno.FBIG);
  return Number(u);
}


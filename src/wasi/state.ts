// The WASI host's state as plain data. Everything a restart needs to rebuild the program's
// view of the outside world is here; live host handles (OS fds, worker threads) are not.

/** Where a file or directory lives: a preopen (by guest name) and a path below it. */
export interface Location {
  /** Guest name of the preopen the path is resolved under. */
  preopen: string;
  /** Path below the preopen's host directory, '/'-separated; '' is the preopen itself. */
  rel: string;
}

interface FdStateCommon {
  fd: number;
  rightsBase: number;
  rightsInheriting: number;
  fdflags: number;
}

export interface FileFdState extends FdStateCommon {
  kind: 'file';
  location: Location;
  /** Access the host handle was opened with. */
  access: 'r' | 'w' | 'rw';
  offset: number;
  filetype: number;
}

export interface DirFdState extends FdStateCommon {
  kind: 'dir';
  location: Location;
  /** Set for preopened directories: the name the guest sees in fd_prestat_dir_name. */
  preopenName?: string;
  /** Sorted names of the listing that readdir cookies index into (null = none taken yet). */
  listing: string[] | null;
}

export interface StdioFdState extends FdStateCommon {
  kind: 'stdio';
  /** Which of the process's standard streams backs this fd. */
  stream: 0 | 1 | 2;
  filetype: number;
}

export type FdState = FileFdState | DirFdState | StdioFdState;

export interface Preopen {
  /** The name the guest sees (e.g. "/data"). */
  guest: string;
  /** The host directory it maps to. */
  host: string;
}

/** A directory below a preopen that --path-map put elsewhere: opens there go to `host`. */
export interface Mount {
  preopen: string;
  /** Path below the preopen, '/'-separated, not ''. */
  rel: string;
  host: string;
}

export interface WasiState {
  args: string[];
  env: string[];
  preopens: Preopen[];
  fds: FdState[];
  /** Absolute deadlines (ns, decimal) of a poll_oneoff that a checkpoint interrupted. */
  pollDeadlines?: string[];
}

/** The path the program knows a location by ("/data/x"). */
export function guestPath(loc: Location): string {
  return loc.rel === '' ? loc.preopen : `${loc.preopen.replace(/\/$/, '')}/${loc.rel}`;
}

/** The host path of a location through the given preopens, or null if its preopen is absent. */
export function hostPathOf(preopens: Preopen[], loc: Location): string | null {
  const p = preopens.find((q) => q.guest === loc.preopen);
  if (p === undefined) return null;
  return loc.rel === '' ? p.host : `${p.host}/${loc.rel}`;
}

/** Whether an absolute host path lies in (or is) one of the preopens' host directories. */
export function insidePreopens(path: string, preopens: readonly Preopen[]): boolean {
  return preopens.some((p) => {
    const dir = p.host.endsWith('/') ? p.host.slice(0, -1) : p.host;
    return path === dir || path.startsWith(dir + '/');
  });
}

// Constants of WASI preview 1 (wasi_snapshot_preview1), numbered exactly as the spec
// (WebAssembly/WASI legacy/preview1/witx/typenames.witx) defines them.

/** errno values, in spec order: the index is the value. */
export const ERRNO_NAMES = [
  'success', '2big', 'acces', 'addrinuse', 'addrnotavail', 'afnosupport', 'again', 'already',
  'badf', 'badmsg', 'busy', 'canceled', 'child', 'connaborted', 'connrefused', 'connreset',
  'deadlk', 'destaddrreq', 'dom', 'dquot', 'exist', 'fault', 'fbig', 'hostunreach', 'idrm',
  'ilseq', 'inprogress', 'intr', 'inval', 'io', 'isconn', 'isdir', 'loop', 'mfile', 'mlink',
  'msgsize', 'multihop', 'nametoolong', 'netdown', 'netreset', 'netunreach', 'nfile', 'nobufs',
  'nodev', 'noent', 'noexec', 'nolck', 'nolink', 'nomem', 'nomsg', 'noprotoopt', 'nospc',
  'nosys', 'notconn', 'notdir', 'notempty', 'notrecoverable', 'notsock', 'notsup', 'notty',
  'nxio', 'overflow', 'ownerdead', 'perm', 'pipe', 'proto', 'protonosupport', 'prototype',
  'range', 'rofs', 'spipe', 'srch', 'stale', 'timedout', 'txtbsy', 'xdev', 'notcapable',
] as const;

export const enum Errno {
  SUCCESS = 0, TOOBIG = 1, ACCES = 2, AGAIN = 6, BADF = 8, BUSY = 10, EXIST = 20, FAULT = 21,
  FBIG = 22, ILSEQ = 25, INTR = 27, INVAL = 28, IO = 29, ISDIR = 31, LOOP = 32, MFILE = 33,
  NAMETOOLONG = 37, NOENT = 44, NOMEM = 48, NOSPC = 51, NOSYS = 52, NOTDIR = 54,
  NOTEMPTY = 55, NOTSOCK = 57, NOTSUP = 58, NOTTY = 59, OVERFLOW = 61, PERM = 63, PIPE = 64,
  SPIPE = 70, XDEV = 75, NOTCAPABLE = 76,
}

export const enum Filetype {
  UNKNOWN = 0, BLOCK_DEVICE = 1, CHARACTER_DEVICE = 2, DIRECTORY = 3, REGULAR_FILE = 4,
  SOCKET_DGRAM = 5, SOCKET_STREAM = 6, SYMBOLIC_LINK = 7,
}

export const enum Fdflags { APPEND = 1, DSYNC = 2, NONBLOCK = 4, RSYNC = 8, SYNC = 16 }
export const FDFLAGS_ALL = 31;
export const enum Oflags { CREAT = 1, DIRECTORY = 2, EXCL = 4, TRUNC = 8 }
export const OFLAGS_ALL = 15;
export const enum Lookupflags { SYMLINK_FOLLOW = 1 }
export const enum Fstflags { ATIM = 1, ATIM_NOW = 2, MTIM = 4, MTIM_NOW = 8 }
export const enum Whence { SET = 0, CUR = 1, END = 2 }
export const enum Clockid { REALTIME = 0, MONOTONIC = 1, PROCESS_CPUTIME = 2, THREAD_CPUTIME = 3 }
export const enum Eventtype { CLOCK = 0, FD_READ = 1, FD_WRITE = 2 }
export const SUBCLOCK_ABSTIME = 1;
export const EVENTRW_HANGUP = 1;

/**
 * Rights are a u64 bitfield in the ABI but every defined bit fits in 30 bits, so they are held
 * as plain numbers (no BigInt on the hot path) and widened only at the memory boundary.
 */
export const enum Right {
  FD_DATASYNC = 1 << 0, FD_READ = 1 << 1, FD_SEEK = 1 << 2, FD_FDSTAT_SET_FLAGS = 1 << 3,
  FD_SYNC = 1 << 4, FD_TELL = 1 << 5, FD_WRITE = 1 << 6, FD_ADVISE = 1 << 7,
  FD_ALLOCATE = 1 << 8, PATH_CREATE_DIRECTORY = 1 << 9, PATH_CREATE_FILE = 1 << 10,
  PATH_LINK_SOURCE = 1 << 11, PATH_LINK_TARGET = 1 << 12, PATH_OPEN = 1 << 13,
  FD_READDIR = 1 << 14, PATH_READLINK = 1 << 15, PATH_RENAME_SOURCE = 1 << 16,
  PATH_RENAME_TARGET = 1 << 17, PATH_FILESTAT_GET = 1 << 18, PATH_FILESTAT_SET_SIZE = 1 << 19,
  PATH_FILESTAT_SET_TIMES = 1 << 20, FD_FILESTAT_GET = 1 << 21,
  FD_FILESTAT_SET_SIZE = 1 << 22, FD_FILESTAT_SET_TIMES = 1 << 23, PATH_SYMLINK = 1 << 24,
  PATH_REMOVE_DIRECTORY = 1 << 25, PATH_UNLINK_FILE = 1 << 26, POLL_FD_READWRITE = 1 << 27,
  SOCK_SHUTDOWN = 1 << 28, SOCK_ACCEPT = 1 << 29,
}
export const RIGHTS_ALL = (1 << 30) - 1;

/** Rights that make sense on a regular file. */
export const RIGHTS_FILE =
  Right.FD_DATASYNC | Right.FD_READ | Right.FD_SEEK | Right.FD_FDSTAT_SET_FLAGS | Right.FD_SYNC |
  Right.FD_TELL | Right.FD_WRITE | Right.FD_ADVISE | Right.FD_ALLOCATE | Right.FD_FILESTAT_GET |
  Right.FD_FILESTAT_SET_SIZE | Right.FD_FILESTAT_SET_TIMES | Right.POLL_FD_READWRITE;

/** Rights that make sense on a directory. */
export const RIGHTS_DIR =
  Right.FD_FDSTAT_SET_FLAGS | Right.FD_SYNC | Right.FD_ADVISE | Right.PATH_CREATE_DIRECTORY |
  Right.PATH_CREATE_FILE | Right.PATH_LINK_SOURCE | Right.PATH_LINK_TARGET | Right.PATH_OPEN |
  Right.FD_READDIR | Right.PATH_READLINK | Right.PATH_RENAME_SOURCE | Right.PATH_RENAME_TARGET |
  Right.PATH_FILESTAT_GET | Right.PATH_FILESTAT_SET_SIZE | Right.PATH_FILESTAT_SET_TIMES |
  Right.FD_FILESTAT_GET | Right.FD_FILESTAT_SET_TIMES | Right.PATH_SYMLINK |
  Right.PATH_REMOVE_DIRECTORY | Right.PATH_UNLINK_FILE | Right.POLL_FD_READWRITE;

/** Rights of stdio streams (terminals, pipes, or files the shell redirected). */
export const RIGHTS_STDIO =
  Right.FD_READ | Right.FD_WRITE | Right.FD_FDSTAT_SET_FLAGS | Right.FD_FILESTAT_GET |
  Right.POLL_FD_READWRITE | Right.FD_SYNC | Right.FD_DATASYNC | Right.FD_ADVISE;

/** Rights whose presence means the host handle must be opened for writing. */
export const RIGHTS_NEED_WRITE =
  Right.FD_WRITE | Right.FD_ALLOCATE | Right.FD_FILESTAT_SET_SIZE | Right.FD_DATASYNC;

/** WASI signal numbers (index) → Linux signal numbers, for exit status 128+n. */
export const SIGNAL_TO_HOST = [
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
  27, 28, 29, 30, 31,
] as const;
/** WASI signals whose default action is to be ignored (chld, cont, urg, winch). */
export const SIGNALS_IGNORED = new Set([16, 17, 22, 27]);

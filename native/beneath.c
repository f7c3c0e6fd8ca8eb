/*
 * File operations confined beneath a directory fd, for the sandbox.
 *
 * The host resolves a guest path itself (src/wasi/paths.ts: `..`, symlinks met on the way,
 * mounts) down to a directory handle and a path below it made of plain names, none of which
 * should be a symlink. Everything here then works relative to that handle and never lets the
 * kernel follow a link: the directories on the way are opened with openat2's
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS where the kernel has it (5.6+),
 * else one component at a time with openat(O_NOFOLLOW | O_DIRECTORY); the last component is
 * operated on with the *at call's own no-follow form. A directory swapped for a symlink by
 * anyone, at any instant, therefore makes the call fail (ELOOP/ENOTDIR) instead of leaving
 * the directory.
 *
 * Exports (paths are relative, '' or '.' is the directory itself; a trailing '/' is kept
 * for the calls whose kernel rules depend on it and never makes them follow a link):
 *   openBeneath(dirfd, path, flags, mode) -> fd | -errno
 *   statBeneath(dirfd, path, out BigInt64Array(8)) -> 0 | -errno
 *       out = dev, ino, mode, nlink, size, atime ns, mtime ns, ctime ns (lstat semantics)
 *   mkdirBeneath(dirfd, path, mode) -> 0 | -errno
 *   unlinkBeneath(dirfd, path, removeDir) -> 0 | -errno
 *   symlinkBeneath(target, dirfd, path) -> 0 | -errno
 *   readlinkBeneath(dirfd, path) -> Buffer | -errno
 *   renameBeneath(fromfd, from, tofd, to) -> 0 | -errno
 *   renameNoReplaceBeneath(fromfd, from, tofd, to) -> 0 | -errno: renameat2 RENAME_NOREPLACE,
 *       -EEXIST if something is at `to` (-EINVAL where the file system cannot say)
 *   linkBeneath(fromfd, from, tofd, to) -> 0 | -errno
 *   utimensBeneath(dirfd, path, atimeNs, mtimeNs, flags) -> 0 | -errno (flags as utimens.c)
 *   openPath(path, flags) -> fd | -errno: a plain open (a directory the user named)
 *   closeFd(fd) -> 0 | -errno
 *   openat2Used() -> whether openat2 is in use (STASIS_NO_OPENAT2=1 turns it off, for tests)
 *
 * fds opened here are closed with closeFd: Node's worker threads track the fds their fs
 * functions open, and warn (slowly) when fs.closeSync closes one it did not open.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h> /* renameat2 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__linux__) && defined(SYS_openat2) && __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2 1
#endif

#define PATH_BYTES 4096

static bool use_openat2 = false;

static int retry_open(int dirfd, const char *name, int flags, mode_t mode) {
  int r;
  do r = openat(dirfd, name, flags | O_CLOEXEC, mode);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

/* Opens `path` (plain components) beneath dirfd without following any symlink. */
static int open_beneath(int dirfd, const char *path, int flags, mode_t mode) {
  if (path[0] == '\0') path = ".";
  if (path[0] == '/') return -EXDEV;
  flags |= O_NOFOLLOW | O_CLOEXEC;
#ifdef HAVE_OPENAT2
  if (use_openat2) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags;
    how.mode = (flags & O_CREAT) == O_CREAT || (flags & O_TMPFILE) == O_TMPFILE ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long r;
    do r = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    while (r < 0 && (errno == EINTR || errno == EAGAIN));
    if (r >= 0) return (int)r;
    if (errno != ENOSYS) return -errno;
    use_openat2 = false; /* a kernel or sandbox without it: walk from now on */
  }
#endif
  char buf[PATH_BYTES];
  size_t len = strlen(path);
  if (len >= sizeof buf) return -ENAMETOOLONG;
  memcpy(buf, path, len + 1);
  int cur = dirfd;
  char *p = buf;
  for (;;) {
    while (*p == '/') p++;
    char *end = strchr(p, '/');
    char *next = end;
    if (end != NULL) {
      while (*next == '/') next++;
      if (*next == '\0') end = NULL; /* only trailing slashes: p is the last component */
    }
    if (end == NULL) {
      /* The last component; O_DIRECTORY makes a trailing slash's rule explicit. */
      const char *name = *p == '\0' ? "." : p;
      char *slash = strchr(p, '/');
      if (slash != NULL) { *slash = '\0'; flags |= O_DIRECTORY; }
      if (strcmp(name, "..") == 0) { if (cur != dirfd) close(cur); return -EXDEV; }
      int r = retry_open(cur, name, flags, mode);
      if (cur != dirfd) close(cur);
      return r;
    }
    *end = '\0';
    if (strcmp(p, "..") == 0) { if (cur != dirfd) close(cur); return -EXDEV; }
    if (strcmp(p, ".") != 0) {
      int fd = retry_open(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
      if (cur != dirfd) close(cur);
      if (fd < 0) return fd;
      cur = fd;
    }
    p = next;
  }
}

/* Splits path into its parent, opened beneath dirfd, and its last component (any trailing
 * slashes stay on it). *parent is dirfd itself when the path has one component. */
static int split_beneath(int dirfd, char *path, int *parent, const char **name) {
  size_t len = strlen(path);
  while (len > 0 && path[len - 1] == '/') len--;
  size_t cut = len;
  while (cut > 0 && path[cut - 1] != '/') cut--;
  if (len == 0) { *parent = dirfd; *name = "."; return 0; }
  *name = path + cut;
  if (cut == 0) { *parent = dirfd; return 0; }
  path[cut - 1] = '\0';
  int fd = open_beneath(dirfd, path, O_PATH | O_DIRECTORY, 0);
  if (fd < 0) return fd;
  *parent = fd;
  return 0;
}

static void done(int dirfd, int parent) {
  if (parent != dirfd) close(parent);
}

/* The last component without its trailing slashes, for calls that would follow a link
 * because of one. */
static const char *bare(const char *name, char *buf) {
  size_t len = strlen(name);
  while (len > 1 && name[len - 1] == '/') len--;
  memcpy(buf, name, len);
  buf[len] = '\0';
  return buf;
}

/* ---- N-API glue ------------------------------------------------------------------------ */

static bool get_path(napi_env env, napi_value v, char *buf) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, buf, PATH_BYTES, &n) != napi_ok) return false;
  return n < PATH_BYTES - 1;
}

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value bad_args(napi_env env, const char *usage) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
  return NULL;
}

#define ARGS(n)                                                                   \
  size_t argc = n;                                                                \
  napi_value argv[n];                                                             \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) \
    return bad_args(env, "wrong number of arguments");

static napi_value js_open(napi_env env, napi_callback_info info) {
  ARGS(4);
  int32_t dirfd, flags;
  uint32_t mode;
  char path[PATH_BYTES];
  if (napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || !get_path(env, argv[1], path) ||
      napi_get_value_int32(env, argv[2], &flags) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &mode) != napi_ok)
    return bad_args(env, "openBeneath(dirfd, path, flags, mode)");
  return num(env, open_beneath(dirfd, path, flags, mode));
}

static napi_value js_stat(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t dirfd;
  char path[PATH_BYTES], last[PATH_BYTES];
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || !get_path(env, argv[1], path) ||
      napi_get_typedarray_info(env, argv[2], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_bigint64_array || length < 8)
    return bad_args(env, "statBeneath(dirfd, path, BigInt64Array(8))");
  int parent;
  const char *name;
  int r = split_beneath(dirfd, path, &parent, &name);
  if (r < 0) return num(env, r);
  struct stat st;
  r = fstatat(parent, bare(name, last), &st, AT_SYMLINK_NOFOLLOW);
  r = r < 0 ? -errno : 0;
  done(dirfd, parent);
  if (r == 0) {
    int64_t *out = data;
    out[0] = (int64_t)st.st_dev;
    out[1] = (int64_t)st.st_ino;
    out[2] = (int64_t)st.st_mode;
    out[3] = (int64_t)st.st_nlink;
    out[4] = (int64_t)st.st_size;
    out[5] = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
    out[6] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out[7] = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
  }
  return num(env, r);
}

static napi_value js_mkdir(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t dirfd;
  uint32_t mode;
  char path[PATH_BYTES];
  if (napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || !get_path(env, argv[1], path) ||
      napi_get_value_uint32(env, argv[2], &mode) != napi_ok)
    return bad_args(env, "mkdirBeneath(dirfd, path, mode)");
  int parent;
  const char *name;
  int r = split_beneath(dirfd, path, &parent, &name);
  if (r < 0) return num(env, r);
  r = mkdirat(parent, name, mode) < 0 ? -errno : 0;
  done(dirfd, parent);
  return num(env, r);
}

static napi_value js_unlink(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t dirfd;
  bool dir;
  char path[PATH_BYTES];
  if (napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || !get_path(env, argv[1], path) ||
      napi_get_value_bool(env, argv[2], &dir) != napi_ok)
    return bad_args(env, "unlinkBeneath(dirfd, path, removeDir)");
  int parent;
  const char *name;
  int r = split_beneath(dirfd, path, &parent, &name);
  if (r < 0) return num(env, r);
  r = unlinkat(parent, name, dir ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
  done(dirfd, parent);
  return num(env, r);
}

static napi_value js_symlink(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t dirfd;
  char target[PATH_BYTES], path[PATH_BYTES];
  if (!get_path(env, argv[0], target) || napi_get_value_int32(env, argv[1], &dirfd) != napi_ok ||
      !get_path(env, argv[2], path))
    return bad_args(env, "symlinkBeneath(target, dirfd, path)");
  int parent;
  const char *name;
  int r = split_beneath(dirfd, path, &parent, &name);
  if (r < 0) return num(env, r);
  r = symlinkat(target, parent, name) < 0 ? -errno : 0;
  done(dirfd, parent);
  return num(env, r);
}

static napi_value js_readlink(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t dirfd;
  char path[PATH_BYTES], last[PATH_BYTES], target[PATH_BYTES];
  if (napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || !get_path(env, argv[1], path))
    return bad_args(env, "readlinkBeneath(dirfd, path)");
  int parent;
  const char *name;
  int r = split_beneath(dirfd, path, &parent, &name);
  if (r < 0) return num(env, r);
  ssize_t n = readlinkat(parent, bare(name, last), target, sizeof target);
  int err = n < 0 ? -errno : 0;
  done(dirfd, parent);
  if (err < 0) return num(env, err);
  napi_value out;
  void *copy;
  if (napi_create_buffer_copy(env, (size_t)n, target, &copy, &out) != napi_ok) return NULL;
  return out;
}

/* rename and link: two paths, each beneath its own directory. */
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
enum two_op { OP_RENAME, OP_RENAME_NOREPLACE, OP_LINK };

static napi_value two_paths(napi_env env, napi_callback_info info, enum two_op op) {
  bool link = op == OP_LINK;
  ARGS(4);
  int32_t fromfd, tofd;
  char from[PATH_BYTES], to[PATH_BYTES], last[PATH_BYTES];
  if (napi_get_value_int32(env, argv[0], &fromfd) != napi_ok || !get_path(env, argv[1], from) ||
      napi_get_value_int32(env, argv[2], &tofd) != napi_ok || !get_path(env, argv[3], to))
    return bad_args(env, link ? "linkBeneath(fromfd, from, tofd, to)" : "renameBeneath(fromfd, from, tofd, to)");
  int fp, tp;
  const char *fname, *tname;
  int r = split_beneath(fromfd, from, &fp, &fname);
  if (r < 0) return num(env, r);
  r = split_beneath(tofd, to, &tp, &tname);
  if (r < 0) { done(fromfd, fp); return num(env, r); }
  if (link) r = linkat(fp, bare(fname, last), tp, tname, 0) < 0 ? -errno : 0;
  else if (op == OP_RENAME_NOREPLACE) r = renameat2(fp, fname, tp, tname, RENAME_NOREPLACE) < 0 ? -errno : 0;
  else r = renameat(fp, fname, tp, tname) < 0 ? -errno : 0;
  done(fromfd, fp);
  done(tofd, tp);
  return num(env, r);
}

static napi_value js_rename(napi_env env, napi_callback_info info) {
  return two_paths(env, info, OP_RENAME);
}

static napi_value js_rename_noreplace(napi_env env, napi_callback_info info) {
  return two_paths(env, info, OP_RENAME_NOREPLACE);
}

static napi_value js_link(napi_env env, napi_callback_info info) {
  return two_paths(env, info, OP_LINK);
}

static napi_value js_utimens(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t dirfd;
  uint32_t flags;
  int64_t t[2];
  bool lossless;
  char path[PATH_BYTES], last[PATH_BYTES];
  if (napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || !get_path(env, argv[1], path) ||
      napi_get_value_bigint_int64(env, argv[2], &t[0], &lossless) != napi_ok ||
      napi_get_value_bigint_int64(env, argv[3], &t[1], &lossless) != napi_ok ||
      napi_get_value_uint32(env, argv[4], &flags) != napi_ok)
    return bad_args(env, "utimensBeneath(dirfd, path, atimeNs, mtimeNs, flags)");
  struct timespec ts[2];
  for (int i = 0; i < 2; i++) {
    int64_t s = t[i] / 1000000000, ns = t[i] % 1000000000;
    if (ns < 0) { ns += 1000000000; s -= 1; }
    ts[i].tv_sec = s;
    ts[i].tv_nsec = ns;
    unsigned omit = i == 0 ? 1 : 4, now = i == 0 ? 2 : 8;
    if (flags & omit) ts[i].tv_nsec = UTIME_OMIT;
    else if (flags & now) ts[i].tv_nsec = UTIME_NOW;
  }
  int parent;
  const char *name;
  int r = split_beneath(dirfd, path, &parent, &name);
  if (r < 0) return num(env, r);
  r = utimensat(parent, bare(name, last), ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
  done(dirfd, parent);
  return num(env, r);
}

static napi_value js_open_path(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t flags;
  char path[PATH_BYTES];
  if (!get_path(env, argv[0], path) || napi_get_value_int32(env, argv[1], &flags) != napi_ok)
    return bad_args(env, "openPath(path, flags)");
  return num(env, retry_open(AT_FDCWD, path, flags, 0));
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) return bad_args(env, "closeFd(fd)");
  /* Linux releases the fd even when close reports EINTR: never retry. */
  return num(env, close(fd) < 0 && errno != EINTR ? -errno : 0);
}

static napi_value js_openat2_used(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, use_openat2, &out);
  return out;
}

napi_status stasis_beneath_init(napi_env env, napi_value exports) {
#ifdef HAVE_OPENAT2
  const char *off = getenv("STASIS_NO_OPENAT2");
  use_openat2 = off == NULL || off[0] == '\0' || strcmp(off, "0") == 0;
#endif
  napi_property_descriptor props[] = {
    STASIS_FN("openBeneath", js_open),
    STASIS_FN("statBeneath", js_stat),
    STASIS_FN("mkdirBeneath", js_mkdir),
    STASIS_FN("unlinkBeneath", js_unlink),
    STASIS_FN("symlinkBeneath", js_symlink),
    STASIS_FN("readlinkBeneath", js_readlink),
    STASIS_FN("renameBeneath", js_rename),
    STASIS_FN("renameNoReplaceBeneath", js_rename_noreplace),
    STASIS_FN("linkBeneath", js_link),
    STASIS_FN("utimensBeneath", js_utimens),
    STASIS_FN("openPath", js_open_path),
    STASIS_FN("closeFd", js_close),
    STASIS_FN("openat2Used", js_openat2_used),
  };
  return STASIS_EXPORT(env, exports, props);
}

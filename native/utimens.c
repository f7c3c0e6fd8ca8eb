/*
 * stasis_native: nanosecond-exact file timestamps for the WASI runtime.
 *
 * Node's fs.utimes/futimes/lutimes take seconds as doubles (and libuv then
 * truncates to whole microseconds) and always set both times. WASI's
 * fd_filestat_set_times / path_filestat_set_times need exact nanoseconds and
 * per-field "leave alone" / "now", which is exactly POSIX futimens/utimensat.
 *
 * Exports:
 *   futimens(fd: number, atimeNs: bigint, mtimeNs: bigint, flags: number): void
 *   utimensat(path: string | Buffer, atimeNs: bigint, mtimeNs: bigint,
 *             flags: number, nofollow: boolean): void
 *
 * flags (bitwise OR):
 *   1 = ATIME_OMIT  leave atime as is   (UTIME_OMIT; atimeNs ignored)
 *   2 = ATIME_NOW   set atime to now    (UTIME_NOW;  atimeNs ignored)
 *   4 = MTIME_OMIT  leave mtime as is
 *   8 = MTIME_NOW   set mtime to now
 * OMIT wins if both OMIT and NOW are given for the same field.
 * Times are nanoseconds since the Unix epoch; any value in the int64 or
 * uint64 range is accepted (negative values are floored correctly).
 *
 * Errors are thrown like Node's fs errors: an Error with
 *   .code    errno name ('ENOENT', 'ELOOP', ... or 'UNKNOWN')
 *   .errno   negative errno (Node/libuv convention, e.g. -2 for ENOENT)
 *   .syscall 'futimens' | 'utimensat'
 *   .path    (utimensat only)
 * and message "ENOENT: No such file or directory, utimensat '/x'".
 */
#if !defined(__APPLE__) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define F_ATIME_OMIT 1
#define F_ATIME_NOW 2
#define F_MTIME_OMIT 4
#define F_MTIME_NOW 8

#define NS_PER_SEC 1000000000LL

/* Names for the errnos these two calls can plausibly produce (first match
 * wins, so aliases such as EOPNOTSUPP == ENOTSUP on Linux are harmless). */
static const struct { int no; const char *name; } errno_names[] = {
  {EPERM, "EPERM"},   {ENOENT, "ENOENT"},   {EINTR, "EINTR"},
  {EIO, "EIO"},       {ENXIO, "ENXIO"},     {EBADF, "EBADF"},
  {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"},   {EACCES, "EACCES"},
  {EFAULT, "EFAULT"}, {EBUSY, "EBUSY"},     {EEXIST, "EEXIST"},
  {EXDEV, "EXDEV"},   {ENODEV, "ENODEV"},   {ENOTDIR, "ENOTDIR"},
  {EISDIR, "EISDIR"}, {EINVAL, "EINVAL"},   {ENFILE, "ENFILE"},
  {EMFILE, "EMFILE"}, {ETXTBSY, "ETXTBSY"}, {EFBIG, "EFBIG"},
  {ENOSPC, "ENOSPC"}, {ESPIPE, "ESPIPE"},   {EROFS, "EROFS"},
  {EMLINK, "EMLINK"}, {EPIPE, "EPIPE"},     {ERANGE, "ERANGE"},
  {ENAMETOOLONG, "ENAMETOOLONG"},           {ENOSYS, "ENOSYS"},
  {ENOTEMPTY, "ENOTEMPTY"},                 {ELOOP, "ELOOP"},
  {EOVERFLOW, "EOVERFLOW"},                 {ENOTSUP, "ENOTSUP"},
  {EOPNOTSUPP, "EOPNOTSUPP"},               {EDQUOT, "EDQUOT"},
  {ESTALE, "ESTALE"},
};

static const char *errno_name(int no) {
  size_t i;
  for (i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
    if (errno_names[i].no == no) return errno_names[i].name;
  return "UNKNOWN";
}

/* Throws a Node-style system error. Always returns NULL for convenience. */
static napi_value throw_errno(napi_env env, int no, const char *syscall,
                              const char *path) {
  const char *name = errno_name(no);
  const char *desc = strerror(no);
  size_t len = strlen(name) + strlen(desc) + strlen(syscall) +
               (path ? strlen(path) : 0) + 16;
  char *msg = malloc(len);
  napi_value code_v, msg_v, err, v;

  if (msg == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (path)
    snprintf(msg, len, "%s: %s, %s '%s'", name, desc, syscall, path);
  else
    snprintf(msg, len, "%s: %s, %s", name, desc, syscall);

  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok ||
      napi_create_error(env, code_v, msg_v, &err) != napi_ok) {
    free(msg);
    napi_throw_error(env, name, "native error");
    return NULL;
  }
  free(msg);
  if (napi_create_int32(env, -no, &v) == napi_ok)
    napi_set_named_property(env, err, "errno", v);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) == napi_ok)
    napi_set_named_property(env, err, "syscall", v);
  if (path && napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v) == napi_ok)
    napi_set_named_property(env, err, "path", v);
  napi_throw(env, err);
  return NULL;
}

/* Fills *ts from a bigint nanosecond count, or UTIME_OMIT/UTIME_NOW per the
 * flags. Returns false with a pending exception on failure. */
static bool get_timespec(napi_env env, napi_value v, int flags, int omit_bit,
                         int now_bit, const char *what, const char *syscall,
                         struct timespec *ts) {
  napi_valuetype t;
  int64_t s64;
  uint64_t u64;
  bool lossless = false;
  int64_t sec, nsec;

  if (flags & omit_bit) {
    ts->tv_sec = 0;
    ts->tv_nsec = UTIME_OMIT;
    return true;
  }
  if (flags & now_bit) {
    ts->tv_sec = 0;
    ts->tv_nsec = UTIME_NOW;
    return true;
  }
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_bigint) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a bigint (nanoseconds)", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (napi_get_value_bigint_int64(env, v, &s64, &lossless) == napi_ok && lossless) {
    sec = s64 / NS_PER_SEC;
    nsec = s64 % NS_PER_SEC;
    if (nsec < 0) { /* floor, so tv_nsec is in [0, 1e9) */
      nsec += NS_PER_SEC;
      sec -= 1;
    }
  } else if (napi_get_value_bigint_uint64(env, v, &u64, &lossless) == napi_ok && lossless) {
    sec = (int64_t)(u64 / (uint64_t)NS_PER_SEC);
    nsec = (int64_t)(u64 % (uint64_t)NS_PER_SEC);
  } else {
    throw_errno(env, EOVERFLOW, syscall, NULL);
    return false;
  }
  ts->tv_sec = (time_t)sec;
  if ((int64_t)ts->tv_sec != sec) { /* 32-bit time_t */
    throw_errno(env, EOVERFLOW, syscall, NULL);
    return false;
  }
  ts->tv_nsec = (long)nsec;
  return true;
}

static bool get_flags(napi_env env, napi_value v, int32_t *flags) {
  if (napi_get_value_int32(env, v, flags) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "flags must be a number");
    return false;
  }
  return true;
}

static napi_value js_futimens(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd, flags;
  struct timespec ts[2];

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 4) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS",
                          "futimens(fd, atimeNs, mtimeNs, flags)");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a number");
    return NULL;
  }
  if (!get_flags(env, argv[3], &flags)) return NULL;
  if (!get_timespec(env, argv[1], flags, F_ATIME_OMIT, F_ATIME_NOW, "atimeNs", "futimens", &ts[0]) ||
      !get_timespec(env, argv[2], flags, F_MTIME_OMIT, F_MTIME_NOW, "mtimeNs", "futimens", &ts[1]))
    return NULL;
  if (futimens(fd, ts) != 0) return throw_errno(env, errno, "futimens", NULL);
  return NULL;
}

static napi_value js_utimensat(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_valuetype t;
  bool is_buf = false, nofollow = false;
  int32_t flags;
  struct timespec ts[2];
  char *path = NULL;
  size_t len = 0;
  int rc, saved;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 4) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS",
                          "utimensat(path, atimeNs, mtimeNs, flags, nofollow)");
    return NULL;
  }
  if (!get_flags(env, argv[3], &flags)) return NULL;
  if (argc >= 5 && napi_typeof(env, argv[4], &t) == napi_ok && t != napi_undefined &&
      napi_get_value_bool(env, argv[4], &nofollow) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "nofollow must be a boolean");
    return NULL;
  }
  if (!get_timespec(env, argv[1], flags, F_ATIME_OMIT, F_ATIME_NOW, "atimeNs", "utimensat", &ts[0]) ||
      !get_timespec(env, argv[2], flags, F_MTIME_OMIT, F_MTIME_NOW, "mtimeNs", "utimensat", &ts[1]))
    return NULL;

  /* path: a string (UTF-8) or a Buffer/Uint8Array of raw bytes */
  napi_is_buffer(env, argv[0], &is_buf);
  if (is_buf) {
    void *data;
    if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) return NULL;
    path = malloc(len + 1);
    if (path == NULL) return throw_errno(env, ENOMEM, "utimensat", NULL);
    memcpy(path, data, len);
    path[len] = '\0';
  } else {
    if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                            "path must be a string or Buffer");
      return NULL;
    }
    if (napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok) return NULL;
    path = malloc(len + 1);
    if (path == NULL) return throw_errno(env, ENOMEM, "utimensat", NULL);
    if (napi_get_value_string_utf8(env, argv[0], path, len + 1, &len) != napi_ok) {
      free(path);
      return NULL;
    }
  }
  if (strlen(path) != len) {
    free(path);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "path must not contain null bytes");
    return NULL;
  }

  rc = utimensat(AT_FDCWD, path, ts, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
  saved = errno;
  if (rc != 0) throw_errno(env, saved, "utimensat", path);
  free(path);
  return NULL;
}

napi_status stasis_utimens_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    STASIS_FN("futimens", js_futimens),
    STASIS_FN("utimensat", js_utimensat),
  };
  return STASIS_EXPORT(env, exports, props);
}

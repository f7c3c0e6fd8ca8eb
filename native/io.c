/*
 * The hot path of fd_read / fd_write / fd_pread / fd_pwrite: one readv/writev (or
 * preadv/pwritev) straight between a file and the guest's iovecs in wasm memory.
 *
 * Node's fs.readSync costs more per call than uvwasi's whole fd_read (argument checks,
 * a request object, trace hooks), and a JS loop over iovecs makes one syscall per iovec.
 * Here the iovec array is read from memory, bounds-checked, and handed to the kernel.
 *
 * Exports (copyRange is described where it is defined):
 *   iovecIo(fd: number, memory: ArrayBuffer, iovs: number, n: number, pos: number,
 *           write: boolean): number
 *     iovs: address of n WASI iovecs (u32 pointer, u32 length) in memory;
 *     pos: file offset, or -1 for the fd's own position (pipes, terminals); other negative
 *     positions are -EINVAL.
 *     Returns the bytes transferred (stopping at the first short transfer, or at an error
 *     after some bytes moved), or -errno: -EFAULT if the iovec array or a buffer lies outside
 *     memory (checked before anything moves), -ENOMEM if the iovecs cannot be decoded, else
 *     the syscall's error. Never throws for I/O errors: the caller maps errnos.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* preadv, pwritev */
#endif
#include "addon.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* iovecs per syscall (Linux's IOV_MAX); more are done in batches, each stopping the call if short. */
#define BATCH 1024
/* Up to this many iovecs are decoded on the stack; more on the heap. */
#define ON_STACK 64

static ssize_t transfer(int fd, const struct iovec *v, int k, int64_t pos, bool write) {
  ssize_t r;
  do {
    if (pos >= 0) r = write ? pwritev(fd, v, k, (off_t)pos) : preadv(fd, v, k, (off_t)pos);
    else r = write ? writev(fd, v, k) : readv(fd, v, k);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

/* wasm memory is little-endian whatever the host is. */
static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static double iovec_io(int fd, uint8_t *mem, size_t size, uint32_t iovs, uint32_t n, double pos_in,
                       bool write) {
  if ((uint64_t)iovs + (uint64_t)n * 8 > size) return -EFAULT;
  /* Decode and check every iovec before moving a byte, into our own array: a read may overwrite
     the guest's iovec array itself, and later batches must not see what it wrote there. */
  struct iovec stack[ON_STACK];
  struct iovec *v = n <= ON_STACK ? stack : malloc((size_t)n * sizeof *v);
  if (v == NULL) return -ENOMEM;
  uint32_t k = 0;
  double result = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t p = le32(mem + iovs + i * 8), l = le32(mem + iovs + i * 8 + 4);
    if ((uint64_t)p + l > size) { result = -EFAULT; goto out; }
    if (l == 0) continue;
    v[k].iov_base = mem + p;
    v[k].iov_len = l;
    k++;
  }
  if (pos_in < 0 && pos_in != -1) { result = -EINVAL; goto out; }
  int64_t pos = pos_in < 0 ? -1 : (int64_t)pos_in;
  for (uint32_t at = 0; at < k;) {
    int batch = k - at < BATCH ? (int)(k - at) : BATCH;
    uint64_t want = 0;
    for (int j = 0; j < batch; j++) want += v[at + j].iov_len;
    ssize_t r = transfer(fd, v + at, batch, pos, write);
    if (r < 0) { if (result == 0) result = (double)r; break; } /* bytes moved before an error count */
    result += (double)r;
    if (pos >= 0) pos += r;
    if ((uint64_t)r < want) break;
    at += batch;
  }
out:
  if (v != stack) free(v);
  return result;
}

static napi_value js_iovec_io(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int32_t fd;
  uint32_t iovs, n;
  double pos;
  bool write;
  void *data = NULL;
  size_t size = 0;
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_arraybuffer_info(env, argv[1], &data, &size) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &iovs) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &n) != napi_ok ||
      napi_get_value_double(env, argv[4], &pos) != napi_ok ||
      napi_get_value_bool(env, argv[5], &write) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "iovecIo(fd, ArrayBuffer, iovs, n, pos, write)");
    return NULL;
  }
  napi_create_double(env, iovec_io(fd, data, size, iovs, n, pos, write), &out);
  return out;
}

/* copyRange(fdIn, posIn, fdOut, posOut, len): bytes copied by the kernel (copy_file_range,
   a reflink where the file system has them), stopping early at the end of fdIn; or -errno
   when nothing was copied (EXDEV, EINVAL, ENOSYS: the caller copies them itself). */
static napi_value js_copy_range(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t in, out;
  double pin, pout, len;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 ||
      napi_get_value_int32(env, argv[0], &in) != napi_ok ||
      napi_get_value_double(env, argv[1], &pin) != napi_ok ||
      napi_get_value_int32(env, argv[2], &out) != napi_ok ||
      napi_get_value_double(env, argv[3], &pout) != napi_ok ||
      napi_get_value_double(env, argv[4], &len) != napi_ok || pin < 0 || pout < 0 || len < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "copyRange(fdIn, posIn, fdOut, posOut, len)");
    return NULL;
  }
  double done = 0;
#ifdef __linux__
  loff_t oin = (loff_t)pin, oout = (loff_t)pout;
  while (done < len) {
    ssize_t r = copy_file_range(in, &oin, out, &oout, (size_t)(len - done), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (done == 0) done = -errno;
      break;
    }
    if (r == 0) break;
    done += (double)r;
  }
#else
  done = -ENOSYS;
#endif
  napi_create_double(env, done, &result);
  return result;
}

napi_status stasis_io_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    STASIS_FN("iovecIo", js_iovec_io),
    STASIS_FN("copyRange", js_copy_range),
  };
  return STASIS_EXPORT(env, exports, props);
}

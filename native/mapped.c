/*
 * A window of a file mapped shared into memory, for the undo journal's log: an entry stored
 * there is in the page cache as soon as the store is made, so a process killed at any later
 * instant leaves it in the file, at the cost of a memory copy instead of a write(2).
 *
 * Exports:
 *   mapWindow(fd: number, offset: number, length: number): ArrayBuffer | number
 *     Reserves the file's blocks up to offset + length (fallocate: a full disk is an error
 *     now, not a SIGBUS on a later store) and maps [offset, offset + length) read-write,
 *     shared. offset must be a multiple of the page size. Returns -errno on failure:
 *     -EOPNOTSUPP where the file system cannot reserve blocks (the caller then writes).
 *     The mapping is released when the ArrayBuffer is collected or unmapWindow is called.
 *   unmapWindow(buffer: ArrayBuffer): undefined
 *     Releases a window now and detaches the buffer (its length becomes 0).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate */
#endif
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
  void *addr;
  size_t len;
} window_t;

static void release(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  window_t *w = hint;
  if (w->addr != NULL) munmap(w->addr, w->len);
  free(w);
}

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value js_map(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return num(env, -EINVAL);
  int32_t fd;
  int64_t offset, length;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || offset < 0 || length <= 0 ||
      offset % sysconf(_SC_PAGESIZE) != 0)
    return num(env, -EINVAL);
  int r;
  do r = fallocate(fd, 0, offset, length); while (r < 0 && errno == EINTR);
  if (r < 0) return num(env, -errno);
  void *addr = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (addr == MAP_FAILED) return num(env, -errno);
  window_t *w = malloc(sizeof *w);
  if (w == NULL) {
    munmap(addr, (size_t)length);
    return num(env, -ENOMEM);
  }
  w->addr = addr;
  w->len = (size_t)length;
  napi_value out;
  if (napi_create_external_arraybuffer(env, addr, (size_t)length, release, w, &out) != napi_ok) {
    munmap(addr, (size_t)length);
    free(w);
    return num(env, -ENOTSUP);
  }
  napi_value key;
  napi_create_string_utf8(env, "stasisWindow", NAPI_AUTO_LENGTH, &key);
  napi_value holder;
  napi_create_external(env, w, NULL, NULL, &holder);
  napi_set_property(env, out, key, holder);
  return out;
}

static napi_value js_unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  napi_value key, holder;
  napi_create_string_utf8(env, "stasisWindow", NAPI_AUTO_LENGTH, &key);
  void *p = NULL;
  if (napi_get_property(env, argv[0], key, &holder) != napi_ok || napi_get_value_external(env, holder, &p) != napi_ok || p == NULL) return NULL;
  window_t *w = p;
  if (w->addr == NULL) return NULL;
  /* Unmapped before the detach, which may free w (release() then only frees it). */
  munmap(w->addr, w->len);
  w->addr = NULL;
  napi_detach_arraybuffer(env, argv[0]);
  return NULL;
}

napi_status stasis_mapped_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    STASIS_FN("mapWindow", js_map),
    STASIS_FN("unmapWindow", js_unmap),
  };
  return STASIS_EXPORT(env, exports, props);
}

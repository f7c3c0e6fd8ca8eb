/*
 * The launcher's process: how it ends, and the pages of its big buffers.
 *
 * Exports:
 *   exitNow(status: number): never
 *     _exit(status): the process ends at once. Node's own exit, after its 'exit' listeners,
 *     disposes V8's platform, which waits for the background compilations in flight; V8's
 *     optimizing compiler can take hundreds of ms over one big (instrumented) function of the
 *     guest, and a launcher stopping on SIGTERM has nothing left to do by then.
 *   adviseHugePages(buffer: ArrayBuffer | TypedArray): number
 *     madvise(MADV_HUGEPAGE) on the whole pages inside the buffer, before they are touched:
 *     the kernel may then back it with 2 MiB pages, which it faults in and frees hundreds of
 *     times faster than 4 KiB ones (a 1 GiB capture buffer freed at exit: ~3 ms instead of
 *     ~100 ms). Returns 0, or -errno (-ENOSYS where the system has no such advice). Only a
 *     hint: the contents are not changed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MADV_HUGEPAGE */
#endif
#include "addon.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static napi_value js_exit_now(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t status = 70;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 1) napi_get_value_int32(env, argv[0], &status);
  _exit(status & 0xff);
}

static napi_value js_advise_huge_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  void *data = NULL;
  size_t length = 0;
  bool is;
  int r = -EINVAL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) goto done;
  if (napi_is_arraybuffer(env, argv[0], &is) == napi_ok && is) {
    if (napi_get_arraybuffer_info(env, argv[0], &data, &length) != napi_ok) goto done;
  } else if (napi_is_typedarray(env, argv[0], &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t n, offset;
    napi_value ab;
    if (napi_get_typedarray_info(env, argv[0], &type, &n, &data, &ab, &offset) != napi_ok) goto done;
    length = n; /* Uint8Array: elements are bytes */
    if (type != napi_uint8_array) goto done;
  } else {
    goto done;
  }
#ifdef MADV_HUGEPAGE
  {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)data + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)data + length) & ~(page - 1);
    r = end > start && madvise((void *)start, end - start, MADV_HUGEPAGE) != 0 ? -errno : 0;
  }
#else
  r = -ENOSYS;
#endif
done:
  napi_create_int32(env, r, &result);
  return result;
}

napi_status stasis_process_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    STASIS_FN("exitNow", js_exit_now),
    STASIS_FN("adviseHugePages", js_advise_huge_pages),
  };
  return STASIS_EXPORT(env, exports, props);
}

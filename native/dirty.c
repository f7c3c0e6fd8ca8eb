/*
 * Which pages of a buffer (the guest's wasm memory) were written since a point in time, from
 * the kernel instead of a compare of the whole memory with the previous capture: Linux's
 * userfaultfd in asynchronous write-protect mode marks the pages protected, the first write to
 * each clears its mark (the kernel resolves the fault itself, no handler thread), and the
 * PAGEMAP_SCAN ioctl (Linux >= 6.7) lists the pages written and protects them again, in one
 * walk of the page tables. Writes by the kernel (a readv into the buffer) count too.
 *
 * Each first write to a protected page costs the program a fault, so the launcher arms this
 * only when a stop is expected soon (after a Slurm warning checkpoint).
 *
 * Exports:
 *   trackWrites(memory: ArrayBuffer): number
 *     Starts tracking writes to the whole buffer (page-aligned start and length, as wasm
 *     memory is): every page counts as unwritten from now on. Returns a handle (>= 0), or
 *     -errno: -ENOSYS/-EINVAL/-ENOTTY where the kernel lacks the features, -EPERM where it
 *     refuses them, -EINVAL for an unaligned buffer.
 *   writtenPages(handle: number, memory: ArrayBuffer, out: Uint8Array, unit: number): number
 *     Sets out[i] = 1 for every unit-sized block i of the buffer with a page written since
 *     trackWrites or the last writtenPages (it leaves the other bytes alone), and counts every
 *     page as unwritten again. Returns 0, or -errno: -EPERM when part of the buffer is not
 *     tracked (it grew or moved since trackWrites). After an error the marks are unknown.
 *   untrackWrites(handle: number): number
 *     Ends the tracking (closes the handle): 0 or -errno.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "addon.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

/* Newer than some distributions' kernel headers (Debian 12 has 6.1's). */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct page_region {
  uint64_t start, end, categories;
};
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* Regions per ioctl; the scan is repeated from where the kernel stopped. */
#define REGIONS 512

/* Lists the pages of [start, end) written since the last scan, marking their blocks in out
   (may be NULL), and protects them again. 0 or -errno. */
static int scan(uint64_t start, uint64_t end, uint8_t *out, size_t out_len, uint64_t unit) {
  int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pm < 0) return -errno;
  struct page_region regs[REGIONS];
  uint64_t at = start;
  int r = 0;
  while (at < end) {
    struct pm_scan_arg a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    a.start = at;
    a.end = end;
    a.vec = (uintptr_t)regs;
    a.vec_len = REGIONS;
    a.category_mask = PAGE_IS_WRITTEN;
    a.return_mask = PAGE_IS_WRITTEN;
    long n = ioctl(pm, PAGEMAP_SCAN, &a);
    if (n < 0) {
      if (errno == EINTR) continue;
      r = -errno;
      break;
    }
    for (long i = 0; out != NULL && i < n; i++) {
      uint64_t first = (regs[i].start - start) / unit, last = (regs[i].end - start - 1) / unit;
      if (first >= out_len) continue;
      if (last >= out_len) last = out_len - 1;
      memset(out + first, 1, last - first + 1);
    }
    /* The kernel stops early (a full vector, or on its own); it never goes backwards. */
    if (a.walk_end <= at) {
      r = -EIO;
      break;
    }
    at = a.walk_end;
  }
  close(pm);
  return r;
}

static int page_aligned(uintptr_t addr, size_t len) {
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  return len > 0 && addr % page == 0 && len % page == 0;
}

static int track(void *data, size_t len) {
  if (!page_aligned((uintptr_t)data, len)) return -EINVAL;
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd < 0) return -errno;
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
  struct uffdio_register reg = {.range = {.start = (uintptr_t)data, .len = len}, .mode = UFFDIO_REGISTER_MODE_WP};
  int r = 0;
  if (ioctl(fd, UFFDIO_API, &api) != 0 || ioctl(fd, UFFDIO_REGISTER, &reg) != 0) r = -errno;
  /* Every page counts as unwritten from here on. */
  if (r == 0) r = scan((uintptr_t)data, (uintptr_t)data + len, NULL, 0, 1);
  if (r != 0) {
    close(fd);
    return r;
  }
  return fd;
}

static int written(void *data, size_t len, uint8_t *out, size_t out_len, uint64_t unit) {
  if (!page_aligned((uintptr_t)data, len) || unit == 0) return -EINVAL;
  return scan((uintptr_t)data, (uintptr_t)data + len, out, out_len, unit);
}
#else
static int track(void *data, size_t len) { (void)data; (void)len; return -ENOSYS; }
static int written(void *data, size_t len, uint8_t *out, size_t out_len, uint64_t unit) {
  (void)data; (void)len; (void)out; (void)out_len; (void)unit;
  return -ENOSYS;
}
#endif

static napi_value int_result(napi_env env, int r) {
  napi_value v;
  napi_create_int32(env, r, &v);
  return v;
}

static int arraybuffer(napi_env env, napi_value v, void **data, size_t *len) {
  bool is;
  return napi_is_arraybuffer(env, v, &is) == napi_ok && is && napi_get_arraybuffer_info(env, v, data, len) == napi_ok;
}

static napi_value js_track_writes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !arraybuffer(env, argv[0], &data, &len)) return int_result(env, -EINVAL);
  return int_result(env, track(data, len));
}

static napi_value js_written_pages(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  void *data, *out;
  size_t len, out_len, offset;
  int32_t fd;
  uint32_t unit;
  bool is;
  napi_typedarray_type type;
  napi_value ab;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || !arraybuffer(env, argv[1], &data, &len) ||
      napi_is_typedarray(env, argv[2], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[2], &type, &out_len, &out, &ab, &offset) != napi_ok || type != napi_uint8_array ||
      napi_get_value_uint32(env, argv[3], &unit) != napi_ok)
    return int_result(env, -EINVAL);
  return int_result(env, written(data, len, out, out_len, unit));
}

static napi_value js_untrack_writes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return int_result(env, -EINVAL);
  return int_result(env, close(fd) == 0 ? 0 : -errno);
}

napi_status stasis_dirty_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    STASIS_FN("trackWrites", js_track_writes),
    STASIS_FN("writtenPages", js_written_pages),
    STASIS_FN("untrackWrites", js_untrack_writes),
  };
  return STASIS_EXPORT(env, exports, props);
}

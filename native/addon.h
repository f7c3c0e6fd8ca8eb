/* stasis_native: one addon, seven parts, each adding its functions to the exports. */
#ifndef STASIS_ADDON_H
#define STASIS_ADDON_H
#ifndef NAPI_VERSION
#define NAPI_VERSION 8 /* bigint needs >= 6 */
#endif
#include <node_api.h>

/* One exported function, for a part's table of them; a part ends its init with STASIS_EXPORT. */
#define STASIS_FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
#define STASIS_EXPORT(env, exports, props) napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props)

/* utimens.c: futimens, utimensat (nanosecond-exact timestamps). */
napi_status stasis_utimens_init(napi_env env, napi_value exports);
/* io.c: iovecIo (fd_read / fd_write / fd_pread / fd_pwrite straight into wasm memory). */
napi_status stasis_io_init(napi_env env, napi_value exports);
/* mapped.c: a file window mapped shared (the undo journal's log). */
napi_status stasis_mapped_init(napi_env env, napi_value exports);
/* beneath.c: file operations confined beneath a directory fd (the sandbox's resolution). */
napi_status stasis_beneath_init(napi_env env, napi_value exports);
/* process.c: exitNow (_exit), adviseHugePages (madvise MADV_HUGEPAGE on a buffer). */
napi_status stasis_process_init(napi_env env, napi_value exports);
/* dirty.c: trackWrites, writtenPages, untrackWrites (the pages written since a capture, from the kernel). */
napi_status stasis_dirty_init(napi_env env, napi_value exports);
/* inline.c: pollIn (poll(2) for input), exitOnSignals (_exit on a signal, after a flush of the coalesced
 * writes, which its thread also flushes when stale), forwardSignals / onSignals (signals noted and handed
 * to another thread), listenUnix (a control socket listening before a thread serves it): a program on
 * the main thread. */
napi_status stasis_inline_init(napi_env env, napi_value exports);

#endif

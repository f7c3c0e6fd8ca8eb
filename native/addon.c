/* stasis_native: the optional native addon (see addon.h for its parts). */
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME stasis_native
#endif
#include "addon.h"

static napi_value init(napi_env env, napi_value exports) {
  if (stasis_utimens_init(env, exports) != napi_ok) return NULL;
  if (stasis_io_init(env, exports) != napi_ok) return NULL;
  if (stasis_beneath_init(env, exports) != napi_ok) return NULL;
  if (stasis_mapped_init(env, exports) != napi_ok) return NULL;
  if (stasis_process_init(env, exports) != napi_ok) return NULL;
  if (stasis_dirty_init(env, exports) != napi_ok) return NULL;
  if (stasis_inline_init(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

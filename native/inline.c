/*
 * What a program run on the launcher's main thread needs (`stasis run`, src/launcher/run.ts):
 * there, no JavaScript runs while the program computes, so neither Node's signal handlers nor
 * its streams can serve it.
 *
 * Exports:
 *   pollIn(fd: number, timeoutMs: number): number
 *     poll(2) for input on fd, up to timeoutMs (< 0: no limit; fractions round up to the next
 *     ms). 1 once a read would not block (data, end of input, an error to report), 0 when the
 *     time is up, -errno on failure. Other signals' interruptions are waited out.
 *   exitOnSignals(pairs: number[]): void
 *     pairs = [signal, status, signal, status, ...]: from now on each such signal ends the
 *     process at once with _exit(status), from whatever the thread is doing (the program's
 *     compute loop included). Replaces Node's handlers for those signals: nothing of Node's
 *     runs for them afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "addon.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIGNAL 65
static volatile sig_atomic_t exit_status[MAX_SIGNAL];

static void exit_on_signal(int sig) {
  _exit(sig > 0 && sig < MAX_SIGNAL ? exit_status[sig] : 128 + sig);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static napi_value js_poll_in(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd = -1;
  double timeout = -1;
  int r = -EINVAL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) goto done;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) goto done;
  if (napi_get_value_double(env, argv[1], &timeout) != napi_ok) goto done;
  {
    int forever = !(timeout >= 0) || isinf(timeout);
    double deadline = now_ms() + (forever ? 0 : timeout);
    for (;;) {
      int wait = -1;
      if (!forever) {
        double left = ceil(deadline - now_ms());
        wait = left <= 0 ? 0 : left > 2147483647.0 ? 2147483647 : (int)left;
      }
      struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
      int n = poll(&p, 1, wait);
      if (n >= 0) {
        r = n > 0 ? 1 : 0;
        break;
      }
      if (errno != EINTR) {
        r = -errno;
        break;
      }
    }
  }
done:
  napi_create_int32(env, r, &result);
  return result;
}

static napi_value js_exit_on_signals(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) goto fail;
  if (napi_get_array_length(env, argv[0], &n) != napi_ok || n % 2 != 0) goto fail;
  for (uint32_t i = 0; i < n; i += 2) {
    napi_value v;
    int32_t sig = 0, status = 0;
    if (napi_get_element(env, argv[0], i, &v) != napi_ok || napi_get_value_int32(env, v, &sig) != napi_ok) goto fail;
    if (napi_get_element(env, argv[0], i + 1, &v) != napi_ok || napi_get_value_int32(env, v, &status) != napi_ok) goto fail;
    if (sig <= 0 || sig >= MAX_SIGNAL) goto fail;
    exit_status[sig] = status & 0xff;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_on_signal;
    sigfillset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
      napi_throw_error(env, NULL, strerror(errno));
      return NULL;
    }
  }
  return NULL;
fail:
  napi_throw_type_error(env, NULL, "exitOnSignals: expected [signal, status, ...]");
  return NULL;
}

napi_status stasis_inline_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"pollIn", NULL, js_poll_in, NULL, NULL, NULL, napi_enumerable, NULL},
    {"exitOnSignals", NULL, js_exit_on_signals, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

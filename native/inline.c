/*
 * What a program run on the launcher's main thread needs (`stasis run`, src/launcher/run.ts; `launch`
 * and `restart`, src/launcher/main-thread.ts): there, no JavaScript runs while the program computes,
 * so neither Node's signal handlers nor its streams can serve it.
 *
 * Exports:
 *   pollIn(fd: number, timeoutMs: number): number
 *     poll(2) for input on fd, up to timeoutMs (< 0: no limit; fractions round up to the next
 *     ms). 1 once a read would not block (data, end of input, an error to report), 0 when the
 *     time is up, 2 when wakePollIn was called (from any thread: a checkpoint request for a
 *     program waiting for input), -errno on failure. Other signals' interruptions are waited out.
 *   wakePollIn(): void
 *     Ends the current or next pollIn with 2 (once per call, however many calls came before).
 *   exitOnSignals(pairs: number[], writeBehind?: Int32Array): void
 *     pairs = [signal, status, signal, status, ...]: from now on each such signal ends the
 *     process at once with _exit(status), from whatever the thread is doing (the program's
 *     compute loop included). Replaces Node's handlers for those signals: nothing of Node's
 *     runs for them afterwards.
 *     With writeBehind (a view of the whole shared buffer of src/wasi/writebehind.ts), a thread
 *     of this file's serves that buffer as the launcher's main thread would while the program
 *     computes: it writes out a burst of coalesced writes once no new one has come for
 *     FLUSH_MS, and on one of those signals, writes out what is buffered before the _exit
 *     (the signal handler only wakes it: the interrupted thread may hold the buffer's lock).
 *     Same layout and lock as writebehind.ts; this side never blocks in it, so a holder of the
 *     lock here is never waited for by a sleeping JavaScript thread for long (it waits with a
 *     timeout).
 *   forwardSignals(signals: number[]): void
 *     Under checkpoint control (`launch`, `restart` on the main thread): from now on each of
 *     these signals is noted by the process, whatever its threads are doing, and handed to the
 *     callback onSignals gave (on that callback's thread, which may be a worker: Node delivers
 *     no signal to a worker), or kept until there is one. Replaces Node's handlers for them.
 *   onSignals(callback: (signal: number) => void): void
 *     The callback of forwardSignals, called on this thread's event loop once per signal noted
 *     (signals noted before it was given included). Keeps this thread's event loop alive.
 *   listenUnix(path: string): number
 *     A Unix stream socket bound at path (any file there removed first), made 0600 and
 *     listening: its fd (close-on-exec, non-blocking), or -errno. A client can connect at
 *     once; its connection waits until a server takes the fd (net.Server listen({ fd })).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "addon.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIGNAL 65
static volatile sig_atomic_t exit_status[MAX_SIGNAL];

/* The write-behind buffer (src/wasi/writebehind.ts): int32 words, a float64 start offset at
 * byte 24, the data from byte 32. */
enum { WB_LOCK = 0, WB_LENGTH = 1, WB_HANDLE = 2, WB_SEQ = 3, WB_ERRNO = 4, WB_ERROR_HANDLE = 5 };
#define WB_HEADER 32
#define FLUSH_MS 5
static int32_t *wb_words;
static int wake_fd = -1; /* eventfd the signal handler writes to */
static volatile sig_atomic_t signal_status = 0;

static void exit_on_signal(int sig) {
  int status = sig > 0 && sig < MAX_SIGNAL ? exit_status[sig] : 128 + sig;
  if (wake_fd >= 0) {
    uint64_t one = 1;
    signal_status = status;
    if (write(wake_fd, &one, sizeof one) == sizeof one) return; /* the flusher writes out and exits */
  }
  _exit(status);
}

static int wb_try_lock(void) {
  int32_t free_ = 0;
  return __atomic_compare_exchange_n(&wb_words[WB_LOCK], &free_, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static void wb_unlock(void) {
  /* A JavaScript waiter (2) wakes by its own timeout: V8's Atomics.wait is not a futex. */
  __atomic_store_n(&wb_words[WB_LOCK], 0, __ATOMIC_SEQ_CST);
}

/* The index writebehind.ts's ERROR_CODES gives an errno (EIO for anything unlisted). */
static int32_t wb_error_index(int e) {
  switch (e) {
    case ENOSPC: return 1;
    case EIO: return 2;
    case EFBIG: return 3;
    case EDQUOT: return 4;
    case EBADF: return 5;
    case EROFS: return 6;
    case EPERM: return 7;
    case EINVAL: return 8;
    default: return 2;
  }
}

/* flushLocked of writebehind.ts. */
static void wb_flush_locked(void) {
  int32_t n = wb_words[WB_LENGTH];
  if (n <= 0) return;
  int32_t handle = wb_words[WB_HANDLE];
  double start;
  memcpy(&start, (uint8_t *)wb_words + 24, sizeof start);
  const uint8_t *data = (const uint8_t *)wb_words + WB_HEADER;
  off_t pos = (off_t)start;
  int32_t done = 0;
  while (done < n) {
    ssize_t k = pwrite(handle, data + done, (size_t)(n - done), pos);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      wb_words[WB_ERRNO] = wb_error_index(k < 0 ? errno : EIO);
      wb_words[WB_ERROR_HANDLE] = handle;
      break;
    }
    done += (int32_t)k;
    pos += k;
  }
  __atomic_store_n(&wb_words[WB_LENGTH], 0, __ATOMIC_SEQ_CST);
}

static void *flusher(void *arg) {
  (void)arg;
  int32_t last = __atomic_load_n(&wb_words[WB_SEQ], __ATOMIC_SEQ_CST);
  for (;;) {
    struct pollfd p = {.fd = wake_fd, .events = POLLIN, .revents = 0};
    int r = poll(&p, 1, FLUSH_MS);
    if (r > 0) {
      /* A terminating signal: wait out a holder of the lock (it is between two statements of
       * an add or a flush), write out, end. */
      const struct timespec pause_ = {.tv_sec = 0, .tv_nsec = 50000};
      while (!wb_try_lock()) nanosleep(&pause_, NULL);
      wb_flush_locked();
      _exit(signal_status);
    }
    int32_t seq = __atomic_load_n(&wb_words[WB_SEQ], __ATOMIC_SEQ_CST);
    if (seq == last && __atomic_load_n(&wb_words[WB_LENGTH], __ATOMIC_SEQ_CST) > 0 && wb_try_lock()) {
      wb_flush_locked();
      wb_unlock();
    }
    last = seq;
  }
  return NULL;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The wake-up of pollIn: an eventfd shared by every thread (made once, never closed). */
static int poll_wake_fd = -1;
static pthread_once_t poll_wake_once = PTHREAD_ONCE_INIT;
static void make_poll_wake(void) { poll_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

static napi_value js_wake_poll_in(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_once(&poll_wake_once, make_poll_wake);
  uint64_t one = 1;
  if (poll_wake_fd >= 0 && write(poll_wake_fd, &one, sizeof one) < 0) { /* the count is full: a wake-up is pending anyway */ }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
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
  pthread_once(&poll_wake_once, make_poll_wake);
  {
    int forever = !(timeout >= 0) || isinf(timeout);
    double deadline = now_ms() + (forever ? 0 : timeout);
    for (;;) {
      int wait = -1;
      if (!forever) {
        double left = ceil(deadline - now_ms());
        wait = left <= 0 ? 0 : left > 2147483647.0 ? 2147483647 : (int)left;
      }
      struct pollfd p[2] = {{.fd = fd, .events = POLLIN, .revents = 0}, {.fd = poll_wake_fd, .events = POLLIN, .revents = 0}};
      int n = poll(p, poll_wake_fd >= 0 ? 2 : 1, wait);
      if (n > 0 && p[0].revents == 0) {
        uint64_t count;
        if (read(poll_wake_fd, &count, sizeof count) < 0) { /* another pollIn took it */ }
        r = 2;
        break;
      }
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

/* Starts a detached thread of this file's that takes no signal (they go to the others, whose handler
 * wakes it); 0 or pthread_create's error. */
static int start_thread(void *(*run)(void *)) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  pthread_t t;
  int e = pthread_create(&t, NULL, run, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e == 0) pthread_detach(t);
  return e;
}

/* Installs handler for sig, every signal blocked while it runs; false (a JS error thrown) on failure. */
static int handle_signal(napi_env env, int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigfillset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) == 0) return 1;
  napi_throw_error(env, NULL, strerror(errno));
  return 0;
}

static napi_value js_exit_on_signals(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) goto fail;
  if (argc >= 2 && wb_words == NULL) {
    napi_valuetype t;
    if (napi_typeof(env, argv[1], &t) != napi_ok) goto fail;
    if (t != napi_undefined) {
      bool is = false;
      napi_typedarray_type type;
      size_t length = 0;
      void *data = NULL;
      napi_ref keep;
      if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is) goto fail;
      if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok) goto fail;
      if (type != napi_int32_array || length * 4 < WB_HEADER || data == NULL) goto fail;
      napi_create_reference(env, argv[1], 1, &keep); /* held for the life of the process */
      int fd = eventfd(0, EFD_CLOEXEC);
      if (fd < 0) {
        napi_throw_error(env, NULL, strerror(errno));
        return NULL;
      }
      wb_words = (int32_t *)data;
      wake_fd = fd;
      int e = start_thread(flusher);
      if (e != 0) {
        wake_fd = -1;
        close(fd);
        wb_words = NULL;
        napi_throw_error(env, NULL, strerror(e));
        return NULL;
      }
    }
  }
  if (napi_get_array_length(env, argv[0], &n) != napi_ok || n % 2 != 0) goto fail;
  for (uint32_t i = 0; i < n; i += 2) {
    napi_value v;
    int32_t sig = 0, status = 0;
    if (napi_get_element(env, argv[0], i, &v) != napi_ok || napi_get_value_int32(env, v, &sig) != napi_ok) goto fail;
    if (napi_get_element(env, argv[0], i + 1, &v) != napi_ok || napi_get_value_int32(env, v, &status) != napi_ok) goto fail;
    if (sig <= 0 || sig >= MAX_SIGNAL) goto fail;
    exit_status[sig] = status & 0xff;
    if (!handle_signal(env, sig, exit_on_signal, 0)) return NULL;
  }
  return NULL;
fail:
  napi_throw_type_error(env, NULL, "exitOnSignals: expected [signal, status, ...] and optionally an Int32Array");
  return NULL;
}

/* forwardSignals / onSignals: the handler notes the signal and wakes a thread of this file's,
 * which hands what was noted to the callback's thread (a thread-safe function). */
static uint64_t fwd_noted; /* one bit per signal */
static int fwd_fd = -1;
static pthread_mutex_t fwd_lock = PTHREAD_MUTEX_INITIALIZER;
static napi_threadsafe_function fwd_tsfn; /* under fwd_lock; NULL until onSignals */

static void note_signal(int sig) {
  int saved = errno;
  __atomic_or_fetch(&fwd_noted, (uint64_t)1 << sig, __ATOMIC_SEQ_CST);
  uint64_t one = 1;
  if (write(fwd_fd, &one, sizeof one) < 0) { /* the count is full: a wake-up is pending anyway */ }
  errno = saved;
}

/* Hands what was noted to the callback, if there is one (else it stays noted). */
static void fwd_deliver(void) {
  pthread_mutex_lock(&fwd_lock);
  if (fwd_tsfn != NULL) {
    uint64_t noted = __atomic_exchange_n(&fwd_noted, 0, __ATOMIC_SEQ_CST) & ~(uint64_t)1;
    for (int sig = 1; sig < 64 && noted != 0; sig++) {
      if ((noted & ((uint64_t)1 << sig)) == 0) continue;
      noted &= ~((uint64_t)1 << sig);
      napi_call_threadsafe_function(fwd_tsfn, (void *)(intptr_t)sig, napi_tsfn_nonblocking);
    }
  }
  pthread_mutex_unlock(&fwd_lock);
}

static void *forwarder(void *arg) {
  (void)arg;
  for (;;) {
    uint64_t n;
    if (read(fwd_fd, &n, sizeof n) < 0 && errno != EINTR && errno != EAGAIN) return NULL;
    fwd_deliver();
  }
  return NULL;
}

static void fwd_call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  if (env == NULL || cb == NULL) return;
  napi_value undefined, arg;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, (int32_t)(intptr_t)data, &arg);
  napi_call_function(env, undefined, cb, 1, &arg, NULL);
}

static void fwd_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)data; (void)hint;
  pthread_mutex_lock(&fwd_lock);
  fwd_tsfn = NULL; /* its thread has ended: signals are kept again */
  pthread_mutex_unlock(&fwd_lock);
}

static napi_value js_forward_signals(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) goto fail;
  if (napi_get_array_length(env, argv[0], &n) != napi_ok) goto fail;
  if (fwd_fd < 0) {
    int fd = eventfd(0, EFD_CLOEXEC);
    if (fd < 0) {
      napi_throw_error(env, NULL, strerror(errno));
      return NULL;
    }
    fwd_fd = fd;
    int e = start_thread(forwarder);
    if (e != 0) {
      fwd_fd = -1;
      close(fd);
      napi_throw_error(env, NULL, strerror(e));
      return NULL;
    }
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    int32_t sig = 0;
    if (napi_get_element(env, argv[0], i, &v) != napi_ok || napi_get_value_int32(env, v, &sig) != napi_ok) goto fail;
    if (sig <= 0 || sig >= 64) goto fail;
    if (!handle_signal(env, sig, note_signal, SA_RESTART)) return NULL;
  }
  return NULL;
fail:
  napi_throw_type_error(env, NULL, "forwardSignals: expected [signal, ...]");
  return NULL;
}

static napi_value js_on_signals(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1
      || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "onSignals: expected a function");
    return NULL;
  }
  napi_create_string_utf8(env, "stasis.signals", NAPI_AUTO_LENGTH, &name);
  napi_threadsafe_function tsfn;
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, fwd_finalize, NULL, fwd_call_js, &tsfn) != napi_ok) {
    napi_throw_error(env, NULL, "onSignals: cannot create the thread-safe function");
    return NULL;
  }
  pthread_mutex_lock(&fwd_lock);
  napi_threadsafe_function old = fwd_tsfn;
  fwd_tsfn = tsfn;
  pthread_mutex_unlock(&fwd_lock);
  if (old != NULL) napi_release_threadsafe_function(old, napi_tsfn_abort);
  if (fwd_fd >= 0) note_signal(0); /* hands over what was noted before (bit 0 is never a signal) */
  return NULL;
}

static napi_value js_listen_unix(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  size_t len = 0;
  int r;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1
      || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "listenUnix: expected a path");
    return NULL;
  }
  if (len + 1 >= sizeof path) {
    r = -ENAMETOOLONG;
  } else {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      r = -errno;
    } else {
      unlink(path);
      /* chmod, not a umask: see src/control/channel.ts. */
      if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || chmod(path, 0600) != 0 || listen(fd, 511) != 0) {
        r = -errno;
        close(fd);
      } else {
        r = fd;
      }
    }
  }
  napi_create_int32(env, r, &result);
  return result;
}

napi_status stasis_inline_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    STASIS_FN("pollIn", js_poll_in),
    STASIS_FN("wakePollIn", js_wake_poll_in),
    STASIS_FN("exitOnSignals", js_exit_on_signals),
    STASIS_FN("forwardSignals", js_forward_signals),
    STASIS_FN("onSignals", js_on_signals),
    STASIS_FN("listenUnix", js_listen_unix),
  };
  return STASIS_EXPORT(env, exports, props);
}

/*
 * The few socket calls skopeo's image-proxy protocol needs and Node does not have:
 * messages on a SOCK_SEQPACKET socket with file descriptors attached (SCM_RIGHTS),
 * pipe(2), and a one-shot wait for a descriptor to become readable or writable on
 * libuv's loop. Every call is non-blocking: the JavaScript side waits with waitFor().
 *
 * Why hand-written: Node's net module cannot adopt a SEQPACKET socket nor pass
 * descriptors except over its own IPC framing, and the npm packages that come close do
 * one half each (node-unix-socket: SEQPACKET sockets it creates itself, no SCM_RIGHTS;
 * usocket: SCM_RIGHTS on stream sockets only). This file is small enough to read whole.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* The most descriptors one message carries (skopeo sends at most two). */
#define MAX_FDS 4
/* The pipe size asked for (Linux's default pipe-max-size). */
#define PIPE_BYTES (1024 * 1024)

static napi_value throw_errno(napi_env env, const char *call, int err) {
  napi_value code, message, error;
  char text[160];
  snprintf(text, sizeof text, "%s: %s", call, strerror(err));
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_throw(env, error);
  return NULL;
}

static int arg_int(napi_env env, napi_value value, int32_t *out) {
  return napi_get_value_int32(env, value, out) == napi_ok;
}

/* pipe() → [readFd, writeFd], both close-on-exec. */
static napi_value js_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return throw_errno(env, "pipe2", errno);
  /* A larger pipe means fewer wake-ups per blob for both ends; the default (64 KiB) is
   * kept when the system refuses (pipe-max-size, or the user's pipe quota). */
  (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES);
  napi_value result, r, w;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, fds[0], &r);
  napi_create_int32(env, fds[1], &w);
  napi_set_element(env, result, 0, r);
  napi_set_element(env, result, 1, w);
  return result;
}

/*
 * recv(fd, maxBytes) → null when nothing is waiting; else { data, fds, truncated }.
 * An empty data with eof true means the peer closed its end.
 */
static napi_value js_recv(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, max;
  if (argc < 2 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &max) || max <= 0) {
    napi_throw_type_error(env, NULL, "recv(fd, maxBytes)");
    return NULL;
  }
  char *buffer = malloc((size_t)max);
  if (!buffer) return throw_errno(env, "recvmsg", ENOMEM);
  char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct iovec iov = {.iov_base = buffer, .iov_len = (size_t)max};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    free(buffer);
    if (err == EAGAIN || err == EWOULDBLOCK) {
      napi_value null;
      napi_get_null(env, &null);
      return null;
    }
    return throw_errno(env, "recvmsg", err);
  }
  napi_value result, data, fds, flag;
  napi_create_object(env, &result);
  void *copy;
  napi_create_buffer_copy(env, (size_t)n, buffer, &copy, &data);
  free(buffer);
  napi_set_named_property(env, result, "data", data);
  napi_create_array(env, &fds);
  uint32_t count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *received = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < k; i++) {
      napi_value v;
      napi_create_int32(env, received[i], &v);
      napi_set_element(env, fds, count++, v);
    }
  }
  napi_set_named_property(env, result, "fds", fds);
  napi_get_boolean(env, (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0, &flag);
  napi_set_named_property(env, result, "truncated", flag);
  napi_get_boolean(env, n == 0, &flag);
  napi_set_named_property(env, result, "eof", flag);
  return result;
}

/* send(fd, data, fds) → true when sent, false when the socket buffer is full. */
static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  void *data;
  size_t length;
  uint32_t nfds = 0;
  bool is_array = false;
  if (argc < 3 || !arg_int(env, argv[0], &fd) || napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &nfds) != napi_ok ||
      nfds > MAX_FDS) {
    napi_throw_type_error(env, NULL, "send(fd, buffer, fds) with at most 4 fds");
    return NULL;
  }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value v;
    napi_get_element(env, argv[2], i, &v);
    if (!arg_int(env, v, &fds[i])) {
      napi_throw_type_error(env, NULL, "fds must be integers");
      return NULL;
    }
  }
  char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  memset(control, 0, sizeof control);
  struct iovec iov = {.iov_base = data, .iov_len = length};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  napi_value result;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_get_boolean(env, false, &result);
      return result;
    }
    return throw_errno(env, "sendmsg", errno);
  }
  if ((size_t)n != length) return throw_errno(env, "sendmsg (short write)", EMSGSIZE);
  napi_get_boolean(env, true, &result);
  return result;
}

typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
} waiter;

static void free_waiter(uv_handle_t *handle) { free(handle->data); }

static void on_ready(uv_poll_t *handle, int status, int events) {
  (void)events;
  waiter *w = handle->data;
  napi_env env = w->env;
  uv_poll_stop(handle);
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value callback, global, arg;
  napi_get_reference_value(env, w->callback, &callback);
  napi_delete_reference(env, w->callback);
  uv_close((uv_handle_t *)handle, free_waiter);
  napi_get_global(env, &global);
  if (status < 0) {
    napi_create_string_utf8(env, uv_err_name(status), NAPI_AUTO_LENGTH, &arg);
  } else {
    napi_get_null(env, &arg);
  }
  napi_make_callback(env, NULL, global, callback, 1, &arg, NULL);
  napi_close_handle_scope(env, scope);
}

/* waitFor(fd, writable, callback): calls callback(errorName|null) once fd is ready. */
static napi_value js_wait_for(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  bool writable;
  napi_valuetype type;
  if (argc < 3 || !arg_int(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &writable) != napi_ok ||
      napi_typeof(env, argv[2], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "waitFor(fd, writable, callback)");
    return NULL;
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  waiter *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "waitFor", ENOMEM);
  int rc = uv_poll_init(loop, &w->handle, fd);
  if (rc < 0) {
    free(w);
    return throw_errno(env, "uv_poll_init", -rc);
  }
  w->env = env;
  w->handle.data = w;
  napi_create_reference(env, argv[2], 1, &w->callback);
  rc = uv_poll_start(&w->handle, writable ? UV_WRITABLE : UV_READABLE, on_ready);
  if (rc < 0) {
    napi_delete_reference(env, w->callback);
    uv_close((uv_handle_t *)&w->handle, free_waiter);
    return throw_errno(env, "uv_poll_start", -rc);
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor methods[] = {
      {"pipe", NULL, js_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recv", NULL, js_recv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitFor", NULL, js_wait_for, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}

// A connected UDP socket watched by Node's own event loop: the data path of a TFTP transfer.
//
// Why not node:dgram: a lock-step transfer (RFC 1350) costs one received ACK and one sent
// DATA per block, and node:dgram spends more on each datagram than the kernel does: a 64 KiB
// allocation per read and one more for the read that finds the queue empty, an address
// string per datagram, a request object per send. Here a datagram is read into a buffer the
// transfer owns and handed to JavaScript as a length, and a send is one send(2).
//
// This file moves bytes: packets are parsed and built in TypeScript. Each read is bounded by
// the buffer JavaScript gave; each send by the Buffer JavaScript passes. The one thing it
// knows of TFTP is the shape of an ACK, for a run: in lock-step, JavaScript loads the next
// DATA packets ahead of time and arms the run with the ACK block that releases the first.
// Each ACK of the awaited block then releases the next packet at once, without calling into
// JavaScript; JavaScript hears how many were released with the next datagram it is given, or
// when the run is used up, and loads the next run. Each packet is released at most once, by
// the one ACK that answers it; any other datagram goes to JavaScript as it is.
//
//   new Channel(family, localAddress, remoteAddress, remotePort, recvBuffer,
//               onMessage, onDrained, onError)
//     onMessage(length, truncated, released)  a datagram is in recvBuffer[0, length);
//                                             released: packets the run sent since the
//                                             last report
//     onDrained(released)                     the run's last packet went out
//     onError(errno)                          a negative errno, e.g. -ECONNREFUSED
//   channel.localPort() -> number
//   channel.send(buffer, offset, length) -> 0, or a negative errno
//   channel.load(buffer, offset, length) -> true, or false when the run has no room left
//   channel.arm(ackBlock)       the ACK of ackBlock releases the first packet not yet sent
//   channel.disarm() -> number  empties the run; returns packets released since the report
//   channel.close()

#define NAPI_VERSION 8
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// What a run holds: enough lock-step blocks that JavaScript runs once per many ACKs.
#define RUN_BYTES (128 * 1024)
#define RUN_PACKETS 256

typedef struct {
  uint32_t offset, length;
} slot_t;

typedef struct {
  napi_env env;
  int fd;
  int polling;  // uv_poll_t initialised; its memory is released only after uv_close
  int closed;   // close() called, or the socket failed to open
  int poll_closed;  // uv_close has called back: the uv handle's memory is free to go
  int freed;        // the JS object was collected; the uv_close callback frees the struct
  int held;         // `self` is a strong reference: the channel keeps its object alive
  uv_poll_t poll;
  unsigned char* data;  // recvBuffer's bytes, kept alive by `buffer`
  size_t cap;
  unsigned char* run;  // copies of the loaded packets, allocated on first load
  size_t run_fill;     // bytes of `run` in use
  slot_t slots[RUN_PACKETS];
  int run_count;      // packets loaded
  int run_next;       // the next one to release
  int run_ack;        // the ACK block that releases it; -1 when not armed
  uint32_t released;  // packets released since the last report to JavaScript
  napi_ref buffer, on_message, on_drained, on_error, self;
  napi_async_context context;
} channel_t;

#define CHECK(call)                                     \
  do {                                                  \
    if ((call) != napi_ok) {                            \
      napi_throw_error(env, "ERR_WEFT_UDP", #call);     \
      return NULL;                                      \
    }                                                   \
  } while (0)

static void release_js(channel_t* ch) {
  napi_env env = ch->env;
  if (ch->buffer) napi_delete_reference(env, ch->buffer);
  if (ch->on_message) napi_delete_reference(env, ch->on_message);
  if (ch->on_drained) napi_delete_reference(env, ch->on_drained);
  if (ch->on_error) napi_delete_reference(env, ch->on_error);
  if (ch->context) napi_async_destroy(env, ch->context);
  ch->buffer = ch->on_message = ch->on_drained = ch->on_error = NULL;
  ch->context = NULL;
  ch->data = NULL;
  ch->cap = 0;
}

static void on_poll_closed(uv_handle_t* handle) {
  channel_t* ch = handle->data;
  ch->poll_closed = 1;
  if (ch->freed) free(ch);
}

static void empty_run(channel_t* ch) {
  ch->run_fill = 0;
  ch->run_count = ch->run_next = 0;
  ch->run_ack = -1;
}

// Stop watching, close the descriptor and let go of the JS values; the JS object stays.
static void shut(channel_t* ch) {
  if (ch->closed) return;
  ch->closed = 1;
  if (ch->polling) {
    uv_poll_stop(&ch->poll);
    uv_close((uv_handle_t*)&ch->poll, on_poll_closed);
  }
  if (ch->fd >= 0) close(ch->fd);
  ch->fd = -1;
  free(ch->run);
  ch->run = NULL;
  empty_run(ch);
  release_js(ch);
  // The object was held while open so that a transfer nobody references keeps running.
  if (ch->held) {
    uint32_t left;
    ch->held = 0;
    napi_reference_unref(ch->env, ch->self, &left);
  }
}

static void finalize(napi_env env, void* data, void* hint) {
  (void)hint;
  channel_t* ch = data;
  if (ch->self) napi_delete_reference(env, ch->self);
  ch->self = NULL;
  if (!ch->closed) {
    // Only at environment teardown: an open channel holds its own object. Close the
    // descriptor; the uv handle is left to the loop being torn down with the process.
    if (ch->polling) uv_poll_stop(&ch->poll);
    if (ch->fd >= 0) close(ch->fd);
    return;
  }
  // A uv handle's memory must outlive uv_close; free it there when one was started.
  if (ch->polling && !ch->poll_closed) ch->freed = 1;
  else free(ch);
}

// Call a JS callback as an event-loop entry point: microtasks run after it, and a throw
// becomes an uncaught exception as it would from node:dgram.
static void call_js(channel_t* ch, napi_ref fn_ref, size_t argc, napi_value* argv) {
  napi_env env = ch->env;
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, fn_ref, &fn) != napi_ok || fn == NULL) return;
  // napi_make_callback wants an object for `this`: the channel itself.
  if (napi_get_reference_value(env, ch->self, &recv) != napi_ok || recv == NULL) return;
  if (napi_make_callback(env, ch->context, recv, fn, argc, argv, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}

static void report_error(channel_t* ch, int negative_errno) {
  napi_value arg;
  napi_create_int32(ch->env, negative_errno, &arg);
  call_js(ch, ch->on_error, 1, &arg);
}

static void on_readable(uv_poll_t* handle, int status, int events) {
  (void)events;
  channel_t* ch = handle->data;
  if (ch->closed) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(ch->env, &scope) != napi_ok) return;
  if (status < 0) {
    // libuv reports EPOLLERR as UV_EBADF and stops polling; the socket knows the real error,
    // e.g. ECONNREFUSED from an ICMP port unreachable (RFC 1122 4.1.3.3).
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(ch->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0) status = -soerr;
    report_error(ch, status);  // libuv errors are negative errnos on Linux
  } else {
    // One datagram per wake-up: in a transfer at most one is usually queued, and reading
    // until EAGAIN would cost a second recv(2) per ACK. Level-triggered polling brings the
    // loop back at once for any datagram left.
    ssize_t n = recv(ch->fd, ch->data, ch->cap, MSG_TRUNC);
    // An ACK is opcode 4 and a 16-bit block, 4 octets in all (RFC 1350 section 5).
    if (n == 4 && ch->run_ack >= 0 && ch->cap >= 4 && ch->data[0] == 0 && ch->data[1] == 4 &&
        ((ch->data[2] << 8) | ch->data[3]) == ch->run_ack) {
      slot_t slot = ch->slots[ch->run_next];
      // A send that fails for want of buffer space is a loss, as on the wire: the transfer's
      // timeout resends. Any other failure ends the transfer.
      if (send(ch->fd, ch->run + slot.offset, slot.length, 0) < 0 && errno != EAGAIN &&
          errno != EWOULDBLOCK && errno != ENOBUFS && errno != ENOMEM && errno != EINTR) {
        int err = -errno;
        empty_run(ch);
        report_error(ch, err);
      } else {
        ch->released++;
        ch->run_ack = (ch->run_ack + 1) & 0xffff;
        if (++ch->run_next == ch->run_count) {
          napi_value arg;
          empty_run(ch);
          napi_create_uint32(ch->env, ch->released, &arg);
          ch->released = 0;
          call_js(ch, ch->on_drained, 1, &arg);
        }
      }
    } else if (n >= 0) {
      napi_value argv[3];
      size_t length = (size_t)n > ch->cap ? ch->cap : (size_t)n;
      napi_create_uint32(ch->env, (uint32_t)length, &argv[0]);
      napi_get_boolean(ch->env, (size_t)n > ch->cap, &argv[1]);
      napi_create_uint32(ch->env, ch->released, &argv[2]);
      ch->released = 0;
      call_js(ch, ch->on_message, 3, argv);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      report_error(ch, -errno);
    }
  }
  napi_close_handle_scope(ch->env, scope);
}

static int parse_address(int family, const char* text, uint16_t port, struct sockaddr_storage* out,
                         socklen_t* len) {
  memset(out, 0, sizeof(*out));
  if (family == 4) {
    struct sockaddr_in* a = (struct sockaddr_in*)out;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    *len = sizeof(*a);
    return inet_pton(AF_INET, text, &a->sin_addr) == 1 ? 0 : -EINVAL;
  }
  struct sockaddr_in6* a = (struct sockaddr_in6*)out;
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  *len = sizeof(*a);
  return inet_pton(AF_INET6, text, &a->sin6_addr) == 1 ? 0 : -EINVAL;
}

static napi_value throw_errno(napi_env env, int negative_errno, const char* what) {
  char message[160];
  snprintf(message, sizeof(message), "%s: %s", what, strerror(-negative_errno));
  napi_value code, msg, error;
  napi_create_int32(env, negative_errno, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_set_named_property(env, error, "errno", code);
  napi_throw(env, error);
  return NULL;
}

static napi_value construct(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], self;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (argc != 8) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "Channel takes 8 arguments");
    return NULL;
  }
  int32_t family, remote_port;
  char local[64], remote[64];
  size_t ignored;
  bool is_buffer;
  napi_valuetype t5, t6, t7;
  if (napi_get_value_int32(env, argv[0], &family) != napi_ok || (family != 4 && family != 6) ||
      napi_get_value_string_utf8(env, argv[1], local, sizeof(local), &ignored) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], remote, sizeof(remote), &ignored) != napi_ok ||
      napi_get_value_int32(env, argv[3], &remote_port) != napi_ok || remote_port < 1 ||
      remote_port > 65535 || napi_is_buffer(env, argv[4], &is_buffer) != napi_ok || !is_buffer ||
      napi_typeof(env, argv[5], &t5) != napi_ok || t5 != napi_function ||
      napi_typeof(env, argv[6], &t6) != napi_ok || t6 != napi_function ||
      napi_typeof(env, argv[7], &t7) != napi_ok || t7 != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "Channel(family 4|6, local, remote, port, Buffer, fn, fn, fn)");
    return NULL;
  }
  struct sockaddr_storage local_addr, remote_addr;
  socklen_t local_len, remote_len;
  if (parse_address(family, local, 0, &local_addr, &local_len) < 0 ||
      parse_address(family, remote, (uint16_t)remote_port, &remote_addr, &remote_len) < 0) {
    napi_throw_type_error(env, "ERR_INVALID_IP_ADDRESS", "not an IP address of that family");
    return NULL;
  }

  channel_t* ch = calloc(1, sizeof(*ch));
  if (ch == NULL) return throw_errno(env, -ENOMEM, "calloc");
  ch->env = env;
  ch->run_ack = -1;
  ch->fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ch->fd < 0) {
    int err = -errno;
    free(ch);
    return throw_errno(env, err, "socket");
  }
  if (napi_wrap(env, self, ch, finalize, NULL, &ch->self) != napi_ok) {
    close(ch->fd);
    free(ch);
    napi_throw_error(env, "ERR_WEFT_UDP", "napi_wrap failed");
    return NULL;
  }
  // From here the finalizer owns `ch`; shut() on any failure closes the descriptor.
  int err = 0;
  const char* what = NULL;
  if (bind(ch->fd, (struct sockaddr*)&local_addr, local_len) < 0) {
    err = -errno;
    what = "bind";
  } else if (connect(ch->fd, (struct sockaddr*)&remote_addr, remote_len) < 0) {
    err = -errno;
    what = "connect";
  }
  if (what != NULL) {
    shut(ch);
    return throw_errno(env, err, what);
  }
  void* data;
  napi_value name;
  if (napi_get_buffer_info(env, argv[4], &data, &ch->cap) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &ch->buffer) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &ch->on_message) != napi_ok ||
      napi_create_reference(env, argv[6], 1, &ch->on_drained) != napi_ok ||
      napi_create_reference(env, argv[7], 1, &ch->on_error) != napi_ok ||
      napi_create_string_utf8(env, "WeftUdpChannel", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, self, name, &ch->context) != napi_ok) {
    shut(ch);
    napi_throw_error(env, "ERR_WEFT_UDP", "could not keep the channel's values");
    return NULL;
  }
  ch->data = data;
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    shut(ch);
    napi_throw_error(env, "ERR_WEFT_UDP", "no event loop");
    return NULL;
  }
  int rc = uv_poll_init_socket(loop, &ch->poll, ch->fd);
  if (rc == 0) {
    ch->polling = 1;
    ch->poll.data = ch;
    rc = uv_poll_start(&ch->poll, UV_READABLE, on_readable);
  }
  if (rc != 0) {
    shut(ch);
    return throw_errno(env, rc, "uv_poll");
  }
  uint32_t count;
  if (napi_reference_ref(env, ch->self, &count) == napi_ok) ch->held = 1;
  return self;
}

static channel_t* unwrap(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  napi_value self;
  void* data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok ||
      napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "not a Channel");
    return NULL;
  }
  return data;
}

// The arguments (buffer, offset, length) of send() and load(): the bytes they name, checked
// to lie inside the Buffer. Returns the channel, or NULL with a JS exception pending.
static channel_t* unwrap_slice(napi_env env, napi_callback_info info, const char* what,
                               unsigned char** bytes, uint32_t* length) {
  size_t argc = 3;
  napi_value argv[3];
  channel_t* ch = unwrap(env, info, &argc, argv);
  if (ch == NULL) return NULL;
  void* data;
  size_t size;
  uint32_t offset;
  bool is_buffer;
  if (argc != 3 || napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[0], &data, &size) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &offset) != napi_ok ||
      napi_get_value_uint32(env, argv[2], length) != napi_ok || offset > size ||
      *length > size - offset) {
    char message[80];
    snprintf(message, sizeof(message), "%s(buffer, offset, length) out of range", what);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return NULL;
  }
  *bytes = (unsigned char*)data + offset;
  return ch;
}

static napi_value send_datagram(napi_env env, napi_callback_info info) {
  unsigned char* bytes;
  uint32_t length;
  channel_t* ch = unwrap_slice(env, info, "send", &bytes, &length);
  if (ch == NULL) return NULL;
  int rc = 0;
  if (ch->closed) rc = -EBADF;
  else if (send(ch->fd, bytes, length, 0) < 0) rc = -errno;
  napi_value result;
  napi_create_int32(env, rc, &result);
  return result;
}

static napi_value load(napi_env env, napi_callback_info info) {
  unsigned char* bytes;
  uint32_t length;
  channel_t* ch = unwrap_slice(env, info, "load", &bytes, &length);
  if (ch == NULL) return NULL;
  bool loaded = false;
  if (!ch->closed && ch->run_count < RUN_PACKETS && length <= RUN_BYTES - ch->run_fill) {
    if (ch->run == NULL) ch->run = malloc(RUN_BYTES);
    if (ch->run == NULL) return throw_errno(env, -ENOMEM, "malloc");
    memcpy(ch->run + ch->run_fill, bytes, length);
    ch->slots[ch->run_count].offset = (uint32_t)ch->run_fill;
    ch->slots[ch->run_count].length = length;
    ch->run_fill += length;
    ch->run_count++;
    loaded = true;
  }
  napi_value result;
  napi_get_boolean(env, loaded, &result);
  return result;
}

static napi_value arm(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  channel_t* ch = unwrap(env, info, &argc, argv);
  if (ch == NULL) return NULL;
  uint32_t block;
  if (argc != 1 || napi_get_value_uint32(env, argv[0], &block) != napi_ok || block > 65535) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "arm(ackBlock) takes a block from 0 to 65535");
    return NULL;
  }
  if (ch->run_next < ch->run_count) ch->run_ack = (int)block;
  return NULL;
}

static napi_value disarm(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value result;
  channel_t* ch = unwrap(env, info, &argc, NULL);
  if (ch == NULL) return NULL;
  empty_run(ch);
  napi_create_uint32(env, ch->released, &result);
  ch->released = 0;
  return result;
}

static napi_value local_port(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  channel_t* ch = unwrap(env, info, &argc, NULL);
  if (ch == NULL) return NULL;
  struct sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (!ch->closed && getsockname(ch->fd, (struct sockaddr*)&addr, &len) == 0)
    port = ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in*)&addr)->sin_port
                                           : ((struct sockaddr_in6*)&addr)->sin6_port);
  napi_value result;
  napi_create_int32(env, port, &result);
  return result;
}

static napi_value close_channel(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  channel_t* ch = unwrap(env, info, &argc, NULL);
  if (ch == NULL) return NULL;
  shut(ch);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"send", NULL, send_datagram, NULL, NULL, NULL, napi_default_method, NULL},
      {"load", NULL, load, NULL, NULL, NULL, napi_default_method, NULL},
      {"arm", NULL, arm, NULL, NULL, NULL, napi_default_method, NULL},
      {"disarm", NULL, disarm, NULL, NULL, NULL, napi_default_method, NULL},
      {"localPort", NULL, local_port, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, close_channel, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  CHECK(napi_define_class(env, "Channel", NAPI_AUTO_LENGTH, construct, NULL,
                          sizeof(methods) / sizeof(methods[0]), methods, &cls));
  CHECK(napi_set_named_property(env, exports, "Channel", cls));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

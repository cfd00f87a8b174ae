/* Node-API surface of the netlink event socket: the NetlinkMonitor class,
 * which calls back with batches of typed events through a thread-safe
 * function, and the conversion of parsed events to JS objects. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/neighbour.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "netlink.h"
#include "netlink_napi.h"

#define QUEUE_MAX 64 /* batches waiting for JS; beyond this the reader blocks and the socket overruns */

struct nlm_wrap {
  struct nl_monitor *m;
  napi_threadsafe_function tsfn;
  bool running;
};

/* ---------- events to JS ---------- */

/* Property names, made once per batch: a C string key per property per
 * event would cost a string creation each time. */
enum key { K_KIND, K_OP, K_FAMILY, K_IFINDEX, K_IFNAME, K_UP, K_DST, K_PREFIXLEN, K_TABLE, K_PROTOCOL, K_TYPE,
           K_GATEWAY, K_LLADDR, K_STATE, K_FLAGS, K_COUNT };
static const char *KEY_NAMES[K_COUNT] = {"kind", "op", "family", "ifindex", "ifname", "up", "dst", "prefixLen",
                                         "table", "protocol", "type", "gateway", "lladdr", "state", "flags"};
enum value { V_LINK, V_ROUTE, V_NEIGH, V_FDB, V_NEW, V_DEL, V_BRIDGE, V_COUNT };
static const char *VALUE_NAMES[V_COUNT] = {"link", "route", "neigh", "fdb", "new", "del", "bridge"};

struct names {
  napi_value key[K_COUNT];
  napi_value val[V_COUNT];
};

static void names_init(napi_env env, struct names *n) {
  for (int i = 0; i < K_COUNT; i++) napi_create_string_utf8(env, KEY_NAMES[i], NAPI_AUTO_LENGTH, &n->key[i]);
  for (int i = 0; i < V_COUNT; i++) napi_create_string_utf8(env, VALUE_NAMES[i], NAPI_AUTO_LENGTH, &n->val[i]);
}

static void put(napi_env env, napi_value o, const struct names *n, enum key k, napi_value v) {
  napi_set_property(env, o, n->key[k], v);
}

static void put_u32(napi_env env, napi_value o, const struct names *n, enum key k, uint32_t x) {
  napi_value v;
  napi_create_uint32(env, x, &v);
  put(env, o, n, k, v);
}

static void put_text(napi_env env, napi_value o, const struct names *n, enum key k, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  put(env, o, n, k, v);
}

static void put_ip(napi_env env, napi_value o, const struct names *n, enum key k, uint8_t fam, const uint8_t *a) {
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(fam == 4 ? AF_INET : AF_INET6, a, text, sizeof text)) put_text(env, o, n, k, text);
}

static void put_mac(napi_env env, napi_value o, const struct names *n, const struct nl_event *e) {
  if (!e->lladdr_len) return;
  static const char hex[] = "0123456789abcdef";
  char text[3 * sizeof e->lladdr];
  for (unsigned i = 0; i < e->lladdr_len; i++) {
    text[3 * i] = hex[e->lladdr[i] >> 4];
    text[3 * i + 1] = hex[e->lladdr[i] & 15];
    text[3 * i + 2] = ':';
  }
  text[3 * e->lladdr_len - 1] = 0;
  put_text(env, o, n, K_LLADDR, text);
}

static napi_value event_object(napi_env env, const struct names *n, const struct nl_event *e) {
  napi_value o;
  napi_create_object(env, &o);
  put(env, o, n, K_KIND, n->val[V_LINK + e->kind - NLE_LINK]);
  put(env, o, n, K_OP, n->val[e->added ? V_NEW : V_DEL]);
  if (e->family == 7) put(env, o, n, K_FAMILY, n->val[V_BRIDGE]);
  else if (e->family) put_u32(env, o, n, K_FAMILY, e->family);
  napi_value idx;
  napi_create_int32(env, e->ifindex, &idx);
  put(env, o, n, K_IFINDEX, idx);
  switch (e->kind) {
  case NLE_LINK: {
    put_text(env, o, n, K_IFNAME, e->ifname);
    napi_value up;
    napi_get_boolean(env, e->up, &up);
    put(env, o, n, K_UP, up);
    break;
  }
  case NLE_ROUTE:
    put_ip(env, o, n, K_DST, e->family, e->dst);
    put_u32(env, o, n, K_PREFIXLEN, e->prefix_len);
    put_u32(env, o, n, K_TABLE, e->table);
    put_u32(env, o, n, K_PROTOCOL, e->protocol);
    put_u32(env, o, n, K_TYPE, e->type);
    if (e->has_gateway) put_ip(env, o, n, K_GATEWAY, e->family, e->gateway);
    break;
  case NLE_NEIGH:
  case NLE_FDB:
    if (e->has_dst) put_ip(env, o, n, K_DST, e->dst_family, e->dst);
    put_mac(env, o, n, e);
    put_u32(env, o, n, K_STATE, e->state);
    put_u32(env, o, n, K_FLAGS, e->ndm_flags);
    break;
  }
  return o;
}

napi_value netlink_events_js(napi_env env, const struct nl_event *ev, size_t count) {
  struct names n;
  names_init(env, &n);
  napi_value arr;
  napi_create_array_with_length(env, count, &arr);
  for (size_t i = 0; i < count; i++) napi_set_element(env, arr, (uint32_t)i, event_object(env, &n, &ev[i]));
  return arr;
}

/* Runs on the JS thread (env NULL while the function is torn down: just free). */
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  struct nl_batch *b = data;
  if (env && cb) {
    napi_value info, argv[2], undef, t;
    napi_create_object(env, &info);
    napi_get_boolean(env, b->dump, &t);
    napi_set_named_property(env, info, "dump", t);
    napi_get_boolean(env, b->lost, &t);
    napi_set_named_property(env, info, "lost", t);
    if (b->error) {
      napi_create_string_utf8(env, b->message, NAPI_AUTO_LENGTH, &t);
      napi_set_named_property(env, info, "error", t);
    }
    argv[0] = netlink_events_js(env, b->ev, b->n);
    argv[1] = info;
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 2, argv, NULL);
  }
  free(b->ev);
  free(b);
}

/* Runs on the reader thread. */
static bool deliver(void *ctx, struct nl_batch *b) {
  struct nlm_wrap *w = ctx;
  struct nl_batch *copy = malloc(sizeof *copy);
  if (!copy) {
    free(b->ev);
    return true; /* dropped; the next overrun or resync covers it */
  }
  *copy = *b;
  if (napi_call_threadsafe_function(w->tsfn, copy, napi_tsfn_blocking) != napi_ok) {
    free(copy->ev);
    free(copy);
    return false;
  }
  return true;
}

/* ---------- class ---------- */

static void wrap_stop(struct nlm_wrap *w) {
  if (!w->running) return;
  w->running = false;
  /* Abort first: a reader blocked on a full queue returns, then joins. */
  napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
  nl_monitor_stop(w->m);
}

static void wrap_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  struct nlm_wrap *w = data;
  wrap_stop(w);
  nl_monitor_free(w->m);
  free(w);
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* new NetlinkMonitor({netns?, rcvbuf?}, onBatch(events, {dump, lost, error?})) */
static napi_value Monitor_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok) return NULL;
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 2) {
    napi_typeof(env, argv[0], &t0);
    napi_typeof(env, argv[1], &t1);
  }
  if (t0 != napi_object || t1 != napi_function) return throw_type(env, "NetlinkMonitor({netns?, rcvbuf?}, onBatch)");
  char netns[256] = "";
  int32_t rcvbuf = 0;
  napi_value v;
  napi_valuetype vt;
  if (napi_get_named_property(env, argv[0], "netns", &v) == napi_ok && napi_typeof(env, v, &vt) == napi_ok &&
      vt != napi_undefined) {
    size_t len = 0;
    if (vt != napi_string || napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len >= sizeof netns)
      return throw_type(env, "netns must be a namespace name");
    napi_get_value_string_utf8(env, v, netns, sizeof netns, &len);
  }
  if (napi_get_named_property(env, argv[0], "rcvbuf", &v) == napi_ok && napi_typeof(env, v, &vt) == napi_ok &&
      vt != napi_undefined && (napi_get_value_int32(env, v, &rcvbuf) != napi_ok || rcvbuf < 0))
    return throw_type(env, "rcvbuf must be a byte count");

  struct nlm_wrap *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  char err[256] = "";
  int rc = nl_monitor_open(netns, rcvbuf, &w->m, err, sizeof err);
  if (rc < 0) {
    free(w);
    napi_throw_error(env, rc == -ENOENT ? "ENOENT" : rc == -EPERM ? "EPERM" : "EIO", err);
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "weft-netlink", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, QUEUE_MAX, 1, NULL, NULL, NULL, call_js, &w->tsfn) !=
      napi_ok) {
    nl_monitor_free(w->m);
    free(w);
    napi_throw_error(env, NULL, "cannot create a thread-safe function");
    return NULL;
  }
  if (napi_wrap(env, self, w, wrap_finalize, NULL, NULL) != napi_ok) {
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
    nl_monitor_free(w->m);
    free(w);
    return NULL;
  }
  rc = nl_monitor_start(w->m, deliver, w);
  if (rc < 0) {
    napi_throw_error(env, "EIO", "cannot start the netlink reader thread");
    return NULL;
  }
  w->running = true;
  return self;
}

static napi_value Monitor_stop(napi_env env, napi_callback_info info) {
  napi_value self;
  size_t argc = 0;
  struct nlm_wrap *w = NULL;
  if (napi_get_cb_info(env, info, &argc, NULL, &self, NULL) != napi_ok ||
      napi_unwrap(env, self, (void **)&w) != napi_ok || !w)
    return throw_type(env, "not a NetlinkMonitor");
  wrap_stop(w);
  return NULL;
}

napi_status netlink_register(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"stop", NULL, Monitor_stop, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  napi_status s = napi_define_class(env, "NetlinkMonitor", NAPI_AUTO_LENGTH, Monitor_new, NULL, 1, methods, &cls);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, "NetlinkMonitor", cls);
}

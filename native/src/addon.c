/* Node-API surface of the udp backend: the UdpLoop class (device, sockets,
 * worker threads), the pure packet functions used by tests, and a harness
 * that hammers the peer-table swap from native reader threads. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "csum.h"
#include "gso.h"
#include "loop.h"
#include "netlink_napi.h"
#include "packet.h"
#include "peers.h"
#include "probe.h"

#define RBUF_LIMIT (VNET_HDR_LEN + 65535)
#define ARENA_LIMIT 2048 /* segments: a 64 KiB superpacket with a tiny MSS */

#define NAPI_OK(call)                                   \
  do {                                                  \
    if ((call) != napi_ok) {                            \
      throw_pending(env, #call);                        \
      return NULL;                                      \
    }                                                   \
  } while (0)

static void throw_pending(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, what);
}

static const char *errno_code(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case EACCES: return "EACCES";
  case ENOENT: return "ENOENT";
  case EADDRINUSE: return "EADDRINUSE";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case EBUSY: return "EBUSY";
  case EINVAL: return "EINVAL";
  case ENOMEM: return "ENOMEM";
  case ENODEV: return "ENODEV";
  default: return "EIO";
  }
}

/* ---------- small helpers ---------- */

static bool get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return false;
  if (napi_get_named_property(env, obj, name, out) != napi_ok) return false;
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

/* Copies a JS string of at most size-1 bytes (UTF-8) into buf; false when
 * it is not a string or does not fit. */
static bool get_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return false;
  /* The copy below truncates silently: measure first. */
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len >= size) return false;
  return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok;
}

static void set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

static void set_bool(napi_env env, napi_value obj, const char *name, bool v) {
  napi_value b;
  napi_get_boolean(env, v, &b);
  napi_set_named_property(env, obj, name, b);
}

static void set_str(napi_env env, napi_value obj, const char *name, const char *v) {
  napi_value s;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, name, s);
}

static bool get_buffer(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is = false;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return false;
  return napi_get_buffer_info(env, v, (void **)data, len) == napi_ok;
}

/* Parses [{subnet, publicIP}] and an own subnet into a table. Throws on bad input. */
static struct peer_table *table_from_js(napi_env env, napi_value arr, napi_value ownv,
                                        int underlay_family, uint16_t port) {
  bool isarr = false;
  napi_is_array(env, arr, &isarr);
  if (!isarr) {
    napi_throw_type_error(env, NULL, "peers must be an array of {subnet, publicIP}");
    return NULL;
  }
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  struct peer_spec *specs = calloc(n ? n : 1, sizeof *specs);
  if (!specs) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  char msg[160], text[80];
  for (uint32_t i = 0; i < n; i++) {
    napi_value item, sv, pv;
    napi_get_element(env, arr, i, &item);
    napi_valuetype t;
    napi_typeof(env, item, &t);
    if (t != napi_object || !get_prop(env, item, "subnet", &sv) || !get_prop(env, item, "publicIP", &pv)) {
      snprintf(msg, sizeof msg, "peer %u: want {subnet, publicIP}", i);
      goto bad;
    }
    if (!get_string(env, sv, text, sizeof text) || !prefix_parse(text, &specs[i].subnet)) {
      snprintf(msg, sizeof msg, "peer %u: subnet is not a CIDR", i);
      goto bad;
    }
    if (!get_string(env, pv, text, sizeof text) || !addr_parse(text, &specs[i].pub_family, specs[i].pub)) {
      snprintf(msg, sizeof msg, "peer %u: publicIP is not an IP address", i);
      goto bad;
    }
  }
  struct prefix own;
  bool has_own = false;
  napi_valuetype ot = napi_undefined;
  if (ownv) napi_typeof(env, ownv, &ot);
  if (ot != napi_undefined && ot != napi_null) {
    if (!get_string(env, ownv, text, sizeof text) || !prefix_parse(text, &own)) {
      snprintf(msg, sizeof msg, "own subnet is not a CIDR");
      goto bad;
    }
    has_own = true;
  }
  struct peer_table *tab = peer_table_build(specs, n, has_own ? &own : NULL, underlay_family, port);
  free(specs);
  if (!tab) napi_throw_error(env, "ENOMEM", "out of memory building the peer table");
  return tab;
bad:
  free(specs);
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* ---------- UdpLoop ---------- */

struct loop_wrap {
  struct loop *l;
};

static void loop_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  struct loop_wrap *w = data;
  loop_free(w->l);
  free(w);
}

static struct loop *unwrap_loop(napi_env env, napi_value self) {
  struct loop_wrap *w = NULL;
  if (napi_unwrap(env, self, (void **)&w) != napi_ok || !w || !w->l) {
    napi_throw_error(env, NULL, "not a UdpLoop");
    return NULL;
  }
  return w->l;
}

static bool opt_bool(napi_env env, napi_value obj, const char *name, bool dflt) {
  napi_value v;
  if (!obj || !get_prop(env, obj, name, &v)) return dflt;
  bool b = dflt;
  napi_get_value_bool(env, v, &b);
  return b;
}

static napi_value UdpLoop_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_object) {
    napi_throw_type_error(env, NULL, "UdpLoop needs an options object");
    return NULL;
  }
  struct loop_opts o;
  memset(&o, 0, sizeof o);
  napi_value v;
  char text[80];
  if (!get_prop(env, argv[0], "device", &v) || !get_string(env, v, o.dev, sizeof o.dev) || !o.dev[0]) {
    napi_throw_type_error(env, NULL, "device must be an interface name of at most 15 characters");
    return NULL;
  }
  uint32_t port = 0;
  if (!get_prop(env, argv[0], "port", &v) || napi_get_value_uint32(env, v, &port) != napi_ok ||
      port < 1 || port > 65535) {
    napi_throw_type_error(env, NULL, "port must be 1-65535");
    return NULL;
  }
  o.port = (uint16_t)port;
  if (!get_prop(env, argv[0], "bindAddress", &v) || !get_string(env, v, text, sizeof text) ||
      !addr_parse(text, &o.bind_family, o.bind_addr)) {
    napi_throw_type_error(env, NULL, "bindAddress must be an IP address");
    return NULL;
  }
  o.simple = false;
  if (get_prop(env, argv[0], "mode", &v)) {
    if (!get_string(env, v, text, sizeof text) || (strcmp(text, "simple") && strcmp(text, "fast"))) {
      napi_throw_type_error(env, NULL, "mode must be \"simple\" or \"fast\"");
      return NULL;
    }
    o.simple = strcmp(text, "simple") == 0;
  }
  uint32_t queues = 1;
  if (get_prop(env, argv[0], "queues", &v) &&
      (napi_get_value_uint32(env, v, &queues) != napi_ok || queues < 1 || queues > READER_SLOTS_MAX)) {
    napi_throw_type_error(env, NULL, "queues must be 1-64");
    return NULL;
  }
  o.queues = queues;
  napi_value off = NULL;
  if (!get_prop(env, argv[0], "offload", &off)) off = NULL;
  o.tso = opt_bool(env, off, "tso", true);
  o.gso = opt_bool(env, off, "gso", true);
  o.gro = opt_bool(env, off, "gro", true);
  o.coalesce = opt_bool(env, off, "coalesce", true);

  struct loop_wrap *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  char err[256] = "";
  int rc = loop_open(&o, &w->l, err, sizeof err);
  if (rc < 0) {
    free(w);
    napi_throw_error(env, errno_code(-rc), err[0] ? err : strerror(-rc));
    return NULL;
  }
  if (napi_wrap(env, self, w, loop_finalize, NULL, NULL) != napi_ok) {
    loop_free(w->l);
    free(w);
    throw_pending(env, "napi_wrap");
    return NULL;
  }
  return self;
}

static napi_value this_arg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self = NULL;
  napi_get_cb_info(env, info, argc, argv, &self, NULL);
  return self;
}

static napi_value UdpLoop_start(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct loop *l = unwrap_loop(env, this_arg(env, info, &argc, NULL));
  if (!l) return NULL;
  char err[256] = "";
  int rc = loop_start(l, err, sizeof err);
  if (rc < 0) napi_throw_error(env, errno_code(-rc), err);
  return NULL;
}

static napi_value UdpLoop_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  struct loop *l = unwrap_loop(env, this_arg(env, info, &argc, argv));
  if (!l) return NULL;
  bool teardown = false;
  if (argc >= 1 && argv[0]) napi_get_value_bool(env, argv[0], &teardown);
  loop_stop(l, teardown);
  return NULL;
}

static napi_value UdpLoop_setPeers(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  struct loop *l = unwrap_loop(env, this_arg(env, info, &argc, argv));
  if (!l) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "setPeers(peers, ownSubnet)");
    return NULL;
  }
  struct peer_table *t = table_from_js(env, argv[0], argc >= 2 ? argv[1] : NULL,
                                       (int)loop_underlay_family(l), loop_port(l));
  if (!t) return NULL;
  uint32_t n = t->n;
  loop_set_table(l, t);
  napi_value r;
  napi_create_uint32(env, n, &r);
  return r;
}

static napi_value hist_array(napi_env env, const uint64_t *h) {
  napi_value a;
  napi_create_array_with_length(env, HIST_BUCKETS, &a);
  for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
    napi_value n;
    napi_create_double(env, (double)h[i], &n);
    napi_set_element(env, a, i, n);
  }
  return a;
}

static napi_value drops_object(napi_env env, const uint64_t *d) {
  napi_value o;
  napi_create_object(env, &o);
  for (unsigned r = 1; r < DROP_REASONS; r++) set_num(env, o, drop_reason_names[r], (double)d[r]);
  return o;
}

static napi_value UdpLoop_counters(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct loop *l = unwrap_loop(env, this_arg(env, info, &argc, NULL));
  if (!l) return NULL;
  struct counters c;
  loop_counters(l, &c);
  napi_value o, h;
  NAPI_OK(napi_create_object(env, &o));
  for (unsigned i = 0; i < C_COUNT; i++) set_num(env, o, counter_names[i], (double)c.c[i]);
  napi_set_named_property(env, o, "dropsInbound", drops_object(env, c.drop_in));
  napi_set_named_property(env, o, "dropsOutbound", drops_object(env, c.drop_out));
  napi_create_object(env, &h);
  napi_set_named_property(env, h, "udpRxBatch", hist_array(env, c.hist_rx_batch));
  napi_set_named_property(env, h, "udpTxSegments", hist_array(env, c.hist_tx_gso));
  napi_set_named_property(env, h, "tunWriteSegments", hist_array(env, c.hist_coalesce));
  napi_set_named_property(env, o, "histograms", h);
  return o;
}

static napi_value UdpLoop_features(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct loop *l = unwrap_loop(env, this_arg(env, info, &argc, NULL));
  if (!l) return NULL;
  struct loop_features f;
  loop_features(l, &f);
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  set_str(env, o, "device", f.dev);
  set_str(env, o, "mode", f.simple ? "simple" : "fast");
  set_num(env, o, "queues", f.queues);
  set_bool(env, o, "vnetHdr", f.vnet_hdr);
  set_bool(env, o, "tso", f.tso);
  set_bool(env, o, "checksumOffload", f.csum);
  set_bool(env, o, "udpGso", f.udp_gso);
  set_bool(env, o, "udpGro", f.udp_gro);
  set_bool(env, o, "coalesce", f.coalesce);
  return o;
}

static napi_value UdpLoop_deviceLost(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct loop *l = unwrap_loop(env, this_arg(env, info, &argc, NULL));
  if (!l) return NULL;
  napi_value b;
  napi_get_boolean(env, loop_device_lost(l), &b);
  return b;
}

/* ---------- pure functions for tests ---------- */

static napi_value fn_checksum(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  this_arg(env, info, &argc, argv);
  uint8_t *d;
  size_t n;
  if (argc < 1 || !get_buffer(env, argv[0], &d, &n)) {
    napi_throw_type_error(env, NULL, "checksum(buffer)");
    return NULL;
  }
  uint8_t f[2];
  csum_store(f, csum_add(0, d, n));
  napi_value r;
  napi_create_uint32(env, (uint32_t)(f[0] << 8 | f[1]), &r);
  return r;
}

static void table_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  peer_table_free(data);
}

static napi_value fn_peerTable(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL};
  this_arg(env, info, &argc, argv);
  uint32_t fam = 4;
  if (argc >= 3 && argv[2]) napi_get_value_uint32(env, argv[2], &fam);
  struct peer_table *t = table_from_js(env, argv[0], argc >= 2 ? argv[1] : NULL, (int)fam, 8285);
  if (!t) return NULL;
  napi_value ext;
  NAPI_OK(napi_create_external(env, t, table_finalize, NULL, &ext));
  return ext;
}

static napi_value fn_inboundVerdict(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  this_arg(env, info, &argc, argv);
  struct peer_table *t = NULL;
  uint8_t *d;
  size_t n;
  char from[64];
  uint8_t fam, addr[16];
  if (argc < 3 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok ||
      !get_string(env, argv[1], from, sizeof from) || !addr_parse(from, &fam, addr) ||
      !get_buffer(env, argv[2], &d, &n)) {
    napi_throw_type_error(env, NULL, "inboundVerdict(table, fromIP, packet)");
    return NULL;
  }
  struct pkt_info pi;
  enum drop_reason r = pkt_check_inbound(t, fam, addr, d, n, &pi);
  napi_value s;
  napi_create_string_utf8(env, r == DROP_NONE ? "ok" : drop_reason_names[r], NAPI_AUTO_LENGTH, &s);
  return s;
}

static napi_value fn_split(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  this_arg(env, info, &argc, argv);
  uint8_t *d;
  size_t n;
  if (argc < 1 || !get_buffer(env, argv[0], &d, &n) || n < VNET_HDR_LEN || n > RBUF_LIMIT) {
    napi_throw_type_error(env, NULL, "split(buffer: virtio header + packet, at most 64 KiB)");
    return NULL;
  }
  uint8_t *copy = malloc(n);
  uint8_t *arena = malloc((size_t)ARENA_LIMIT * SEG_HDR_MAX);
  struct segment *segs = malloc(ARENA_LIMIT * sizeof *segs);
  napi_value result = NULL;
  if (!copy || !arena || !segs) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    goto out;
  }
  memcpy(copy, d, n);
  struct vnet_hdr vh;
  memcpy(&vh, copy, VNET_HDR_LEN);
  struct superpacket sp;
  struct pkt_info pi;
  enum drop_reason r = sp_prepare(&vh, copy + VNET_HDR_LEN, (uint32_t)(n - VNET_HDR_LEN), &sp, &pi);
  if (r != DROP_NONE) {
    napi_create_string_utf8(env, drop_reason_names[r], NAPI_AUTO_LENGTH, &result);
    goto out;
  }
  if (sp.nsegs > ARENA_LIMIT) {
    napi_create_string_utf8(env, "tooManySegments", NAPI_AUTO_LENGTH, &result);
    goto out;
  }
  sp_split(&sp, 0, sp.nsegs, arena, segs);
  napi_create_array_with_length(env, sp.nsegs, &result);
  for (uint32_t i = 0; i < sp.nsegs; i++) {
    void *data;
    napi_value b;
    napi_create_buffer(env, segs[i].hdrlen + segs[i].paylen, &data, &b);
    memcpy(data, segs[i].hdr, segs[i].hdrlen);
    if (segs[i].paylen) memcpy((uint8_t *)data + segs[i].hdrlen, segs[i].pay, segs[i].paylen);
    napi_set_element(env, result, i, b);
  }
out:
  free(copy);
  free(arena);
  free(segs);
  return result;
}

struct gather {
  napi_env env;
  napi_value out;
  uint32_t n;
  bool refuse_gso;
};

static int gather_emit(void *ctx, struct iovec *iov, unsigned iovcnt, bool gso) {
  struct gather *g = ctx;
  if (gso && g->refuse_gso) return -EINVAL;
  size_t total = 0;
  for (unsigned i = 0; i < iovcnt; i++) total += iov[i].iov_len;
  void *data;
  napi_value b;
  if (napi_create_buffer(g->env, total, &data, &b) != napi_ok) return -ENOMEM;
  size_t off = 0;
  for (unsigned i = 0; i < iovcnt; i++) {
    memcpy((uint8_t *)data + off, iov[i].iov_base, iov[i].iov_len);
    off += iov[i].iov_len;
  }
  napi_set_element(g->env, g->out, g->n++, b);
  return 0;
}

static napi_value fn_coalesce(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  this_arg(env, info, &argc, argv);
  bool isarr = false;
  if (argc >= 1) napi_is_array(env, argv[0], &isarr);
  if (!isarr) {
    napi_throw_type_error(env, NULL, "coalesce(packets: Buffer[], {refuseGso?})");
    return NULL;
  }
  struct gather g = {env, NULL, 0, opt_bool(env, argc >= 2 ? argv[1] : NULL, "refuseGso", false)};
  uint32_t n = 0;
  napi_get_array_length(env, argv[0], &n);
  /* Private copies: coalescing rewrites the first segment's header in place. */
  uint8_t **copies = calloc(n ? n : 1, sizeof *copies);
  struct coalescer *c = malloc(sizeof *c);
  napi_value result = NULL;
  if (!copies || !c) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    goto out;
  }
  napi_create_array(env, &g.out);
  co_init(c, gather_emit, &g, true);
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    uint8_t *d;
    size_t len;
    napi_get_element(env, argv[0], i, &item);
    if (!get_buffer(env, item, &d, &len) || len > 0xffff || !(copies[i] = malloc(len ? len : 1))) {
      napi_throw_type_error(env, NULL, "coalesce: every packet must be a Buffer of at most 64 KiB");
      goto out;
    }
    memcpy(copies[i], d, len);
    struct pkt_info pi;
    enum drop_reason r = pkt_parse(copies[i], len, &pi);
    if (r != DROP_NONE) {
      char msg[96];
      snprintf(msg, sizeof msg, "coalesce: packet %u does not parse (%s)", i, drop_reason_names[r]);
      napi_throw_type_error(env, NULL, msg);
      goto out;
    }
    co_add(c, copies[i], (uint32_t)len, &pi);
  }
  co_flush(c);
  result = g.out;
out:
  if (copies)
    for (uint32_t i = 0; i < n; i++) free(copies[i]);
  free(copies);
  free(c);
  return result;
}

static napi_value fn_icmpError(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  this_arg(env, info, &argc, argv);
  uint8_t *d;
  size_t n;
  char kind[32], src[64];
  uint32_t mtu = 0;
  uint8_t fam, addr[16];
  if (argc < 4 || !get_buffer(env, argv[0], &d, &n) || !get_string(env, argv[1], kind, sizeof kind) ||
      napi_get_value_uint32(env, argv[2], &mtu) != napi_ok || !get_string(env, argv[3], src, sizeof src) ||
      !addr_parse(src, &fam, addr)) {
    napi_throw_type_error(env, NULL, "icmpError(packet, kind, mtu, sourceIP)");
    return NULL;
  }
  enum icmp_kind k;
  if (!strcmp(kind, "unreachable")) k = ICMP_KIND_UNREACH;
  else if (!strcmp(kind, "timeExceeded")) k = ICMP_KIND_TIME_EXCEEDED;
  else if (!strcmp(kind, "tooBig")) k = ICMP_KIND_TOO_BIG;
  else {
    napi_throw_type_error(env, NULL, "kind must be unreachable, timeExceeded or tooBig");
    return NULL;
  }
  struct pkt_info pi;
  napi_value r;
  napi_get_null(env, &r);
  if (pkt_parse(d, n, &pi) != DROP_NONE || pi.family != fam) return r;
  uint8_t out[1400];
  size_t len = icmp_build_error(out, sizeof out, d, &pi, k, mtu, addr);
  if (!len) return r;
  void *data;
  napi_create_buffer_copy(env, len, out, &data, &r);
  return r;
}

struct transmit_out {
  napi_env env;
  napi_value arr;
};

static void transmit_each(void *ctx, unsigned msg, const struct msghdr *h, const uint8_t *icmp,
                          size_t icmp_len) {
  struct transmit_out *o = ctx;
  napi_env env = o->env;
  size_t total = 0;
  for (size_t i = 0; i < h->msg_iovlen; i++) total += h->msg_iov[i].iov_len;
  napi_value item, dgram, err;
  void *data;
  napi_create_object(env, &item);
  napi_create_buffer(env, total, &data, &dgram);
  size_t off = 0;
  for (size_t i = 0; i < h->msg_iovlen; i++) {
    memcpy((uint8_t *)data + off, h->msg_iov[i].iov_base, h->msg_iov[i].iov_len);
    off += h->msg_iov[i].iov_len;
  }
  if (icmp) napi_create_buffer_copy(env, icmp_len, icmp, &data, &err);
  else napi_get_null(env, &err);
  napi_set_named_property(env, item, "datagram", dgram);
  napi_set_named_property(env, item, "tooBig", err);
  napi_set_element(env, o->arr, msg, item);
}

static napi_value fn_transmit(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  this_arg(env, info, &argc, argv);
  struct peer_table *t = NULL;
  bool isarr = false;
  uint32_t n = 0, mtu = 0;
  if (argc >= 2) napi_is_array(env, argv[1], &isarr);
  if (argc < 3 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok || !isarr ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || n > 16 ||
      napi_get_value_uint32(env, argv[2], &mtu) != napi_ok) {
    napi_throw_type_error(env, NULL, "transmit(table, reads: Buffer[] (at most 16), mtu)");
    return NULL;
  }
  const uint8_t *reads[16];
  size_t lens[16];
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    uint8_t *d;
    napi_get_element(env, argv[1], i, &item);
    if (!get_buffer(env, item, &d, &lens[i])) {
      napi_throw_type_error(env, NULL, "transmit: every read must be a Buffer");
      return NULL;
    }
    reads[i] = d;
  }
  struct probe *p = probe_new(t, 4);
  if (!p) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  struct transmit_out o = {env, NULL};
  napi_create_array(env, &o.arr);
  probe_tx(p, reads, lens, n, mtu, transmit_each, &o);
  probe_free(p);
  return o.arr;
}

/* ---------- PeerSwapHarness ---------- */

struct harness {
  struct table_domain dom;
  unsigned nreaders;
  pthread_t th[16];
  _Atomic bool stop;
  _Atomic uint64_t lookups, inconsistent, empty_reads;
};

struct harness_reader {
  struct harness *h;
  unsigned slot;
};

static void *harness_main(void *arg) {
  struct harness_reader *r = arg;
  struct harness *h = r->h;
  unsigned slot = r->slot;
  free(r);
  uint64_t lookups = 0, bad = 0, empty = 0, spin = slot;
  while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
    const struct peer_table *t = domain_enter(&h->dom, slot);
    if (!t || t->n == 0) {
      empty++;
    } else {
      /* Every table the test builds maps all subnets to one underlay address;
       * a freed (poisoned) or half-built table breaks that. */
      if (t->magic != PEER_TABLE_MAGIC) bad++;
      for (unsigned i = 0; i < 16 && t->magic == PEER_TABLE_MAGIC; i++) {
        const struct peer_entry *e0 = &t->e[0];
        const struct peer_entry *want = &t->e[(spin++) % t->n];
        uint8_t probe[16];
        memcpy(probe, want->subnet.addr, 16);
        probe[want->subnet.family == 4 ? 3 : 15] |= 1;
        const struct peer_entry *got = peer_lookup(t, want->subnet.family, probe);
        lookups++;
        if (!got || memcmp(got->pub, e0->pub, 16) != 0 ||
            !prefix_contains(&got->subnet, want->subnet.family, probe))
          bad++;
      }
    }
    domain_leave(&h->dom, slot);
    if ((lookups & 1023) == 0) sched_yield();
  }
  atomic_fetch_add(&h->lookups, lookups);
  atomic_fetch_add(&h->inconsistent, bad);
  atomic_fetch_add(&h->empty_reads, empty);
  return NULL;
}

static void harness_stop_threads(struct harness *h) {
  atomic_store(&h->stop, true);
  for (unsigned i = 0; i < h->nreaders; i++) pthread_join(h->th[i], NULL);
  h->nreaders = 0;
}

static void harness_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  struct harness *h = data;
  harness_stop_threads(h);
  domain_destroy(&h->dom);
  free(h);
}

static napi_value Harness_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  uint32_t readers = 4;
  if (argc >= 1) napi_get_value_uint32(env, argv[0], &readers);
  if (readers < 1 || readers > 16) {
    napi_throw_type_error(env, NULL, "readers must be 1-16");
    return NULL;
  }
  struct harness *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  domain_init(&h->dom);
  for (unsigned i = 0; i < readers; i++) {
    struct harness_reader *r = malloc(sizeof *r);
    r->h = h;
    r->slot = i;
    if (pthread_create(&h->th[i], NULL, harness_main, r) != 0) {
      free(r);
      break;
    }
    h->nreaders++;
  }
  NAPI_OK(napi_wrap(env, self, h, harness_finalize, NULL, NULL));
  return self;
}

static struct harness *unwrap_harness(napi_env env, napi_value self) {
  struct harness *h = NULL;
  if (napi_unwrap(env, self, (void **)&h) != napi_ok || !h) {
    napi_throw_error(env, NULL, "not a PeerSwapHarness");
    return NULL;
  }
  return h;
}

static napi_value Harness_setPeers(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  struct harness *h = unwrap_harness(env, this_arg(env, info, &argc, argv));
  if (!h) return NULL;
  struct peer_table *t = table_from_js(env, argv[0], argc >= 2 ? argv[1] : NULL, 4, 8285);
  if (!t) return NULL;
  domain_publish(&h->dom, t);
  return NULL;
}

static napi_value Harness_stop(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct harness *h = unwrap_harness(env, this_arg(env, info, &argc, NULL));
  if (!h) return NULL;
  harness_stop_threads(h);
  unsigned retired_before = domain_reclaim(&h->dom);
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  set_num(env, o, "lookups", (double)atomic_load(&h->lookups));
  set_num(env, o, "inconsistent", (double)atomic_load(&h->inconsistent));
  set_num(env, o, "emptyReads", (double)atomic_load(&h->empty_reads));
  set_num(env, o, "published", (double)h->dom.published);
  set_num(env, o, "freed", (double)h->dom.freed);
  set_num(env, o, "retiredLeft", retired_before);
  return o;
}

/* ---------- module ---------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor loop_methods[] = {
      {"start", NULL, UdpLoop_start, NULL, NULL, NULL, napi_default_method, NULL},
      {"stop", NULL, UdpLoop_stop, NULL, NULL, NULL, napi_default_method, NULL},
      {"setPeers", NULL, UdpLoop_setPeers, NULL, NULL, NULL, napi_default_method, NULL},
      {"counters", NULL, UdpLoop_counters, NULL, NULL, NULL, napi_default_method, NULL},
      {"features", NULL, UdpLoop_features, NULL, NULL, NULL, napi_default_method, NULL},
      {"deviceLost", NULL, UdpLoop_deviceLost, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  NAPI_OK(napi_define_class(env, "UdpLoop", NAPI_AUTO_LENGTH, UdpLoop_new, NULL,
                            sizeof loop_methods / sizeof loop_methods[0], loop_methods, &cls));
  NAPI_OK(napi_set_named_property(env, exports, "UdpLoop", cls));
  napi_property_descriptor harness_methods[] = {
      {"setPeers", NULL, Harness_setPeers, NULL, NULL, NULL, napi_default_method, NULL},
      {"stop", NULL, Harness_stop, NULL, NULL, NULL, napi_default_method, NULL},
  };
  NAPI_OK(napi_define_class(env, "PeerSwapHarness", NAPI_AUTO_LENGTH, Harness_new, NULL, 2,
                            harness_methods, &cls));
  NAPI_OK(napi_set_named_property(env, exports, "PeerSwapHarness", cls));
  napi_property_descriptor fns[] = {
      {"checksum", NULL, fn_checksum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerTable", NULL, fn_peerTable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inboundVerdict", NULL, fn_inboundVerdict, NULL, NULL, NULL, napi_enumerable, NULL},
      {"split", NULL, fn_split, NULL, NULL, NULL, napi_enumerable, NULL},
      {"coalesce", NULL, fn_coalesce, NULL, NULL, NULL, napi_enumerable, NULL},
      {"icmpError", NULL, fn_icmpError, NULL, NULL, NULL, napi_enumerable, NULL},
      {"transmit", NULL, fn_transmit, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_OK(napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));
  NAPI_OK(netlink_register(env, exports));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

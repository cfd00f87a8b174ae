/* Node-API surface for the tests only, a binding of its own (weft_udp_test)
 * that the product never loads: the loop's pure packet functions, its
 * transmit path without sockets (probe.h), the netlink parser, and
 * PeerSwapHarness. */
#include "napi_values.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "csum.h"
#include "gso.h"
#include "netlink.h"
#include "netlink_napi.h"
#include "packet.h"
#include "peer_swap_harness.h"
#include "loop.h"
#include "peers.h"
#include "probe.h"

#define RBUF_LIMIT (VNET_HDR_LEN + 65535)
#define ARENA_LIMIT 2048 /* segments: a 64 KiB superpacket with a tiny MSS */

static bool get_buffer(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is = false;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return false;
  return napi_get_buffer_info(env, v, (void **)data, len) == napi_ok;
}

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
  size_t argc = 4;
  napi_value argv[4] = {NULL, NULL, NULL, NULL};
  this_arg(env, info, &argc, argv);
  /* The underlay families: 4, 6, or an array of them (default 4). */
  unsigned underlays = 0;
  bool isarr = false;
  uint32_t nf = 0, fam = 4;
  if (argc >= 3 && argv[2]) napi_is_array(env, argv[2], &isarr);
  if (isarr) napi_get_array_length(env, argv[2], &nf);
  for (uint32_t i = 0; i < (isarr ? nf : 1); i++) {
    napi_value f = isarr ? NULL : (argc >= 3 ? argv[2] : NULL);
    if (isarr) napi_get_element(env, argv[2], i, &f);
    if (f) napi_get_value_uint32(env, f, &fam);
    underlays |= fam_bit((int)fam);
  }
  struct peer_table *t = table_from_js(env, argv[0], argc >= 2 ? argv[1] : NULL, argc >= 4 ? argv[3] : NULL, underlays, 8285);
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
  bool refuse_gso, refuse_uso;
};

static int gather_emit(void *ctx, struct iovec *iov, unsigned iovcnt, bool gso) {
  struct gather *g = ctx;
  if (gso) {
    const struct vnet_hdr *vh = iov[0].iov_base;
    if (vh->gso_type == VNET_GSO_UDP_L4 ? g->refuse_uso : g->refuse_gso) return -EINVAL;
  }
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
    napi_throw_type_error(env, NULL, "coalesce(packets: Buffer[], {refuseGso?, refuseUso?, uso?, verify?})");
    return NULL;
  }
  napi_value opts = argc >= 2 ? argv[1] : NULL;
  struct gather g = {env, NULL, 0, opt_bool(env, opts, "refuseGso", false), opt_bool(env, opts, "refuseUso", false)};
  unsigned flags = CO_TCP | (opt_bool(env, opts, "uso", true) ? CO_UDP : 0) |
                   (opt_bool(env, opts, "verify", false) ? CO_VERIFY : 0);
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
  co_init(c, gather_emit, &g, flags);
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
  napi_value item, dgram, err, to;
  void *data;
  napi_create_object(env, &item);
  /* Where it goes: the peer's underlay address, in its own family. */
  char addr[INET6_ADDRSTRLEN] = "?";
  const struct sockaddr *sa = h->msg_name;
  if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
  else inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof addr);
  napi_create_string_utf8(env, addr, NAPI_AUTO_LENGTH, &to);
  napi_set_named_property(env, item, "to", to);
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

/* transmit(table, reads, mtu, replies?): each queued message; the packets
 * the loop wrote back into the TUN device (ICMP errors) are pushed onto the
 * array `replies` when one is given. */
static napi_value fn_transmit(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {NULL, NULL, NULL, NULL};
  this_arg(env, info, &argc, argv);
  struct peer_table *t = NULL;
  bool isarr = false, want_replies = false;
  uint32_t n = 0, mtu = 0;
  if (argc >= 2) napi_is_array(env, argv[1], &isarr);
  if (argc >= 4) napi_is_array(env, argv[3], &want_replies);
  if (argc < 3 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok || !isarr ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || n > 16 ||
      napi_get_value_uint32(env, argv[2], &mtu) != napi_ok) {
    napi_throw_type_error(env, NULL, "transmit(table, reads: Buffer[] (at most 16), mtu, replies?: Buffer[])");
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
  struct probe *p = probe_new(t);
  if (!p) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  struct transmit_out o = {env, NULL};
  napi_create_array(env, &o.arr);
  probe_tx(p, reads, lens, n, mtu, transmit_each, &o);
  uint8_t reply[2048];
  size_t rl;
  uint32_t have = 0;
  if (want_replies) napi_get_array_length(env, argv[3], &have);
  while (want_replies && (rl = probe_reply(p, reply, sizeof reply)) > 0) {
    void *data;
    napi_value b;
    napi_create_buffer_copy(env, rl, reply, &data, &b);
    napi_set_element(env, argv[3], have++, b);
  }
  probe_free(p);
  return o.arr;
}

static int fake_offload(void *ctx, unsigned flags) {
  struct {
    uint32_t accept, n;
    napi_env env;
    napi_value tried;
  } *k = ctx;
  napi_value v;
  napi_create_uint32(k->env, flags, &v);
  napi_set_element(k->env, k->tried, k->n++, v);
  return (flags & ~k->accept) ? -EINVAL : 0;
}

/* negotiateOffload(accept, {tso, uso}): the loop's TUNSETOFFLOAD sequence
 * against a kernel that accepts only the flags in `accept`. */
static napi_value fn_negotiateOffload(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  this_arg(env, info, &argc, argv);
  struct {
    uint32_t accept, n;
    napi_env env;
    napi_value tried;
  } k = {0, 0, env, NULL};
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &k.accept) != napi_ok) {
    napi_throw_type_error(env, NULL, "negotiateOffload(acceptFlags, {tso?, uso?})");
    return NULL;
  }
  napi_create_array(env, &k.tried);
  struct loop_features f;
  memset(&f, 0, sizeof f);
  napi_value opts = argc >= 2 ? argv[1] : NULL;
  tun_offload_negotiate(fake_offload, &k, opt_bool(env, opts, "tso", true), opt_bool(env, opts, "uso", true), &f);
  napi_value o;
  napi_create_object(env, &o);
  set_bool(env, o, "checksumOffload", f.csum);
  set_bool(env, o, "tso", f.tso);
  set_bool(env, o, "uso", f.uso);
  napi_set_named_property(env, o, "tried", k.tried);
  return o;
}

/* parseNetlink(buffer): the records nl_parse finds in raw bytes (tests feed it garbage). */
static napi_value fn_parseNetlink(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool is = false;
  void *data;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_is_buffer(env, argv[0], &is) != napi_ok || !is ||
      napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "parseNetlink(buffer)");
    return NULL;
  }
  size_t max = len / 16 + 1;
  struct nl_event *ev = malloc(max * sizeof *ev);
  if (!ev) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  size_t n = nl_parse(data, len, ev, max);
  napi_value arr = netlink_events_js(env, ev, n);
  free(ev);
  return arr;
}

/* ---------- module ---------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      {"checksum", NULL, fn_checksum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerTable", NULL, fn_peerTable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inboundVerdict", NULL, fn_inboundVerdict, NULL, NULL, NULL, napi_enumerable, NULL},
      {"split", NULL, fn_split, NULL, NULL, NULL, napi_enumerable, NULL},
      {"coalesce", NULL, fn_coalesce, NULL, NULL, NULL, napi_enumerable, NULL},
      {"icmpError", NULL, fn_icmpError, NULL, NULL, NULL, napi_enumerable, NULL},
      {"transmit", NULL, fn_transmit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"negotiateOffload", NULL, fn_negotiateOffload, NULL, NULL, NULL, napi_enumerable, NULL},
      {"parseNetlink", NULL, fn_parseNetlink, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_OK(napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));
  NAPI_OK(peer_swap_harness_register(env, exports));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

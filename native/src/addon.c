/* Node-API surface of the product: the udp backend's UdpLoop class (device,
 * sockets, worker threads) and the data plane's NetlinkMonitor. What only the
 * tests use is in addon_test.c, a separate binding. */
#include "napi_values.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <net/ethernet.h>
#include "loop.h"
#include "netlink_napi.h"
#include "packet.h"
#include "peers.h"

static const char *errno_code(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case EACCES: return "EACCES";
  case ENOENT: return "ENOENT";
  case EADDRINUSE: return "EADDRINUSE";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case EBUSY: return "EBUSY";
  case EINVAL: return "EINVAL";
  case EBADF: return "EBADF";
  case EWOULDBLOCK: return "EWOULDBLOCK";
  case ENOMEM: return "ENOMEM";
  case ENODEV: return "ENODEV";
  default: return "EIO";
  }
}

static void set_str(napi_env env, napi_value obj, const char *name, const char *v) {
  napi_value s;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, name, s);
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
  uint8_t fam;
  uint8_t addr[16];
  if (!get_prop(env, argv[0], "bindAddress", &v) || !get_string(env, v, text, sizeof text) ||
      !addr_parse(text, &fam, addr)) {
    napi_throw_type_error(env, NULL, "bindAddress must be an IP address");
    return NULL;
  }
  o.bind_on[fam_index(fam)] = true;
  memcpy(o.bind_addr[fam_index(fam)], addr, 16);
  /* A dual-stack node receives on its IPv6 underlay address too. */
  if (get_prop(env, argv[0], "bindAddressV6", &v)) {
    if (fam != 4 || !get_string(env, v, text, sizeof text) || !addr_parse(text, &fam, addr) || fam != 6) {
      napi_throw_type_error(env, NULL, "bindAddressV6 must be an IPv6 address, beside an IPv4 bindAddress");
      return NULL;
    }
    o.bind_on[1] = true;
    memcpy(o.bind_addr[1], addr, 16);
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
  o.uso = opt_bool(env, off, "uso", true);
  o.verify_csum = opt_bool(env, argv[0], "verifyInnerChecksums", false);

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
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL};
  struct loop *l = unwrap_loop(env, this_arg(env, info, &argc, argv));
  if (!l) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "setPeers(peers, ownSubnet, borrowedIPs)");
    return NULL;
  }
  struct peer_table *t = table_from_js(env, argv[0], argc >= 2 ? argv[1] : NULL, argc >= 3 ? argv[2] : NULL,
                                       loop_underlays(l), loop_port(l));
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
  set_bool(env, o, "uso", f.uso);
  set_bool(env, o, "verifyInnerChecksums", f.verify_csum);
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

/* ---------- flock ---------- */

/* flock(fd, exclusive, wait): the IPAM store's lock. Node has no flock(2); the
 * kernel drops it when the holder's descriptor closes, even on SIGKILL, which a
 * lock file's existence cannot do. Returns true when taken, false when `wait`
 * is false and another holds it; throws with the errno's code otherwise. */
static napi_value Flock(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  bool exclusive = true, wait = true;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_value_bool(env, argv[1], &exclusive) != napi_ok || napi_get_value_bool(env, argv[2], &wait) != napi_ok) {
    napi_throw_type_error(env, NULL, "flock(fd, exclusive, wait)");
    return NULL;
  }
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  int rc;
  do rc = flock(fd, op);
  while (rc < 0 && errno == EINTR);
  napi_value r;
  if (rc < 0 && errno == EWOULDBLOCK && !wait) {
    napi_get_boolean(env, false, &r);
    return r;
  }
  if (rc < 0) {
    int e = errno;
    char msg[96];
    snprintf(msg, sizeof msg, "flock: %s", strerror(e));
    napi_throw_error(env, errno_code(e), msg);
    return NULL;
  }
  napi_get_boolean(env, true, &r);
  return r;
}

/* ---------- gratuitous ARP ---------- */

/* garp(ifname, address): one gratuitous ARP request (sender and target both
 * `address`, sender MAC the interface's), broadcast on `ifname`. Neighbours
 * holding an entry for `address` take the interface's MAC at once instead of
 * waiting out a stale one: IPAM sends it when this node starts answering for
 * an address whose pod moved to another node. Node has no AF_PACKET socket. */
static napi_value Garp(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char ifname[IFNAMSIZ];
  size_t len = 0;
  void *addr = NULL;
  size_t addr_len = 0;
  bool is_buffer = false;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], ifname, sizeof ifname, &len) != napi_ok || len == 0 ||
      len >= IFNAMSIZ - 1 || napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[1], &addr, &addr_len) != napi_ok || addr_len != 4) {
    napi_throw_type_error(env, NULL, "garp(ifname, ipv4 address as a 4-byte Buffer)");
    return NULL;
  }
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, ifname, len);
  int ok = fd >= 0 && ioctl(fd, SIOCGIFINDEX, &ifr) == 0;
  int ifindex = ifr.ifr_ifindex;
  ok = ok && ioctl(fd, SIOCGIFHWADDR, &ifr) == 0;
  if (ok) {
    /* RFC 826 over Ethernet: htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request). */
    uint8_t pkt[28] = {0, 1, 8, 0, 6, 4, 0, 1};
    memcpy(pkt + 8, ifr.ifr_hwaddr.sa_data, 6);
    memcpy(pkt + 14, addr, 4);
    memcpy(pkt + 24, addr, 4);
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    memset(to.sll_addr, 0xff, 6);
    ok = sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof pkt;
  }
  int e = errno;
  if (fd >= 0) close(fd);
  if (!ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "gratuitous ARP on %s: %s", ifname, strerror(e));
    napi_throw_error(env, errno_code(e), msg);
    return NULL;
  }
  return NULL;
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
  NAPI_OK(netlink_register(env, exports));
  napi_value flock_fn;
  NAPI_OK(napi_create_function(env, "flock", NAPI_AUTO_LENGTH, Flock, NULL, &flock_fn));
  NAPI_OK(napi_set_named_property(env, exports, "flock", flock_fn));
  napi_value garp_fn;
  NAPI_OK(napi_create_function(env, "garp", NAPI_AUTO_LENGTH, Garp, NULL, &garp_fn));
  NAPI_OK(napi_set_named_property(env, exports, "garp", garp_fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

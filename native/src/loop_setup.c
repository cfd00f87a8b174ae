/* Opening and closing the loop: the TUN device and UDP sockets, offload
 * probing, worker threads, and what the JS thread reads back (counters,
 * features). Nothing here runs per packet; that is loop.c. */
#define _GNU_SOURCE
#include "worker.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Linux 6.2 added UDP segmentation offload to TUN; older headers lack it. */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

const char *const counter_names[C_COUNT] = {
    [C_TUN_READS] = "tunReads",
    [C_TUN_RX_PACKETS] = "tunRxPackets",
    [C_TUN_RX_BYTES] = "tunRxBytes",
    [C_TUN_RX_SUPERPACKETS] = "tunRxSuperpackets",
    [C_UDP_TX_CALLS] = "udpTxCalls",
    [C_UDP_TX_DATAGRAMS] = "udpTxDatagrams",
    [C_UDP_TX_BYTES] = "udpTxBytes",
    [C_UDP_TX_GSO_MESSAGES] = "udpTxGsoMessages",
    [C_UDP_RX_CALLS] = "udpRxCalls",
    [C_UDP_RX_DATAGRAMS] = "udpRxDatagrams",
    [C_UDP_RX_BYTES] = "udpRxBytes",
    [C_UDP_RX_GRO_MESSAGES] = "udpRxGroMessages",
    [C_UDP_RX_DELIVERED] = "udpRxDelivered",
    [C_UDP_RX_KERNEL_DROPS] = "udpRxKernelDrops",
    [C_TUN_WRITES] = "tunWrites",
    [C_TUN_TX_BYTES] = "tunTxBytes",
    [C_TUN_TX_COALESCED] = "tunTxCoalesced",
    [C_TUN_TX_COALESCED_SEGMENTS] = "tunTxCoalescedSegments",
    [C_ICMP_UNREACHABLE] = "icmpUnreachable",
    [C_ICMP_TIME_EXCEEDED] = "icmpTimeExceeded",
    [C_ICMP_TOO_BIG] = "icmpTooBig",
    [C_ICMP_RATE_LIMITED] = "icmpRateLimited",
    [C_GSO_FALLBACKS] = "udpGsoFallbacks",
    [C_TUN_GSO_REFUSED] = "tunGsoRefused",
    [C_TUN_USO_REFUSED] = "tunUsoRefused",
    [C_TUN_ERRORS] = "tunErrors",
    [C_TABLE_SWAPS_SEEN] = "tableSwapsSeen",
    [C_UDP_GSO_DISABLED] = "udpGsoDisabled",
    [C_TUN_LOST] = "tunLost",
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---------- device and sockets ---------- */

static int tun_attach(const char *name, short flags, char *actual, char *err, size_t errlen) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    set_err(err, errlen, "cannot open /dev/net/tun: %s", strerror(e));
    return -e;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  ifr.ifr_flags = flags;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    if (e == EINVAL || e == EBUSY)
      set_err(err, errlen, "device %s exists and is not a multi-queue TUN device (%s)", name,
              strerror(e));
    else
      set_err(err, errlen, "cannot attach TUN device %s: %s", name, strerror(e));
    return -e;
  }
  if (actual) snprintf(actual, IFNAMSIZ, "%s", ifr.ifr_name);
  return fd;
}

int tun_delete(const char *name, char *err, size_t errlen) {
  int fd = tun_attach(name, IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE, NULL, err, errlen);
  if (fd < 0) return fd;
  if (ioctl(fd, TUNSETPERSIST, 0) < 0) {
    int e = errno;
    close(fd);
    set_err(err, errlen, "cannot clear persistence of %s: %s", name, strerror(e));
    return -e;
  }
  close(fd);
  return 0;
}

void sock_addr(uint8_t family, const uint8_t *addr, uint16_t port, struct sockaddr_storage *ss,
               socklen_t *sl) {
  memset(ss, 0, sizeof *ss);
  if (family == 4) {
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    memcpy(&s->sin_addr, addr, 4);
    *sl = sizeof *s;
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    memcpy(&s->sin6_addr, addr, 16);
    *sl = sizeof *s;
  }
}

void tun_offload_negotiate(tun_offload_fn set, void *ctx, bool tso, bool uso, struct loop_features *f) {
  const unsigned TSO = TUN_F_TSO4 | TUN_F_TSO6, USO = TUN_F_USO4 | TUN_F_USO6;
  /* Most wanted first; a kernel refuses flags it does not know (EINVAL). */
  const unsigned tries[] = {
      TUN_F_CSUM | (tso ? TSO : 0) | (uso ? USO : 0),
      TUN_F_CSUM | (tso ? TSO : 0),
      TUN_F_CSUM,
  };
  f->csum = f->tso = f->uso = false;
  for (unsigned i = 0; i < sizeof tries / sizeof tries[0]; i++) {
    if (i > 0 && tries[i] == tries[i - 1]) continue; /* refused already */
    if (set(ctx, tries[i]) == 0) {
      f->csum = true;
      f->tso = (tries[i] & TSO) != 0;
      f->uso = (tries[i] & USO) != 0;
      return;
    }
  }
  (void)set(ctx, 0);
}

static int tun_set_offload(void *ctx, unsigned flags) {
  return ioctl(*(int *)ctx, TUNSETOFFLOAD, flags) == 0 ? 0 : -errno;
}

static void set_buf(int s, int force, int plain, int bytes) {
  if (setsockopt(s, SOL_SOCKET, force, &bytes, sizeof bytes) < 0)
    (void)setsockopt(s, SOL_SOCKET, plain, &bytes, sizeof bytes);
}

static int udp_open(const struct loop_opts *o, unsigned fi, uint16_t port, bool reuseport, char *err,
                    size_t errlen) {
  uint8_t family = fi ? 6 : 4;
  int fam = fi ? AF_INET6 : AF_INET;
  int s = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    int e = errno;
    set_err(err, errlen, "cannot create UDP socket: %s", strerror(e));
    return -e;
  }
  int one = 1;
  if (reuseport) (void)setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (fam == AF_INET6) (void)setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  /* Outer packets are never fragmented: path MTU discovery on. */
  if (fam == AF_INET) {
    int v = IP_PMTUDISC_DO;
    (void)setsockopt(s, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
  } else {
    int v = IPV6_PMTUDISC_DO;
    (void)setsockopt(s, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof v);
  }
  set_buf(s, SO_RCVBUFFORCE, SO_RCVBUF, 8 << 20);
  set_buf(s, SO_SNDBUFFORCE, SO_SNDBUF, 4 << 20);
  (void)setsockopt(s, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
  struct timeval tv = {0, 200000}; /* a send never blocks a worker for long */
  (void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_storage ss;
  socklen_t sl;
  sock_addr(family, o->bind_addr[fi], port, &ss, &sl);
  if (bind(s, (struct sockaddr *)&ss, sl) < 0) {
    int e = errno;
    char a[64] = "?";
    inet_ntop(fam, o->bind_addr[fi], a, sizeof a);
    close(s);
    set_err(err, errlen, "cannot bind UDP %s port %u: %s", a, port, strerror(e));
    return -e;
  }
  return s;
}

static void worker_free(struct worker *w) {
  if (!w) return;
  free(w->rbuf);
  free(w->arena);
  free(w->xbuf);
  free(w);
}

static void close_fds(struct loop *l) {
  for (unsigned i = 0; i < l->nw; i++) {
    struct worker *w = l->w[i];
    if (!w) continue;
    for (unsigned fi = 0; fi < 2; fi++) {
      if (w->tx[fi] >= 0 && w->tx[fi] != w->rx[fi]) close(w->tx[fi]);
      if (w->rx[fi] >= 0) close(w->rx[fi]);
      w->tx[fi] = w->rx[fi] = -1;
    }
    if (w->tun >= 0) close(w->tun);
    w->tun = -1;
  }
  if (l->wake >= 0) close(l->wake);
  l->wake = -1;
}

int loop_open(const struct loop_opts *o, struct loop **out, char *err, size_t errlen) {
  struct loop *l = calloc(1, sizeof *l);
  if (!l) return -ENOMEM;
  l->o = *o;
  l->wake = -1;
  domain_init(&l->dom);
  unsigned q = o->simple ? 1 : (o->queues ? o->queues : 1);
  if (q > READER_SLOTS_MAX) q = READER_SLOTS_MAX;
  struct loop_features *f = &l->f;
  f->simple = o->simple;
  f->vnet_hdr = !o->simple;
  int rc = 0;
  short flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (f->vnet_hdr ? IFF_VNET_HDR : 0);
  for (unsigned i = 0; i < q; i++) {
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
      rc = -ENOMEM;
      goto fail;
    }
    l->w[l->nw++] = w;
    w->l = l;
    w->idx = i;
    w->tun = w->rx[0] = w->rx[1] = w->tx[0] = w->tx[1] = -1;
    w->simple = o->simple;
    w->vnet = f->vnet_hdr;
    w->tokens = ICMP_BURST;
    clock_gettime(CLOCK_MONOTONIC, &w->tlast);
    w->rbuf = malloc((size_t)(o->simple ? 1 : TXB) * RBUF_SIZE);
    w->arena = malloc((size_t)(o->simple ? 1 : TXB) * ARENA_SEGS * SEG_HDR_MAX);
    w->xbuf = malloc((size_t)(o->simple ? 1 : RXB) * XBUF_SIZE);
    if (!w->rbuf || !w->arena || !w->xbuf) {
      rc = -ENOMEM;
      set_err(err, errlen, "out of memory for packet buffers");
      goto fail;
    }
    for (unsigned b = 0; b < RXB; b++) {
      w->riov[b].iov_base = w->xbuf + (size_t)(o->simple ? 0 : b) * XBUF_SIZE;
      w->riov[b].iov_len = XBUF_SIZE;
    }
    rc = tun_attach(o->dev, flags, i == 0 ? f->dev : NULL, err, errlen);
    if (rc < 0) goto fail;
    w->tun = rc;
    for (unsigned fi = 0; fi < 2; fi++) {
      if (!o->bind_on[fi]) continue;
      rc = udp_open(o, fi, o->port, true, err, errlen);
      if (rc < 0) goto fail;
      w->rx[fi] = w->tx[fi] = rc;
      if (i > 0) {
        /* Its own source port, so the peer's SO_REUSEPORT spreads our flows. */
        rc = udp_open(o, fi, 0, false, err, errlen);
        if (rc < 0) goto fail;
        w->tx[fi] = rc;
      }
    }
  }
  f->queues = l->nw;
  int fd0 = l->w[0]->tun;
  if (ioctl(fd0, TUNSETPERSIST, 1) < 0) {
    rc = -errno;
    set_err(err, errlen, "cannot make %s persistent: %s", f->dev, strerror(errno));
    goto fail;
  }
  if (f->vnet_hdr) {
    int sz = VNET_HDR_LEN;
    if (ioctl(fd0, TUNSETVNETHDRSZ, &sz) < 0) f->vnet_hdr = false;
  }
  unsigned off = 0;
  if (f->vnet_hdr) {
    /* USO both ways or not at all: UDP superpackets are read only when
     * received datagrams are coalesced too. */
    tun_offload_negotiate(tun_set_offload, &fd0, o->tso, o->uso && o->coalesce && !o->simple, f);
  } else {
    /* A device left with offloads by an earlier fast-mode run must not hand
     * superpackets to a queue without a virtio header. */
    (void)ioctl(fd0, TUNSETOFFLOAD, off);
  }
  if (!o->simple) {
    int one = 1, zero = 0;
    f->udp_gro = o->gro;
    f->udp_gso = o->gso;
    for (unsigned i = 0; i < l->nw; i++) {
      struct worker *w = l->w[i];
      for (unsigned fi = 0; fi < 2; fi++) {
        if (w->rx[fi] < 0) continue;
        if (f->udp_gro && setsockopt(w->rx[fi], SOL_UDP, UDP_GRO, &one, sizeof one) < 0) f->udp_gro = false;
        if (f->udp_gso && setsockopt(w->tx[fi], SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) < 0) f->udp_gso = false;
      }
    }
    f->coalesce = o->coalesce && f->vnet_hdr;
    f->verify_csum = o->verify_csum;
  }
  for (unsigned i = 0; i < l->nw; i++) {
    struct worker *w = l->w[i];
    w->vnet = f->vnet_hdr;
    w->udp_gso = f->udp_gso;
    co_init(&w->co, tun_emit, w,
            (f->coalesce ? CO_TCP : 0) | (f->uso ? CO_UDP : 0) | (f->verify_csum ? CO_VERIFY : 0));
  }
  l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->wake < 0) {
    rc = -errno;
    set_err(err, errlen, "eventfd: %s", strerror(errno));
    goto fail;
  }
  *out = l;
  return 0;
fail:
  close_fds(l);
  for (unsigned i = 0; i < l->nw; i++) worker_free(l->w[i]);
  domain_destroy(&l->dom);
  free(l);
  return rc < 0 ? rc : -EIO;
}

int loop_start(struct loop *l, char *err, size_t errlen) {
  if (l->started || l->stopped) {
    set_err(err, errlen, "loop already %s", l->stopped ? "stopped" : "started");
    return -EINVAL;
  }
  /* Workers never take signals: SIGTERM belongs to the JS thread. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = 0;
  for (unsigned i = 0; i < l->nw; i++) {
    rc = pthread_create(&l->w[i]->th, NULL, worker_main, l->w[i]);
    if (rc) break;
    l->w[i]->thread_started = true;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  l->started = true;
  if (rc) {
    set_err(err, errlen, "cannot start worker thread: %s", strerror(rc));
    loop_stop(l, false);
    return -rc;
  }
  return 0;
}

void loop_stop(struct loop *l, bool remove_device) {
  if (l->stopped) {
    if (remove_device) {
      char e[128];
      (void)tun_delete(l->f.dev, e, sizeof e);
    }
    return;
  }
  l->stopped = true;
  atomic_store(&l->stopping, true);
  uint64_t one = 1;
  if (l->wake >= 0) (void)!write(l->wake, &one, sizeof one);
  for (unsigned i = 0; i < l->nw; i++)
    if (l->w[i]->thread_started) {
      pthread_join(l->w[i]->th, NULL);
      l->w[i]->thread_started = false;
    }
  if (remove_device && l->nw && l->w[0]->tun >= 0) (void)ioctl(l->w[0]->tun, TUNSETPERSIST, 0);
  close_fds(l);
  domain_reclaim(&l->dom);
}

void loop_free(struct loop *l) {
  if (!l) return;
  loop_stop(l, false);
  for (unsigned i = 0; i < l->nw; i++) worker_free(l->w[i]);
  domain_destroy(&l->dom);
  free(l);
}

void loop_set_table(struct loop *l, struct peer_table *t) { domain_publish(&l->dom, t); }

const struct peer_table *loop_peek_table(struct loop *l) { return atomic_load(&l->dom.cur); }

void loop_counters(struct loop *l, struct counters *out) {
  memset(out, 0, sizeof *out);
  for (unsigned i = 0; i < l->nw; i++) {
    struct wcounters *k = &l->w[i]->k;
    for (unsigned c = 0; c < C_COUNT; c++) out->c[c] += atomic_load_explicit(&k->c[c], memory_order_relaxed);
    for (unsigned r = 0; r < DROP_REASONS; r++) {
      out->drop_in[r] += atomic_load_explicit(&k->drop_in[r], memory_order_relaxed);
      out->drop_out[r] += atomic_load_explicit(&k->drop_out[r], memory_order_relaxed);
    }
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
      out->hist_rx_batch[b] += atomic_load_explicit(&k->hist_rx_batch[b], memory_order_relaxed);
      out->hist_tx_gso[b] += atomic_load_explicit(&k->hist_tx_gso[b], memory_order_relaxed);
      out->hist_coalesce[b] += atomic_load_explicit(&k->hist_coalesce[b], memory_order_relaxed);
    }
  }
  domain_reclaim(&l->dom);
}

void loop_features(struct loop *l, struct loop_features *out) {
  *out = l->f;
  for (unsigned i = 0; i < l->nw; i++) {
    /* Runtime fallbacks show up here once a worker has hit them. */
    struct wcounters *k = &l->w[i]->k;
    if (atomic_load_explicit(&k->c[C_UDP_GSO_DISABLED], memory_order_relaxed)) out->udp_gso = false;
    if (atomic_load_explicit(&k->c[C_TUN_GSO_REFUSED], memory_order_relaxed)) out->coalesce = false;
    if (atomic_load_explicit(&k->c[C_TUN_USO_REFUSED], memory_order_relaxed)) out->uso = false;
  }
}

bool loop_device_lost(struct loop *l) {
  for (unsigned i = 0; i < l->nw; i++)
    if (atomic_load_explicit(&l->w[i]->k.c[C_TUN_LOST], memory_order_relaxed)) return true;
  return false;
}

unsigned loop_underlays(struct loop *l) {
  return (l->o.bind_on[0] ? UNDERLAY_V4 : 0) | (l->o.bind_on[1] ? UNDERLAY_V6 : 0);
}
uint16_t loop_port(struct loop *l) { return l->o.port; }

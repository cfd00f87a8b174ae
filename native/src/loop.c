#define _GNU_SOURCE
#include "loop.h"
#include "gso.h"
#include "probe.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
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
    [C_TUN_ERRORS] = "tunErrors",
    [C_TABLE_SWAPS_SEEN] = "tableSwapsSeen",
    [C_UDP_GSO_DISABLED] = "udpGsoDisabled",
    [C_TUN_LOST] = "tunLost",
};

#define TXB 16            /* TUN reads per batch (fast mode) */
#define TX_MSGS 64        /* UDP messages per sendmmsg */
#define TX_IOV 1024
#define ARENA_SEGS 128    /* segment headers per superpacket per pass */
#define RXB 16            /* datagrams (or GRO trains) per recvmmsg */
#define RBUF_SIZE (VNET_HDR_LEN + 65536)
#define XBUF_SIZE 65536
#define BURST 64          /* packets per direction per wakeup in simple mode */
#define MAX_GSO_SEGS 64   /* kernels before 6.x cap UDP GSO at 64 segments */
#define ICMP_BURST 50.0
#define ICMP_RATE 200.0   /* per second per worker */
#define PMTU_SLOTS 4      /* path MTUs remembered per worker */
#define PMTU_TTL_NS 1000000000ull

/* Single-writer counters: the worker stores, the JS thread loads; relaxed
 * atomics compile to plain moves, no locked instructions on the hot path. */
typedef _Atomic uint64_t ctr_t;
struct wcounters {
  ctr_t c[C_COUNT];
  ctr_t drop_in[DROP_REASONS], drop_out[DROP_REASONS];
  ctr_t hist_rx_batch[HIST_BUCKETS], hist_tx_gso[HIST_BUCKETS], hist_coalesce[HIST_BUCKETS];
};
#define CADD(ctr, n) \
  atomic_store_explicit(&(ctr), atomic_load_explicit(&(ctr), memory_order_relaxed) + (n), memory_order_relaxed)
#define CSET(ctr, v) atomic_store_explicit(&(ctr), (v), memory_order_relaxed)

struct txmeta {
  struct superpacket *sp;
  struct pkt_info *pi;
  const struct peer_entry *peer;
  uint32_t first_iov, nsegs;
  bool gso;
};

struct worker {
  struct loop *l;
  unsigned idx;
  pthread_t th;
  bool thread_started;
  int tun, rx, tx;
  bool vnet, udp_gso, simple;
  const struct peer_table *t; /* valid between domain_enter and domain_leave */
  const struct peer_table *last_t;
  /* TUN -> UDP */
  uint8_t *rbuf, *arena;
  struct superpacket sp[TXB];
  struct pkt_info spi[TXB];
  struct mmsghdr msgs[TX_MSGS];
  struct txmeta meta[TX_MSGS];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } cm[TX_MSGS];
  struct iovec iov[TX_IOV];
  struct segment segs[ARENA_SEGS];
  unsigned nmsgs, niov;
  /* UDP -> TUN */
  uint8_t *xbuf;
  struct mmsghdr rmsgs[RXB];
  struct iovec riov[RXB];
  struct sockaddr_storage rfrom[RXB];
  union {
    char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint32_t))];
    struct cmsghdr align;
  } rcm[RXB];
  struct coalescer co;
  struct src_cache srcs;
  /* ICMP */
  uint8_t icmp[VNET_HDR_LEN + 1400];
  double tokens;
  struct timespec tlast;
  struct {
    uint8_t family, addr[16];
    uint32_t mtu;
    uint64_t until; /* CLOCK_MONOTONIC ns */
  } pmtu[PMTU_SLOTS];
  unsigned pmtu_next;
  struct wcounters k;
};

struct loop {
  struct loop_opts o;
  struct loop_features f;
  struct table_domain dom;
  unsigned nw;
  struct worker *w[READER_SLOTS_MAX];
  int wake;
  _Atomic bool stopping;
  bool started, stopped;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static unsigned hist_bucket(uint64_t n) {
  unsigned b = 0;
  while (n > 1 && b < HIST_BUCKETS - 1) n >>= 1, b++;
  return b;
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

static void sock_addr(uint8_t family, const uint8_t *addr, uint16_t port,
                      struct sockaddr_storage *ss, socklen_t *sl) {
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

static void set_buf(int s, int force, int plain, int bytes) {
  if (setsockopt(s, SOL_SOCKET, force, &bytes, sizeof bytes) < 0)
    (void)setsockopt(s, SOL_SOCKET, plain, &bytes, sizeof bytes);
}

static int udp_open(const struct loop_opts *o, uint16_t port, bool reuseport, char *err,
                    size_t errlen) {
  int fam = o->bind_family == 4 ? AF_INET : AF_INET6;
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
  sock_addr(o->bind_family, o->bind_addr, port, &ss, &sl);
  if (bind(s, (struct sockaddr *)&ss, sl) < 0) {
    int e = errno;
    char a[64] = "?";
    inet_ntop(fam, o->bind_addr, a, sizeof a);
    close(s);
    set_err(err, errlen, "cannot bind UDP %s port %u: %s", a, port, strerror(e));
    return -e;
  }
  return s;
}

/* ---------- ICMP ---------- */

static bool icmp_token(struct worker *w) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double dt = (double)(now.tv_sec - w->tlast.tv_sec) + (double)(now.tv_nsec - w->tlast.tv_nsec) / 1e9;
  w->tlast = now;
  w->tokens += dt * ICMP_RATE;
  if (w->tokens > ICMP_BURST) w->tokens = ICMP_BURST;
  if (w->tokens < 1.0) return false;
  w->tokens -= 1.0;
  return true;
}

/* Builds an ICMP error about `p` into w->icmp (after a zeroed virtio
 * header); returns its length, 0 when none may be sent. */
static size_t icmp_build(struct worker *w, const uint8_t *p, const struct pkt_info *pi,
                         enum icmp_kind kind, uint32_t mtu, const uint8_t *src) {
  memset(w->icmp, 0, VNET_HDR_LEN);
  return icmp_build_error(w->icmp + VNET_HDR_LEN, sizeof w->icmp - VNET_HDR_LEN, p, pi, kind,
                          mtu, src);
}

/* Writes the `n`-byte error built in w->icmp into the TUN device. */
static void icmp_send(struct worker *w, size_t n, enum icmp_kind kind) {
  const uint8_t *out = w->vnet ? w->icmp : w->icmp + VNET_HDR_LEN;
  size_t len = w->vnet ? n + VNET_HDR_LEN : n;
  if (write(w->tun, out, len) < 0) return;
  CADD(w->k.c[kind == ICMP_KIND_UNREACH       ? C_ICMP_UNREACHABLE
              : kind == ICMP_KIND_TIME_EXCEEDED ? C_ICMP_TIME_EXCEEDED
                                                : C_ICMP_TOO_BIG],
       1);
}

/* Sends an ICMP error about `p` back into the TUN device. `src` must not be a
 * local address of this node (the kernel drops such packets as martians). */
static void icmp_reply(struct worker *w, const uint8_t *p, const struct pkt_info *pi,
                       enum icmp_kind kind, uint32_t mtu, const uint8_t *src) {
  if (!pkt_may_icmp_error(p, pi)) return;
  if (!icmp_token(w)) {
    CADD(w->k.c[C_ICMP_RATE_LIMITED], 1);
    return;
  }
  size_t n = icmp_build(w, p, pi, kind, mtu, src);
  if (n) icmp_send(w, n, kind);
}

/* The path MTU towards a peer, as the kernel's route cache knows it. Asking
 * costs four system calls, so each worker remembers the answer for a second. */
static uint32_t path_mtu(struct worker *w, const struct peer_entry *peer) {
  int fam = peer->pub_family == 4 ? AF_INET : AF_INET6;
  size_t al = fam == AF_INET ? 4 : 16;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  for (unsigned i = 0; i < PMTU_SLOTS; i++)
    if (w->pmtu[i].until > now && w->pmtu[i].family == peer->pub_family &&
        memcmp(w->pmtu[i].addr, peer->pub, al) == 0)
      return w->pmtu[i].mtu;
  int s = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int mtu = 0;
  if (s >= 0) {
    socklen_t ml = sizeof mtu;
    if (connect(s, (const struct sockaddr *)&peer->sa, peer->salen) == 0) {
      if (fam == AF_INET) (void)getsockopt(s, IPPROTO_IP, IP_MTU, &mtu, &ml);
      else (void)getsockopt(s, IPPROTO_IPV6, IPV6_MTU, &mtu, &ml);
    }
    close(s);
  }
  uint32_t overhead = fam == AF_INET ? 28 : 48;
  uint32_t r = mtu > (int)overhead ? (uint32_t)mtu - overhead : 0;
  unsigned i = w->pmtu_next++ % PMTU_SLOTS;
  w->pmtu[i].family = peer->pub_family;
  memcpy(w->pmtu[i].addr, peer->pub, al);
  w->pmtu[i].mtu = r;
  w->pmtu[i].until = now + PMTU_TTL_NS;
  return r;
}

/* Frag-needed says "DF was set": a packet without DF would be fragmented or
 * dropped by a router, never answered so. The loop drops it silently (the
 * tooBig drop counter). IPv6 packets always count as DF. */
static bool too_big_wanted(const struct txmeta *m) {
  return m->pi->df && pkt_may_icmp_error(m->sp->pkt, m->pi);
}

/* Builds the frag-needed (packet-too-big) error about message `m` into
 * w->icmp; returns its length, 0 when none may be sent. */
static size_t too_big_build(struct worker *w, const struct txmeta *m, uint32_t mtu) {
  if (!too_big_wanted(m)) return 0;
  uint32_t floor = m->pi->family == 4 ? 68 : 1280;
  if (mtu < floor) mtu = floor;
  const struct superpacket *sp = m->sp;
  if (!sp->gso) return icmp_build(w, sp->pkt, m->pi, ICMP_KIND_TOO_BIG, mtu, m->peer->subnet.addr);
  /* Quote the message's first wire segment, not the superpacket: its header
   * and, when the superpacket has any, its payload. A header-only
   * superpacket's segment is one iovec; the next belongs to another message,
   * perhaps another pod's. */
  uint8_t q[576];
  const struct iovec *iv = &w->iov[m->first_iov];
  size_t hl = iv[0].iov_len, pl = sp->paylen ? iv[1].iov_len : 0;
  if (hl > sizeof q) return 0;
  if (pl > sizeof q - hl) pl = sizeof q - hl;
  memcpy(q, iv[0].iov_base, hl);
  if (pl) memcpy(q + hl, iv[1].iov_base, pl);
  struct pkt_info pi = *m->pi;
  pi.len = (uint32_t)(hl + pl);
  return icmp_build(w, q, &pi, ICMP_KIND_TOO_BIG, mtu, m->peer->subnet.addr);
}

static void too_big(struct worker *w, const struct txmeta *m) {
  if (!too_big_wanted(m)) return;
  /* The rate limit first: a flood of oversized packets costs no path-MTU lookups. */
  if (!icmp_token(w)) {
    CADD(w->k.c[C_ICMP_RATE_LIMITED], 1);
    return;
  }
  size_t n = too_big_build(w, m, path_mtu(w, m->peer));
  if (n) icmp_send(w, n, ICMP_KIND_TOO_BIG);
}

/* ---------- TUN -> UDP ---------- */

static void tx_sent(struct worker *w, unsigned i, unsigned bytes) {
  const struct txmeta *m = &w->meta[i];
  CADD(w->k.c[C_UDP_TX_DATAGRAMS], m->nsegs);
  CADD(w->k.c[C_UDP_TX_BYTES], bytes);
  CADD(w->k.hist_tx_gso[hist_bucket(m->nsegs)], 1);
  if (m->gso) CADD(w->k.c[C_UDP_TX_GSO_MESSAGES], 1);
}

static void tx_drop(struct worker *w, const struct txmeta *m, int err, uint32_t nsegs) {
  if (err == EMSGSIZE) {
    too_big(w, m);
    CADD(w->k.drop_out[DROP_TOO_BIG], nsegs);
  } else {
    CADD(w->k.drop_out[DROP_SEND], nsegs);
  }
}

/* The kernel refused a GSO message: send its segments one by one. */
static void tx_unbatch(struct worker *w, unsigned i, int err) {
  struct txmeta *m = &w->meta[i];
  if (err == EIO) {
    w->udp_gso = false; /* no checksum offload on the route: GSO never works */
    CSET(w->k.c[C_UDP_GSO_DISABLED], 1);
  }
  CADD(w->k.c[C_GSO_FALLBACKS], 1);
  const struct mmsghdr *mm = &w->msgs[i];
  for (uint32_t k = 0; k < m->nsegs; k++) {
    struct msghdr h = {0};
    h.msg_name = mm->msg_hdr.msg_name;
    h.msg_namelen = mm->msg_hdr.msg_namelen;
    h.msg_iov = &w->iov[m->first_iov + 2 * k];
    h.msg_iovlen = 2;
    ssize_t r = sendmsg(w->tx, &h, 0);
    CADD(w->k.c[C_UDP_TX_CALLS], 1);
    if (r < 0) {
      /* Equal-sized segments fail alike: drop the rest together. */
      tx_drop(w, m, errno, m->nsegs - k);
      return;
    }
    CADD(w->k.c[C_UDP_TX_DATAGRAMS], 1);
    CADD(w->k.c[C_UDP_TX_BYTES], (uint64_t)r);
    CADD(w->k.hist_tx_gso[0], 1);
  }
}

static void tx_flush(struct worker *w) {
  unsigned off = 0;
  while (off < w->nmsgs) {
    int r;
    if (w->simple) {
      ssize_t s = sendmsg(w->tx, &w->msgs[off].msg_hdr, 0);
      if (s >= 0) w->msgs[off].msg_len = (unsigned)s;
      r = s >= 0 ? 1 : -1;
    } else {
      r = sendmmsg(w->tx, w->msgs + off, w->nmsgs - off, 0);
    }
    CADD(w->k.c[C_UDP_TX_CALLS], 1);
    if (r > 0) {
      for (unsigned i = off; i < off + (unsigned)r; i++) tx_sent(w, i, w->msgs[i].msg_len);
      off += (unsigned)r;
      continue;
    }
    int err = r < 0 ? errno : EAGAIN;
    if (err == EINTR) continue;
    if (w->meta[off].gso && (err == EIO || err == EINVAL)) tx_unbatch(w, off, err);
    else tx_drop(w, &w->meta[off], err, w->meta[off].nsegs);
    off++;
  }
  w->nmsgs = 0;
  w->niov = 0;
}

static void tx_packet(struct worker *w, unsigned slot, size_t n) {
  uint8_t *buf = w->rbuf + (size_t)slot * RBUF_SIZE;
  struct superpacket *sp = &w->sp[slot];
  struct pkt_info *pi = &w->spi[slot];
  struct vnet_hdr vh = {0};
  uint8_t *pkt = buf;
  if (w->vnet) {
    if (n < VNET_HDR_LEN) {
      CADD(w->k.drop_out[DROP_SHORT], 1);
      return;
    }
    memcpy(&vh, buf, VNET_HDR_LEN);
    pkt += VNET_HDR_LEN;
    n -= VNET_HDR_LEN;
  }
  enum drop_reason r = sp_prepare(&vh, pkt, (uint32_t)n, sp, pi);
  if (r != DROP_NONE) {
    CADD(w->k.drop_out[r], 1);
    return;
  }
  if (sp->gso) CADD(w->k.c[C_TUN_RX_SUPERPACKETS], 1);
  if (!pkt_unicast_dst(pi)) {
    CADD(w->k.drop_out[DROP_NOT_UNICAST], sp->nsegs);
    return;
  }
  if (!w->t) {
    CADD(w->k.drop_out[DROP_NO_TABLE], sp->nsegs);
    return;
  }
  const struct peer_entry *peer = peer_lookup(w->t, pi->family, pi->dst);
  if (!peer) {
    /* Answer as the destination would: our own address would be a martian. */
    icmp_reply(w, pkt, pi, ICMP_KIND_UNREACH, 0, pi->dst);
    CADD(w->k.drop_out[DROP_NO_ROUTE], sp->nsegs);
    return;
  }
  if (!pkt_dec_ttl(pkt, pi)) {
    icmp_reply(w, pkt, pi, ICMP_KIND_TIME_EXCEEDED, 0, peer->subnet.addr);
    CADD(w->k.drop_out[DROP_TTL], sp->nsegs);
    return;
  }
  uint32_t seg_size = sp_seg_size(sp);
  uint32_t max_payload = 0xffff - 8 - (w->l->o.bind_family == 4 ? 20 : 0);
  uint32_t per_msg = 1;
  if (w->udp_gso && sp->gso && seg_size) {
    per_msg = max_payload / seg_size;
    if (per_msg > MAX_GSO_SEGS) per_msg = MAX_GSO_SEGS;
    if (per_msg < 1) per_msg = 1;
  }
  uint8_t *arena = w->arena + (size_t)slot * ARENA_SEGS * SEG_HDR_MAX;
  /* A chunk must fit the arena, the message array and the iovec array at once. */
  uint32_t max_chunk = ARENA_SEGS;
  if (max_chunk > TX_MSGS * per_msg) max_chunk = TX_MSGS * per_msg;
  if (max_chunk > TX_IOV / 2) max_chunk = TX_IOV / 2;
  for (uint32_t first = 0, chunk; first < sp->nsegs; first += chunk) {
    chunk = sp->nsegs - first < max_chunk ? sp->nsegs - first : max_chunk;
    uint32_t need_msgs = (chunk + per_msg - 1) / per_msg;
    if (first > 0 || w->nmsgs + need_msgs > TX_MSGS || w->niov + 2 * chunk > TX_IOV) tx_flush(w);
    sp_split(sp, first, chunk, arena, w->segs);
    for (uint32_t k = 0; k < chunk; k += per_msg) {
      uint32_t nk = chunk - k < per_msg ? chunk - k : per_msg;
      unsigned mi = w->nmsgs++;
      struct msghdr *h = &w->msgs[mi].msg_hdr;
      struct txmeta *m = &w->meta[mi];
      m->sp = sp;
      m->pi = pi;
      m->peer = peer;
      m->first_iov = w->niov;
      m->nsegs = nk;
      m->gso = nk > 1;
      for (uint32_t j = 0; j < nk; j++) {
        const struct segment *s = &w->segs[k + j];
        w->iov[w->niov].iov_base = s->hdr;
        w->iov[w->niov++].iov_len = s->hdrlen;
        if (s->paylen) {
          w->iov[w->niov].iov_base = (void *)s->pay;
          w->iov[w->niov++].iov_len = s->paylen;
        }
      }
      memset(h, 0, sizeof *h);
      h->msg_name = (void *)&peer->sa;
      h->msg_namelen = peer->salen;
      h->msg_iov = &w->iov[m->first_iov];
      h->msg_iovlen = w->niov - m->first_iov;
      if (m->gso) {
        struct cmsghdr *c = &w->cm[mi].align;
        h->msg_control = w->cm[mi].buf;
        h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t gs = (uint16_t)seg_size;
        memcpy(CMSG_DATA(c), &gs, sizeof gs);
      }
    }
  }
}

static void tun_failed(struct worker *w, int err) {
  CADD(w->k.c[C_TUN_ERRORS], 1);
  if (err == EBADFD || err == ENODEV) CSET(w->k.c[C_TUN_LOST], 1); /* detached: device deleted */
}

/* Returns how many packets were read. */
static unsigned tun_side(struct worker *w) {
  unsigned batch = w->simple ? 1 : TXB, got = 0;
  for (unsigned slot = 0; slot < batch; slot++) {
    ssize_t n = read(w->tun, w->rbuf + (size_t)slot * RBUF_SIZE, RBUF_SIZE);
    if (n < 0) {
      if (errno == EINTR) {
        slot--;
        continue;
      }
      if (errno != EAGAIN) tun_failed(w, errno);
      break;
    }
    got++;
    CADD(w->k.c[C_TUN_READS], 1);
    CADD(w->k.c[C_TUN_RX_PACKETS], 1);
    CADD(w->k.c[C_TUN_RX_BYTES], (uint64_t)n);
    tx_packet(w, slot, (size_t)n);
  }
  tx_flush(w);
  return got;
}

/* ---------- UDP -> TUN ---------- */

static int tun_emit(void *ctx, struct iovec *iov, unsigned n, bool gso) {
  struct worker *w = ctx;
  (void)gso;
  ssize_t r = w->vnet ? writev(w->tun, iov, (int)n) : writev(w->tun, iov + 1, (int)n - 1);
  CADD(w->k.c[C_TUN_WRITES], 1);
  if (r < 0) {
    int e = errno;
    tun_failed(w, e);
    return -e;
  }
  CADD(w->k.c[C_TUN_TX_BYTES], (uint64_t)r - (w->vnet ? VNET_HDR_LEN : 0));
  return 0;
}

static void rx_publish(struct worker *w) {
  const struct co_stats *s = &w->co.st;
  CSET(w->k.c[C_UDP_RX_DELIVERED], s->delivered);
  CSET(w->k.drop_in[DROP_TUN_WRITE], s->errors);
  CSET(w->k.c[C_TUN_TX_COALESCED], s->coalesced);
  CSET(w->k.c[C_TUN_TX_COALESCED_SEGMENTS], s->coalesced_segments);
  CSET(w->k.c[C_TUN_GSO_REFUSED], s->gso_refused);
  for (unsigned b = 0; b < HIST_BUCKETS; b++) CSET(w->k.hist_coalesce[b], s->hist[b]);
}

static void rx_datagram(struct worker *w, unsigned i, unsigned len) {
  uint8_t *buf = w->xbuf + (size_t)i * XBUF_SIZE;
  struct msghdr *h = &w->rmsgs[i].msg_hdr;
  unsigned gso = len;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int v;
      memcpy(&v, CMSG_DATA(c), sizeof v);
      if (v > 0) gso = (unsigned)v;
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
      uint32_t v;
      memcpy(&v, CMSG_DATA(c), sizeof v);
      CSET(w->k.c[C_UDP_RX_KERNEL_DROPS], v);
    }
  }
  uint8_t fam;
  uint8_t from[16] = {0};
  const struct sockaddr_storage *ss = &w->rfrom[i];
  if (ss->ss_family == AF_INET) {
    fam = 4;
    memcpy(from, &((const struct sockaddr_in *)ss)->sin_addr, 4);
  } else {
    fam = 6;
    memcpy(from, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
  }
  unsigned nseg = len == 0 || gso == 0 ? 1 : (len + gso - 1) / gso;
  CADD(w->k.c[C_UDP_RX_DATAGRAMS], nseg);
  CADD(w->k.c[C_UDP_RX_BYTES], len);
  if (nseg > 1) CADD(w->k.c[C_UDP_RX_GRO_MESSAGES], 1);
  if (len == 0) {
    struct pkt_info pi;
    CADD(w->k.drop_in[pkt_check_inbound(w->t, fam, from, buf, 0, &pi)], 1); /* notPeer or short */
    return;
  }
  /* Every segment of a GRO train has the same sender: check it once. */
  enum drop_reason sender = pkt_check_sender(w->t, fam, from);
  if (sender != DROP_NONE) {
    CADD(w->k.drop_in[sender], nseg);
    return;
  }
  for (unsigned off = 0; off < len; off += gso) {
    unsigned sl = len - off < gso ? len - off : gso;
    struct pkt_info pi;
    enum drop_reason r = pkt_check_inner(w->t, fam, from, buf + off, sl, &pi, &w->srcs);
    if (r != DROP_NONE) CADD(w->k.drop_in[r], 1);
    else co_add(&w->co, buf + off, sl, &pi);
  }
}

static unsigned udp_side(struct worker *w) {
  unsigned batch = w->simple ? 1 : RXB;
  for (unsigned i = 0; i < batch; i++) {
    struct msghdr *h = &w->rmsgs[i].msg_hdr;
    h->msg_name = &w->rfrom[i];
    h->msg_namelen = sizeof w->rfrom[i];
    h->msg_iov = &w->riov[i];
    h->msg_iovlen = 1;
    h->msg_control = w->rcm[i].buf;
    h->msg_controllen = sizeof w->rcm[i].buf;
    h->msg_flags = 0;
  }
  int n;
  if (w->simple) {
    ssize_t r = recvmsg(w->rx, &w->rmsgs[0].msg_hdr, MSG_DONTWAIT);
    if (r >= 0) w->rmsgs[0].msg_len = (unsigned)r;
    n = r >= 0 ? 1 : -1;
  } else {
    n = recvmmsg(w->rx, w->rmsgs, batch, MSG_DONTWAIT, NULL);
  }
  if (n <= 0) return 0;
  CADD(w->k.c[C_UDP_RX_CALLS], 1);
  CADD(w->k.hist_rx_batch[hist_bucket((uint64_t)n)], 1);
  for (int i = 0; i < n; i++) rx_datagram(w, (unsigned)i, w->rmsgs[i].msg_len);
  co_flush(&w->co);
  rx_publish(w);
  return (unsigned)n;
}

/* ---------- workers ---------- */

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct loop *l = w->l;
#ifdef __GLIBC__
  char name[16];
  snprintf(name, sizeof name, "weft-udp-%u", w->idx);
  pthread_setname_np(pthread_self(), name);
#endif
  struct pollfd p[3] = {{w->tun, POLLIN, 0}, {w->rx, POLLIN, 0}, {l->wake, POLLIN, 0}};
  while (!atomic_load_explicit(&l->stopping, memory_order_relaxed)) {
    int r = poll(p, 3, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[2].revents) break;
    if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      /* The device went away under us: stop reading it; the owner recreates it. */
      tun_failed(w, EBADFD);
      p[0].fd = -1;
    }
    /* Drain both directions until idle, re-reading the table between rounds. */
    for (unsigned round = 0; round < 64; round++) {
      w->t = domain_enter(&l->dom, w->idx);
      if (w->t != w->last_t) {
        w->last_t = w->t;
        CADD(w->k.c[C_TABLE_SWAPS_SEEN], 1);
      }
      unsigned got = 0;
      if (p[0].fd >= 0) got += tun_side(w);
      got += udp_side(w);
      w->t = NULL;
      w->srcs.t = NULL; /* the table may be freed once we leave: never trust a cached entry across */
      domain_leave(&l->dom, w->idx);
      if (!got || atomic_load_explicit(&l->stopping, memory_order_relaxed)) break;
    }
  }
  return NULL;
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
    if (w->tx >= 0 && w->tx != w->rx) close(w->tx);
    if (w->rx >= 0) close(w->rx);
    if (w->tun >= 0) close(w->tun);
    w->tx = w->rx = w->tun = -1;
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
    w->tun = w->rx = w->tx = -1;
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
    rc = udp_open(o, o->port, true, err, errlen);
    if (rc < 0) goto fail;
    w->rx = w->tx = rc;
    if (i > 0) {
      /* Its own source port, so the peer's SO_REUSEPORT spreads our flows. */
      rc = udp_open(o, 0, false, err, errlen);
      if (rc < 0) goto fail;
      w->tx = rc;
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
    if (o->tso && ioctl(fd0, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0) {
      f->tso = f->csum = true;
    } else if (ioctl(fd0, TUNSETOFFLOAD, TUN_F_CSUM) == 0) {
      f->csum = true;
    } else {
      (void)ioctl(fd0, TUNSETOFFLOAD, off);
    }
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
      if (f->udp_gro && setsockopt(w->rx, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) f->udp_gro = false;
      if (f->udp_gso && setsockopt(w->tx, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) < 0) f->udp_gso = false;
    }
    f->coalesce = o->coalesce && f->vnet_hdr;
  }
  for (unsigned i = 0; i < l->nw; i++) {
    struct worker *w = l->w[i];
    w->vnet = f->vnet_hdr;
    w->udp_gso = f->udp_gso;
    co_init(&w->co, tun_emit, w, f->coalesce);
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
  }
}

bool loop_device_lost(struct loop *l) {
  for (unsigned i = 0; i < l->nw; i++)
    if (atomic_load_explicit(&l->w[i]->k.c[C_TUN_LOST], memory_order_relaxed)) return true;
  return false;
}

unsigned loop_underlay_family(struct loop *l) { return l->o.bind_family; }
uint16_t loop_port(struct loop *l) { return l->o.port; }

/* ---------- test and fuzz entry (probe.h) ---------- */

struct probe {
  struct loop l;
  struct worker w;
};

struct probe *probe_new(const struct peer_table *t, uint8_t underlay_family) {
  struct probe *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  struct worker *w = &p->w;
  p->l.o.bind_family = underlay_family;
  p->l.wake = -1;
  w->l = &p->l;
  w->tun = w->rx = w->tx = -1;
  w->vnet = w->udp_gso = true;
  w->tokens = ICMP_BURST;
  clock_gettime(CLOCK_MONOTONIC, &w->tlast);
  w->t = t;
  w->rbuf = malloc((size_t)TXB * RBUF_SIZE);
  w->arena = malloc((size_t)TXB * ARENA_SEGS * SEG_HDR_MAX);
  w->xbuf = malloc(XBUF_SIZE);
  if (!w->rbuf || !w->arena || !w->xbuf) {
    probe_free(p);
    return NULL;
  }
  w->riov[0].iov_base = w->xbuf;
  w->riov[0].iov_len = XBUF_SIZE;
  return p;
}

void probe_free(struct probe *p) {
  if (!p) return;
  free(p->w.rbuf);
  free(p->w.arena);
  free(p->w.xbuf);
  free(p);
}

unsigned probe_tx(struct probe *p, const uint8_t *const *reads, const size_t *lens, unsigned n,
                  uint32_t mtu, probe_tx_fn each, void *ctx) {
  struct worker *w = &p->w;
  w->nmsgs = w->niov = 0;
  for (unsigned slot = 0; slot < n && slot < TXB; slot++) {
    size_t len = lens[slot] < RBUF_SIZE ? lens[slot] : RBUF_SIZE;
    memcpy(w->rbuf + (size_t)slot * RBUF_SIZE, reads[slot], len);
    tx_packet(w, slot, len);
  }
  unsigned msgs = w->nmsgs;
  for (unsigned i = 0; i < msgs; i++) {
    size_t k = too_big_build(w, &w->meta[i], mtu);
    each(ctx, i, &w->msgs[i].msg_hdr, k ? w->icmp + VNET_HDR_LEN : NULL, k);
  }
  w->nmsgs = w->niov = 0;
  return msgs;
}

void probe_rx(struct probe *p, int from_family, const uint8_t *from, const uint8_t *dgram,
              size_t len, unsigned gro_size, co_emit_fn emit, void *ctx) {
  struct worker *w = &p->w;
  if (len > XBUF_SIZE) len = XBUF_SIZE;
  memcpy(w->xbuf, dgram, len);
  struct msghdr *h = &w->rmsgs[0].msg_hdr;
  memset(h, 0, sizeof *h);
  memset(&w->rcm[0], 0, sizeof w->rcm[0]);
  if (gro_size) {
    h->msg_control = w->rcm[0].buf;
    h->msg_controllen = CMSG_SPACE(sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_GRO;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int v = (int)gro_size;
    memcpy(CMSG_DATA(c), &v, sizeof v);
  }
  sock_addr(from_family == 4 ? 4 : 6, from, 8285, &w->rfrom[0], &(socklen_t){0});
  co_init(&w->co, emit, ctx, true);
  rx_datagram(w, 0, (unsigned)len);
  co_flush(&w->co);
}

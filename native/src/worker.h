/* The loop's own state, shared by the files that make it up: the per-packet
 * hot path (loop.c), opening and closing (loop_setup.c), ICMP errors (icmp.c)
 * and the test entry points (probe.c). Nothing outside them includes this. */
#ifndef WEFT_WORKER_H
#define WEFT_WORKER_H
#include "gso.h"
#include "loop.h"
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

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
  uint8_t fi; /* the peer's underlay family (fam_index): which socket sends it */
  bool gso;
};

struct worker {
  struct loop *l;
  unsigned idx;
  pthread_t th;
  bool thread_started;
  int tun, rx[2], tx[2]; /* sockets per underlay family (fam_index); -1 when not bound */
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

/* Hidden: these cross files inside the addon only. A default-visibility
 * function in a shared object may be interposed, so calls to it go through
 * the PLT and the compiler will not inline it, even within its own file. */
#pragma GCC visibility push(hidden)
/* loop.c */
void *worker_main(void *arg);
int tun_emit(void *ctx, struct iovec *iov, unsigned n, bool gso);
void tx_packet(struct worker *w, unsigned slot, size_t n);
void rx_datagram(struct worker *w, unsigned i, unsigned len);
/* loop_setup.c */
void sock_addr(uint8_t family, const uint8_t *addr, uint16_t port, struct sockaddr_storage *ss,
               socklen_t *sl);
#pragma GCC visibility pop
#endif

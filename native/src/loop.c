/* The per-packet hot path: TUN read -> encapsulate -> UDP send, UDP receive
 * -> check -> coalesce -> TUN write, and the worker thread driving both. One
 * file, so the compiler can inline across all of it. */
#define _GNU_SOURCE
#include "icmp.h"
#include "worker.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static unsigned hist_bucket(uint64_t n) {
  unsigned b = 0;
  while (n > 1 && b < HIST_BUCKETS - 1) n >>= 1, b++;
  return b;
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
    ssize_t r = sendmsg(w->tx[m->fi], &h, 0);
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
    /* One system call per run of messages over the same underlay family. */
    uint8_t fi = w->meta[off].fi;
    int sock = w->tx[fi];
    if (w->simple) {
      ssize_t s = sendmsg(sock, &w->msgs[off].msg_hdr, 0);
      if (s >= 0) w->msgs[off].msg_len = (unsigned)s;
      r = s >= 0 ? 1 : -1;
    } else {
      unsigned end = off + 1;
      while (end < w->nmsgs && w->meta[end].fi == fi) end++;
      r = sendmmsg(sock, w->msgs + off, end - off, 0);
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

void tx_packet(struct worker *w, unsigned slot, size_t n) {
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
  /* The UDP payload limit: IPv4's length field counts its header, IPv6's does not. */
  uint32_t max_payload = 0xffff - 8 - (peer->pub_family == 4 ? 20 : 0);
  uint8_t fi = (uint8_t)fam_index(peer->pub_family);
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
      m->fi = fi;
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

int tun_emit(void *ctx, struct iovec *iov, unsigned n, bool gso) {
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
  CSET(w->k.c[C_TUN_USO_REFUSED], s->uso_refused);
  for (unsigned b = 0; b < HIST_BUCKETS; b++) CSET(w->k.hist_coalesce[b], s->hist[b]);
}

void rx_datagram(struct worker *w, unsigned i, unsigned len) {
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

static unsigned udp_side(struct worker *w, int sock) {
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
    ssize_t r = recvmsg(sock, &w->rmsgs[0].msg_hdr, MSG_DONTWAIT);
    if (r >= 0) w->rmsgs[0].msg_len = (unsigned)r;
    n = r >= 0 ? 1 : -1;
  } else {
    n = recvmmsg(sock, w->rmsgs, batch, MSG_DONTWAIT, NULL);
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

void *worker_main(void *arg) {
  struct worker *w = arg;
  struct loop *l = w->l;
#ifdef __GLIBC__
  char name[16];
  snprintf(name, sizeof name, "weft-udp-%u", w->idx);
  pthread_setname_np(pthread_self(), name);
#endif
  /* An underlay family without a socket has fd -1, which poll skips. */
  struct pollfd p[4] = {{w->tun, POLLIN, 0}, {w->rx[0], POLLIN, 0}, {w->rx[1], POLLIN, 0}, {l->wake, POLLIN, 0}};
  while (!atomic_load_explicit(&l->stopping, memory_order_relaxed)) {
    int r = poll(p, 4, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[3].revents) break;
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
      for (unsigned fi = 0; fi < 2; fi++)
        if (w->rx[fi] >= 0) got += udp_side(w, w->rx[fi]);
      w->t = NULL;
      w->srcs.t = NULL; /* the table may be freed once we leave: never trust a cached entry across */
      domain_leave(&l->dom, w->idx);
      if (!got || atomic_load_explicit(&l->stopping, memory_order_relaxed)) break;
    }
  }
  return NULL;
}

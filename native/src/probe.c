/* The test and fuzz entry points (probe.h): a worker without a device or
 * sockets, driving the hot path in loop.c directly. Only the test binding and
 * the fuzz harnesses link this file. */
#define _GNU_SOURCE
#include "probe.h"
#include "icmp.h"
#include "worker.h"
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct probe {
  struct loop l;
  struct worker w;
  int replies; /* the other end of the worker's "TUN device", a datagram socket pair */
};

struct probe *probe_new(const struct peer_table *t) {
  struct probe *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  struct worker *w = &p->w;
  p->l.wake = -1;
  w->l = &p->l;
  w->rx[0] = w->rx[1] = w->tx[0] = w->tx[1] = -1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    free(p);
    return NULL;
  }
  w->tun = sv[0];
  p->replies = sv[1];
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
  close(p->w.tun);
  close(p->replies);
  free(p->w.rbuf);
  free(p->w.arena);
  free(p->w.xbuf);
  free(p);
}

unsigned probe_tx(struct probe *p, const uint8_t *const *reads, const size_t *lens, unsigned n,
                  uint32_t mtu, probe_tx_fn each, void *ctx) {
  struct worker *w = &p->w;
  w->nmsgs = w->niov = 0;
  uint8_t drain[1];
  while (recv(p->replies, drain, sizeof drain, 0) >= 0) {
  }
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

size_t probe_reply(struct probe *p, uint8_t *buf, size_t cap) {
  uint8_t b[VNET_HDR_LEN + 2048];
  ssize_t n = recv(p->replies, b, sizeof b, 0);
  if (n <= VNET_HDR_LEN) return 0;
  size_t len = (size_t)n - VNET_HDR_LEN;
  if (len > cap) len = cap;
  memcpy(buf, b + VNET_HDR_LEN, len);
  return len;
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
  co_init(&w->co, emit, ctx, CO_TCP | CO_UDP); /* as the loop runs by default */
  rx_datagram(w, 0, (unsigned)len);
  co_flush(&w->co);
}

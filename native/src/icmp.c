#define _GNU_SOURCE
#include "icmp.h"
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

void icmp_reply(struct worker *w, const uint8_t *p, const struct pkt_info *pi, enum icmp_kind kind,
                uint32_t mtu, const uint8_t *src) {
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

size_t too_big_build(struct worker *w, const struct txmeta *m, uint32_t mtu) {
  if (!too_big_wanted(m)) return 0;
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

void too_big(struct worker *w, const struct txmeta *m) {
  if (!too_big_wanted(m)) return;
  /* The rate limit first: a flood of oversized packets costs no path-MTU lookups. */
  if (!icmp_token(w)) {
    CADD(w->k.c[C_ICMP_RATE_LIMITED], 1);
    return;
  }
  size_t n = too_big_build(w, m, path_mtu(w, m->peer));
  if (n) icmp_send(w, n, ICMP_KIND_TOO_BIG);
}

#include "gso.h"
#include "csum.h"
#include <errno.h>
#include <string.h>

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_URG 0x20
#define TCP_CWR 0x80

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline unsigned alen(uint8_t family) { return family == 4 ? 4 : 16; }

enum drop_reason sp_prepare(const struct vnet_hdr *vh, uint8_t *pkt, uint32_t len,
                            struct superpacket *sp, struct pkt_info *pi) {
  enum drop_reason r = pkt_parse(pkt, len, pi);
  if (r != DROP_NONE) return r;
  memset(sp, 0, sizeof *sp);
  sp->pkt = pkt;
  sp->len = len;
  sp->family = pi->family;
  sp->iphl = pi->iphl;
  sp->nsegs = 1;
  uint8_t gso_type = vh->gso_type & (uint8_t)~VNET_GSO_ECN;
  if (gso_type == VNET_GSO_NONE) {
    if (vh->flags & VNET_F_NEEDS_CSUM) {
      /* The kernel left the transport checksum to us (TUN_F_CSUM). */
      uint32_t start = vh->csum_start, off = vh->csum_offset;
      /* The sum covers the transport header onwards: a start inside the IP
       * header would checksum (and overwrite) IP fields. */
      if ((start & 1) || start < pi->iphl || start + off + 2 > len || start >= len) return DROP_GSO;
      uint16_t v = (uint16_t)~csum_fold(csum_add(0, pkt + start, len - start));
      if (v == 0 && pi->proto == 17) v = 0xffff; /* UDP sends zero as all ones */
      memcpy(pkt + start + off, &v, 2);
    }
    return DROP_NONE;
  }
  if (gso_type == VNET_GSO_UDP_L4) {
    /* One UDP header for the whole train; each datagram gets its own. */
    if (pi->proto != 17 || pi->frag || len < (uint32_t)pi->iphl + 8 || pi->iphl + 8 > SEG_HDR_MAX)
      return DROP_GSO;
    sp->thl = 8;
  } else {
    if (!((gso_type == VNET_GSO_TCPV4 && pi->family == 4) ||
          (gso_type == VNET_GSO_TCPV6 && pi->family == 6)))
      return DROP_GSO;
    if (pi->proto != 6 || pi->frag || len < (uint32_t)pi->iphl + 20) return DROP_GSO;
    const uint8_t *tcp = pkt + pi->iphl;
    unsigned thl = (tcp[12] >> 4) * 4u;
    if (thl < 20 || pi->iphl + thl > len || pi->iphl + thl > SEG_HDR_MAX) return DROP_GSO;
    sp->thl = (uint16_t)thl;
  }
  if (vh->gso_size == 0) return DROP_GSO;
  sp->proto = pi->proto;
  sp->hlen = (uint16_t)(pi->iphl + sp->thl);
  sp->mss = vh->gso_size;
  sp->paylen = len - sp->hlen;
  sp->gso = true;
  sp->nsegs = sp->paylen ? (sp->paylen + sp->mss - 1) / sp->mss : 1;
  return DROP_NONE;
}

void sp_split(const struct superpacket *sp, uint32_t first, uint32_t count, uint8_t *arena,
              struct segment *out) {
  if (!sp->gso) {
    out[0].hdr = sp->pkt;
    out[0].hdrlen = (uint16_t)sp->len;
    out[0].pay = NULL;
    out[0].paylen = 0;
    return;
  }
  const uint8_t *t0 = sp->pkt + sp->iphl;
  uint32_t seq0 = sp->proto == 6 ? get32(t0 + 4) : 0;
  uint16_t id0 = sp->family == 4 ? get16(sp->pkt + 4) : 0;
  uint32_t last = sp->nsegs - 1;
  unsigned al = alen(sp->family);
  const uint8_t *src = sp->family == 4 ? sp->pkt + 12 : sp->pkt + 8;
  const uint8_t *dst = sp->family == 4 ? sp->pkt + 16 : sp->pkt + 24;
  for (uint32_t k = 0; k < count; k++) {
    uint32_t i = first + k;
    uint32_t off = i * sp->mss;
    uint32_t plen = sp->paylen - off < sp->mss ? sp->paylen - off : sp->mss;
    uint8_t *h = arena + (size_t)k * SEG_HDR_MAX;
    memcpy(h, sp->pkt, sp->hlen);
    if (sp->family == 4) {
      put16(h + 2, (uint16_t)(sp->hlen + plen));
      put16(h + 4, (uint16_t)(id0 + i));
      ipv4_set_csum(h, sp->iphl);
    } else {
      put16(h + 4, (uint16_t)(sp->hlen - 40 + plen));
    }
    uint8_t *t = h + sp->iphl;
    uint64_t acc = csum_pseudo(src, dst, al, sp->proto, sp->thl + plen);
    if (sp->proto == 17) {
      put16(t + 4, (uint16_t)(8 + plen));
      t[6] = t[7] = 0;
      acc = csum_add(acc, t, 8);
      acc = csum_add(acc, sp->pkt + sp->hlen + off, plen);
      uint16_t v = (uint16_t)~csum_fold(acc);
      if (v == 0) v = 0xffff; /* UDP sends zero as all ones */
      memcpy(t + 6, &v, 2);
    } else {
      put32(t + 4, seq0 + i * sp->mss);
      uint8_t fl = t[13];
      if (i != last) fl &= (uint8_t)~(TCP_FIN | TCP_PSH);
      if (i != 0) fl &= (uint8_t)~TCP_CWR;
      t[13] = fl;
      t[16] = t[17] = 0;
      acc = csum_add(acc, t, sp->thl);
      acc = csum_add(acc, sp->pkt + sp->hlen + off, plen);
      csum_store(t + 16, acc);
    }
    out[k].hdr = h;
    out[k].hdrlen = sp->hlen;
    out[k].pay = sp->pkt + sp->hlen + off;
    out[k].paylen = plen;
  }
}

void co_init(struct coalescer *c, co_emit_fn emit, void *ctx, unsigned flags) {
  memset(c, 0, sizeof *c);
  c->emit = emit;
  c->ctx = ctx;
  c->gso_ok = (flags & CO_TCP) != 0;
  c->uso_ok = (flags & CO_UDP) != 0;
  c->verify = (flags & CO_VERIFY) != 0;
}

static unsigned hist_bucket(unsigned n) {
  unsigned b = 0;
  while (n > 1 && b < 7) n >>= 1, b++;
  return b;
}

static void emit_single(struct coalescer *c, uint8_t *pkt, uint32_t len) {
  struct vnet_hdr vh = {0};
  struct iovec iov[2] = {{&vh, VNET_HDR_LEN}, {pkt, len}};
  int r = c->emit(c->ctx, iov, 2, false);
  c->st.written++;
  if (r < 0) c->st.errors++;
  else c->st.delivered++;
  c->st.hist[0]++;
}

static bool same_flow(const struct co_flow *f, const uint8_t *pkt, const struct pkt_info *pi) {
  if (f->family != pi->family || f->iphl != pi->iphl || f->proto != pi->proto) return false;
  if (pi->family == 4) {
    if (memcmp(f->hdr + 12, pkt + 12, 8) != 0) return false;
  } else if (memcmp(f->hdr + 8, pkt + 8, 32) != 0) {
    return false;
  }
  return memcmp(f->hdr + f->iphl, pkt + pi->iphl, 4) == 0; /* ports */
}

static void flush_flow(struct coalescer *c, struct co_flow *f) {
  if (f->nseg == 1) {
    emit_single(c, f->hdr, f->hlen + f->total);
    return;
  }
  uint8_t *h = f->hdr, *t = h + f->iphl;
  memcpy(f->saved, h, f->hlen);
  if (f->family == 4) {
    put16(h + 2, (uint16_t)(f->hlen + f->total));
    ipv4_set_csum(h, f->iphl);
  } else {
    put16(h + 4, (uint16_t)(f->thl + f->total));
  }
  const uint8_t *src = f->family == 4 ? h + 12 : h + 8;
  const uint8_t *dst = f->family == 4 ? h + 16 : h + 24;
  /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented. */
  uint16_t ps = csum_fold(csum_pseudo(src, dst, alen(f->family), f->proto, f->thl + f->total));
  if (f->proto == 17) {
    /* The kernel cuts it back into datagrams of mss bytes (the last may be
     * shorter), each with its own length and checksum. */
    put16(t + 4, (uint16_t)(8 + f->total));
    memcpy(t + 6, &ps, 2);
    f->vh.gso_type = VNET_GSO_UDP_L4;
    f->vh.csum_offset = 6;
  } else {
    if (f->psh) t[13] |= TCP_PSH;
    memcpy(t + 16, &ps, 2);
    f->vh.gso_type = f->family == 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
    f->vh.csum_offset = 16;
  }
  f->vh.flags = VNET_F_NEEDS_CSUM;
  f->vh.hdr_len = f->hlen;
  f->vh.gso_size = f->mss;
  f->vh.csum_start = f->iphl;
  f->iov[0].iov_base = &f->vh;
  f->iov[0].iov_len = VNET_HDR_LEN;
  f->iov[1].iov_base = h;
  f->iov[1].iov_len = f->hlen;
  int r = c->emit(c->ctx, f->iov, 2 + f->nseg, true);
  if (r == -EINVAL) {
    /* This kernel refuses GSO writes (of this type): restore the first
     * header and write each segment as it arrived, from now on without
     * coalescing them. */
    if (f->proto == 17) {
      c->uso_ok = false;
      c->st.uso_refused++;
    } else {
      c->gso_ok = false;
      c->st.gso_refused++;
    }
    memcpy(h, f->saved, f->hlen);
    for (unsigned k = 0; k < f->nseg; k++) {
      uint8_t *seg = (uint8_t *)f->iov[2 + k].iov_base - f->hlen;
      emit_single(c, seg, (uint32_t)(f->hlen + f->iov[2 + k].iov_len));
    }
    return;
  }
  c->st.written++;
  if (r < 0) {
    c->st.errors += f->nseg;
  } else {
    c->st.delivered += f->nseg;
    c->st.coalesced++;
    c->st.coalesced_segments += f->nseg;
  }
  c->st.hist[hist_bucket(f->nseg)]++;
}

static void remove_flow(struct coalescer *c, unsigned j) {
  struct co_flow tmp;
  if (j + 1 < c->nflows) {
    /* Keep creation order: flows are flushed oldest first. */
    tmp = c->flows[j];
    memmove(&c->flows[j], &c->flows[j + 1], (c->nflows - j - 1) * sizeof c->flows[0]);
    c->flows[c->nflows - 1] = tmp;
  }
  c->nflows--;
}

static void flush_at(struct coalescer *c, unsigned j) {
  flush_flow(c, &c->flows[j]);
  remove_flow(c, j);
}

static int find_flow(struct coalescer *c, const uint8_t *pkt, const struct pkt_info *pi) {
  for (unsigned j = 0; j < c->nflows; j++)
    if (same_flow(&c->flows[j], pkt, pi)) return (int)j;
  return -1;
}

/* IP fields a merged packet carries from its first segment only. */
static bool same_ip_fields(const struct co_flow *f, const uint8_t *pkt, const struct pkt_info *pi) {
  if (pi->family == 4) return pkt[1] == f->hdr[1] && pkt[8] == f->hdr[8]; /* tos, ttl */
  return memcmp(pkt, f->hdr, 4) == 0 && pkt[7] == f->hdr[7]; /* class, flow label, hops */
}

static bool can_append(const struct co_flow *f, const uint8_t *pkt, const struct pkt_info *pi,
                       unsigned thl, uint32_t paylen) {
  const uint8_t *t = pkt + pi->iphl, *ft = f->hdr + f->iphl;
  if (f->closed || f->nseg >= CO_MAX_SEGS || thl != f->thl || paylen > f->mss) return false;
  if (f->thl + f->total + paylen + (f->family == 4 ? f->iphl : 0) > 0xffff) return false;
  if (f->proto == 17) {
    /* IPv4 without DF (as a UDP GSO sender's datagrams go): the kernel
     * numbers the IDs of the datagrams it cuts from the first one, so only
     * consecutive IDs merge, as inet_gro_receive wants. */
    if (pi->family == 4 && (get16(pkt + 6) != get16(f->hdr + 6) ||
                            (!pi->df && get16(pkt + 4) != (uint16_t)(get16(f->hdr + 4) + f->nseg))))
      return false;
    return same_ip_fields(f, pkt, pi);
  }
  if (get32(t + 4) != f->next_seq) return false;
  if (memcmp(t + 8, ft + 8, 4) != 0) return false;                      /* ack */
  /* As Linux tcp_gro_receive: the whole word at offset 12 (data offset,
   * reserved bits, flags, window) must match but for CWR, FIN and PSH, so a
   * window update or an ECE/AE change is never folded into an older header. */
  if (t[12] != ft[12] || memcmp(t + 14, ft + 14, 2) != 0) return false; /* offset, reserved; window */
  if ((t[13] ^ ft[13]) & (uint8_t)~(TCP_CWR | TCP_FIN | TCP_PSH)) return false;
  if (t[13] & TCP_CWR) return false;
  if (memcmp(t + 20, ft + 20, thl - 20) != 0) return false;            /* options */
  return same_ip_fields(f, pkt, pi);
}

/* Is the segment's transport checksum right?
 *
 * A merged packet goes to the kernel as CHECKSUM_PARTIAL, which it never
 * verifies, so a segment with a wrong inner checksum would be delivered
 * with a right one. The loop still skips this check by default:
 * - the inner packet crossed the underlay inside a UDP datagram whose
 *   checksum covers it, which the kernel verified (or the NIC did) before
 *   the loop saw it; weft's sender never turns that checksum off;
 * - the loop only accepts datagrams from the underlay addresses of known
 *   peers (pkt_check_sender), and inner sources inside that peer's subnet;
 *   whoever can forge those can as well write a right inner checksum, so
 *   the check is no defence against forgery;
 * - the sending peer's loop computed the inner checksum itself (sp_split,
 *   or completing a CHECKSUM_PARTIAL read), or took it from its own pod's
 *   kernel.
 * So a wrong inner checksum here means the sending peer wrote it wrong; the
 * check would catch only that, for one more pass over every received byte
 * (csum_add sums some 20 GB/s on the 2-core test machine: 2-3% of a core at
 * 4 Gbit/s). A packet written alone (not merged) is still verified by the
 * kernel. CO_VERIFY turns the check back on (the loop's
 * verifyInnerChecksums option). */
static bool l4_csum_ok(const uint8_t *pkt, const struct pkt_info *pi, uint32_t len) {
  uint32_t l4 = len - pi->iphl;
  uint64_t acc = csum_pseudo(pi->src, pi->dst, alen(pi->family), pi->proto, l4);
  return csum_fold(csum_add(acc, pkt + pi->iphl, l4)) == 0xffff;
}

/* IPv4: DF and nothing else in the fragment field, as inet_gro_receive
 * wants: a merged packet carries the first segment's field only (the kernel
 * renumbers the IDs). IPv6: no extension headers. */
static bool plain_ip(const uint8_t *pkt, const struct pkt_info *pi) {
  return pi->family == 6 ? pi->iphl == 40 : pi->iphl == 20 && get16(pkt + 6) == 0x4000;
}

/* Writes the packet alone, after any queued packets of its flow. */
static void pass_through(struct coalescer *c, uint8_t *pkt, uint32_t len, const struct pkt_info *pi,
                         bool flow) {
  if (flow) {
    int j = find_flow(c, pkt, pi);
    if (j >= 0) flush_at(c, (unsigned)j);
  }
  emit_single(c, pkt, len);
}

static void open_flow(struct coalescer *c, uint8_t *pkt, const struct pkt_info *pi, unsigned thl,
                      uint32_t paylen) {
  if (c->nflows == CO_FLOWS) flush_at(c, 0);
  struct co_flow *f = &c->flows[c->nflows++];
  f->hdr = pkt;
  f->family = pi->family;
  f->proto = pi->proto;
  f->iphl = pi->iphl;
  f->thl = (uint16_t)thl;
  f->hlen = (uint16_t)(pi->iphl + thl);
  f->mss = (uint16_t)paylen;
  f->total = paylen;
  f->nseg = 1;
  f->psh = false;
  f->closed = false;
  f->iov[2].iov_base = pkt + f->hlen;
  f->iov[2].iov_len = paylen;
}

static void append(struct co_flow *f, uint8_t *pkt, unsigned hlen, uint32_t paylen) {
  f->iov[2 + f->nseg].iov_base = pkt + hlen;
  f->iov[2 + f->nseg].iov_len = paylen;
  f->nseg++;
  f->total += paylen;
  if (paylen < f->mss) f->closed = true; /* only the last segment may be short */
}

/* UDP: datagrams of one flow and one size (the last may be shorter) merge
 * into a UDP_L4 superpacket; the kernel cuts it back into the same
 * datagrams for a socket without UDP_GRO. */
static void co_add_udp(struct coalescer *c, uint8_t *pkt, uint32_t len, const struct pkt_info *pi) {
  const uint8_t *u = pkt + pi->iphl;
  uint32_t paylen = len - pi->iphl - 8;
  int j = find_flow(c, pkt, pi);
  /* A zero checksum (IPv4: none; IPv6: invalid) is left for the kernel to
   * judge. IPv4 with or without DF (never a fragment: pi->frag). */
  bool ok = paylen > 0 && get16(u + 4) == len - pi->iphl && (u[6] | u[7]) != 0 &&
            pi->iphl == (pi->family == 4 ? 20 : 40) &&
            (!c->verify || l4_csum_ok(pkt, pi, len));
  if (!ok) {
    if (j >= 0) flush_at(c, (unsigned)j);
    emit_single(c, pkt, len);
    return;
  }
  if (j >= 0) {
    struct co_flow *f = &c->flows[j];
    if (can_append(f, pkt, pi, 8, paylen)) {
      append(f, pkt, f->hlen, paylen);
      return;
    }
    flush_at(c, (unsigned)j);
  }
  open_flow(c, pkt, pi, 8, paylen);
}

void co_add(struct coalescer *c, uint8_t *pkt, uint32_t len, const struct pkt_info *pi) {
  bool tcp = pi->proto == 6 && !pi->frag && len >= (uint32_t)pi->iphl + 20;
  bool udp = pi->proto == 17 && !pi->frag && len >= (uint32_t)pi->iphl + 8;
  if (udp && c->uso_ok) {
    co_add_udp(c, pkt, len, pi);
    return;
  }
  if (!c->gso_ok || !tcp) {
    pass_through(c, pkt, len, pi, tcp || udp);
    return;
  }
  const uint8_t *t = pkt + pi->iphl;
  unsigned thl = (t[12] >> 4) * 4u;
  int j = find_flow(c, pkt, pi);
  bool ok = thl >= 20 && pi->iphl + thl <= len && pi->iphl + thl <= SEG_HDR_MAX;
  uint32_t paylen = ok ? len - pi->iphl - thl : 0;
  ok = ok && paylen > 0 && !(t[13] & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG)) && plain_ip(pkt, pi) &&
       (!c->verify || l4_csum_ok(pkt, pi, len));
  if (!ok) {
    /* Written alone and unchanged: the kernel verifies (and drops) it. */
    if (j >= 0) flush_at(c, (unsigned)j);
    emit_single(c, pkt, len);
    return;
  }
  if (j >= 0) {
    struct co_flow *f = &c->flows[j];
    if (can_append(f, pkt, pi, thl, paylen)) {
      append(f, pkt, f->hlen, paylen);
      f->next_seq += paylen;
      if (t[13] & TCP_PSH) f->psh = f->closed = true;
      return;
    }
    flush_at(c, (unsigned)j);
  }
  open_flow(c, pkt, pi, thl, paylen);
  struct co_flow *f = &c->flows[c->nflows - 1];
  f->next_seq = get32(t + 4) + paylen;
  f->psh = f->closed = (t[13] & TCP_PSH) != 0;
}

void co_flush(struct coalescer *c) {
  for (unsigned j = 0; j < c->nflows; j++) flush_flow(c, &c->flows[j]);
  c->nflows = 0;
}

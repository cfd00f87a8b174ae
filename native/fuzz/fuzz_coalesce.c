/* TCP and UDP coalescing on receive: a selector byte (bit 0: the device refuses GSO
 * writes; bits 1, 2: fix up IPv4, TCP checksums, see common.h), then packets
 * (framed as in common.h) through co_add/co_flush. Oracle: every packet is written exactly once;
 * one written alone is unchanged, with an all-zero virtio header; a merged
 * superpacket, completed and split again by the transmit path's own code,
 * gives back each original segment (but the IPv4 ID, which the kernel
 * renumbers, and the urgent pointer without URG), and each had a valid
 * checksum. So no corrupt segment, lost window or other header change can
 * hide in a merge. */
#include "common.h"
#include <errno.h>

#define MAXP 64

struct run {
  uint8_t *pkt[MAXP], *orig[MAXP];
  size_t len[MAXP];
  unsigned n, seen[MAXP];
  uint8_t arena[CO_MAX_SEGS * SEG_HDR_MAX];
  struct segment segs[CO_MAX_SEGS];
  uint8_t merged[65536 + 64];
  bool refuse; /* the device refuses GSO writes (EINVAL), as an old kernel does */
};

static int find(struct run *r, const uint8_t *start) {
  for (unsigned i = 0; i < r->n; i++)
    if (r->pkt[i] == start) return (int)i;
  return -1;
}

static int emit(void *ctx, struct iovec *iov, unsigned iovcnt, bool gso) {
  struct run *r = ctx;
  struct vnet_hdr vh;
  CHECK(iovcnt >= 2 && iov[0].iov_len == VNET_HDR_LEN);
  memcpy(&vh, iov[0].iov_base, VNET_HDR_LEN);
  if (!gso) {
    static const uint8_t zero[VNET_HDR_LEN];
    CHECK(iovcnt == 2 && memcmp(&vh, zero, VNET_HDR_LEN) == 0);
    int i = find(r, iov[1].iov_base);
    CHECK(i >= 0 && iov[1].iov_len == r->len[i] && memcmp(iov[1].iov_base, r->orig[i], r->len[i]) == 0);
    r->seen[i]++;
    return 0;
  }
  if (r->refuse) return -EINVAL;
  unsigned nseg = iovcnt - 2, hlen = (unsigned)iov[1].iov_len;
  int idx[CO_MAX_SEGS];
  size_t len = 0;
  for (unsigned i = 1; i < iovcnt; i++) {
    CHECK(len + iov[i].iov_len <= sizeof r->merged);
    memcpy(r->merged + len, iov[i].iov_base, iov[i].iov_len);
    len += iov[i].iov_len;
  }
  for (unsigned k = 0; k < nseg; k++) {
    idx[k] = find(r, (uint8_t *)iov[2 + k].iov_base - hlen);
    CHECK(idx[k] >= 0 && r->len[idx[k]] == hlen + iov[2 + k].iov_len);
    r->seen[idx[k]]++;
  }
  CHECK(idx[0] >= 0 && r->pkt[idx[0]] == iov[1].iov_base);
  /* Complete the checksum as the kernel does for CHECKSUM_PARTIAL ... */
  CHECK(vh.flags == VNET_F_NEEDS_CSUM && vh.csum_start + vh.csum_offset + 2u <= len && vh.hdr_len == hlen);
  uint8_t *field = r->merged + vh.csum_start + vh.csum_offset;
  csum_store(field, csum_add(0, r->merged + vh.csum_start, len - vh.csum_start));
  /* ... and split it again. */
  struct vnet_hdr split_vh = vh;
  split_vh.flags = 0;
  struct superpacket sp;
  struct pkt_info pi;
  CHECK(sp_prepare(&split_vh, r->merged, (uint32_t)len, &sp, &pi) == DROP_NONE);
  CHECK(sp.gso && sp.nsegs == nseg);
  sp_split(&sp, 0, nseg, r->arena, r->segs);
  for (unsigned k = 0; k < nseg; k++) {
    const struct segment *s = &r->segs[k];
    const uint8_t *o = r->orig[idx[k]];
    CHECK(s->hdrlen == hlen && s->paylen == r->len[idx[k]] - hlen);
    CHECK(memcmp(s->pay, o + hlen, s->paylen) == 0);
    const uint8_t *h = s->hdr;
    unsigned iphl = pi.iphl;
    if (pi.family == 4) {
      CHECK(memcmp(h, o, 4) == 0 && memcmp(h + 6, o + 6, 4) == 0 && memcmp(h + 12, o + 12, 8) == 0);
    } else {
      CHECK(memcmp(h, o, iphl) == 0);
    }
    if (pi.proto == 17) {
      /* UDP: every field, the checksum too (recomputed by the split). */
      CHECK(hlen == iphl + 8 && memcmp(h + iphl, o + iphl, 8) == 0);
    } else {
      /* TCP: all but the checksum (checked below) and the urgent pointer,
       * which means nothing without URG (URG never merges; GRO ignores it). */
      CHECK(memcmp(h + iphl, o + iphl, 16) == 0);
      CHECK(memcmp(h + iphl + 20, o + iphl + 20, hlen - iphl - 20) == 0);
    }
    /* Only a segment whose checksum verified may hide in a merge. */
    struct pkt_info opi;
    CHECK(pkt_parse(o, r->len[idx[k]], &opi) == DROP_NONE && fz_transport_ok(o, &opi));
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  static struct run r;
  static struct coalescer c;
  uint8_t sel = n ? d[0] : 0;
  r.refuse = sel & 1;
  if (n) d++, n--;
  r.n = 0;
  co_init(&c, emit, &r, CO_TCP | CO_UDP | CO_VERIFY);
  const uint8_t *p;
  size_t len;
  unsigned added = 0;
  while (r.n < MAXP && (p = fz_take(&d, &n, &len))) {
    unsigned i = r.n++;
    r.pkt[i] = malloc(len ? len : 1);
    r.orig[i] = malloc(len ? len : 1);
    memcpy(r.pkt[i], p, len);
    if (sel & 2) fz_fix(r.pkt[i], len, sel & 4);
    memcpy(r.orig[i], r.pkt[i], len);
    r.len[i] = len;
    r.seen[i] = 0;
    struct pkt_info pi;
    if (pkt_parse(r.pkt[i], len, &pi) != DROP_NONE) {
      r.seen[i] = 1; /* never offered */
      continue;
    }
    co_add(&c, r.pkt[i], (uint32_t)len, &pi);
    added++;
  }
  co_flush(&c);
  for (unsigned i = 0; i < r.n; i++) {
    CHECK(r.seen[i] == 1);
    free(r.pkt[i]);
    free(r.orig[i]);
  }
  CHECK(c.st.delivered == added);
  return 0;
}

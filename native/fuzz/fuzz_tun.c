/* TUN read + GSO split: up to 16 TUN reads (virtio header + packet, framed
 * as in common.h) through tx_packet as one batch: superpacket parsing,
 * partial-checksum completion, TTL, routing and segmentation into UDP
 * messages. Every queued message is checked segment by segment. A selector
 * byte comes first (bit 0: fix up IPv4 header checksums, see common.h). */
#include "common.h"

static void each(void *ctx, unsigned msg, const struct msghdr *h, const uint8_t *icmp,
                 size_t icmp_len) {
  (void)ctx, (void)msg, (void)icmp, (void)icmp_len;
  unsigned gs = 0;
  if (h->msg_control) {
    struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)h);
    CHECK(c && c->cmsg_level == 17 && c->cmsg_type == 103);
    uint16_t v;
    memcpy(&v, CMSG_DATA(c), 2);
    gs = v;
  }
  size_t i = 0, segs = 0;
  while (i < h->msg_iovlen) {
    const uint8_t *hdr = h->msg_iov[i].iov_base;
    size_t hl = h->msg_iov[i].iov_len;
    fz_touch(hdr, hl);
    CHECK(hl >= 20);
    size_t total = (hdr[0] >> 4) == 4 ? fz_get16(hdr + 2) : 40u + fz_get16(hdr + 4);
    if ((hdr[0] >> 4) == 4) CHECK(fz_ipv4_header_ok(hdr));
    CHECK(total >= hl);
    size_t seg = hl;
    if (total > hl) { /* the payload is the next iovec */
      CHECK(i + 1 < h->msg_iovlen && h->msg_iov[i + 1].iov_len == total - hl);
      fz_touch(h->msg_iov[i + 1].iov_base, total - hl);
      seg += total - hl;
      i++;
    }
    i++;
    segs++;
    /* UDP GSO: every datagram but the last is exactly gso_size long. */
    if (gs) CHECK(i == h->msg_iovlen ? seg <= gs : seg == gs);
  }
  CHECK(segs >= 1 && (segs == 1 || gs));
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  struct probe *p = fz_probe();
  const uint8_t *reads[16];
  size_t lens[16];
  unsigned k = fz_reads(d, n, reads, lens);
  /* Preparing a read (the partial-checksum completion) never writes into
   * the IP header. */
  static uint8_t copy[VNET_HDR_LEN + 65536];
  for (unsigned i = 0; i < k; i++) {
    if (lens[i] < VNET_HDR_LEN) continue;
    struct vnet_hdr vh;
    memcpy(&vh, reads[i], VNET_HDR_LEN);
    memcpy(copy, reads[i], lens[i]);
    struct superpacket sp;
    struct pkt_info pi;
    if (sp_prepare(&vh, copy + VNET_HDR_LEN, (uint32_t)(lens[i] - VNET_HDR_LEN), &sp, &pi) == DROP_NONE)
      CHECK(memcmp(copy, reads[i], VNET_HDR_LEN + pi.iphl) == 0);
  }
  probe_tx(p, reads, lens, k, 1400, each, NULL);
  return 0;
}

/* Inbound decap: one received datagram (or UDP GRO train) through
 * rx_datagram: sender and inner-packet validation, then coalescing into
 * TUN writes. Input: a selector byte (bit 0: the datagram comes over the
 * IPv6 underlay; bit 1: from a non-peer; bit 2: fix up checksums, see
 * common.h), a 16-bit GRO segment size (0: none), then the datagram. */
#include "common.h"

static uint8_t pkt[65536 + 64];

static int emit(void *ctx, struct iovec *iov, unsigned iovcnt, bool gso) {
  (void)ctx;
  CHECK(iovcnt >= 2 && iov[0].iov_len == VNET_HDR_LEN);
  struct vnet_hdr vh;
  memcpy(&vh, iov[0].iov_base, VNET_HDR_LEN);
  size_t len = 0;
  for (unsigned i = 1; i < iovcnt; i++) {
    fz_touch(iov[i].iov_base, iov[i].iov_len);
    CHECK(len + iov[i].iov_len <= sizeof pkt);
    memcpy(pkt + len, iov[i].iov_base, iov[i].iov_len);
    len += iov[i].iov_len;
  }
  /* Whatever reaches the device is a whole, well-formed IP packet. */
  struct pkt_info pi;
  CHECK(pkt_parse(pkt, len, &pi) == DROP_NONE);
  if (gso) {
    CHECK((pi.proto == 6 || pi.proto == 17) && vh.flags == VNET_F_NEEDS_CSUM && vh.csum_start == pi.iphl);
    CHECK(vh.gso_type == (pi.proto == 17 ? VNET_GSO_UDP_L4 : pi.family == 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6));
    CHECK(vh.hdr_len < len && vh.gso_size > 0 && len - vh.hdr_len > vh.gso_size);
  } else {
    static const uint8_t zero[VNET_HDR_LEN];
    CHECK(memcmp(&vh, zero, VNET_HDR_LEN) == 0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  struct probe *p = fz_probe();
  if (n < 3) return 0;
  uint8_t sel = d[0];
  unsigned gro = fz_get16(d + 1);
  uint8_t fam, from[16];
  CHECK(addr_parse(sel & 1 ? FZ_PEER6 : FZ_PEER4, &fam, from));
  if (sel & 2) from[fam == 4 ? 3 : 15] = 77; /* a stranger beside the peer */
  static uint8_t buf[65536];
  size_t len = n - 3 < sizeof buf ? n - 3 : sizeof buf;
  memcpy(buf, d + 3, len);
  if (sel & 4)
    for (size_t off = 0, step = gro ? gro : len; off < len; off += step)
      fz_fix(buf + off, len - off < step ? len - off : step, true);
  probe_rx(p, fam, from, buf, len, gro, emit, NULL);
  return 0;
}

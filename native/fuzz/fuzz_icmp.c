/* ICMP error generation: the frag-needed/packet-too-big errors too_big
 * builds for queued messages (input: a 16-bit path MTU, a selector byte
 * (bit 0: fix up IPv4 header checksums, see common.h), then TUN reads
 * framed as in common.h), the net-unreachable and time-exceeded errors the
 * transmit path writes back into the TUN device, and icmp_build_error of
 * every kind about each read's packet (IPv4 and IPv6 alike). An error must be well formed, quote only the packet it is
 * about, and claim DF only when it was set. */
#include "common.h"

static uint8_t dgram[65536 + 2048];

/* Checks an error about packet `about` (`about_len` bytes, the first of
 * which must be quoted exactly). */
static void check_error(const uint8_t *e, size_t len, const uint8_t *about, size_t about_len) {
  struct pkt_info pi;
  CHECK(pkt_parse(e, len, &pi) == DROP_NONE);
  CHECK(fz_transport_ok(e, &pi));
  size_t hdr = pi.family == 4 ? 28 : 48;
  CHECK(len <= (pi.family == 4 ? 576u : 1280u) && len >= hdr);
  size_t q = len - hdr;
  CHECK(q <= about_len && memcmp(e + hdr, about, q) == 0);
  if (pi.family == 4 && e[20] == 3 && e[21] == 4) CHECK(q >= 20 && (about[6] & 0x40)); /* DF was set */
  CHECK(pi.proto == (pi.family == 4 ? 1 : 58) && (e[0] >> 4) == (about[0] >> 4));
  if (pi.family == 6 && e[40] == 2) CHECK((uint32_t)(e[44] << 24 | e[45] << 16 | e[46] << 8 | e[47]) >= 1280);
}

/* An error the transmit path wrote back into the TUN device (no route, hop
 * limit): well formed, about a packet of its own family. */
static void check_reply(const uint8_t *e, size_t len) {
  struct pkt_info pi;
  CHECK(pkt_parse(e, len, &pi) == DROP_NONE && fz_transport_ok(e, &pi));
  size_t hdr = pi.family == 4 ? 28 : 48;
  CHECK(len >= hdr + (pi.family == 4 ? 20 : 40) && len <= (pi.family == 4 ? 576u : 1280u));
  CHECK(pi.proto == (pi.family == 4 ? 1 : 58) && (e[hdr] >> 4) == pi.family);
  if (pi.family == 6) CHECK(e[40] == 1 || e[40] == 3); /* unreachable, time exceeded */
  else CHECK(e[20] == 3 || e[20] == 11);
}

static void each(void *ctx, unsigned msg, const struct msghdr *h, const uint8_t *icmp,
                 size_t icmp_len) {
  (void)ctx, (void)msg;
  if (!icmp) return;
  size_t len = 0;
  for (size_t i = 0; i < h->msg_iovlen; i++) {
    CHECK(len + h->msg_iov[i].iov_len <= sizeof dgram);
    memcpy(dgram + len, h->msg_iov[i].iov_base, h->msg_iov[i].iov_len);
    len += h->msg_iov[i].iov_len;
  }
  /* The quote comes from the message's first datagram, and no further. */
  CHECK(len >= 20);
  size_t first = (dgram[0] >> 4) == 4 ? fz_get16(dgram + 2) : 40u + fz_get16(dgram + 4);
  CHECK(first <= len);
  check_error(icmp, icmp_len, dgram, first);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  struct probe *p = fz_probe();
  if (n < 2) return 0;
  uint32_t mtu = fz_get16(d);
  const uint8_t *reads[16];
  size_t lens[16];
  unsigned k = fz_reads(d + 2, n - 2, reads, lens);
  probe_tx(p, reads, lens, k, mtu, each, NULL);
  static uint8_t reply[2048];
  for (size_t rl; (rl = probe_reply(p, reply, sizeof reply)) > 0;) check_reply(reply, rl);
  /* The builder on its own, about each read's packet as it arrived. */
  static const uint8_t src4[4] = {10, 244, 2, 0}, src6[16] = {0xfd, 0, 0, 2};
  for (unsigned i = 0; i < k; i++) {
    if (lens[i] < VNET_HDR_LEN) continue;
    const uint8_t *pk = reads[i] + VNET_HDR_LEN;
    struct pkt_info pi;
    if (pkt_parse(pk, lens[i] - VNET_HDR_LEN, &pi) != DROP_NONE) continue;
    for (int kind = ICMP_KIND_UNREACH; kind <= ICMP_KIND_TOO_BIG; kind++) {
      uint8_t out[1400];
      size_t e = icmp_build_error(out, sizeof out, pk, &pi, (enum icmp_kind)kind, mtu,
                                  pi.family == 4 ? src4 : src6);
      if (e) check_error(out, e, pk, pi.len);
    }
  }
  return 0;
}

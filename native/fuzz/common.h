/* Shared by the libFuzzer harnesses: input framing, a fixed peer table and
 * invariant checks. The harnesses link the addon's own C sources (no copies);
 * the worker paths are reached through src/probe.h. */
#ifndef WEFT_FUZZ_COMMON_H
#define WEFT_FUZZ_COMMON_H
#include "csum.h"
#include "gso.h"
#include "packet.h"
#include "peers.h"
#include "probe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A broken invariant is a finding: abort so libFuzzer saves the input. */
#define CHECK(c)                                                                   \
  do {                                                                             \
    if (!(c)) {                                                                    \
      fprintf(stderr, "invariant broken: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

static inline uint16_t fz_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Inputs are records: a 16-bit big-endian length, then that many bytes
 * (cut short at the end of the input). Returns NULL when none is left. */
static inline const uint8_t *fz_take(const uint8_t **d, size_t *n, size_t *len) {
  if (*n < 2) return NULL;
  size_t l = fz_get16(*d);
  *d += 2, *n -= 2;
  if (l > *n) l = *n;
  const uint8_t *p = *d;
  *d += l, *n -= l;
  *len = l;
  return p;
}

/* Reads every byte, so ASan checks the whole range. */
static volatile uint64_t fz_sink;
static inline void fz_touch(const void *p, size_t n) { fz_sink += csum_add(0, p, n); }

/* A dual-stack node: peers 10.244.2.0/24 and fd00:2::/64 at 192.0.2.2,
 * 10.244.16.0/20 at 192.0.2.16, and 10.244.3.0/24 and 2001:db8:1000:3::/64
 * over the IPv6 underlay at 2001:db8::3; this node owns 10.244.1.0/24 and
 * fd00:1::/64, and borrows 10.244.2.77 and fd00:2::77 (pinned pods from
 * peer 192.0.2.2's subnets). */
#define FZ_PEER4 "192.0.2.2"
#define FZ_PEER6 "2001:db8::3"
static inline struct peer_table *fz_table(void) {
  static const char *const subnets[] = {"10.244.2.0/24", "fd00:2::/64", "10.244.16.0/20", "10.244.3.0/24",
                                        "2001:db8:1000:3::/64"};
  static const char *const pubs[] = {FZ_PEER4, FZ_PEER4, "192.0.2.16", FZ_PEER6, FZ_PEER6};
  struct peer_spec specs[5];
  memset(specs, 0, sizeof specs);
  for (int i = 0; i < 5; i++) {
    CHECK(prefix_parse(subnets[i], &specs[i].subnet));
    CHECK(addr_parse(pubs[i], &specs[i].pub_family, specs[i].pub));
  }
  static const char *const owned[] = {"10.244.1.0/24", "fd00:1::/64", "10.244.2.77/32", "fd00:2::77/128"};
  struct prefix own[4];
  for (int i = 0; i < 4; i++) CHECK(prefix_parse(owned[i], &own[i]));
  struct peer_table *t = peer_table_build(specs, 5, own, 4, UNDERLAY_V4 | UNDERLAY_V6, 8285);
  CHECK(t);
  return t;
}

/* The probe every harness shares over that table, made once. */
static inline struct probe *fz_probe(void) {
  static struct probe *p;
  if (!p) {
    p = probe_new(fz_table());
    CHECK(p);
  }
  return p;
}

/* TUN reads as the tx harnesses take them: a selector byte (bit 0: fix up
 * IPv4 header checksums, see fz_fix), then up to 16 records, each a virtio
 * header and a packet. Copies them to private buffers; returns how many. */
static inline void fz_fix(uint8_t *p, size_t len, bool transport);
static inline unsigned fz_reads(const uint8_t *d, size_t n, const uint8_t **reads, size_t *lens) {
  static uint8_t bufs[16][VNET_HDR_LEN + 65536];
  if (n < 1) return 0;
  bool fix = d[0] & 1;
  d++, n--;
  unsigned k = 0;
  const uint8_t *r;
  while (k < 16 && (r = fz_take(&d, &n, &lens[k]))) {
    if (lens[k] > sizeof bufs[k]) lens[k] = sizeof bufs[k];
    memcpy(bufs[k], r, lens[k]);
    if (fix && lens[k] > VNET_HDR_LEN) fz_fix(bufs[k] + VNET_HDR_LEN, lens[k] - VNET_HDR_LEN, false);
    reads[k] = bufs[k];
    k++;
  }
  return k;
}

/* The packet's own checksums hold: IPv4 header, and the transport checksum
 * over the pseudo-header (ICMP: without one). */
static inline bool fz_ipv4_header_ok(const uint8_t *p) {
  return csum_fold(csum_add(0, p, (p[0] & 15u) * 4)) == 0xffff;
}

static inline bool fz_transport_ok(const uint8_t *p, const struct pkt_info *pi) {
  uint32_t l4 = pi->len - pi->iphl;
  uint64_t acc = 0;
  if (!(pi->family == 4 && pi->proto == 1))
    acc = csum_pseudo(pi->src, pi->dst, pi->family == 4 ? 4 : 16, pi->proto, l4);
  return csum_fold(csum_add(acc, p + pi->iphl, l4)) == 0xffff;
}
/* Mutations rarely keep checksums right, so most would die at the first
 * check. With this fix-up (chosen by a selector bit) the fuzzer reaches the
 * logic behind: the IPv4 header checksum, and with `transport` the TCP/UDP
 * checksum, are recomputed in place when the headers allow. */
static inline void fz_fix(uint8_t *p, size_t len, bool transport) {
  if (len < 20 || (p[0] >> 4) != 4) goto l4;
  unsigned ihl = (p[0] & 15u) * 4;
  if (ihl < 20 || ihl > len) return;
  ipv4_set_csum(p, ihl);
l4:
  if (!transport) return;
  struct pkt_info pi;
  if (pkt_parse(p, len, &pi) != DROP_NONE || pi.frag) return;
  unsigned off = pi.proto == 6 ? 16 : pi.proto == 17 ? 6 : 0;
  if (!off || pi.iphl + off + 2 > len) return;
  p[pi.iphl + off] = p[pi.iphl + off + 1] = 0;
  uint32_t l4 = (uint32_t)(len - pi.iphl);
  csum_store(p + pi.iphl + off,
             csum_add(csum_pseudo(pi.src, pi.dst, pi.family == 4 ? 4 : 16, pi.proto, l4), p + pi.iphl, l4));
}
#endif

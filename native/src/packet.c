#include "packet.h"
#include "csum.h"
#include "peers.h"
#include <string.h>

const char *const drop_reason_names[DROP_REASONS] = {
    [DROP_NONE] = "none",
    [DROP_SHORT] = "short",
    [DROP_VERSION] = "badVersion",
    [DROP_LENGTH] = "badLength",
    [DROP_HEADER] = "badHeader",
    [DROP_NOT_PEER] = "notPeer",
    [DROP_SPOOFED_SRC] = "spoofedSource",
    [DROP_DST_NOT_LOCAL] = "destinationNotLocal",
    [DROP_NO_ROUTE] = "noRoute",
    [DROP_TTL] = "ttlExpired",
    [DROP_TOO_BIG] = "tooBig",
    [DROP_GSO] = "badSuperpacket",
    [DROP_SEND] = "sendError",
    [DROP_TUN_WRITE] = "tunWriteError",
    [DROP_NO_TABLE] = "noPeerTable",
    [DROP_NOT_UNICAST] = "notUnicast",
};

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

void ipv4_set_csum(uint8_t *ip, unsigned ihl) {
  ip[10] = ip[11] = 0;
  csum_store(ip + 10, csum_add(0, ip, ihl));
}

static enum drop_reason parse_v4(const uint8_t *p, size_t len, struct pkt_info *pi) {
  if (len < 20) return DROP_SHORT;
  unsigned ihl = (p[0] & 15u) * 4;
  if (ihl < 20 || ihl > len) return DROP_HEADER;
  if (get16(p + 2) != len) return DROP_LENGTH;
  if (csum_fold(csum_add(0, p, ihl)) != 0xffff) return DROP_HEADER;
  uint16_t frag = get16(p + 6);
  pi->family = 4;
  pi->proto = p[9];
  pi->ttl = p[8];
  pi->df = (frag & 0x4000) != 0;
  pi->frag = (frag & 0x3fff) != 0;
  pi->frag_later = (frag & 0x1fff) != 0;
  pi->iphl = (uint16_t)ihl;
  pi->len = (uint32_t)len;
  pi->src = p + 12;
  pi->dst = p + 16;
  return DROP_NONE;
}

static enum drop_reason parse_v6(const uint8_t *p, size_t len, struct pkt_info *pi) {
  if (len < 40) return DROP_SHORT;
  if ((size_t)get16(p + 4) + 40 != len) return DROP_LENGTH; /* also rejects jumbograms */
  pi->family = 6;
  pi->ttl = p[7];
  pi->df = true;
  pi->frag = pi->frag_later = false;
  pi->len = (uint32_t)len;
  pi->src = p + 8;
  pi->dst = p + 24;
  uint8_t nh = p[6];
  size_t off = 40;
  /* Walk a bounded extension-header chain to find the transport protocol. */
  bool done = false;
  for (int hops = 0; hops < 8 && !done; hops++) {
    if (nh == 0 || nh == 43 || nh == 60 || nh == 51) {
      if (off + 2 > len) return DROP_HEADER;
      size_t hl = nh == 51 ? ((size_t)p[off + 1] + 2) * 4 : ((size_t)p[off + 1] + 1) * 8;
      nh = p[off];
      off += hl;
      if (off > len) return DROP_HEADER;
    } else if (nh == 44) {
      if (off + 8 > len) return DROP_HEADER;
      uint16_t fo = get16(p + off + 2);
      pi->frag = true;
      pi->frag_later = (fo >> 3) != 0;
      nh = p[off];
      off += 8;
      done = pi->frag_later; /* later fragments carry no transport header */
    } else {
      done = true;
    }
  }
  if (!done) return DROP_HEADER; /* extension chain too long */
  pi->proto = nh;
  pi->iphl = (uint16_t)off;
  return DROP_NONE;
}

enum drop_reason pkt_parse(const uint8_t *p, size_t len, struct pkt_info *pi) {
  if (len < 1) return DROP_SHORT;
  switch (p[0] >> 4) {
  case 4: return parse_v4(p, len, pi);
  case 6: return parse_v6(p, len, pi);
  default: return DROP_VERSION;
  }
}

enum drop_reason pkt_check_sender(const struct peer_table *t, int from_family, const uint8_t *from) {
  if (!t) return DROP_NO_TABLE;
  return peer_is_underlay(t, from_family, from) ? DROP_NONE : DROP_NOT_PEER;
}

enum drop_reason pkt_check_inner(const struct peer_table *t, int from_family, const uint8_t *from,
                                 const uint8_t *p, size_t len, struct pkt_info *pi,
                                 struct src_cache *cache) {
  enum drop_reason r = pkt_parse(p, len, pi);
  if (r != DROP_NONE) return r;
  unsigned alen = pi->family == 4 ? 4 : 16;
  const struct peer_entry *e;
  if (cache && cache->t == t && cache->family == pi->family && memcmp(cache->src, pi->src, alen) == 0) {
    e = cache->e;
  } else {
    e = peer_lookup(t, pi->family, pi->src);
    if (cache) {
      cache->t = t;
      cache->family = pi->family;
      memcpy(cache->src, pi->src, alen);
      cache->e = e;
    }
  }
  if (!e || e->pub_family != from_family || memcmp(e->pub, from, from_family == 4 ? 4 : 16) != 0)
    return DROP_SPOOFED_SRC;
  if (!peer_own_contains(t, pi->family, pi->dst)) return DROP_DST_NOT_LOCAL;
  return DROP_NONE;
}

enum drop_reason pkt_check_inbound(const struct peer_table *t, int from_family,
                                   const uint8_t *from, const uint8_t *p, size_t len,
                                   struct pkt_info *pi) {
  enum drop_reason r = pkt_check_sender(t, from_family, from);
  return r != DROP_NONE ? r : pkt_check_inner(t, from_family, from, p, len, pi, NULL);
}

static bool v4_special(const uint8_t *a) {
  return a[0] == 0 || a[0] == 127 || a[0] >= 224; /* this-net, loopback, multicast, class E, broadcast */
}

static bool v6_special(const uint8_t *a) {
  static const uint8_t zero[16];
  return a[0] == 0xff || memcmp(a, zero, 16) == 0;
}

bool pkt_unicast_dst(const struct pkt_info *pi) {
  if (pi->family == 4) return pi->dst[0] < 224;
  return pi->dst[0] != 0xff && !(pi->dst[0] == 0xfe && (pi->dst[1] & 0xc0) == 0x80);
}

bool pkt_may_icmp_error(const uint8_t *p, const struct pkt_info *pi) {
  if (pi->frag_later) return false;
  if (pi->family == 4) {
    if (v4_special(pi->src) || v4_special(pi->dst)) return false;
    if (pi->proto == 1) {
      if (pi->len <= pi->iphl) return false;
      uint8_t type = p[pi->iphl];
      if (type == 3 || type == 4 || type == 5 || type == 11 || type == 12) return false;
    }
  } else {
    if (v6_special(pi->src) || v6_special(pi->dst)) return false;
    if (pi->proto == 58) {
      if (pi->len <= pi->iphl) return false;
      if (p[pi->iphl] < 128) return false; /* ICMPv6 error messages are types 0-127 */
    }
  }
  return true;
}

size_t icmp_build_error(uint8_t *out, size_t cap, const uint8_t *p, const struct pkt_info *pi,
                        enum icmp_kind kind, uint32_t mtu, const uint8_t *src_addr) {
  if (!pkt_may_icmp_error(p, pi)) return 0;
  /* "Fragmentation needed and DF set" about a packet without DF is a lie. */
  if (kind == ICMP_KIND_TOO_BIG && !pi->df) return 0;
  /* Never advertise less than the family's minimum MTU (RFC 791, RFC 8200 §5). */
  uint32_t floor = pi->family == 4 ? 68 : 1280;
  if (kind == ICMP_KIND_TOO_BIG && mtu < floor) mtu = floor;
  if (pi->family == 4) {
    size_t quote = pi->len < 576 - 28 ? pi->len : 576 - 28; /* RFC 1812 §4.3.2.3 */
    size_t total = 28 + quote;
    if (cap < total) return 0;
    memset(out, 0, 28);
    out[0] = 0x45;
    out[1] = 0xc0; /* internetwork control */
    put16(out + 2, (uint16_t)total);
    out[8] = 64;
    out[9] = 1;
    memcpy(out + 12, src_addr, 4);
    memcpy(out + 16, pi->src, 4);
    ipv4_set_csum(out, 20);
    uint8_t *icmp = out + 20;
    switch (kind) {
    case ICMP_KIND_UNREACH: icmp[0] = 3, icmp[1] = 0; break;       /* net unreachable */
    case ICMP_KIND_TIME_EXCEEDED: icmp[0] = 11, icmp[1] = 0; break; /* TTL exceeded in transit */
    case ICMP_KIND_TOO_BIG:
      icmp[0] = 3, icmp[1] = 4; /* fragmentation needed and DF set */
      put16(icmp + 6, (uint16_t)(mtu > 0xffff ? 0xffff : mtu));
      break;
    }
    memcpy(icmp + 8, p, quote);
    csum_store(icmp + 2, csum_add(0, icmp, 8 + quote));
    return total;
  }
  size_t quote = pi->len < 1280 - 48 ? pi->len : 1280 - 48; /* RFC 4443 §2.4(c) */
  size_t total = 48 + quote;
  if (cap < total) return 0;
  memset(out, 0, 48);
  out[0] = 0x60;
  put16(out + 4, (uint16_t)(8 + quote));
  out[6] = 58;
  out[7] = 64;
  memcpy(out + 8, src_addr, 16);
  memcpy(out + 24, pi->src, 16);
  uint8_t *icmp = out + 40;
  switch (kind) {
  case ICMP_KIND_UNREACH: icmp[0] = 1, icmp[1] = 0; break; /* no route to destination */
  case ICMP_KIND_TIME_EXCEEDED: icmp[0] = 3, icmp[1] = 0; break;
  case ICMP_KIND_TOO_BIG:
    icmp[0] = 2;
    icmp[4] = (uint8_t)(mtu >> 24), icmp[5] = (uint8_t)(mtu >> 16);
    icmp[6] = (uint8_t)(mtu >> 8), icmp[7] = (uint8_t)mtu;
    break;
  }
  memcpy(icmp + 8, p, quote);
  uint64_t acc = csum_pseudo(out + 8, out + 24, 16, 58, (uint32_t)(8 + quote));
  csum_store(icmp + 2, csum_add(acc, icmp, 8 + quote));
  return total;
}

bool pkt_dec_ttl(uint8_t *p, const struct pkt_info *pi) {
  if (pi->family == 6) {
    if (p[7] <= 1) return false;
    p[7]--;
    return true;
  }
  if (p[8] <= 1) return false;
  p[8]--;
  /* RFC 1624 incremental update for TTL-1: the header checksum word rises by 0x0100. */
  uint32_t check = get16(p + 10);
  check += 0x0100;
  check = (check & 0xffff) + (check >> 16);
  put16(p + 10, (uint16_t)check);
  return true;
}

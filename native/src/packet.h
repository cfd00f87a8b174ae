/* Inner IP packet parsing, inbound validation and ICMP error construction. */
#ifndef WEFT_PACKET_H
#define WEFT_PACKET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct peer_table;

/* Why a packet was dropped. Kept in step with drop_reason_names[]. */
enum drop_reason {
  DROP_NONE = 0,
  DROP_SHORT,          /* shorter than an IP header */
  DROP_VERSION,        /* not IPv4/IPv6, or a family the loop does not carry */
  DROP_LENGTH,         /* IP length field disagrees with the datagram */
  DROP_HEADER,         /* bad IHL or header checksum, or broken extension chain */
  DROP_NOT_PEER,       /* outer source is not a current peer */
  DROP_SPOOFED_SRC,    /* inner source outside the sending peer's subnet */
  DROP_DST_NOT_LOCAL,  /* inner destination outside this node's subnet */
  DROP_NO_ROUTE,       /* TUN packet for a subnet with no peer */
  DROP_TTL,            /* TUN packet whose TTL/hop limit expired */
  DROP_TOO_BIG,        /* larger than the path allows, DF set */
  DROP_GSO,            /* superpacket the loop cannot segment */
  DROP_SEND,           /* UDP send failed */
  DROP_TUN_WRITE,      /* TUN write failed */
  DROP_NO_TABLE,       /* no peer table pushed yet */
  DROP_NOT_UNICAST,    /* TUN packet for multicast/broadcast or IPv6 link-local (e.g. router solicitations) */
  DROP_REASONS
};
extern const char *const drop_reason_names[DROP_REASONS];

/* What the hot path needs to know about one IP packet. */
struct pkt_info {
  uint8_t family;      /* 4 or 6 */
  uint8_t proto;       /* transport protocol (after IPv6 extension headers) */
  uint8_t ttl;         /* TTL or hop limit */
  bool frag;           /* fragment (any) */
  bool frag_later;     /* fragment other than the first */
  bool df;             /* IPv4 DF (IPv6: always true) */
  uint16_t iphl;       /* bytes before the transport header */
  uint32_t len;        /* total packet length */
  const uint8_t *src, *dst;
};

/* Parses and sanity-checks the IP header; `len` must equal the packet length
 * the header claims. Returns DROP_NONE or the reason. */
enum drop_reason pkt_parse(const uint8_t *p, size_t len, struct pkt_info *pi);

/* Remembers the last inner source looked up, so a train of segments from
 * one flow costs one table lookup. Valid only while the reader stays inside
 * the epoch it was filled in (a freed table's address may be reused). */
struct src_cache {
  const struct peer_table *t;
  uint8_t family;
  uint8_t src[16];
  const struct peer_entry *e;
};

/* Is the outer source (family 4/6, raw address bytes, zero-padded to 16) a peer? */
enum drop_reason pkt_check_sender(const struct peer_table *t, int from_family, const uint8_t *from);

/* Checks one inner packet from a sender already known to be a peer. `cache` may be NULL. */
enum drop_reason pkt_check_inner(const struct peer_table *t, int from_family, const uint8_t *from,
                                 const uint8_t *p, size_t len, struct pkt_info *pi,
                                 struct src_cache *cache);

/* Both checks: what the loop decides for one datagram received from `from`. */
enum drop_reason pkt_check_inbound(const struct peer_table *t, int from_family,
                                   const uint8_t *from, const uint8_t *p, size_t len,
                                   struct pkt_info *pi);

/* True when the destination can be tunnelled: not multicast, broadcast or IPv6 link-local. */
bool pkt_unicast_dst(const struct pkt_info *pi);

/* True when an ICMP error may be sent about this packet (RFC 1812 §4.3.2.7):
 * not about an ICMP error, a non-first fragment, or a multicast/broadcast or
 * unspecified address. */
bool pkt_may_icmp_error(const uint8_t *p, const struct pkt_info *pi);

enum icmp_kind { ICMP_KIND_UNREACH, ICMP_KIND_TIME_EXCEEDED, ICMP_KIND_TOO_BIG };

/* Builds an ICMP(v6) error about packet `p` from `src_addr` (same family) into
 * `out` (at least 1280 bytes); a too-big error advertises at least the
 * family's minimum MTU (68, 1280). Returns the length, or 0 when none may be sent. */
size_t icmp_build_error(uint8_t *out, size_t cap, const uint8_t *p, const struct pkt_info *pi,
                        enum icmp_kind kind, uint32_t mtu, const uint8_t *src_addr);

/* Decrements TTL/hop limit in place (IPv4 header checksum patched, RFC 1624).
 * Returns false when the packet has expired and must not be forwarded. */
bool pkt_dec_ttl(uint8_t *p, const struct pkt_info *pi);

/* Recomputes the IPv4 header checksum. */
void ipv4_set_csum(uint8_t *ip, unsigned ihl_bytes);
#endif

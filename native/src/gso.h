/* Superpacket handling, TCP (TSO) and UDP (USO, Linux >= 6.2): splitting a
 * superpacket read from the TUN device into wire segments (headers rebuilt,
 * payload referenced in place), and coalescing consecutive received segments
 * (or datagrams) of a flow back into one superpacket written to the TUN
 * device with a virtio-net GSO header. */
#ifndef WEFT_GSO_H
#define WEFT_GSO_H
#include "packet.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* struct virtio_net_hdr (legacy, native endian as TUN uses it by default). */
struct vnet_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
#define VNET_HDR_LEN 10
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5 /* UDP segmentation: gso_size is the payload of each datagram */
#define VNET_GSO_ECN 0x80

/* Largest header a segment carries: IPv4 with options or IPv6, plus TCP
 * with options (or UDP). */
#define SEG_HDR_MAX 120

/* One wire segment: a rebuilt header followed by a slice of the payload. */
struct segment {
  uint8_t *hdr;
  uint16_t hdrlen;
  const uint8_t *pay;
  uint32_t paylen;
};

/* A superpacket prepared for splitting. */
struct superpacket {
  uint8_t *pkt;     /* IP header onwards; modified in place (TTL) */
  uint32_t len;
  uint16_t iphl, thl, hlen; /* thl: the TCP header, or 8 for UDP */
  uint16_t mss;     /* payload per segment (TCP MSS, or UDP datagram payload) */
  uint32_t paylen;
  uint32_t nsegs;   /* 1 when the packet is not GSO */
  bool gso;
  uint8_t family;
  uint8_t proto;    /* 6 or 17 when gso */
};

/* Reads the virtio header and prepares `sp`; completes a partial checksum on
 * a non-GSO packet. Returns DROP_NONE, DROP_GSO (cannot split) or a parse reason. */
enum drop_reason sp_prepare(const struct vnet_hdr *vh, uint8_t *pkt, uint32_t len,
                            struct superpacket *sp, struct pkt_info *pi);

/* Builds segments [first, first+count) of `sp`, headers written to `arena`
 * (count * SEG_HDR_MAX bytes). A non-GSO packet yields one segment pointing at
 * the packet itself. */
void sp_split(const struct superpacket *sp, uint32_t first, uint32_t count, uint8_t *arena,
              struct segment *out);

/* Size of every segment but the last on the wire (the UDP GSO size). */
static inline uint32_t sp_seg_size(const struct superpacket *sp) {
  return sp->gso ? (uint32_t)sp->hlen + sp->mss : sp->len;
}

#define CO_FLOWS 8
#define CO_MAX_SEGS 64

/* Writes one packet: iov[0] is the virtio header, the rest the packet.
 * Returns 0 or -errno. */
typedef int (*co_emit_fn)(void *ctx, struct iovec *iov, unsigned iovcnt, bool gso);

struct co_flow {
  uint8_t *hdr; /* first segment; its header becomes the superpacket's */
  uint8_t saved[SEG_HDR_MAX]; /* original header, restored if a GSO write is refused */
  uint8_t family, proto;
  uint16_t iphl, thl, hlen, mss;
  uint32_t next_seq, total;
  unsigned nseg;
  bool closed, psh;
  struct vnet_hdr vh;
  struct iovec iov[2 + CO_MAX_SEGS];
};

struct co_stats {
  uint64_t written;            /* TUN writes */
  uint64_t delivered, errors;  /* packets (segments) written / lost to write errors */
  uint64_t coalesced, coalesced_segments, gso_refused, uso_refused;
  uint64_t hist[8];            /* segments per write, log2 buckets */
};

struct coalescer {
  struct co_flow flows[CO_FLOWS];
  unsigned nflows;
  bool gso_ok; /* TCP segments merge; false: every packet is written on its own */
  bool uso_ok; /* UDP datagrams merge too (gso_type UDP_L4) */
  bool verify; /* check each segment's transport checksum before it may merge */
  co_emit_fn emit;
  void *ctx;
  struct co_stats st;
};

/* What co_init turns on. */
#define CO_TCP 1u    /* merge TCP segments */
#define CO_UDP 2u    /* merge UDP datagrams (the device takes UDP_L4 writes) */
#define CO_VERIFY 4u /* verify inner checksums before merging */

void co_init(struct coalescer *c, co_emit_fn emit, void *ctx, unsigned flags);
/* Queues or writes one validated packet. The packet memory must stay valid
 * until co_flush. */
void co_add(struct coalescer *c, uint8_t *pkt, uint32_t len, const struct pkt_info *pi);
void co_flush(struct coalescer *c);
#endif

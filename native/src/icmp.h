/* ICMP errors the loop writes back into the TUN device: net unreachable and
 * time exceeded from the transmit path, and frag-needed/packet-too-big when
 * the underlay refuses a datagram as too large. Rate-limited per worker. */
#ifndef WEFT_ICMP_H
#define WEFT_ICMP_H
#include "worker.h"

#pragma GCC visibility push(hidden)
/* Sends an ICMP error about `p` back into the TUN device. `src` must not be a
 * local address of this node (the kernel drops such packets as martians). */
void icmp_reply(struct worker *w, const uint8_t *p, const struct pkt_info *pi, enum icmp_kind kind,
                uint32_t mtu, const uint8_t *src);

/* Builds the frag-needed (packet-too-big) error about message `m` into
 * w->icmp; returns its length, 0 when none may be sent. */
size_t too_big_build(struct worker *w, const struct txmeta *m, uint32_t mtu);

/* Answers message `m`, which the kernel refused with EMSGSIZE, with the path
 * MTU towards its peer. */
void too_big(struct worker *w, const struct txmeta *m);
#pragma GCC visibility pop
#endif

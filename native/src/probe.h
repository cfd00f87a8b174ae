/* Entry points into the loop's packet paths for unit tests and fuzzing: a
 * worker with no device and no sockets (every send fails with EBADF; what
 * the loop writes back into the TUN device, its ICMP errors, is kept for
 * probe_reply), driven by the caller. The loop itself never uses these. */
#ifndef WEFT_PROBE_H
#define WEFT_PROBE_H
#include "gso.h"
#include "peers.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct probe;

/* A probe worker over table `t` (kept by the caller); each peer is reached
 * over its own address's family. NULL when out of memory. */
struct probe *probe_new(const struct peer_table *t);
void probe_free(struct probe *p);

/* Called for each UDP message the transmit path queued, with the
 * frag-needed/packet-too-big error the loop would write to the TUN device if
 * the kernel refused that message with EMSGSIZE (NULL, 0 when it would send
 * none). */
typedef void (*probe_tx_fn)(void *ctx, unsigned msg, const struct msghdr *h, const uint8_t *icmp,
                            size_t icmp_len);

/* Runs `n` TUN reads (virtio header + packet, at most 16) through the
 * transmit path, as one batch, then reports each message still queued. `mtu`
 * is the path MTU the error advertises. Returns how many messages there were.
 * Replies kept from an earlier call are dropped first. */
unsigned probe_tx(struct probe *p, const uint8_t *const *reads, const size_t *lens, unsigned n,
                  uint32_t mtu, probe_tx_fn each, void *ctx);

/* The next packet the last probe_tx wrote back into the TUN device (an ICMP
 * error about a read: no route, hop limit), without its virtio header, into
 * `buf`; its length, 0 when there is none left. */
size_t probe_reply(struct probe *p, uint8_t *buf, size_t cap);

/* Runs one received datagram from `from` (family 4/6, bytes zero-padded to
 * 16) through the receive path: a GRO train of `gro_size`-byte segments when
 * `gro_size` is not 0. Packets reach `emit` as the TUN device would get them. */
void probe_rx(struct probe *p, int from_family, const uint8_t *from, const uint8_t *dgram,
              size_t len, unsigned gro_size, co_emit_fn emit, void *ctx);
#endif

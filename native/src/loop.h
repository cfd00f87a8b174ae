/* The UDP encapsulation loop: a TUN device (one queue per worker), UDP
 * sockets, and worker threads moving packets between them. */
#ifndef WEFT_LOOP_H
#define WEFT_LOOP_H
#include "packet.h"
#include "peers.h"
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

struct loop_opts {
  char dev[IFNAMSIZ];
  uint16_t port;
  /* The underlay addresses to receive on, per family (fam_index): one, or
   * both on a dual-stack node. A peer is reached over its address's family. */
  bool bind_on[2];
  uint8_t bind_addr[2][16];
  bool simple;         /* one packet per system call, no offloads */
  unsigned queues;     /* worker threads / TUN queues (fast mode) */
  /* Offloads to try (fast mode); each is probed and dropped when unavailable. */
  bool tso, gso, gro, coalesce;
  bool uso;            /* UDP segmentation on TUN (Linux >= 6.2), both ways */
  bool verify_csum;    /* verify inner checksums before coalescing (see gso.c) */
};

struct loop_features {
  char dev[IFNAMSIZ];
  unsigned queues;
  bool simple, vnet_hdr, tso, csum, udp_gso, udp_gro, coalesce;
  bool uso, verify_csum;
};

/* Asks the TUN device (through `set`, TUNSETOFFLOAD) for checksum offload,
 * TSO when `tso`, USO when `uso`, dropping what the kernel refuses: USO
 * first (older kernels), then TSO. Sets f->csum, f->tso, f->uso. */
typedef int (*tun_offload_fn)(void *ctx, unsigned flags);
void tun_offload_negotiate(tun_offload_fn set, void *ctx, bool tso, bool uso, struct loop_features *f);

#define HIST_BUCKETS 8 /* log2 buckets: 1, 2-3, 4-7, ..., 128+ */

enum counter_id {
  C_TUN_READS,
  C_TUN_RX_PACKETS,
  C_TUN_RX_BYTES,
  C_TUN_RX_SUPERPACKETS,
  C_UDP_TX_CALLS,
  C_UDP_TX_DATAGRAMS,
  C_UDP_TX_BYTES,
  C_UDP_TX_GSO_MESSAGES,
  C_UDP_RX_CALLS,
  C_UDP_RX_DATAGRAMS,
  C_UDP_RX_BYTES,
  C_UDP_RX_GRO_MESSAGES,
  C_UDP_RX_DELIVERED,
  C_UDP_RX_KERNEL_DROPS,
  C_TUN_WRITES,
  C_TUN_TX_BYTES,
  C_TUN_TX_COALESCED,
  C_TUN_TX_COALESCED_SEGMENTS,
  C_ICMP_UNREACHABLE,
  C_ICMP_TIME_EXCEEDED,
  C_ICMP_TOO_BIG,
  C_ICMP_RATE_LIMITED,
  C_GSO_FALLBACKS,
  C_TUN_GSO_REFUSED,
  C_TUN_USO_REFUSED,
  C_TUN_ERRORS,
  C_TABLE_SWAPS_SEEN,
  C_UDP_GSO_DISABLED, /* set once a worker found UDP GSO unusable (EIO) */
  C_TUN_LOST,         /* set once the TUN device was deleted under the loop */
  C_COUNT
};
extern const char *const counter_names[C_COUNT];

struct counters {
  uint64_t c[C_COUNT];
  uint64_t drop_in[DROP_REASONS];
  uint64_t drop_out[DROP_REASONS];
  uint64_t hist_rx_batch[HIST_BUCKETS];  /* datagrams per receive call */
  uint64_t hist_tx_gso[HIST_BUCKETS];    /* segments per UDP send message */
  uint64_t hist_coalesce[HIST_BUCKETS];  /* segments per TUN write */
};

struct loop;

/* Opens the device and sockets; nothing runs yet. On failure returns -errno
 * and writes a one-line reason to `err`. */
int loop_open(const struct loop_opts *o, struct loop **out, char *err, size_t errlen);
int loop_start(struct loop *l, char *err, size_t errlen);
/* Wakes and joins the workers and closes every fd. `remove_device` also
 * deletes the TUN device. Idempotent. */
void loop_stop(struct loop *l, bool remove_device);
void loop_free(struct loop *l);
void loop_set_table(struct loop *l, struct peer_table *t);
const struct peer_table *loop_peek_table(struct loop *l); /* JS thread only */
void loop_counters(struct loop *l, struct counters *out);
void loop_features(struct loop *l, struct loop_features *out);
/* True once any worker found its TUN queue detached (device deleted). */
bool loop_device_lost(struct loop *l);
/* The underlay families the loop has sockets for (UNDERLAY_V4 | UNDERLAY_V6). */
unsigned loop_underlays(struct loop *l);
uint16_t loop_port(struct loop *l);

/* Deletes a persistent TUN device by name (attach, clear persist, close). */
int tun_delete(const char *name, char *err, size_t errlen);
#endif

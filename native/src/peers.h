/* The peer table (subnet -> underlay address) and its lock-free publication:
 * readers (worker threads) never block; the writer (the JS thread) builds a
 * new table, publishes the pointer, and frees old tables only once every
 * reader has passed a quiescent point since (epoch-based reclamation). */
#ifndef WEFT_PEERS_H
#define WEFT_PEERS_H
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct prefix {
  uint8_t family; /* 4 or 6 */
  uint8_t plen;
  uint8_t addr[16]; /* host bits zero; IPv4 in the first 4 bytes */
};

struct peer_entry {
  struct prefix subnet;
  uint8_t pub_family;
  uint8_t pub[16];
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } sa; /* where datagrams for this subnet go */
  socklen_t salen;
};

/* Borrowed addresses the loop accepts traffic for: a lease holds no more
 * (MAX_BORROWED_IPS in src/subnet/etcd/lease-value.ts; peers read no more). */
#define MAX_BORROWED_IPS 128
/* Per family: the subnet and every borrowed address, were all of one family. */
#define OWN_PREFIXES_MAX (1 + MAX_BORROWED_IPS)

struct peer_table {
  uint32_t n;
  struct peer_entry *e;
  uint32_t smask;   /* subnet hash: open addressing, slots hold index+1 */
  uint32_t *sslot;
  uint32_t pmask;   /* underlay-address hash */
  uint32_t *pslot;
  uint8_t nplen[2]; /* distinct prefix lengths per family, longest first */
  uint8_t plens[2][129];
  /* What this node holds per family (fam_index): its subnet first (the
   * common destination), then its borrowed /32s or /128s. */
  uint8_t nown[2];
  struct prefix own[2][OWN_PREFIXES_MAX];
  uint64_t magic;    /* poisoned on free, so use-after-free is detectable in tests */
};

#define PEER_TABLE_MAGIC 0x77656674706565ULL

struct peer_spec {
  struct prefix subnet;
  uint8_t pub_family;
  uint8_t pub[16];
};

/* Index of a family in per-family arrays (IPv4 0, IPv6 1), and its bit in
 * an underlay set. */
static inline unsigned fam_index(int family) { return family == 6 ? 1 : 0; }
static inline unsigned fam_bit(int family) { return 1u << fam_index(family); }
#define UNDERLAY_V4 1u
#define UNDERLAY_V6 2u

/* Builds a table; `own` holds `nown` prefixes of this node: its subnet of
 * each family it runs, then its borrowed addresses (past OWN_PREFIXES_MAX of
 * a family, the rest are left out). Entries whose underlay family is not
 * in `underlays` (UNDERLAY_V4 | UNDERLAY_V6) are skipped: the loop has no
 * socket to reach them. Returns NULL on allocation failure. */
struct peer_table *peer_table_build(const struct peer_spec *specs, uint32_t n,
                                    const struct prefix *own, unsigned nown, unsigned underlays,
                                    uint16_t port);

void peer_table_free(struct peer_table *t);

/* Longest-prefix match of `addr` (family 4/6) against peer subnets. */
const struct peer_entry *peer_lookup(const struct peer_table *t, int family,
                                     const uint8_t *addr);
/* True when `addr` is the underlay address of some peer. */
bool peer_is_underlay(const struct peer_table *t, int family, const uint8_t *addr);
bool prefix_contains(const struct prefix *p, int family, const uint8_t *addr);

/* Is `addr` (family 4/6) this node's: inside its subnet of that family, or
 * one of its borrowed addresses? The subnet is tried first; the borrowed
 * ones cost only packets the subnet does not hold. */
static inline bool peer_own_contains(const struct peer_table *t, int family, const uint8_t *addr) {
  unsigned fi = fam_index(family);
  for (unsigned i = 0; i < t->nown[fi]; i++)
    if (prefix_contains(&t->own[fi][i], family, addr)) return true;
  return false;
}

/* Text forms: "10.1.2.0/24", "192.0.2.1", "2001:db8::/64". Return false on error. */
bool prefix_parse(const char *text, struct prefix *out);
bool addr_parse(const char *text, uint8_t *family, uint8_t out[16]);

#define READER_SLOTS_MAX 64

struct reader_slot {
  _Atomic uint64_t epoch; /* 0: holds no table; else the epoch seen on entry */
  char pad[56];
};

struct retired_table {
  struct peer_table *t;
  uint64_t epoch;
  struct retired_table *next;
};

struct table_domain {
  _Atomic(struct peer_table *) cur;
  _Atomic uint64_t epoch;
  struct reader_slot readers[READER_SLOTS_MAX];
  pthread_mutex_t wlock; /* serializes writers; never taken by readers */
  struct retired_table *retired;
  uint64_t published, freed;
};

void domain_init(struct table_domain *d);
/* Publishes `t` (may be NULL) and reclaims what it can. */
void domain_publish(struct table_domain *d, struct peer_table *t);
/* Frees retired tables no reader can hold; returns how many remain. */
unsigned domain_reclaim(struct table_domain *d);
/* Frees everything; only when no reader runs. */
void domain_destroy(struct table_domain *d);

static inline const struct peer_table *domain_enter(struct table_domain *d, unsigned slot) {
  atomic_store(&d->readers[slot].epoch, atomic_load(&d->epoch));
  return atomic_load(&d->cur);
}

static inline void domain_leave(struct table_domain *d, unsigned slot) {
  atomic_store_explicit(&d->readers[slot].epoch, 0, memory_order_release);
}
#endif

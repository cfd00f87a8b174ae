#include "peers.h"
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline unsigned fam_bytes(int family) { return family == 6 ? 16 : 4; }

static void mask_addr(uint8_t *a, unsigned plen, unsigned bytes) {
  for (unsigned i = 0; i < bytes; i++) {
    unsigned bit = i * 8;
    if (bit >= plen) a[i] = 0;
    else if (plen - bit < 8) a[i] &= (uint8_t)(0xff << (8 - (plen - bit)));
  }
}

static uint32_t hash_bytes(uint32_t seed, const uint8_t *p, unsigned n) {
  uint32_t h = 2166136261u ^ seed; /* FNV-1a: tiny keys, good enough spread */
  for (unsigned i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h ^ (h >> 15);
}

static uint32_t subnet_hash(int family, unsigned plen, const uint8_t *a) {
  return hash_bytes((uint32_t)family << 8 | plen, a, fam_bytes(family));
}

bool prefix_contains(const struct prefix *p, int family, const uint8_t *addr) {
  if (p->family != family) return false;
  unsigned full = p->plen / 8, rest = p->plen % 8;
  if (memcmp(p->addr, addr, full) != 0) return false;
  if (rest == 0) return true;
  uint8_t m = (uint8_t)(0xff << (8 - rest));
  return (addr[full] & m) == p->addr[full];
}

static uint32_t pow2_at_least(uint32_t n) {
  uint32_t s = 8;
  while (s < n) s <<= 1;
  return s;
}

struct peer_table *peer_table_build(const struct peer_spec *specs, uint32_t n,
                                    const struct prefix *own, unsigned nown, unsigned underlays,
                                    uint16_t port) {
  struct peer_table *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->magic = PEER_TABLE_MAGIC;
  t->e = calloc(n ? n : 1, sizeof *t->e);
  t->smask = pow2_at_least(n * 2 + 1) - 1;
  t->pmask = t->smask;
  t->sslot = calloc(t->smask + 1, sizeof *t->sslot);
  t->pslot = calloc(t->pmask + 1, sizeof *t->pslot);
  if (!t->e || !t->sslot || !t->pslot) {
    peer_table_free(t);
    return NULL;
  }
  for (unsigned i = 0; i < nown; i++) {
    unsigned fi = fam_index(own[i].family);
    if (t->nown[fi] < OWN_PREFIXES_MAX) t->own[fi][t->nown[fi]++] = own[i];
  }
  bool seen[2][129] = {{false}};
  for (uint32_t i = 0; i < n; i++) {
    const struct peer_spec *s = &specs[i];
    if (!(underlays & fam_bit(s->pub_family))) continue;
    if (s->subnet.family != 4 && s->subnet.family != 6) continue;
    struct peer_entry *e = &t->e[t->n];
    e->subnet = s->subnet;
    mask_addr(e->subnet.addr, e->subnet.plen, fam_bytes(e->subnet.family));
    /* A duplicate subnet keeps its first entry. */
    uint32_t h = subnet_hash(e->subnet.family, e->subnet.plen, e->subnet.addr) & t->smask;
    bool dup = false;
    while (t->sslot[h]) {
      const struct peer_entry *o = &t->e[t->sslot[h] - 1];
      if (o->subnet.family == e->subnet.family && o->subnet.plen == e->subnet.plen &&
          memcmp(o->subnet.addr, e->subnet.addr, 16) == 0) {
        dup = true;
        break;
      }
      h = (h + 1) & t->smask;
    }
    if (dup) continue;
    e->pub_family = s->pub_family;
    memcpy(e->pub, s->pub, 16);
    if (s->pub_family == 4) {
      e->sa.v4.sin_family = AF_INET;
      e->sa.v4.sin_port = htons(port);
      memcpy(&e->sa.v4.sin_addr, s->pub, 4);
      e->salen = sizeof e->sa.v4;
    } else {
      e->sa.v6.sin6_family = AF_INET6;
      e->sa.v6.sin6_port = htons(port);
      memcpy(&e->sa.v6.sin6_addr, s->pub, 16);
      e->salen = sizeof e->sa.v6;
    }
    t->sslot[h] = t->n + 1;
    uint32_t ph = hash_bytes((uint32_t)e->pub_family, e->pub, 16) & t->pmask;
    bool pdup = false;
    while (t->pslot[ph]) {
      const struct peer_entry *o = &t->e[t->pslot[ph] - 1];
      if (o->pub_family == e->pub_family && memcmp(o->pub, e->pub, 16) == 0) {
        pdup = true;
        break;
      }
      ph = (ph + 1) & t->pmask;
    }
    if (!pdup) t->pslot[ph] = t->n + 1;
    seen[fam_index(e->subnet.family)][e->subnet.plen] = true;
    t->n++;
  }
  for (unsigned f = 0; f < 2; f++)
    for (int l = 128; l >= 0; l--)
      if (seen[f][l]) t->plens[f][t->nplen[f]++] = (uint8_t)l;
  return t;
}

void peer_table_free(struct peer_table *t) {
  if (!t) return;
  /* Poison first: a reader that still held this table would now see garbage
   * and the swap test would notice. */
  if (t->e) memset(t->e, 0xa5, (t->n ? t->n : 1) * sizeof *t->e);
  free(t->e);
  free(t->sslot);
  free(t->pslot);
  memset(t, 0xa5, sizeof *t);
  free(t);
}

const struct peer_entry *peer_lookup(const struct peer_table *t, int family,
                                     const uint8_t *addr) {
  unsigned fi = fam_index(family), bytes = fam_bytes(family);
  for (unsigned i = 0; i < t->nplen[fi]; i++) {
    unsigned plen = t->plens[fi][i];
    uint8_t key[16] = {0};
    memcpy(key, addr, bytes);
    mask_addr(key, plen, bytes);
    uint32_t h = subnet_hash(family, plen, key) & t->smask;
    while (t->sslot[h]) {
      const struct peer_entry *e = &t->e[t->sslot[h] - 1];
      if (e->subnet.family == family && e->subnet.plen == plen &&
          memcmp(e->subnet.addr, key, bytes) == 0)
        return e;
      h = (h + 1) & t->smask;
    }
  }
  return NULL;
}

bool peer_is_underlay(const struct peer_table *t, int family, const uint8_t *addr) {
  uint8_t key[16] = {0};
  memcpy(key, addr, fam_bytes(family));
  uint32_t h = hash_bytes((uint32_t)family, key, 16) & t->pmask;
  while (t->pslot[h]) {
    const struct peer_entry *e = &t->e[t->pslot[h] - 1];
    if (e->pub_family == family && memcmp(e->pub, key, 16) == 0) return true;
    h = (h + 1) & t->pmask;
  }
  return false;
}

bool addr_parse(const char *text, uint8_t *family, uint8_t out[16]) {
  memset(out, 0, 16);
  if (inet_pton(AF_INET, text, out) == 1) {
    *family = 4;
    return true;
  }
  if (inet_pton(AF_INET6, text, out) == 1) {
    *family = 6;
    return true;
  }
  return false;
}

bool prefix_parse(const char *text, struct prefix *out) {
  char buf[64];
  const char *slash = strchr(text, '/');
  if (!slash || (size_t)(slash - text) >= sizeof buf) return false;
  memcpy(buf, text, (size_t)(slash - text));
  buf[slash - text] = 0;
  if (!addr_parse(buf, &out->family, out->addr)) return false;
  char *end;
  long plen = strtol(slash + 1, &end, 10);
  if (*end || end == slash + 1 || plen < 0 || plen > (out->family == 4 ? 32 : 128)) return false;
  out->plen = (uint8_t)plen;
  mask_addr(out->addr, out->plen, fam_bytes(out->family));
  return true;
}

void domain_init(struct table_domain *d) {
  memset(d, 0, sizeof *d);
  atomic_init(&d->cur, NULL);
  atomic_init(&d->epoch, 1);
  for (unsigned i = 0; i < READER_SLOTS_MAX; i++) atomic_init(&d->readers[i].epoch, 0);
  pthread_mutex_init(&d->wlock, NULL);
}

static unsigned reclaim_locked(struct table_domain *d) {
  uint64_t oldest = UINT64_MAX; /* smallest epoch any reader is inside */
  for (unsigned i = 0; i < READER_SLOTS_MAX; i++) {
    uint64_t e = atomic_load(&d->readers[i].epoch);
    if (e && e < oldest) oldest = e;
  }
  unsigned left = 0;
  struct retired_table **pp = &d->retired;
  while (*pp) {
    struct retired_table *r = *pp;
    /* Retired at epoch E: a reader that entered at < E may hold it. */
    if (oldest >= r->epoch) {
      *pp = r->next;
      peer_table_free(r->t);
      free(r);
      d->freed++;
    } else {
      left++;
      pp = &r->next;
    }
  }
  return left;
}

void domain_publish(struct table_domain *d, struct peer_table *t) {
  pthread_mutex_lock(&d->wlock);
  struct peer_table *old = atomic_exchange(&d->cur, t);
  uint64_t e = atomic_fetch_add(&d->epoch, 1) + 1;
  d->published++;
  if (old) {
    struct retired_table *r = malloc(sizeof *r);
    if (r) {
      r->t = old;
      r->epoch = e;
      r->next = d->retired;
      d->retired = r;
    } /* else leak one table rather than free it under a reader */
  }
  reclaim_locked(d);
  pthread_mutex_unlock(&d->wlock);
}

unsigned domain_reclaim(struct table_domain *d) {
  pthread_mutex_lock(&d->wlock);
  unsigned left = reclaim_locked(d);
  pthread_mutex_unlock(&d->wlock);
  return left;
}

void domain_destroy(struct table_domain *d) {
  pthread_mutex_lock(&d->wlock);
  while (d->retired) {
    struct retired_table *r = d->retired;
    d->retired = r->next;
    peer_table_free(r->t);
    free(r);
    d->freed++;
  }
  peer_table_free(atomic_exchange(&d->cur, NULL));
  pthread_mutex_unlock(&d->wlock);
  pthread_mutex_destroy(&d->wlock);
}

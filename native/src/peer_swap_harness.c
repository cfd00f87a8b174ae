/* PeerSwapHarness, for the tests: native reader threads look peers up in the
 * table while JS swaps it, counting any lookup that saw a freed or half-built
 * table. The same publish/enter/leave calls the loop's workers make. */
#include "peer_swap_harness.h"
#include "napi_values.h"
#include "peers.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct harness {
  struct table_domain dom;
  unsigned nreaders;
  pthread_t th[16];
  _Atomic bool stop;
  _Atomic uint64_t lookups, inconsistent, empty_reads;
};

struct harness_reader {
  struct harness *h;
  unsigned slot;
};

static void *harness_main(void *arg) {
  struct harness_reader *r = arg;
  struct harness *h = r->h;
  unsigned slot = r->slot;
  free(r);
  uint64_t lookups = 0, bad = 0, empty = 0, spin = slot;
  while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
    const struct peer_table *t = domain_enter(&h->dom, slot);
    if (!t || t->n == 0) {
      empty++;
    } else {
      /* Every table the test builds maps all subnets to one underlay address;
       * a freed (poisoned) or half-built table breaks that. */
      if (t->magic != PEER_TABLE_MAGIC) bad++;
      for (unsigned i = 0; i < 16 && t->magic == PEER_TABLE_MAGIC; i++) {
        const struct peer_entry *e0 = &t->e[0];
        const struct peer_entry *want = &t->e[(spin++) % t->n];
        uint8_t probe[16];
        memcpy(probe, want->subnet.addr, 16);
        probe[want->subnet.family == 4 ? 3 : 15] |= 1;
        const struct peer_entry *got = peer_lookup(t, want->subnet.family, probe);
        lookups++;
        if (!got || memcmp(got->pub, e0->pub, 16) != 0 ||
            !prefix_contains(&got->subnet, want->subnet.family, probe))
          bad++;
      }
    }
    domain_leave(&h->dom, slot);
    if ((lookups & 1023) == 0) sched_yield();
  }
  atomic_fetch_add(&h->lookups, lookups);
  atomic_fetch_add(&h->inconsistent, bad);
  atomic_fetch_add(&h->empty_reads, empty);
  return NULL;
}

static void harness_stop_threads(struct harness *h) {
  atomic_store(&h->stop, true);
  for (unsigned i = 0; i < h->nreaders; i++) pthread_join(h->th[i], NULL);
  h->nreaders = 0;
}

static void harness_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  struct harness *h = data;
  harness_stop_threads(h);
  domain_destroy(&h->dom);
  free(h);
}

static napi_value Harness_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  uint32_t readers = 4;
  if (argc >= 1) napi_get_value_uint32(env, argv[0], &readers);
  if (readers < 1 || readers > 16) {
    napi_throw_type_error(env, NULL, "readers must be 1-16");
    return NULL;
  }
  struct harness *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  domain_init(&h->dom);
  for (unsigned i = 0; i < readers; i++) {
    struct harness_reader *r = malloc(sizeof *r);
    r->h = h;
    r->slot = i;
    if (pthread_create(&h->th[i], NULL, harness_main, r) != 0) {
      free(r);
      break;
    }
    h->nreaders++;
  }
  NAPI_OK(napi_wrap(env, self, h, harness_finalize, NULL, NULL));
  return self;
}

static struct harness *unwrap_harness(napi_env env, napi_value self) {
  struct harness *h = NULL;
  if (napi_unwrap(env, self, (void **)&h) != napi_ok || !h) {
    napi_throw_error(env, NULL, "not a PeerSwapHarness");
    return NULL;
  }
  return h;
}

static napi_value Harness_setPeers(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  struct harness *h = unwrap_harness(env, this_arg(env, info, &argc, argv));
  if (!h) return NULL;
  struct peer_table *t = table_from_js(env, argv[0], argc >= 2 ? argv[1] : NULL, NULL, UNDERLAY_V4, 8285);
  if (!t) return NULL;
  domain_publish(&h->dom, t);
  return NULL;
}

static napi_value Harness_stop(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct harness *h = unwrap_harness(env, this_arg(env, info, &argc, NULL));
  if (!h) return NULL;
  harness_stop_threads(h);
  unsigned retired_before = domain_reclaim(&h->dom);
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  set_num(env, o, "lookups", (double)atomic_load(&h->lookups));
  set_num(env, o, "inconsistent", (double)atomic_load(&h->inconsistent));
  set_num(env, o, "emptyReads", (double)atomic_load(&h->empty_reads));
  set_num(env, o, "published", (double)h->dom.published);
  set_num(env, o, "freed", (double)h->dom.freed);
  set_num(env, o, "retiredLeft", retired_before);
  return o;
}

napi_status peer_swap_harness_register(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"setPeers", NULL, Harness_setPeers, NULL, NULL, NULL, napi_default_method, NULL},
      {"stop", NULL, Harness_stop, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  napi_status s = napi_define_class(env, "PeerSwapHarness", NAPI_AUTO_LENGTH, Harness_new, NULL, 2, methods, &cls);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, "PeerSwapHarness", cls);
}

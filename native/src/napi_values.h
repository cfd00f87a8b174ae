/* Reading JS arguments and building JS results, for both bindings: the
 * product's (addon.c) and the tests' (addon_test.c). */
#ifndef WEFT_NAPI_VALUES_H
#define WEFT_NAPI_VALUES_H
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs a Node-API call; on failure throws (unless something already did) and
 * returns NULL from the calling function. */
#define NAPI_OK(call)                                   \
  do {                                                  \
    if ((call) != napi_ok) {                            \
      throw_pending(env, #call);                        \
      return NULL;                                      \
    }                                                   \
  } while (0)

void throw_pending(napi_env env, const char *what);

/* The callback's arguments (at most *argc, updated to how many were given) and its `this`. */
napi_value this_arg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv);

/* A property that is present and neither undefined nor null. */
bool get_prop(napi_env env, napi_value obj, const char *name, napi_value *out);

/* Copies a JS string of at most size-1 bytes (UTF-8) into buf; false when
 * it is not a string or does not fit. */
bool get_string(napi_env env, napi_value v, char *buf, size_t size);

/* obj[name] as a boolean, `dflt` when obj is NULL or the property is absent. */
bool opt_bool(napi_env env, napi_value obj, const char *name, bool dflt);

void set_num(napi_env env, napi_value obj, const char *name, double v);
void set_bool(napi_env env, napi_value obj, const char *name, bool v);

struct peer_table;
/* Parses [{subnet, publicIP}], this node's subnet (a CIDR, or one per
 * family in an array; null: none) and its borrowed addresses (an array of
 * CIDRs; null: none) into a table of the peers reachable over `underlays`
 * (UNDERLAY_V4 | UNDERLAY_V6). Throws on bad input. */
struct peer_table *table_from_js(napi_env env, napi_value arr, napi_value ownv, napi_value borrowedv,
                                 unsigned underlays, uint16_t port);
#endif

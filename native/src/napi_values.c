#include "napi_values.h"
#include "peers.h"
#include <stdio.h>
#include <stdlib.h>

void throw_pending(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, what);
}

napi_value this_arg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self = NULL;
  napi_get_cb_info(env, info, argc, argv, &self, NULL);
  return self;
}

bool get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return false;
  if (napi_get_named_property(env, obj, name, out) != napi_ok) return false;
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

bool get_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return false;
  /* The copy below truncates silently: measure first. */
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len >= size) return false;
  return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok;
}

bool opt_bool(napi_env env, napi_value obj, const char *name, bool dflt) {
  napi_value v;
  if (!obj || !get_prop(env, obj, name, &v)) return dflt;
  bool b = dflt;
  napi_get_value_bool(env, v, &b);
  return b;
}

void set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

void set_bool(napi_env env, napi_value obj, const char *name, bool v) {
  napi_value b;
  napi_get_boolean(env, v, &b);
  napi_set_named_property(env, obj, name, b);
}

/* Parses this node's subnets: a CIDR, or an array of at most one per family. */
static bool own_from_js(napi_env env, napi_value ownv, struct prefix *own, unsigned *nown) {
  char text[80];
  *nown = 0;
  napi_valuetype ot = napi_undefined;
  if (ownv) napi_typeof(env, ownv, &ot);
  if (ot == napi_undefined || ot == napi_null) return true;
  bool isarr = false;
  napi_is_array(env, ownv, &isarr);
  uint32_t n = 1;
  if (isarr && (napi_get_array_length(env, ownv, &n) != napi_ok || n > 2)) return false;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v = ownv;
    if (isarr) napi_get_element(env, ownv, i, &v);
    if (!get_string(env, v, text, sizeof text) || !prefix_parse(text, &own[i])) return false;
    if (i > 0 && own[i].family == own[0].family) return false;
  }
  *nown = n;
  return true;
}

/* Appends this node's borrowed addresses (an array of CIDRs, or none) to
 * `own` at `*nown`. Only the first MAX_BORROWED_IPS count: no peer reads
 * more of a lease, so no traffic comes for the rest. */
static bool borrowed_from_js(napi_env env, napi_value v, struct prefix *own, unsigned *nown) {
  char text[80];
  napi_valuetype vt = napi_undefined;
  if (v) napi_typeof(env, v, &vt);
  if (vt == napi_undefined || vt == napi_null) return true;
  bool isarr = false;
  uint32_t n = 0;
  if (napi_is_array(env, v, &isarr) != napi_ok || !isarr || napi_get_array_length(env, v, &n) != napi_ok) return false;
  if (n > MAX_BORROWED_IPS) n = MAX_BORROWED_IPS;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    napi_get_element(env, v, i, &item);
    if (!get_string(env, item, text, sizeof text) || !prefix_parse(text, &own[*nown])) return false;
    (*nown)++;
  }
  return true;
}

struct peer_table *table_from_js(napi_env env, napi_value arr, napi_value ownv, napi_value borrowedv,
                                 unsigned underlays, uint16_t port) {
  bool isarr = false;
  napi_is_array(env, arr, &isarr);
  if (!isarr) {
    napi_throw_type_error(env, NULL, "peers must be an array of {subnet, publicIP}");
    return NULL;
  }
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  struct peer_spec *specs = calloc(n ? n : 1, sizeof *specs);
  if (!specs) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  char msg[160], text[80];
  for (uint32_t i = 0; i < n; i++) {
    napi_value item, sv, pv;
    napi_get_element(env, arr, i, &item);
    napi_valuetype t;
    napi_typeof(env, item, &t);
    if (t != napi_object || !get_prop(env, item, "subnet", &sv) || !get_prop(env, item, "publicIP", &pv)) {
      snprintf(msg, sizeof msg, "peer %u: want {subnet, publicIP}", i);
      goto bad;
    }
    if (!get_string(env, sv, text, sizeof text) || !prefix_parse(text, &specs[i].subnet)) {
      snprintf(msg, sizeof msg, "peer %u: subnet is not a CIDR", i);
      goto bad;
    }
    if (!get_string(env, pv, text, sizeof text) || !addr_parse(text, &specs[i].pub_family, specs[i].pub)) {
      snprintf(msg, sizeof msg, "peer %u: publicIP is not an IP address", i);
      goto bad;
    }
  }
  struct prefix own[2 + MAX_BORROWED_IPS];
  unsigned nown;
  if (!own_from_js(env, ownv, own, &nown)) {
    snprintf(msg, sizeof msg, "own subnet is not a CIDR, or an array of one CIDR per family");
    goto bad;
  }
  if (!borrowed_from_js(env, borrowedv, own, &nown)) {
    snprintf(msg, sizeof msg, "borrowed addresses are not an array of CIDRs");
    goto bad;
  }
  struct peer_table *tab = peer_table_build(specs, n, own, nown, underlays, port);
  free(specs);
  if (!tab) napi_throw_error(env, "ENOMEM", "out of memory building the peer table");
  return tab;
bad:
  free(specs);
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

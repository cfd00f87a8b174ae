/* The netlink parser on arbitrary bytes (input: one datagram as the socket
 * would return it). The input is copied to a buffer of exactly its size, so
 * ASan sees any read past the end; every record must be of a known kind
 * with its lengths in range. */
#include "common.h"
#include "netlink_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  size_t max = size / 16 + 1;
  struct nl_event *ev = malloc(max * sizeof *ev);
  if (!ev) {
    free(buf);
    return 0;
  }
  size_t n = nl_parse(buf, size, ev, max);
  CHECK(n <= max);
  for (size_t i = 0; i < n; i++) {
    const struct nl_event *e = &ev[i];
    CHECK(e->kind >= NLE_LINK && e->kind <= NLE_FDB);
    CHECK(e->family == 0 || e->family == 4 || e->family == 6 || e->family == 7);
    CHECK(e->prefix_len <= (e->family == 4 ? 32 : 128));
    CHECK(e->lladdr_len <= sizeof e->lladdr);
    CHECK(memchr(e->ifname, 0, sizeof e->ifname) != NULL);
    CHECK(!e->has_dst || e->dst_family == 4 || e->dst_family == 6);
  }
  free(ev);
  free(buf);
  return 0;
}

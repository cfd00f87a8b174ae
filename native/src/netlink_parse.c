/* The rtnetlink message parser behind nl_parse (netlink_parse.h): every
 * length is checked against the bytes really there. Pure: no syscalls, no
 * allocation, no state; the sockets that feed it are in netlink.c. */
#include "netlink_parse.h"
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>

#ifndef AF_BRIDGE
#define AF_BRIDGE 7
#endif

/* Runs body for each well-formed attribute in [p, p+len) with atype, adata
 * and alen set; stops at the first one whose length does not fit. The
 * header is copied out: a buffer from anywhere need not be aligned. */
#define FOR_EACH_ATTR(p, len, atype, adata, alen, body)                      \
  do {                                                                       \
    size_t off_ = 0;                                                         \
    while ((len) - off_ >= sizeof(struct rtattr)) {                          \
      struct rtattr hdr_;                                                    \
      memcpy(&hdr_, (p) + off_, sizeof hdr_);                                \
      if (hdr_.rta_len < sizeof hdr_ || hdr_.rta_len > (len) - off_) break;  \
      unsigned atype = hdr_.rta_type;                                        \
      const uint8_t *adata = (p) + off_ + sizeof hdr_;                       \
      size_t alen = hdr_.rta_len - sizeof hdr_;                              \
      body;                                                                  \
      off_ += RTA_ALIGN(hdr_.rta_len);                                       \
      if (off_ > (len)) break;                                               \
    }                                                                        \
  } while (0)

static uint8_t family_of(uint8_t af) {
  return af == AF_INET ? 4 : af == AF_INET6 ? 6 : af == AF_BRIDGE ? 7 : 0;
}

static bool copy_addr(uint8_t fam, const uint8_t *d, size_t n, uint8_t *out) {
  size_t want = fam == 4 ? 4 : fam == 6 ? 16 : 0;
  if (!want || n != want) return false;
  memcpy(out, d, want);
  return true;
}

static uint32_t u32_of(const uint8_t *d) {
  uint32_t v;
  memcpy(&v, d, 4);
  return v;
}

/* Copies the fixed header at the start of a message body into hdr; returns
 * where the attributes start and sets *alen to their length (NULL: too short). */
static const uint8_t *fixed_header(const uint8_t *p, size_t len, void *hdr, size_t hdrlen, size_t *alen) {
  if (len < hdrlen) return NULL;
  memcpy(hdr, p, hdrlen);
  size_t start = NLMSG_ALIGN(hdrlen);
  *alen = len > start ? len - start : 0;
  return p + (len > start ? start : len);
}

static bool parse_link(const uint8_t *p, size_t len, struct nl_event *e) {
  struct ifinfomsg ifi;
  size_t alen_all;
  const uint8_t *attrs = fixed_header(p, len, &ifi, sizeof ifi, &alen_all);
  if (!attrs) return false;
  e->kind = NLE_LINK;
  e->family = ifi.ifi_family == AF_BRIDGE ? 7 : 0;
  e->ifindex = ifi.ifi_index;
  e->up = (ifi.ifi_flags & IFF_UP) != 0;
  FOR_EACH_ATTR(attrs, alen_all, type, data, alen, {
    if (type == IFLA_IFNAME && alen > 0) {
      size_t n = strnlen((const char *)data, alen);
      if (n >= IFNAMSIZ) n = IFNAMSIZ - 1;
      memcpy(e->ifname, data, n);
      e->ifname[n] = 0;
    } else if (type == IFLA_ADDRESS && alen <= sizeof e->lladdr) {
      memcpy(e->lladdr, data, alen);
      e->lladdr_len = (uint8_t)alen;
    }
  });
  return true;
}

static bool parse_route(const uint8_t *p, size_t len, struct nl_event *e) {
  struct rtmsg rtm;
  size_t alen_all;
  const uint8_t *attrs = fixed_header(p, len, &rtm, sizeof rtm, &alen_all);
  if (!attrs) return false;
  uint8_t fam = family_of(rtm.rtm_family);
  if (fam != 4 && fam != 6) return false;
  if (rtm.rtm_dst_len > (fam == 4 ? 32 : 128)) return false;
  e->kind = NLE_ROUTE;
  e->family = fam;
  e->dst_family = fam;
  e->prefix_len = rtm.rtm_dst_len;
  e->protocol = rtm.rtm_protocol;
  e->type = rtm.rtm_type;
  e->table = rtm.rtm_table;
  /* A default route has no RTA_DST: its destination is all zeros. */
  e->has_dst = true;
  FOR_EACH_ATTR(attrs, alen_all, type, data, alen, {
    switch (type) {
    case RTA_DST:
      if (!copy_addr(fam, data, alen, e->dst)) return false;
      break;
    case RTA_GATEWAY:
      e->has_gateway = copy_addr(fam, data, alen, e->gateway);
      break;
    case RTA_OIF:
      if (alen == 4) e->ifindex = (int32_t)u32_of(data);
      break;
    case RTA_TABLE:
      if (alen == 4) e->table = u32_of(data);
      break;
    }
  });
  return true;
}

static bool parse_neigh(const uint8_t *p, size_t len, struct nl_event *e) {
  struct ndmsg ndm;
  size_t alen_all;
  const uint8_t *attrs = fixed_header(p, len, &ndm, sizeof ndm, &alen_all);
  if (!attrs) return false;
  uint8_t fam = family_of(ndm.ndm_family);
  if (fam == 0) return false;
  e->kind = fam == 7 ? NLE_FDB : NLE_NEIGH;
  e->family = fam;
  e->ifindex = ndm.ndm_ifindex;
  e->state = ndm.ndm_state;
  e->ndm_flags = ndm.ndm_flags;
  FOR_EACH_ATTR(attrs, alen_all, type, data, alen, {
    if (type == NDA_DST) {
      /* An FDB remote (vxlan) is an IPv4 or IPv6 address whatever the family. */
      uint8_t dfam = alen == 4 ? 4 : alen == 16 ? 6 : 0;
      if (fam != 7 && dfam != fam) return false;
      if (dfam && copy_addr(dfam, data, alen, e->dst)) {
        e->has_dst = true;
        e->dst_family = dfam;
      }
    } else if (type == NDA_LLADDR && alen <= sizeof e->lladdr) {
      memcpy(e->lladdr, data, alen);
      e->lladdr_len = (uint8_t)alen;
    }
  });
  return e->kind == NLE_FDB || e->has_dst;
}

size_t nl_parse(const uint8_t *buf, size_t len, struct nl_event *out, size_t max) {
  size_t n = 0, off = 0;
  while (n < max && len - off >= sizeof(struct nlmsghdr)) {
    struct nlmsghdr h;
    memcpy(&h, buf + off, sizeof h);
    if (h.nlmsg_len < sizeof h || h.nlmsg_len > len - off) break;
    const uint8_t *p = buf + off + NLMSG_HDRLEN;
    size_t plen = h.nlmsg_len - NLMSG_HDRLEN;
    struct nl_event *e = &out[n];
    memset(e, 0, sizeof *e);
    bool ok = false;
    switch (h.nlmsg_type) {
    case RTM_NEWLINK: case RTM_DELLINK: ok = parse_link(p, plen, e); break;
    case RTM_NEWROUTE: case RTM_DELROUTE: ok = parse_route(p, plen, e); break;
    case RTM_NEWNEIGH: case RTM_DELNEIGH: ok = parse_neigh(p, plen, e); break;
    }
    if (ok) {
      e->added = h.nlmsg_type == RTM_NEWLINK || h.nlmsg_type == RTM_NEWROUTE || h.nlmsg_type == RTM_NEWNEIGH;
      n++;
    }
    size_t step = NLMSG_ALIGN(h.nlmsg_len);
    if (step > len - off) break;
    off += step;
  }
  return n;
}

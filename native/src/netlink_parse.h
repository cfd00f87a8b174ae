/* The rtnetlink message parser: raw bytes in, flat nl_event records out.
 * No syscalls and no state, so the fuzz harness and the tests' binding can
 * feed it anything; netlink.h's monitor feeds it what the socket reads. */
#ifndef WEFT_NETLINK_PARSE_H
#define WEFT_NETLINK_PARSE_H
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nl_kind { NLE_LINK = 1, NLE_ROUTE, NLE_NEIGH, NLE_FDB };

/* One parsed message. Fields a kind does not carry stay zero. */
struct nl_event {
  uint8_t kind;        /* enum nl_kind */
  bool added;          /* RTM_NEW* (false: RTM_DEL*) */
  uint8_t family;      /* 4, 6, 7 (AF_BRIDGE) or 0 (links) */
  uint8_t prefix_len;  /* route */
  uint8_t protocol;    /* route */
  uint8_t type;        /* route: RTN_* */
  bool has_dst;        /* route dst / neighbour IP / FDB remote */
  bool has_gateway;    /* route */
  uint8_t lladdr_len;  /* neighbour, FDB, link */
  bool up;             /* link: IFF_UP */
  uint16_t state;      /* neighbour, FDB: NUD_* */
  uint8_t ndm_flags;   /* neighbour, FDB: NTF_* */
  int32_t ifindex;     /* link; route: RTA_OIF; neighbour, FDB: the device */
  uint32_t table;      /* route */
  uint8_t dst[16];     /* network order; family says how much */
  uint8_t dst_family;  /* 4 or 6: an FDB remote may differ from the entry's family */
  uint8_t gateway[16];
  uint8_t lladdr[32];
  char ifname[IFNAMSIZ]; /* link only: names of other devices come from link events */
};

/* Parses the netlink messages in buf into at most max records; returns how
 * many. Messages of other types, truncated or malformed ones are skipped:
 * every length is checked against the bytes that are really there. */
size_t nl_parse(const uint8_t *buf, size_t len, struct nl_event *out, size_t max);

#endif

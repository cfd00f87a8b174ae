/* Kernel change events from an rtnetlink socket: links, routes, neighbours
 * and FDB entries, parsed into flat records on a reader thread. No Node-API
 * here; netlink_napi.c turns batches of records into JS objects. */
#ifndef WEFT_NETLINK_H
#define WEFT_NETLINK_H
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

struct nl_monitor;

/* What the reader thread hands over: a batch of records (owned by the
 * callee, free with free()), plus flags. Called on the reader thread;
 * returns false when the consumer is closing (the thread then ends). */
struct nl_batch {
  struct nl_event *ev;
  size_t n;
  bool lost;     /* the socket overran (ENOBUFS): events were dropped */
  bool dump;     /* ev holds the link table (start, and after an overrun) */
  int error;     /* errno of a failure that ended the reader, else 0 */
  char message[160];
};
typedef bool (*nl_deliver_fn)(void *ctx, struct nl_batch *b);

/* Opens the sockets (inside /run/netns/<netns> when netns is non-empty) and
 * subscribes. rcvbuf 0 keeps the default (1 MiB). On failure returns a
 * negative errno and a one-line reason in err. */
int nl_monitor_open(const char *netns, int rcvbuf, struct nl_monitor **out, char *err, size_t errlen);
/* Starts the reader thread: it delivers the link table first, then events. */
int nl_monitor_start(struct nl_monitor *m, nl_deliver_fn deliver, void *ctx);
/* Wakes and joins the reader thread (the deliver function must no longer block). */
void nl_monitor_stop(struct nl_monitor *m);
void nl_monitor_free(struct nl_monitor *m);

#endif

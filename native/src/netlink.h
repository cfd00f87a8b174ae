/* Kernel change events from an rtnetlink socket: links, routes, neighbours
 * and FDB entries, read on a reader thread and parsed (netlink_parse.h) into
 * flat records. No Node-API here; netlink_napi.c turns batches of records
 * into JS objects. */
#ifndef WEFT_NETLINK_H
#define WEFT_NETLINK_H
#include "netlink_parse.h"
#include <stdbool.h>
#include <stddef.h>

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

/* rtnetlink events: socket setup (optionally in another network namespace),
 * a bounds-checked parser and the reader thread. */
#define _GNU_SOURCE
#include "netlink.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AF_BRIDGE
#define AF_BRIDGE 7
#endif

#define RECV_SIZE 65536
#define BATCH_MAX 512
#define DEFAULT_RCVBUF (1 << 20)

struct nl_monitor {
  int events_fd; /* subscribed to the multicast groups */
  int dump_fd;   /* link dumps: kept apart so replies never mix with events */
  int wake_fd;   /* eventfd: stop() wakes the reader */
  uint32_t seq;
  pthread_t thread;
  bool started;
  nl_deliver_fn deliver;
  void *ctx;
  uint8_t *rbuf;
};

/* ---------- parsing ---------- */

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

/* ---------- sockets ---------- */

static int open_socket(bool subscribe, int rcvbuf) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (subscribe) {
    int size = rcvbuf > 0 ? rcvbuf : DEFAULT_RCVBUF;
    /* FORCE lifts rmem_max for a privileged agent; the plain one is the fallback. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH;
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

struct opener {
  const char *netns;
  int rcvbuf;
  int events_fd, dump_fd;
  int error;
  char err[256];
};

/* Runs on a throwaway thread: setns affects only the calling thread, and a
 * socket stays in the namespace it was created in. */
static void *opener_main(void *arg) {
  struct opener *o = arg;
  if (o->netns[0]) {
    char path[300];
    snprintf(path, sizeof path, "/run/netns/%s", o->netns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      o->error = errno;
      if (errno == ENOENT)
        snprintf(o->err, sizeof o->err, "network namespace \"%.64s\" does not exist (no /run/netns/%.64s); create it (ip netns add) or fix the name", o->netns, o->netns);
      else
        snprintf(o->err, sizeof o->err, "cannot open /run/netns/%.64s: %s; run as root", o->netns, strerror(errno));
      return NULL;
    }
    int rc = setns(nsfd, CLONE_NEWNET);
    int e = errno;
    close(nsfd);
    if (rc < 0) {
      o->error = e;
      snprintf(o->err, sizeof o->err, "cannot enter network namespace \"%s\": %s; run as root (CAP_SYS_ADMIN)", o->netns, strerror(e));
      return NULL;
    }
  }
  o->events_fd = open_socket(true, o->rcvbuf);
  o->dump_fd = o->events_fd >= 0 ? open_socket(false, 0) : -1;
  if (o->events_fd < 0 || o->dump_fd < 0) {
    o->error = -(o->events_fd < 0 ? o->events_fd : o->dump_fd);
    snprintf(o->err, sizeof o->err, "cannot open a netlink socket: %s", strerror(o->error));
    if (o->events_fd >= 0) close(o->events_fd);
  }
  return NULL;
}

int nl_monitor_open(const char *netns, int rcvbuf, struct nl_monitor **out, char *err, size_t errlen) {
  struct opener o = {.netns = netns ? netns : "", .rcvbuf = rcvbuf, .events_fd = -1, .dump_fd = -1};
  if (strlen(o.netns) > 255 || strchr(o.netns, '/')) {
    snprintf(err, errlen, "network namespace name \"%.60s\" is not valid", o.netns);
    return -EINVAL;
  }
  pthread_t th;
  int rc = pthread_create(&th, NULL, opener_main, &o);
  if (rc) {
    snprintf(err, errlen, "cannot start a thread: %s", strerror(rc));
    return -rc;
  }
  pthread_join(th, NULL);
  if (o.error) {
    snprintf(err, errlen, "%s", o.err);
    return -o.error;
  }
  struct nl_monitor *m = calloc(1, sizeof *m);
  uint8_t *rbuf = malloc(RECV_SIZE);
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (!m || !rbuf || wake < 0) {
    free(m);
    free(rbuf);
    if (wake >= 0) close(wake);
    close(o.events_fd);
    close(o.dump_fd);
    snprintf(err, errlen, "out of memory or file descriptors");
    return -ENOMEM;
  }
  m->events_fd = o.events_fd;
  m->dump_fd = o.dump_fd;
  m->wake_fd = wake;
  m->rbuf = rbuf;
  *out = m;
  return 0;
}

/* ---------- reader thread ---------- */

static bool stopping(struct nl_monitor *m) {
  struct pollfd p = {.fd = m->wake_fd, .events = POLLIN};
  return poll(&p, 1, 0) > 0;
}

static bool deliver(struct nl_monitor *m, struct nl_batch *b) {
  if (stopping(m)) {
    free(b->ev);
    return false;
  }
  return m->deliver(m->ctx, b);
}

static bool fail(struct nl_monitor *m, int e, const char *what) {
  struct nl_batch b = {.error = e};
  snprintf(b.message, sizeof b.message, "%s: %s", what, strerror(e));
  deliver(m, &b);
  return false;
}

/* Dumps the link table on the dump socket and delivers it as one batch. */
static bool dump_links(struct nl_monitor *m, bool lost) {
  struct {
    struct nlmsghdr h;
    struct ifinfomsg i;
  } req = {
      .h = {.nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = ++m->seq},
      .i = {.ifi_family = AF_UNSPEC},
  };
  if (send(m->dump_fd, &req, sizeof req, 0) < 0) return fail(m, errno, "netlink link dump");
  size_t cap = 64, n = 0;
  struct nl_event *ev = malloc(cap * sizeof *ev);
  if (!ev) return fail(m, ENOMEM, "netlink link dump");
  for (bool done = false; !done;) {
    ssize_t r = recv(m->dump_fd, m->rbuf, RECV_SIZE, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      free(ev);
      return fail(m, errno, "netlink link dump");
    }
    size_t off = 0, len = (size_t)r;
    while (len - off >= sizeof(struct nlmsghdr)) {
      struct nlmsghdr h;
      memcpy(&h, m->rbuf + off, sizeof h);
      if (h.nlmsg_len < sizeof h || h.nlmsg_len > len - off) break;
      if (h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_ERROR) done = true;
      else if (h.nlmsg_seq == m->seq) {
        if (n == cap) {
          struct nl_event *bigger = realloc(ev, 2 * cap * sizeof *ev);
          if (!bigger) {
            free(ev);
            return fail(m, ENOMEM, "netlink link dump");
          }
          ev = bigger;
          cap *= 2;
        }
        n += nl_parse(m->rbuf + off, h.nlmsg_len, ev + n, 1);
      }
      off += NLMSG_ALIGN(h.nlmsg_len);
    }
  }
  struct nl_batch b = {.ev = ev, .n = n, .dump = true, .lost = lost};
  return deliver(m, &b);
}

static void *reader_main(void *arg) {
  struct nl_monitor *m = arg;
  if (!dump_links(m, false)) return NULL;
  struct pollfd p[2] = {{.fd = m->events_fd, .events = POLLIN}, {.fd = m->wake_fd, .events = POLLIN}};
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail(m, errno, "poll on the netlink socket");
      return NULL;
    }
    if (p[1].revents) return NULL;
    struct nl_event *ev = malloc(BATCH_MAX * sizeof *ev);
    if (!ev) {
      fail(m, ENOMEM, "netlink events");
      return NULL;
    }
    size_t n = 0;
    bool lost = false;
    /* Drain what is queued, up to one batch: one call into JS for many messages. */
    while (n < BATCH_MAX) {
      ssize_t r = recv(m->events_fd, m->rbuf, RECV_SIZE, MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == ENOBUFS) {
          lost = true;
          break;
        }
        free(ev);
        fail(m, errno, "reading the netlink socket");
        return NULL;
      }
      if (r == 0) break;
      /* A datagram holds at most RECV_SIZE / 16 messages; keep room for them. */
      size_t room = BATCH_MAX - n;
      n += nl_parse(m->rbuf, (size_t)r, ev + n, room);
      if (BATCH_MAX - n < 64) break;
    }
    if (n) {
      struct nl_batch b = {.ev = ev, .n = n};
      if (!deliver(m, &b)) return NULL;
    } else {
      free(ev);
    }
    /* After an overrun the names of links may have changed unseen: resend the table. */
    if (lost && !dump_links(m, true)) return NULL;
  }
}

int nl_monitor_start(struct nl_monitor *m, nl_deliver_fn fn, void *ctx) {
  if (m->started) return -EBUSY;
  m->deliver = fn;
  m->ctx = ctx;
  int rc = pthread_create(&m->thread, NULL, reader_main, m);
  if (rc) return -rc;
  m->started = true;
  return 0;
}

void nl_monitor_stop(struct nl_monitor *m) {
  if (!m->started) return;
  uint64_t one = 1;
  ssize_t w = write(m->wake_fd, &one, sizeof one);
  (void)w;
  pthread_join(m->thread, NULL);
  m->started = false;
}

void nl_monitor_free(struct nl_monitor *m) {
  if (!m) return;
  nl_monitor_stop(m);
  close(m->events_fd);
  close(m->dump_fd);
  close(m->wake_fd);
  free(m->rbuf);
  free(m);
}

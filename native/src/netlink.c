/* rtnetlink events: the sockets (optionally opened in another network
 * namespace), the link dump and the reader thread that hands parsed batches
 * over. The parsing itself is netlink_parse.c. */
#define _GNU_SOURCE
#include "netlink.h"
#include <errno.h>
#include <fcntl.h>
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

/* Registers NetlinkMonitor on the addon's exports. */
#ifndef WEFT_NETLINK_NAPI_H
#define WEFT_NETLINK_NAPI_H
#define NAPI_VERSION 8
#include <node_api.h>
#include <stddef.h>

struct nl_event;

napi_status netlink_register(napi_env env, napi_value exports);

/* Parsed events as the JS array NetlinkMonitor's callback receives. */
napi_value netlink_events_js(napi_env env, const struct nl_event *ev, size_t count);

#endif

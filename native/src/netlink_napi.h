/* Registers NetlinkMonitor and parseNetlink on the addon's exports. */
#ifndef WEFT_NETLINK_NAPI_H
#define WEFT_NETLINK_NAPI_H
#define NAPI_VERSION 8
#include <node_api.h>

napi_status netlink_register(napi_env env, napi_value exports);

#endif

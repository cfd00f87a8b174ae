/* Registers PeerSwapHarness (test binding only) on the exports. */
#ifndef WEFT_PEER_SWAP_HARNESS_H
#define WEFT_PEER_SWAP_HARNESS_H
#define NAPI_VERSION 8
#include <node_api.h>

napi_status peer_swap_harness_register(napi_env env, napi_value exports);

#endif

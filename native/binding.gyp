{
  "variables": {
    "core_sources": [
      "src/csum.c",
      "src/gso.c",
      "src/icmp.c",
      "src/loop.c",
      "src/loop_setup.c",
      "src/napi_values.c",
      "src/netlink.c",
      "src/netlink_napi.c",
      "src/netlink_parse.c",
      "src/packet.c",
      "src/peers.c"
    ]
  },
  "target_defaults": {
    "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-strict-aliasing"],
    "cflags!": ["-fno-exceptions"],
    "libraries": ["-lpthread"]
  },
  "targets": [
    {
      "target_name": "weft_udp",
      "sources": ["<@(core_sources)", "src/addon.c"]
    },
    {
      "target_name": "weft_udp_test",
      "sources": ["<@(core_sources)", "src/addon_test.c", "src/peer_swap_harness.c", "src/probe.c"]
    }
  ]
}

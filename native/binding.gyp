{
  "targets": [
    {
      "target_name": "weft_udp",
      "sources": [
        "src/addon.c",
        "src/csum.c",
        "src/gso.c",
        "src/icmp.c",
        "src/loop.c",
        "src/loop_setup.c",
        "src/netlink.c",
        "src/netlink_napi.c",
        "src/packet.c",
        "src/peers.c",
        "src/probe.c"
      ],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-strict-aliasing"],
      "cflags!": ["-fno-exceptions"],
      "libraries": ["-lpthread"]
    }
  ]
}

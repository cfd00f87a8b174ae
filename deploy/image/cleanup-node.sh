#!/bin/sh
# Removes what weft left on a node after its DaemonSet is deleted (run by
# deploy/uninstall in the host network namespace, node directories under
# /host). The agent itself keeps routes and devices when it stops, so pods
# survive agent restarts; this is the one place they are taken down.
# Only weft's own state is touched: routes with weft's protocol number,
# devices with weft's names, weft's nftables table, the files it installed.
set -u

HOST=${HOST_ROOT:-/host}
# src/dataplane/state.ts WEFT_ROUTE_PROTO; test/unit/deploy-image.test.ts keeps them equal.
WEFT_ROUTE_PROTO=147
CNI_BRIDGE=${CNI_BRIDGE:-cni0}

say() {
  echo "cleanup-node: $*"
}

# Files: the CNI config first, so no new pod is wired while the rest goes.
rm -f "$HOST/etc/cni/net.d/10-weft.conflist"
if [ -f "$HOST/opt/cni/bin/.weft-installed" ]; then
  while read -r p; do
    case "$p" in bridge | host-local | portmap | loopback) rm -f "$HOST/opt/cni/bin/$p" ;; esac
  done <"$HOST/opt/cni/bin/.weft-installed"
  rm -f "$HOST/opt/cni/bin/.weft-installed"
fi
# weft-* is the payloads and the weft-ipam plugin.
rm -rf "$HOST/opt/cni/bin/weft" "$HOST"/opt/cni/bin/weft-* "$HOST"/opt/cni/bin/.weft-*
# Contents only: in the cleanup pod these directories are mount points.
for d in "$HOST/run/weft" "$HOST/var/lib/cni/weft" "$HOST/var/lib/cni/weft-ipam"; do
  [ -d "$d" ] && find "$d" -mindepth 1 -delete
done
say "removed weft's CNI plugin, config and state files"

# Routes weft installed, and those BIRD installed for the bgp backend.
for family in -4 -6; do
  ip "$family" route flush proto "$WEFT_ROUTE_PROTO" 2>/dev/null
  ip "$family" route flush proto bird 2>/dev/null
done
say "flushed routes of protocol $WEFT_ROUTE_PROTO (weft) and bird"

# Devices: weft0 (udp), weft.<VNI> (vxlan), and the pods' bridge.
for dev in $(ip -o link show | sed -n 's/^[0-9]*: \([^:@]*\).*/\1/p'); do
  case "$dev" in
    weft0 | weft.[0-9]*) ip link del "$dev" && say "deleted device $dev" ;;
  esac
done
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  ip link del "$CNI_BRIDGE" && say "deleted bridge $CNI_BRIDGE"
fi

if nft list table inet weft >/dev/null 2>&1; then
  nft delete table inet weft && say "deleted nftables table inet weft"
fi
say "done"

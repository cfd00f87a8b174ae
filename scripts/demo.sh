#!/usr/bin/env bash
# The demo: 3 nodes x 2 pods in network namespaces, subnets leased from a real
# etcd, pods wired by the standard CNI plugins, connected by weft's host-gw
# backend (override: WEFT_BACKEND=vxlan npm run demo; WEFT_IP_FAMILY=dual for
# dual-stack pods). Prints the pod-to-pod matrix per address family, then
# removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
backend=${WEFT_BACKEND:-host-gw}
family=${WEFT_IP_FAMILY:-ipv4}
weft() { node dist/src/cli/main.js "$@"; }
trap 'weft lab down --name demo >/dev/null 2>&1 || true' EXIT
weft lab down --name demo >/dev/null 2>&1 || true
weft lab up --name demo --nodes 3 --pods 2 --backend "$backend" --ip-family "$family"
weft lab ping --name demo

#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for weft's demo and tests,
# then builds. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "weft setup: $1 needs root (network namespaces, routes, apt); rerun as root, e.g. with sudo" >&2
    exit 1
  fi
}

# command -> Debian package
declare -A PKG=(
  [ip]=iproute2 [etcd]=etcd-server [etcdctl]=etcd-client [ping]=iputils-ping
  [iperf3]=iperf3 [nft]=nftables [bird]=bird2 [birdc]=bird2 [tcpdump]=tcpdump
  [gobgpd]=gobgpd [gobgp]=gobgp [ethtool]=ethtool
)
missing=()
for cmd in "${!PKG[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG[$cmd]}")
done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
# node-gyp builds the udp backend's native addon during npm ci.
for cmd in make g++ python3; do command -v "$cmd" >/dev/null 2>&1 || missing+=(build-essential python3); done
if [ ${#missing[@]} -gt 0 ]; then
  need_root "installing $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
# Debian starts packaged daemons where systemd runs; weft starts its own.
for svc in etcd bird gobgpd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build

#!/usr/bin/env bash
# Assembles the runtime file tree of the weft image under OUT, from a checkout
# that is already built (npm ci && npm run build). The Containerfile runs this
# script and copies OUT into a slim Debian image; CI runs the same script (no
# container engine needed), so the recipe cannot rot unnoticed.
#
#   OUT/usr/local/bin/node          the Node.js running this script
#   OUT/usr/local/bin/weft          launcher for the CLI
#   OUT/opt/weft/                   package.json, dist/, production node_modules/, native addon
#   OUT/opt/weft/install-cni.sh     run by the DaemonSet's init container
#   OUT/opt/weft/cleanup-node.sh    run by deploy/uninstall
#   OUT/opt/weft/cni/weft           the CNI plugin launcher, installed as /opt/cni/bin/weft
#   OUT/opt/weft/cni/weft-ipam      weft's IPAM plugin launcher, installed beside it
#   OUT/opt/weft/cni/weft-<hash>/   what they run: node, the shared libraries node needs
#                                   (with their loader), and the plugins' own JS; the node
#                                   host needs nothing but /bin/sh, ip, nsenter and a kernel
#
# usage: deploy/image/build-rootfs.sh OUT
set -euo pipefail

fail() {
  echo "build-rootfs: $*" >&2
  exit 1
}

[ $# -eq 1 ] || fail "usage: deploy/image/build-rootfs.sh OUT"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
[ -z "$(ls -A "$OUT")" ] || fail "$OUT is not empty"
NODE=$(command -v node) || fail "node is not installed"
NODE=$(readlink -f "$NODE")

[ -f "$SRC/dist/src/cli/main.js" ] && [ -f "$SRC/dist/src/cni/main.js" ] && [ -f "$SRC/dist/src/cni/ipam-main.js" ] || fail "dist/ is missing; run npm ci && npm run build first"
ADDON=native/build/Release/weft_udp.node # the product's binding; weft_udp_test.node stays behind
if [ -f "$SRC/native/binding.gyp" ] && [ ! -f "$SRC/$ADDON" ]; then
  fail "the native addon is not built; run npm ci (or npx node-gyp rebuild -C native) first"
fi

APP="$OUT/opt/weft"
mkdir -p "$APP" "$OUT/usr/local/bin"

# The application: compiled JS, the native addon, production dependencies only.
cp "$SRC/package.json" "$SRC/package-lock.json" "$APP/"
cp -r "$SRC/dist" "$APP/"
find "$APP/dist" -name '*.map' -delete
if [ -f "$SRC/$ADDON" ]; then
  mkdir -p "$APP/native/build/Release"
  cp "$SRC/$ADDON" "$APP/native/build/Release/"
fi
# The addon is copied above, built already: no install scripts (and no compiler) here.
(cd "$APP" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error)

cp "$NODE" "$OUT/usr/local/bin/node"
cat >"$OUT/usr/local/bin/weft" <<'EOF'
#!/bin/sh
exec /usr/local/bin/node /opt/weft/dist/src/cli/main.js "$@"
EOF
chmod 755 "$OUT/usr/local/bin/weft"
install -m 755 "$SRC/deploy/image/install-cni.sh" "$SRC/deploy/image/cleanup-node.sh" "$APP/"

# The CNI plugin payload: node, its shared libraries with their loader (so the
# host's libc and libstdc++ do not matter), and the plugin's JS closure.
stage=$(mktemp -d "$OUT/.cni.XXXXXX")
mkdir -p "$stage/lib" "$stage/app"
ln "$OUT/usr/local/bin/node" "$stage/node" 2>/dev/null || cp "$NODE" "$stage/node"
loader=""
while read -r line; do
  case "$line" in
    *" => "/*) lib=${line#* => }; lib=${lib%% (*} ;;
    /*) lib=${line%% (*}; loader=$(basename "$lib") ;;
    *) continue ;;
  esac
  cp -L "$lib" "$stage/lib/"
done < <(ldd "$NODE")
[ -n "$loader" ] || fail "no dynamic loader found in ldd $NODE"
# Named weft, so the plugins find their package root (and in it weft-ipam's
# lock, which is in the native addon).
printf '{"name":"weft","version":"%s","type":"module"}\n' "$(node -p "require('$SRC/package.json').version")" >"$stage/app/package.json"
if [ -f "$SRC/$ADDON" ]; then
  mkdir -p "$stage/app/$(dirname "$ADDON")"
  cp "$SRC/$ADDON" "$stage/app/$ADDON"
fi
for entry in main.js ipam-main.js; do
  node "$SRC/deploy/image/js-closure.mjs" "$SRC" "dist/src/cni/$entry" "$stage/app" >/dev/null
done
hash=$(cd "$stage" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
mkdir -p "$APP/cni"
mv "$stage" "$APP/cni/weft-$hash"
chmod 755 "$APP/cni/weft-$hash"
# One launcher per plugin, both running the same payload.
for plugin in weft:main.js weft-ipam:ipam-main.js; do
  name=${plugin%%:*}
  cat >"$APP/cni/$name" <<EOF
#!/bin/sh
# weft CNI plugin launcher ($name, installed by weft's init container): runs
# the plugin with the Node.js and libraries shipped beside it in weft-$hash/.
case "\$0" in
  */*) dir=\${0%/*} ;;
  *) dir=\$(dirname "\$(command -v "\$0")") ;;
esac
d="\$dir/weft-$hash"
exec "\$d/lib/$loader" --library-path "\$d/lib" "\$d/node" "\$d/app/dist/src/cni/${plugin#*:}" "\$@"
EOF
  chmod 755 "$APP/cni/$name"
done
echo "build-rootfs: $OUT ready (CNI payload weft-$hash)"

#!/bin/sh
# Installs the weft CNI plugins (weft, weft-ipam) and network config on the
# node (run by the DaemonSet's init container, with the node's directories
# mounted under /host). Every file appears atomically (written aside, then
# renamed), so the container runtime never runs a half-copied plugin or reads
# a half-written conflist. Running it again changes nothing but the launchers.
set -eu

SRC=${WEFT_CNI_SRC:-/opt/weft/cni}
BIN=${CNI_BIN_DIR:-/host/opt/cni/bin}
CONF_DIR=${CNI_CONF_DIR:-/host/etc/cni/net.d}
CONF_SRC=${CNI_CONF_SRC:-/etc/weft/cni-conf.json}
CONF_NAME=${CNI_CONF_NAME:-10-weft.conflist}
# Standard plugins weft delegates to, copied only where the node has none.
STD_SRC=${CNI_STD_PLUGINS:-/usr/lib/cni}
STD_PLUGINS="bridge host-local portmap loopback"

fail() {
  echo "install-cni: $*" >&2
  exit 1
}

payload=""
for d in "$SRC"/weft-*; do
  [ -d "$d" ] || continue
  [ -z "$payload" ] || fail "more than one plugin payload in $SRC"
  payload=${d##*/}
done
[ -n "$payload" ] || fail "no plugin payload (weft-<hash>/) in $SRC"
[ -f "$CONF_SRC" ] || fail "$CONF_SRC does not exist; is the weft-config ConfigMap mounted?"
mkdir -p "$BIN" "$CONF_DIR"

# 1. The payload, under a name unique to its content: a new one never
#    disturbs a plugin call running from the old one.
if [ ! -e "$BIN/$payload/.complete" ]; then
  tmp="$BIN/.$payload.tmp.$$"
  rm -rf "$tmp"
  cp -R "$SRC/$payload" "$tmp"
  touch "$tmp/.complete"
  rm -rf "${BIN:?}/$payload"
  mv "$tmp" "$BIN/$payload"
  echo "install-cni: installed $BIN/$payload"
fi

# 2. The launchers, each switched over in one rename: weft-ipam first, so the
#    weft plugin that runs it is never there without it.
for p in weft-ipam weft; do
  cp "$SRC/$p" "$BIN/.$p.tmp.$$"
  chmod 755 "$BIN/.$p.tmp.$$"
  mv -f "$BIN/.$p.tmp.$$" "$BIN/$p"
done

# 3. Older payloads are no longer referenced.
for d in "$BIN"/weft-*; do
  [ -d "$d" ] && [ "${d##*/}" != "$payload" ] || continue
  rm -rf "$d"
  echo "install-cni: removed old $d"
done

# 4. Standard plugins the node lacks; recorded so uninstall removes only these.
for p in $STD_PLUGINS; do
  [ ! -e "$BIN/$p" ] && [ -x "$STD_SRC/$p" ] || continue
  cp "$STD_SRC/$p" "$BIN/.$p.tmp.$$"
  chmod 755 "$BIN/.$p.tmp.$$"
  mv -f "$BIN/.$p.tmp.$$" "$BIN/$p"
  echo "$p" >>"$BIN/.weft-installed"
  echo "install-cni: installed the standard $p plugin"
done

# 5. The network config, last: the runtime starts using weft when it appears.
cp "$CONF_SRC" "$CONF_DIR/.$CONF_NAME.tmp.$$"
chmod 644 "$CONF_DIR/.$CONF_NAME.tmp.$$"
mv -f "$CONF_DIR/.$CONF_NAME.tmp.$$" "$CONF_DIR/$CONF_NAME"
echo "install-cni: $CONF_DIR/$CONF_NAME in place"

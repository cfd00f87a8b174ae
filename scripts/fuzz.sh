#!/usr/bin/env bash
# Fuzzes the udp backend's packet paths and the netlink parser (native/fuzz/): builds each libFuzzer
# harness with clang, ASan and UBSan against the addon's own C sources,
# replays its corpus (hand-made seeds and every past finding), then fuzzes
# it for a bounded time. Prints executions per harness; exits non-zero on
# any finding, keeping the input under native/build/fuzz/artifacts/.
#   WEFT_FUZZ_SECONDS  fuzzing time per harness (default 8)
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${WEFT_FUZZ_SECONDS:-8}
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
  echo "weft fuzz: clang is missing (scripts/setup.sh installs it)" >&2
  exit 1
fi
harnesses=(decap tun coalesce icmp netlink)
out=native/build/fuzz
mkdir -p "$out/obj" "$out/artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

common=(-g -O1 -std=gnu11 -fno-strict-aliasing -fsanitize=address,undefined -fno-sanitize-recover=all
  -Wall -Wextra -Wno-unused-parameter -Inative/src)
objs=()
# The addon's C sources without its Node-API files; probe.c is the harnesses' way into the loop.
# Of the netlink code only the parser: the harness never opens a socket.
for src in native/src/csum.c native/src/gso.c native/src/icmp.c native/src/loop.c native/src/loop_setup.c \
    native/src/netlink_parse.c native/src/packet.c native/src/peers.c native/src/probe.c; do
  obj="$out/obj/$(basename "$src" .c).o"
  "$cc" "${common[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" || exit 1
  objs+=("$obj")
done
for h in "${harnesses[@]}"; do
  "$cc" "${common[@]}" -fsanitize=fuzzer "native/fuzz/fuzz_$h.c" "${objs[@]}" -lpthread -o "$out/fuzz_$h" || exit 1
done

rc=0
summary=()
for h in "${harnesses[@]}"; do
  dirs=()
  for d in "native/fuzz/corpus/$h" "native/fuzz/regressions/$h"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  log="$work/$h.log"
  # Replay: every seed and past finding once.
  if ! "$out/fuzz_$h" -runs=0 -artifact_prefix="$out/artifacts/$h-" "${dirs[@]}" >"$log" 2>&1; then
    echo "weft fuzz: $h: a corpus input fails (see below)" >&2
    tail -n 40 "$log" >&2
    rc=1
    summary+=("$h: replay FAILED")
    continue
  fi
  # Fuzz: new inputs go to a temp dir, so the tree stays as it was.
  mkdir -p "$work/new-$h"
  if ! "$out/fuzz_$h" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$out/artifacts/$h-" "$work/new-$h" "${dirs[@]}" >"$log" 2>&1; then
    echo "weft fuzz: $h: FINDING (input kept in $out/artifacts/)" >&2
    tail -n 40 "$log" >&2
    rc=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  summary+=("$h: ${execs:-?} executions in ${seconds}s")
done
for line in "${summary[@]}"; do echo "weft fuzz: $line"; done
exit $rc

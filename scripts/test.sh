#!/usr/bin/env bash
# Runs every test: a type check of the tests, unit tests (no privileges), a
# bounded fuzzing run of the udp loop's packet paths (scripts/fuzz.sh) and the
# end-to-end suite (network namespaces, real etcd/BIRD, root). Installs what
# is missing first.
# The e2e suite is never skipped silently: without root it fails, saying why.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
if [ "$(id -u)" -ne 0 ]; then
  echo "weft test: the end-to-end suite needs root (network namespaces); rerun as root" >&2
  exit 1
fi
node dist/src/cli/main.js lab down --all >/dev/null 2>&1 || true
rc=0
# The tests are type-checked with the code they test.
npx tsc -p tsconfig.test.json || { echo "weft test: type errors (npx tsc -p tsconfig.test.json)" >&2; rc=1; }
# The unit test files in two processes, not one each (test/support/unit-shard.ts).
npx tap test/suites || rc=1
bash scripts/fuzz.sh || rc=1
npx tap --jobs=1 test/e2e || rc=1
node dist/src/cli/main.js lab down --all >/dev/null 2>&1 || true
exit $rc

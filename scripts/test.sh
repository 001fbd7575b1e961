#!/usr/bin/env bash
# Runs the whole test suite twice: a plain Release build, then a build with
# AddressSanitizer + UndefinedBehaviorSanitizer (-fno-sanitize-recover=all).
# Tests that need the real data read it from ../shared/data/goodbooks-10k
# (or -DBR_DATA_DIR=...); they skip themselves when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
status=0
for variant in release sanitize; do
  dir="build-test-$variant"
  flags=(-DBOOKREC_BUILD_TESTS=ON -DBOOKREC_BUILD_BENCH=ON)
  if [ "$variant" = sanitize ]; then
    flags+=(-DBOOKREC_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  else
    flags+=(-DCMAKE_BUILD_TYPE=Release)
  fi
  echo "== $variant build ($dir)"
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "== $variant tests"
  if ! (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 600); then
    status=1
  fi
done
exit $status

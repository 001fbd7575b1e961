#!/usr/bin/env bash
# Runs the whole test suite twice: a plain Release build, then a build with
# AddressSanitizer + UndefinedBehaviorSanitizer (-fno-sanitize-recover=all);
# then the server's tests (test_server, test_server_abuse) a third time under
# ThreadSanitizer (clang; BR_TEST_TSAN=0 skips this stage).
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

# ThreadSanitizer: only the server tests, which run no OpenMP region (libgomp
# and libomp are not instrumented); tests/tsan.supp holds only the trainer's
# documented Hogwild kernels. clang, because GCC's TSan runtime crashes in the
# target_clones resolvers of br_recommend.c and br_mlp.c (they run before it
# is initialised). TSan slows the server 5-20x, so /healthz gets 3 s here; its
# 100 ms is checked by the two stages above.
if [ "${BR_TEST_TSAN:-1}" != 0 ]; then
  dir=build-test-tsan
  echo "== tsan build ($dir, server tests only)"
  if ! command -v clang >/dev/null; then
    echo "test.sh: clang not found (scripts/install-deps.sh installs it)" >&2
    status=1
  else
    cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
      -DBOOKREC_BUILD_TESTS=ON -DBOOKREC_BUILD_BENCH=OFF -DBOOKREC_BUILD_VIZ=OFF >/dev/null
    cmake --build "$dir" -j"$jobs" --target test_server test_server_abuse bookrec-infer bookrec-infer-server
    echo "== tsan tests"
    if ! (cd "$dir" && TSAN_OPTIONS="suppressions=$PWD/../tests/tsan.supp halt_on_error=1" \
          BR_ABUSE_HEALTHZ_MS=3000 ctest --output-on-failure -R '^test_server' --timeout 600); then
      status=1
    fi
  fi
fi
exit $status

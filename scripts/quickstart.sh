#!/usr/bin/env bash
# The quick start: installs the dependencies, builds bookrec, trains a model
# on goodbooks-10k (found as README.md says) and recommends five books for
# user 1. Extra arguments go to bookrec-train (e.g. --data DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBOOKREC_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"
./build/bookrec-train -j "$(nproc 2>/dev/null || echo 2)" -o build/bookrec.model "$@"
./build/bookrec-infer -m build/bookrec.model --user 1 --top 5

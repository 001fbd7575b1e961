#!/usr/bin/env bash
# One command that measures bookrec on this machine and writes the table of
# results to bench/RESULTS.md (machine, compiler and commit at the top).
#
#   bash bench/run.sh [--quick]
#
# Builds Release into build-bench/, then runs each benchmark on the real data
# (found as the programs find it): loading, training throughput (SGD/Adam/BPR
# at dims 8/32/64, 1 and 2 threads), training end to end (time, peak RSS,
# test figures), per-query inference (AVX2 against scalar + full sort), the
# whole process against a map-only floor (hyperfine), all readers in batch,
# the HTTP server (wrk; skipped when wrk is missing or with --quick), PCA and
# t-SNE. About 5 minutes on 2 cores (2 more with the server). Benchmarks are
# not tests: nothing here fails on a slow figure.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = --quick ] && quick=1
b=build-bench
out=bench/RESULTS.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jobs=$(nproc 2>/dev/null || echo 2)

echo "bench: building Release in $b" >&2
cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release -DBOOKREC_BUILD_TESTS=OFF >/dev/null
cmake --build "$b" -j"$jobs" >/dev/null

section() { printf '\n## %s\n\n' "$1"; }
code() { printf '```\n'; cat; printf '```\n'; }
# rss_time CMD...: wall seconds and peak RSS (MB) of a command, via GNU time.
rss_time() {
    /usr/bin/time -f '%e %M' -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || {
        cat "$tmp/err" >&2
        return 1
    }
    read -r wall kb <"$tmp/time"
    echo "$wall $((kb / 1024))"
}
metric() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

{
    echo "# bookrec benchmark results"
    echo
    echo "Written by \`bash bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPU | $(lscpu | sed -n 's/^Model name: *//p' | head -1) |"
    echo "| cores | $jobs |"
    echo "| memory | $(free -g | awk '/^Mem:/ {print $2}') GiB |"
    echo "| compiler | $(cc --version | head -1) |"
    echo "| kernels | $(grep -qw avx2 /proc/cpuinfo && echo 'AVX2+FMA (run-time choice)' || echo scalar) |"
    echo
    echo "The machine may be shared: compare ratios measured in one run."

    echo "bench: loading" >&2
    section "Loading the ratings (bench-load)"
    "$b/bench-load" 2>&1 | code

    echo "bench: training throughput" >&2
    section "Training throughput (bench-train)"
    "$b/bench-train" --dims 8,32,64 --epochs 5 2>&1

    echo "bench: training end to end" >&2
    section "Training end to end, -j 2"
    echo "| model | wall s | peak RSS MB | test RMSE | Recall@10 | NDCG@10 | HR@10 | MAP@10 | coverage |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for cfg in "bpr (default)|" "biased mse|--loss mse" "popularity baseline|"; do
        name=${cfg%%|*}
        args=${cfg#*|}
        [ "$name" = "popularity baseline" ] && continue
        # shellcheck disable=SC2086
        read -r wall mb < <(rss_time "$b/bookrec-train" -j 2 -q $args -o "$tmp/m.model" --metrics "$tmp/m.json")
        key=model
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$wall" "$mb" \
            "$(metric "$tmp/m.json" "d['test_rmse'] if d['test_rmse'] is not None else ''")" \
            "$(metric "$tmp/m.json" "round(d['ranking']['$key']['recall'],4)")" \
            "$(metric "$tmp/m.json" "round(d['ranking']['$key']['ndcg'],4)")" \
            "$(metric "$tmp/m.json" "round(d['ranking']['$key']['hr'],4)")" \
            "$(metric "$tmp/m.json" "round(d['ranking']['$key']['map'],4)")" \
            "$(metric "$tmp/m.json" "round(d['ranking']['$key']['coverage'],4)")"
        cp "$tmp/m.json" "$tmp/last.json"
        [ "$name" = "bpr (default)" ] && cp "$tmp/m.model" "$tmp/bpr.model"
    done
    printf '| popularity baseline | | | | %s | %s | %s | %s | %s |\n' \
        "$(metric "$tmp/last.json" "round(d['ranking']['popularity']['recall'],4)")" \
        "$(metric "$tmp/last.json" "round(d['ranking']['popularity']['ndcg'],4)")" \
        "$(metric "$tmp/last.json" "round(d['ranking']['popularity']['hr'],4)")" \
        "$(metric "$tmp/last.json" "round(d['ranking']['popularity']['map'],4)")" \
        "$(metric "$tmp/last.json" "round(d['ranking']['popularity']['coverage'],4)")"
    # the last model trained (biased mse, dim 32) serves the inference figures
    model=$tmp/m.model

    echo "bench: inference" >&2
    section "One query in process (bench-infer)"
    "$b/bench-infer" 2>&1 | code

    section "Whole process: bookrec-infer --user 1 --top 5 against a map-only floor"
    if command -v hyperfine >/dev/null; then
        hyperfine -N --warmup 20 --runs 200 --export-markdown "$tmp/hf.md" \
            "$b/bookrec-infer -m $model --user 1 --top 5" "$b/mapfloor $model" >/dev/null 2>&1
        sed "s|$tmp/||g" "$tmp/hf.md"
    else
        echo "(hyperfine not installed: apt-get install hyperfine)"
    fi

    section "All readers, top 10, -j 2"
    read -r wall mb < <(rss_time "$b/bookrec-infer" -m "$model" --users all --top 10 -j 2)
    echo "$wall s wall, $mb MB peak RSS"

    if [ "$quick" -eq 0 ] && command -v wrk >/dev/null; then
        echo "bench: server" >&2
        section "HTTP server (bench/bench_server.sh)"
        bash bench/bench_server.sh -b "$b" -m "$model" -j 2 2>&1 | code
    fi

    echo "bench: viz" >&2
    section "PCA and t-SNE of the book vectors (bench-viz)"
    echo "The default (BPR, 64 dims) model's books, then the MSE model's (32 dims):"
    echo "its weakly structured vectors make t-SNE slower."
    echo
    "$b/bench-viz" -m "$tmp/bpr.model" -j 2 2>&1 | code
    echo
    "$b/bench-viz" -m "$model" -j 2 --no-trust 2>&1 | code
} >"$tmp/RESULTS.md"
mv "$tmp/RESULTS.md" "$out"
echo "bench: wrote $out" >&2

#!/usr/bin/env bash
# One command that measures bookrec on this machine and writes the table of
# results to bench/RESULTS.md (machine, compiler and commit at the top).
#
#   bash bench/run.sh [--quick]
#
# Builds Release into build-bench/, then runs each benchmark on the real data
# (found as the programs find it): loading, training throughput (SGD/Adam/BPR
# at dims 8/32/64, 1 and 2 threads), training end to end for each model and
# loss (time, peak RSS, test figures), per-query inference (AVX2 and scalar
# kernels, against scalar + full sort), the whole process against a map-only
# floor (hyperfine), all readers in batch, the HTTP server (wrk, with a 30 s
# reload run unless RELOAD_SECS says otherwise; skipped when wrk is missing or
# with --quick), PCA and t-SNE, the peak RSS of each
# program, and the scale study on generated data (bench/scale.sh, which also
# draws bench/scale.png; skipped with --quick). About 9 minutes on 2 cores
# (4 with --quick). Needs jq; hyperfine and wrk are optional. Benchmarks are
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

# progress on stderr, with the time since the start
say() { printf 'bench: %s (%d:%02d)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)) >&2; }
command -v jq >/dev/null || { echo "bench: jq is needed (apt-get install jq)" >&2; exit 1; }

say "building Release in $b"
cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release -DBOOKREC_BUILD_TESTS=OFF >/dev/null
cmake --build "$b" -j"$jobs" >/dev/null

section() { printf '\n## %s\n\n' "$1"; }
code() { printf '```\n'; cat; printf '```\n'; }
# rss_time CMD...: wall seconds and peak RSS (MB) of a command, measured by
# bench/peakrss.c (wait4's ru_maxrss; GNU time is not on every machine).
rss_time() {
    "$b/peakrss" -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || {
        cat "$tmp/err"
        return 1
    }
    read -r wall kb <"$tmp/time"
    echo "$wall $((kb / 1024))"
}
# metric FILE JQ: one figure from a --metrics JSON, rounded to 4 decimals
metric() { jq -r "$2 | if . == null then \"\" else (. * 10000 | round / 10000) end" "$1"; }
rss_row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" >>"$tmp/rss.md"; }
printf '| program and run | wall s | peak RSS MB |\n|---|---:|---:|\n' >"$tmp/rss.md"

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

    say "loading"
    section "Loading the ratings (bench-load)"
    "$b/bench-load" 2>&1 | code

    say "training throughput"
    section "Training throughput (bench-train)"
    "$b/bench-train" --dims 8,32,64 --epochs 5 2>&1

    say "training end to end"
    section "Training end to end, -j 2, each model and loss"
    echo "Default options of each (\`bookrec-train -j 2 MODEL OPTIONS\`), 80/20 split, seed 42; ranking"
    echo "figures @10. AutoRec (\`--model autorec\`, 1 to 3 minutes) is left out to keep the run short."
    echo
    echo "| model | options | wall s | peak RSS MB | test RMSE | Recall@10 | NDCG@10 | HR@10 | MAP@10 | coverage |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for cfg in "biased, bpr (default)|" "biased, mse|--loss mse" "biased, mse, adam|--loss mse --optim adam" \
        "dot, mse (the seed's model)|--model dot --loss mse"; do
        name=${cfg%%|*}
        args=${cfg#*|}
        # shellcheck disable=SC2086
        read -r wall mb < <(rss_time "$b/bookrec-train" -j 2 -q $args -o "$tmp/m.model" --metrics "$tmp/m.json")
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "${args:+\`$args\`}" "$wall" "$mb" \
            "$(metric "$tmp/m.json" .test_rmse)" \
            "$(metric "$tmp/m.json" .ranking.model.recall)" \
            "$(metric "$tmp/m.json" .ranking.model.ndcg)" \
            "$(metric "$tmp/m.json" .ranking.model.hr)" \
            "$(metric "$tmp/m.json" .ranking.model.map)" \
            "$(metric "$tmp/m.json" .ranking.model.coverage)"
        rss_row "\`bookrec-train -j 2${args:+ $args}\`" "$wall" "$mb"
        cp "$tmp/m.json" "$tmp/last.json"
        [ "$name" = "biased, bpr (default)" ] && cp "$tmp/m.model" "$tmp/bpr.model"
        [ "$name" = "biased, mse" ] && cp "$tmp/m.model" "$tmp/mse.model"
    done
    printf '| popularity baseline | | | | | %s | %s | %s | %s | %s |\n' \
        "$(metric "$tmp/last.json" .ranking.popularity.recall)" \
        "$(metric "$tmp/last.json" .ranking.popularity.ndcg)" \
        "$(metric "$tmp/last.json" .ranking.popularity.hr)" \
        "$(metric "$tmp/last.json" .ranking.popularity.map)" \
        "$(metric "$tmp/last.json" .ranking.popularity.coverage)"
    # the default model (biased BPR, dim 64: what `bookrec-train` writes)
    # serves the whole-process and batch inference figures
    model=$tmp/bpr.model

    say "inference"
    section "One query in process (bench-infer)"
    "$b/bench-infer" 2>&1 | code
    echo
    echo "The library's path with the scalar kernels forced (\`BOOKREC_KERNEL=scalar bench-infer --user-only\`):"
    echo
    BOOKREC_KERNEL=scalar "$b/bench-infer" --user-only --check 100 --queries 2000 2>&1 | code

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
    rss_row "\`bookrec-infer --users all --top 10 -j 2\`" "$wall" "$mb"
    read -r wall mb < <(rss_time "$b/bookrec-infer" -m "$model" --user 1 --top 5)
    rss_row "\`bookrec-infer --user 1 --top 5\` (one run)" "$wall" "$mb"

    if [ "$quick" -eq 0 ] && command -v wrk >/dev/null; then
        say "server"
        section "HTTP server (bench/bench_server.sh)"
        RELOAD_SECS=${RELOAD_SECS:-30} bash bench/bench_server.sh -b "$b" -m "$model" -j 2 2>&1 | tee "$tmp/server.txt" | code
        hwm=$(sed -n 's/.*peak RSS of the server over every run: \([0-9]*\) kB/\1/p' "$tmp/server.txt")
        [ -n "$hwm" ] && rss_row "\`bookrec-infer --serve -j 2\` (bench_server.sh, VmHWM)" "" "$((hwm / 1024))"
    fi

    say "viz"
    section "PCA and t-SNE of the book vectors (bench-viz)"
    echo "The default (BPR, 64 dims) model's books, then the MSE model's (256 dims):"
    echo "its weakly structured vectors make t-SNE slower."
    echo
    "$b/bench-viz" -m "$tmp/bpr.model" -j 2 2>&1 | code
    echo
    "$b/bench-viz" -m "$tmp/mse.model" -j 2 --no-trust 2>&1 | code
    read -r wall mb < <(rss_time "$b/bookrec-viz" -m "$tmp/bpr.model" -j 2 -q --png "$tmp/map.png")
    rss_row "\`bookrec-viz -j 2 --png FILE\` (t-SNE, default model)" "$wall" "$mb"
    read -r wall mb < <(rss_time "$b/bookrec-gen" -q --users 53424 --books 10000 --ratings 6M -o "$tmp/gen.csv")
    rm -f "$tmp/gen.csv"
    rss_row "\`bookrec-gen --ratings 6M\` (53,424 readers, 10,000 books)" "$wall" "$mb"

    section "Peak memory of each program"
    echo "Resident set high-water mark (\`bench/peakrss.c\`: wait4's ru_maxrss), on the real data."
    echo
    cat "$tmp/rss.md"

    if [ "$quick" -eq 0 ]; then
        say "scale study"
        section "Scale study on generated data (bench/scale.sh)"
        echo "\`bookrec-gen\` ratings with a planted rank-8 structure, readers in goodbooks-10k's"
        echo "proportion (18.4 ratings each); \`bookrec-train --loss mse --holdout 0 --epochs 2 -j 2\`"
        echo "(biased MF, SGD, dim 32; the default BPR model costs about 30 times more per rating);"
        echo "s / epoch is the mean of the 2 epochs (\`train_seconds / epochs_run\` of --metrics),"
        echo "the first epoch being the slower; one query is \`bench-infer -m MODEL --user-only\`"
        echo "(top 10, AVX2, in process); the whole \`bookrec-infer --user 1\` is the median of 5 runs."
        echo
        bash bench/scale.sh -b "$b" --png bench/scale.png
        echo
        echo "![time per epoch, peak memory and query latency against ratings](scale.png)"
    fi
} >"$tmp/RESULTS.md"
mv "$tmp/RESULTS.md" "$out"
say "wrote $out"

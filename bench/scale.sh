#!/usr/bin/env bash
# The scale study: generated ratings (bookrec-gen) at several sizes and
# catalogue sizes; for each, load time, time per training epoch, peak memory
# of training, model size, and one query's latency (in process and as a
# whole bookrec-infer run). Prints a Markdown section, writes the table as
# TSV beside the data and draws the figure with the viz library's charts.
#
#   bash bench/scale.sh [-b BUILD] [--ratings "1M 6M 30M"] [--books "10000 100000"]
#                       [--epochs N] [--png FILE]
#
# BUILD (default build-bench) must hold a Release build with the benchmarks.
# The generated CSVs are cached in BUILD/scale/ (regenerated when
# bookrec-gen changes); models are deleted after use. Readers grow with the
# ratings at goodbooks-10k's 18.4 ratings per reader. The model trained is
# the biased MSE one (SGD, dim 32), -j 2, with no held-out split, so no
# evaluation runs between epochs: the default BPR model is about 30 times
# slower per rating and would not fit the benchmark's time at 30M ratings.
set -euo pipefail
cd "$(dirname "$0")/.."
b=build-bench
sizes="1M 6M 30M"
catalogues="10000 100000"
epochs=2
png=bench/scale.png
while [ $# -gt 0 ]; do
    case "$1" in
    -b) b=$2; shift 2 ;;
    --ratings) sizes=$2; shift 2 ;;
    --books) catalogues=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --png) png=$2; shift 2 ;;
    *) echo "usage: bash bench/scale.sh [-b BUILD] [--ratings LIST] [--books LIST] [--epochs N] [--png FILE]" >&2; exit 2 ;;
    esac
done
for p in bookrec-gen bookrec-train bookrec-infer bench-infer peakrss scale-chart; do
    [ -x "$b/$p" ] || { echo "scale.sh: error: $b/$p not built (cmake --build $b)" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "scale.sh: error: jq is needed (apt-get install jq)" >&2; exit 1; }
dir=$b/scale
mkdir -p "$dir"
tsv=$dir/scale.tsv
log=$dir/last.log
stamp=$(cksum <"$b/bookrec-gen" | cut -d' ' -f1)

count() {   # 30M -> 30000000
    local n=${1%[kMG]}
    case "$1" in
    *k) echo $((n * 1000)) ;; *M) echo $((n * 1000000)) ;; *G) echo $((n * 1000000000)) ;;
    *) echo "$1" ;;
    esac
}
# median of the numbers on stdin
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

printf 'ratings\tbooks\treaders\tcsv_mb\tload_s\tepoch_s\tfirst_mps\tlast_mps\ttrain_rss_mb\tmodel_mb\tp50_us\tp99_us\tprocess_ms\tprocess_rss_mb\n' >"$tsv"
echo "| ratings | books | readers | CSV MB | load s | s / epoch | M ratings/s, epoch 1 / $epochs | training peak RSS MB | model MB | query p50 us | p99 us | whole \`--user 1\` ms | its peak RSS MB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for books in $catalogues; do
    for size in $sizes; do
        n=$(count "$size")
        users=$((n * 10 / 184))
        csv=$dir/r${size}_${books}.csv
        if [ ! -f "$csv" ] || [ "$(cat "$csv.stamp" 2>/dev/null)" != "$stamp" ]; then
            echo "scale: generating $size ratings, $books books, $users readers" >&2
            rm -f "$csv.stamp"
            "$b/bookrec-gen" -q --users "$users" --books "$books" --ratings "$n" -o "$csv"
            echo "$stamp" >"$csv.stamp"
        fi
        echo "scale: training on $size ratings x $books books" >&2
        model=$dir/m.model
        "$b/peakrss" -o "$dir/rss" "$b/bookrec-train" --ratings "$csv" --holdout 0 --loss mse \
            --dim 32 --reg 0.06 --reg-exp 0 --lr 0.02 --epochs "$epochs" -j 2 -o "$model" --metrics "$dir/m.json" >"$log" 2>&1 || {
            cat "$log" >&2
            exit 1
        }
        read -r _ train_kb <"$dir/rss"
        load_s=$(sed -n 's/^loaded .* in \([0-9.]*\) s$/\1/p' "$log")
        epoch_s=$(jq '.train_seconds / .epochs_run' "$dir/m.json")
        mps=$(sed -n 's|^epoch *[0-9]*/[0-9]* .* \([0-9.]*\) M ratings/s.*|\1|p' "$log")
        first_mps=$(echo "$mps" | head -1)
        last_mps=$(echo "$mps" | tail -1)
        echo "scale: one query" >&2
        "$b/bench-infer" -m "$model" --user-only --check 100 --queries 5000 >"$log" 2>&1 || {
            cat "$log" >&2
            exit 1
        }
        read -r p50 p99 < <(sed -n 's/.*br_rec_user (pre-scan + exact) *//p' "$log" | awk '{print $1, $2}')
        for i in 1 2 3 4 5; do
            "$b/peakrss" -o "$dir/rss.$i" "$b/bookrec-infer" -m "$model" --user 1 --top 10 >/dev/null
        done
        proc_ms=$(for i in 1 2 3 4 5; do awk '{print $1 * 1000}' "$dir/rss.$i"; done | median)
        proc_kb=$(for i in 1 2 3 4 5; do awk '{print $2}' "$dir/rss.$i"; done | median)
        csv_mb=$(($(stat -c %s "$csv") / 1000000))
        model_mb=$(($(stat -c %s "$model") / 1000000))
        rm -f "$model" "$dir"/rss*
        printf '%s\t%s\t%s\t%s\t%s\t%.4f\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\n' "$n" "$books" "$users" \
            "$csv_mb" "$load_s" "$epoch_s" "$first_mps" "$last_mps" $((train_kb / 1024)) "$model_mb" \
            "$p50" "$p99" "$proc_ms" $((proc_kb / 1024)) >>"$tsv"
        printf '| %s | %s | %s | %s | %s | %.3f | %s / %s | %s | %s | %s | %s | %.1f | %s |\n' "$size" "$books" "$users" \
            "$csv_mb" "$load_s" "$epoch_s" "$first_mps" "$last_mps" $((train_kb / 1024)) "$model_mb" \
            "$p50" "$p99" "$proc_ms" $((proc_kb / 1024))
    done
done
"$b/scale-chart" "$tsv" "$png"
echo "scale: wrote $tsv and $png" >&2

#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, -DBOOKREC_FUZZ=ON, clang, ASan +
# UBSan) in build-fuzz/ and runs each for SECONDS seconds (default 30).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     # e.g. scripts/fuzz.sh 600 fuzz_model
#
# Each target starts from its committed seeds (tests/fuzz/corpus/<target>/,
# plus the known-bad files of tests/bad/ for the parsers they belong to),
# copied into a temporary folder: new inputs libFuzzer finds go there, never
# into the source tree. Set BR_FUZZ_KEEP=DIR to keep the grown corpora and
# logs in DIR instead. Fails (exit 1) on any crash, leak, sanitizer report or
# timeout; the reproducer (crash-*, leak-*, timeout-*) is copied to
# build-fuzz/findings/. The final libFuzzer statistics (executions, cov:,
# ft:, corpus size) are printed per target. Replay one input with
#   build-fuzz/fuzz_model FILE
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
all=(fuzz_ratings fuzz_ratings_skip fuzz_books fuzz_tags fuzz_model fuzz_server_query fuzz_server_body)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
case $secs in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a number, got '$secs'" >&2; exit 2 ;; esac

cc=${BR_FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null; then
    echo "fuzz.sh: $cc not found (scripts/install-deps.sh installs clang)" >&2
    exit 1
fi
jobs=$(nproc 2>/dev/null || echo 2)
dir=build-fuzz
echo "== fuzz build ($dir, $cc)"
cmake -S . -B "$dir" -DBOOKREC_FUZZ=ON -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBOOKREC_BUILD_TESTS=OFF -DBOOKREC_BUILD_BENCH=OFF -DBOOKREC_BUILD_VIZ=OFF >/dev/null
cmake --build "$dir" -j"$jobs" --target "${targets[@]}"

if [ -n "${BR_FUZZ_KEEP:-}" ]; then
    work=$BR_FUZZ_KEEP
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/bookrec-fuzz.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$dir/findings"

# Extra seeds from tests/bad/ for each target.
bad_seeds() {
    case $1 in
    fuzz_ratings | fuzz_ratings_skip) ls tests/bad/ratings_*.csv 2>/dev/null ;;
    fuzz_model) ls tests/bad/model_*.bin 2>/dev/null ;;
    fuzz_books) ls tests/bad/books_*.csv 2>/dev/null ;;
    fuzz_tags) ls tests/bad/book_tags_*.csv tests/bad/tags_*.csv 2>/dev/null ;;
    esac
    return 0
}

status=0
passed=0
failed=0
printf '\n%-18s %10s %8s %8s %8s %s\n' target execs cov ft corpus result >"$work/summary"
for t in "${targets[@]}"; do
    corpus=$work/corpus/$t
    mkdir -p "$corpus" "$work/artifacts/$t"
    cp tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    for f in $(bad_seeds "$t"); do cp "$f" "$corpus/bad_$(basename "$f")"; done
    echo "== $t: ${secs}s from $(ls "$corpus" | wc -l) seeds"
    log=$work/$t.log
    rc=0
    # -rss_limit_mb: the parsers must not need more than this for inputs of
    # at most -max_len bytes; -timeout: a single input slower than 10 s is a hang.
    "$dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" "$corpus" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    line=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$line")
    if [ "$rc" -ne 0 ] || ls "$work/artifacts/$t/" | grep -q .; then
        status=1
        result="FAIL (exit $rc)"
        failed=$((failed + 1))
        cp "$work/artifacts/$t/"* "$dir/findings/" 2>/dev/null || true
        grep -E 'ERROR|runtime error|invariant failed|SUMMARY' "$log" | head -20 >&2 || true
        echo "   reproducers copied to $dir/findings/; full log: $log" >&2
    else
        result=ok
        passed=$((passed + 1))
    fi
    printf '%-18s %10s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result" \
        | tee -a "$work/summary"
done
cat "$work/summary"
echo "fuzz: $passed passed, $failed failed"
if [ "$status" -ne 0 ] && [ -z "${BR_FUZZ_KEEP:-}" ]; then
    trap - EXIT
    echo "fuzz.sh: logs kept in $work" >&2
fi
exit $status

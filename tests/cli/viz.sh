#!/usr/bin/env bash
# Program test of bookrec-viz: trains a small model on the real data (two
# epochs, 16 dims), then checks the PCA and t-SNE outputs (PNG size from its
# header, CSV, TensorBoard projector files, determinism at -j 1), -q, and
# every error path's message and exit status (0 success, 2 usage, 1 missing
# or damaged model / I/O). The window is tested headless in test_viz_window.
#
#   bash tests/cli/viz.sh <build_dir> <data_dir>
set -u
BUILD=${1:?usage: viz.sh <build_dir> <data_dir>}
DATA=${2:?usage: viz.sh <build_dir> <data_dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$BUILD/bookrec-viz
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# No window from this script, whatever the environment offers.
unset DISPLAY WAYLAND_DISPLAY SDL_VIDEODRIVER

run() {
    local name=$1 want=$2
    shift 2
    "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    if [ "$got" -ne "$want" ]; then
        fail "$name: exit $got, expected $want ($(head -c 300 "$TMP/err"))"
        return 1
    fi
    return 0
}
err_has() { grep -q -- "$2" "$TMP/err" || fail "$1: stderr lacks '$2': $(head -c 300 "$TMP/err")"; }

# width x height from a PNG's IHDR (bytes 16..23, big-endian)
png_size() {
    local sig
    sig=$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')
    [ "$sig" = "89504e470d0a1a0a" ] || { echo "not-a-png"; return; }
    local w h
    w=$(od -An -tu1 -j16 -N4 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4}')
    h=$(od -An -tu1 -j20 -N4 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4}')
    echo "${w}x${h}"
}

"$BUILD/bookrec-train" --data "$DATA" -q -j 2 --epochs 2 --patience 0 --dim 16 -o "$TMP/m.model" \
    >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; echo "FAIL: could not train a model"; exit 1; }
M="$TMP/m.model"

if run "help" 0 --help; then
    grep -q -- "--normalize" "$TMP/out" && grep -q -- "--projector" "$TMP/out" && grep -q "default" "$TMP/out" ||
        fail "help text"
    ok "help"
fi

# ---- PCA: PNG of the requested size, explained variance ----
if run "pca png" 0 -m "$M" --pca --png "$TMP/pca.png" --size 640x480 -j 2; then
    [ "$(png_size "$TMP/pca.png")" = "640x480" ] || fail "pca png size: $(png_size "$TMP/pca.png")"
    err_has "pca png" "explained variance: PC1"
    ok "pca png"
fi
if run "pca rating colours" 0 -m "$M" --pca --png "$TMP/r.png" --size 300x200 --color rating -q; then
    [ "$(png_size "$TMP/r.png")" = "300x200" ] || fail "rating png size"
    [ -s "$TMP/err" ] && fail "-q printed: $(head -c 200 "$TMP/err")"
    ok "pca rating colours, -q quiet"
fi

# ---- exports ----
if run "pca csv + projector" 0 -m "$M" --pca --csv "$TMP/pca.csv" --projector "$TMP/proj" -q; then
    [ "$(head -1 "$TMP/pca.csv")" = "book_id,x,y,title" ] || fail "csv header: $(head -1 "$TMP/pca.csv")"
    rows=$(grep -c '^[0-9][0-9]*,' "$TMP/pca.csv")
    [ "$rows" -eq 10000 ] || fail "csv rows: $rows"
    [ "$(wc -l <"$TMP/proj/vectors.tsv")" -eq 10000 ] || fail "vectors.tsv lines"
    [ "$(head -1 "$TMP/proj/vectors.tsv" | awk -F'\t' '{print NF}')" -eq 16 ] || fail "vectors.tsv columns"
    [ "$(wc -l <"$TMP/proj/metadata.tsv")" -eq 10001 ] || fail "metadata.tsv lines"
    [ "$(head -1 "$TMP/proj/metadata.tsv")" = "$(printf 'title\tauthors\tyear\tgenre\taverage_rating')" ] ||
        fail "metadata.tsv header"
    [ "$(awk -F'\t' 'NR > 1 && NF != 5' "$TMP/proj/metadata.tsv" | wc -l)" -eq 0 ] || fail "metadata.tsv columns"
    ok "csv + projector"
fi

# ---- t-SNE: final KL, determinism at -j 1 ----
if run "tsne" 0 -m "$M" --tsne --iters 60 --perplexity 10 -j 1 --seed 5 --csv "$TMP/t1.csv" \
    --png "$TMP/t.png" --size 400x300; then
    err_has "tsne" "KL"
    [ "$(png_size "$TMP/t.png")" = "400x300" ] || fail "tsne png size"
    run "tsne again" 0 -m "$M" --tsne --iters 60 --perplexity 10 -j 1 --seed 5 --csv "$TMP/t2.csv" -q
    cmp -s "$TMP/t1.csv" "$TMP/t2.csv" || fail "t-SNE at -j 1 with one seed differs between runs"
    ok "tsne"
fi

# ---- usage errors: exit 2 ----
run "no output" 2 -m "$M" && err_has "no output" "no display" && ok "no display, no output"
run "bad size" 2 -m "$M" --png "$TMP/x.png" --size 10x10 && err_has "bad size" "size" && ok "bad size"
run "bad size 2" 2 -m "$M" --png "$TMP/x.png" --size big && ok "bad size 2"
run "bad colour" 2 -m "$M" --png "$TMP/x.png" --color taste && err_has "bad colour" "genre, rating or year" &&
    ok "bad colour"
run "two methods" 2 -m "$M" --png "$TMP/x.png" --pca --tsne && ok "two methods"
run "bad perplexity" 2 -m "$M" --png "$TMP/x.png" --perplexity 0 && ok "bad perplexity"
run "unknown option" 2 -m "$M" --png "$TMP/x.png" --frobnicate && ok "unknown option"
run "stray argument" 2 -m "$M" --png "$TMP/x.png" extra && ok "stray argument"
[ -e "$TMP/x.png" ] && fail "a usage error wrote a file"

# ---- missing or damaged model, unwritable output: exit 1 ----
run "missing model" 1 -m "$TMP/nope.model" --png "$TMP/x.png" && err_has "missing model" "nope.model" &&
    err_has "missing model" "bookrec-train" && ok "missing model"
for f in flipped truncated not_a_model empty newer_version; do
    run "bad model $f" 1 -m "$SRC/bad/model_$f.bin" --png "$TMP/x.png" && err_has "bad model $f" "bookrec-viz: error:" &&
        ok "bad model $f"
done
cp "$M" "$TMP/flip.model"
size=$(stat -c %s "$TMP/flip.model")
printf '\x55' | dd of="$TMP/flip.model" bs=1 seek=$((size / 2)) conv=notrunc status=none
run "flipped real model" 1 -m "$TMP/flip.model" --pca --png "$TMP/x.png" && err_has "flipped" "checksum" &&
    ok "flipped real model"
run "unwritable png" 1 -m "$M" --pca --png /nonexistent-dir/x.png -q && ok "unwritable png"

if [ "$fails" -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "all bookrec-viz checks passed"

#!/bin/bash
# train.sh - program tests of bookrec-train: run the built binary and check
# its exit status, its messages and the files it leaves behind.
#
#   bash tests/cli/train.sh BUILD_DIR [DATA_DIR]
#
# Covers --help, --version, an unknown flag, a missing data folder, an
# unwritable output path, a malformed ratings CSV (with and without
# --skip-bad), a quick training run on a tiny generated file (model + metrics
# JSON), and that a failing run (divergence, unwritable metrics) leaves an
# existing model byte-identical. Needs only bash and coreutils; the real data
# is not used (it would take minutes). Exit 0 when every check passes.
set -u

build=${1:?usage: train.sh BUILD_DIR [DATA_DIR]}
build=$(cd "$build" && pwd) || exit 1   # absolute: the tests run in a temp folder
bin=$build/bookrec-train
gen=$build/bookrec-gen
[ -x "$bin" ] || { echo "FAIL: no executable $bin"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bookrec-cli.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
unset BOOKREC_DATA

fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() {
    checks=$((checks + 1))
    fails=$((fails + 1))
    echo "FAIL: $*"
    echo "  --- stdout:"; sed 's/^/  | /' "$tmp/out" 2>/dev/null | head -20
    echo "  --- stderr:"; sed 's/^/  | /' "$tmp/err" 2>/dev/null | head -20
}
# check DESCRIPTION COMMAND...: one assertion, reported by description.
check() {
    local what=$1
    shift
    if "$@"; then ok; else bad "$what"; fi
}
# run ARGS...: runs bookrec-train, output to $tmp/out and $tmp/err, status in $rc.
run() {
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
has() { grep -q -e "$2" "$1"; }          # has FILE PATTERN (basic regex)
has_fixed() { grep -qF -e "$2" "$1"; }   # has_fixed FILE STRING
nonzero() { [ "$rc" -ne 0 ] && [ "$rc" -lt 126 ]; }   # failed; ran, did not crash
first_err_is_error() { head -n 1 "$tmp/err" | grep -q '^bookrec-train: error: '; }
no_temp_files() { ! ls -A "$1" | grep -q '\.tmp'; }

# ---- --help / --version --------------------------------------------------------

run --help
check "--help exits 0" [ "$rc" -eq 0 ]
check "--help prints usage on stdout" has "$tmp/out" '^usage: bookrec-train'
check "--help lists --data" has_fixed "$tmp/out" '--data'
check "--help lists -o, --output" has_fixed "$tmp/out" '--output'
check "--help lists --metrics" has_fixed "$tmp/out" '--metrics'
check "--help writes nothing to stderr" [ ! -s "$tmp/err" ]

run -h
check "-h exits 0 with usage" eval '[ "$rc" -eq 0 ] && has "$tmp/out" "^usage: bookrec-train"'

run --version
check "--version exits 0" [ "$rc" -eq 0 ]
check "--version prints 'bookrec-train X.Y.Z'" has "$tmp/out" '^bookrec-train [0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*$'

# ---- bad usage -----------------------------------------------------------------

run --nope
check "--nope fails" nonzero
check "--nope: stderr starts with 'bookrec-train: error:'" first_err_is_error
check "--nope: the message names the flag" has_fixed "$tmp/err" '--nope'
check "--nope: nothing on stdout" [ ! -s "$tmp/out" ]

run --dim
check "--dim without a value fails" nonzero
check "--dim without a value: error message" first_err_is_error

run --dim lots
check "--dim lots fails" nonzero
check "--dim lots: error message" first_err_is_error

# ---- missing data -------------------------------------------------------------

run --data /nonexistent -q
check "--data /nonexistent fails" nonzero
check "--data /nonexistent: error message" first_err_is_error
check "--data /nonexistent: names the folder" has_fixed "$tmp/err" '/nonexistent'
check "--data /nonexistent: says how to fetch the data" has "$tmp/err" 'fetch'
check "--data /nonexistent: no model written" [ ! -e bookrec.model ]

# ---- a tiny ratings file -------------------------------------------------------

mkdir -p "$tmp/d"
ratings=$tmp/d/ratings.csv
if [ -x "$gen" ]; then
    "$gen" --users 300 --books 80 --ratings 6000 --seed 5 -q -o "$ratings" >"$tmp/out" 2>"$tmp/err"
    check "bookrec-gen writes the tiny ratings file" [ -s "$ratings" ]
else
    # 300 users x 80 books, each user rating 20 distinct books, with a little
    # structure (user and book offsets) so that training has something to learn.
    awk 'BEGIN {
        print "user_id,book_id,rating"
        s = 12345
        for (u = 1; u <= 300; u++) {
            for (k = 0; k < 20; k++) {
                b = (u * 7 + k * 13) % 80 + 1
                s = (s * 1103515245 + 12345) % 2147483648
                r = int(3 + (u % 3) - 1 + (b % 2) + (s % 3) - 1)
                if (r < 1) r = 1
                if (r > 5) r = 5
                print u "," b "," r
            }
        }
    }' >"$ratings"
    ok
fi

# ---- unwritable output ---------------------------------------------------------

run --ratings "$ratings" -q --epochs 2 -o /nonexistent-dir/x.model
check "-o /nonexistent-dir/x.model fails" nonzero
check "unwritable -o: error message" first_err_is_error
check "unwritable -o: names the path" has_fixed "$tmp/err" '/nonexistent-dir/x.model'
check "unwritable -o: no file created" [ ! -e /nonexistent-dir/x.model ]
check "unwritable -o: no folder created" [ ! -e /nonexistent-dir ]

# ---- --reg-exp out of range or for a loss that has none --------------------------

run --ratings "$ratings" --loss mse -q --epochs 1 --dim 8 --reg-exp 5 -o "$tmp/rx.model"
check "--reg-exp 5 fails" nonzero
check "--reg-exp 5: error message" first_err_is_error
check "--reg-exp 5: says the range" has_fixed "$tmp/err" 'within -2..2'
run --ratings "$ratings" --loss bpr -q --epochs 1 --dim 8 --reg-exp 0.5 -o "$tmp/rx.model"
check "--loss bpr --reg-exp 0.5 fails" nonzero
check "--loss bpr --reg-exp 0.5: names what it needs" has_fixed "$tmp/err" '--loss mse --optim sgd'
check "--reg-exp refused: no model written" [ ! -e "$tmp/rx.model" ]

# ---- malformed CSV ------------------------------------------------------------

mkdir -p "$tmp/badcsv"
badcsv=$tmp/badcsv/ratings.csv
{
    echo "user_id,book_id,rating"
    echo "1,1,5"
    echo "1,2,9"                       # line 3: rating outside 1..5
    tail -n +2 "$ratings" | head -n 3000
} >"$badcsv"
run --ratings "$badcsv" -q --epochs 2 -o "$tmp/badcsv/m.model"
check "malformed CSV fails" nonzero
check "malformed CSV: error message" first_err_is_error
check "malformed CSV: names the file and line 3" has_fixed "$tmp/err" "$badcsv:3:"
check "malformed CSV: says what is wrong (the rating 9)" has "$tmp/err" ':3:.*9'
check "malformed CSV: no model written" [ ! -e "$tmp/badcsv/m.model" ]

run --ratings "$badcsv" --skip-bad --epochs 2 -j 1 -o "$tmp/badcsv/m.model"
check "--skip-bad succeeds on the malformed CSV" [ "$rc" -eq 0 ]
check "--skip-bad writes the model" [ -s "$tmp/badcsv/m.model" ]
check "--skip-bad warns about the skipped row and its line" \
    eval 'has "$tmp/err" "skipped 1 " && has "$tmp/err" "line 3"'

# ---- a quick successful run ----------------------------------------------------

mkdir -p "$tmp/run"
model=$tmp/run/m.model
metrics=$tmp/run/m.json
start=$SECONDS
run --ratings "$ratings" --loss mse -q -j 2 --epochs 5 --dim 8 -o "$model" --metrics "$metrics"
check "training on the tiny file exits 0" [ "$rc" -eq 0 ]
check "-q: nothing on stderr" [ ! -s "$tmp/err" ]
check "-q: nothing on stdout" [ ! -s "$tmp/out" ]
check "the model file exists" [ -s "$model" ]
check "the model file starts with the magic BOOKREC" \
    eval '[ "$(head -c 7 "$model" 2>/dev/null)" = BOOKREC ]'
check "the metrics file exists" [ -s "$metrics" ]
check "the metrics contain a numeric test_rmse" \
    has "$metrics" '"test_rmse": [0-9][0-9.e+-]*'
check "test_rmse is a plausible rating error (0 < rmse < 2)" \
    eval "awk -F'[:,]' '/\"test_rmse\"/ { v = \$2 + 0; ok = (v > 0 && v < 2) } END { exit !ok }' \"\$metrics\""
if command -v python3 >/dev/null 2>&1; then
    json_ok() { python3 -m json.tool "$1" >/dev/null 2>&1; }
    check "the metrics file is valid JSON" json_ok "$metrics"
fi
check "the quick run takes under 10 s" [ $((SECONDS - start)) -lt 10 ]
# without -q the test figures come every epoch; -q computes them once, at the
# end: the same model must report the same figure either way
run --ratings "$ratings" --loss mse -j 2 --epochs 5 --dim 8 -o "$tmp/run/v.model" \
    --metrics "$tmp/run/v.json"
check "with progress lines: a test RMSE on every epoch line" \
    eval '[ "$(grep -c "^epoch .*test RMSE" "$tmp/err")" -eq 5 ]'
check "-q and progress runs report the same test_rmse and test_mae" \
    eval '[ "$(grep -E "\"test_(rmse|mae)\"" "$metrics")" = "$(grep -E "\"test_(rmse|mae)\"" "$tmp/run/v.json")" ]'
rm -f "$tmp/run/v.model" "$tmp/run/v.json"
check "no temporary files left beside the outputs" no_temp_files "$tmp/run"

# ---- genres: book_tags.csv load beside the training, into the model file --------

# Book ids 1 and 2 of the tiny file get titles and a tag each ("fantasy",
# "romance"): both genre names must reach the model's string table. A broken
# book_tags.csv costs the genres only: a warning, and the model is written.
mkdir -p "$tmp/g"
printf 'book_id,goodreads_book_id,title,authors\n1,100,Dune,Frank Herbert\n2,200,Emma,Jane Austen\n' >"$tmp/g/books.csv"
printf 'goodreads_book_id,tag_id,count\n100,1,5\n200,2,3\n' >"$tmp/g/book_tags.csv"
printf 'tag_id,tag_name\n1,fantasy\n2,romance\n' >"$tmp/g/tags.csv"
run --ratings "$ratings" --books "$tmp/g/books.csv" --tags "$tmp/g/book_tags.csv" --loss mse \
    -q -j 2 --epochs 2 --dim 8 -o "$tmp/g/m.model"
check "with books and tags: exits 0" [ "$rc" -eq 0 ]
check "with books and tags: the genres are in the model file" \
    eval 'grep -q fantasy "$tmp/g/m.model" && grep -q romance "$tmp/g/m.model"'
check "with books and tags: the titles are in the model file" grep -q Dune "$tmp/g/m.model"
printf 'goodreads_book_id,tag_id,count\n100,99,5\n' >"$tmp/g/bad_tags.csv"
run --ratings "$ratings" --books "$tmp/g/books.csv" --tags "$tmp/g/bad_tags.csv" --loss mse \
    -j 2 --epochs 2 --dim 8 -o "$tmp/g/b.model"
check "a broken book_tags.csv: still exits 0" [ "$rc" -eq 0 ]
check "a broken book_tags.csv: a warning that names the file and line" \
    eval 'has "$tmp/err" "warning: no genres" && has_fixed "$tmp/err" "bad_tags.csv:2"'
check "a broken book_tags.csv: the model is written, without genres" \
    eval '[ -s "$tmp/g/b.model" ] && ! grep -q fantasy "$tmp/g/b.model"'

# ---- a failing run leaves the existing model alone -------------------------------

cp "$model" "$tmp/keep.model"
run --ratings "$ratings" -q -j 1 --epochs 3 --lr 1e9 -o "$model"
check "--lr 1e9 fails" nonzero
check "--lr 1e9: error message" first_err_is_error
check "--lr 1e9: the message mentions the divergence" has "$tmp/err" 'diverge'
check "--lr 1e9: the existing model is byte-identical" cmp -s "$model" "$tmp/keep.model"
check "--lr 1e9: no temporary files left" no_temp_files "$tmp/run"

run --ratings "$ratings" -q --epochs 2 -o "$model" --metrics /nonexistent-dir/m.json
check "unwritable --metrics fails" nonzero
check "unwritable --metrics: names the path" has_fixed "$tmp/err" '/nonexistent-dir/m.json'
check "unwritable --metrics: the existing model is byte-identical" \
    cmp -s "$model" "$tmp/keep.model"

cp "$tmp/keep.model" "$model"   # independent of the check above
run --ratings "$tmp/d/missing.csv" -q -o "$model"
check "missing --ratings file fails" nonzero
check "missing --ratings file: names it" has_fixed "$tmp/err" "$tmp/d/missing.csv"
check "missing --ratings file: the existing model is byte-identical" \
    cmp -s "$model" "$tmp/keep.model"

# ---- summary ---------------------------------------------------------------------

if [ "$fails" -ne 0 ]; then
    echo "train.sh: $fails of $checks checks failed"
    exit 1
fi
echo "train.sh: all $checks checks passed"
exit 0

#!/usr/bin/env bash
# Program test of bookrec-infer: trains a small model on the real data (two
# epochs), then checks each query mode's output and every error path's
# message and exit status (0 success, 2 usage / unknown id / malformed input,
# 1 missing or damaged model), and that nothing crashes.
#
#   bash tests/cli/infer.sh <build_dir> <data_dir>
set -u
BUILD=${1:?usage: infer.sh <build_dir> <data_dir>}
DATA=${2:?usage: infer.sh <build_dir> <data_dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$BUILD/bookrec-infer
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# run NAME EXPECTED_STATUS ARGS... : runs bookrec-infer, keeps out/err
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
out_has() { grep -q -- "$2" "$TMP/out" || fail "$1: stdout lacks '$2': $(head -c 300 "$TMP/out")"; }

"$BUILD/bookrec-train" --data "$DATA" -q -j 2 --epochs 2 --patience 0 -o "$TMP/m.model" \
    >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; echo "FAIL: could not train a model"; exit 1; }
M="$TMP/m.model"

# ---- --user: table, csv, json ----
if run "user table" 0 -m "$M" --user 1 --top 5; then
    [ "$(wc -l <"$TMP/out")" -eq 6 ] || fail "user table: expected 6 lines"
    head -1 "$TMP/out" | grep -q "rank.*book_id.*title.*authors.*year" || fail "user table header"
    ok "user table"
fi
if run "user csv" 0 -m "$M" --user 1 --top 5 --csv; then
    [ "$(head -1 "$TMP/out")" = "user_id,rank,book_id,score,title" ] || fail "csv header"
    [ "$(tail -n +2 "$TMP/out" | cut -d, -f1 | sort -u)" = "1" ] || fail "csv user column"
    [ "$(tail -n +2 "$TMP/out" | cut -d, -f2 | tr '\n' ' ')" = "1 2 3 4 5 " ] || fail "csv ranks"
    cp "$TMP/out" "$TMP/user1.csv"
    ok "user csv"
fi
if run "user json" 0 -m "$M" --user 1 --top 3 --json; then
    [ "$(jq '.results | length' "$TMP/out")" = 3 ] || fail "json: 3 results"
    [ "$(jq '.query.user_id' "$TMP/out")" = 1 ] || fail "json: user id"
    [ "$(jq -r '.results[0].book_id' "$TMP/out")" = "$(sed -n 2p "$TMP/user1.csv" | cut -d, -f3)" ] ||
        fail "json and csv disagree"
    ok "user json"
fi
# read books are left out unless --include-read
run "all books" 0 -m "$M" --user 1 --top 100000 --csv --include-read && cp "$TMP/out" "$TMP/all.csv"
run "unread books" 0 -m "$M" --user 1 --top 100000 --csv && cp "$TMP/out" "$TMP/unread.csv"
n_all=$(($(wc -l <"$TMP/all.csv") - 1))
n_unread=$(($(wc -l <"$TMP/unread.csv") - 1))
[ "$n_all" -eq 10000 ] || fail "--include-read: $n_all books, expected 10000"
[ "$n_unread" -lt "$n_all" ] && [ "$n_unread" -gt 0 ] || fail "read books not left out ($n_unread)"
ok "include-read ($n_all vs $n_unread)"

# ---- --similar ----
if run "similar" 0 -m "$M" --similar 1 --top 5 --csv; then
    [ "$(head -1 "$TMP/out")" = "query_book_id,rank,book_id,score,title" ] || fail "similar header"
    [ "$(tail -n +2 "$TMP/out" | wc -l)" -eq 5 ] || fail "similar: 5 rows"
    tail -n +2 "$TMP/out" | cut -d, -f3 | grep -qx 1 && fail "similar returned the book itself"
    ok "similar"
fi

# ---- --read / --read-file ----
if run "read" 0 -m "$M" --read 2,3,5 --top 10 --csv; then
    tail -n +2 "$TMP/out" | cut -d, -f3 | grep -qxE '2|3|5' && fail "read books returned"
    [ "$(tail -n +2 "$TMP/out" | wc -l)" -eq 10 ] || fail "read: 10 rows"
    ok "read"
fi
printf 'book_id,rating\n2,5\n3,4\n\n5,1\n' >"$TMP/read.csv"
run "read-file" 0 -m "$M" --read-file "$TMP/read.csv" --top 3 && ok "read-file"

# ---- --users batch ----
if run "users j1" 0 -m "$M" --users 1-50 --top 10 -j 1; then
    cp "$TMP/out" "$TMP/u1.csv"
    run "users j2" 0 -m "$M" --users 1-50 --top 10 -j 2 && cmp -s "$TMP/out" "$TMP/u1.csv" ||
        fail "users: -j 2 differs from -j 1"
    [ "$(head -1 "$TMP/u1.csv")" = "user_id,rank,book_id,score,title" ] || fail "users header"
    [ "$(wc -l <"$TMP/u1.csv")" -eq 501 ] || fail "users: expected 500 rows"
    grep '^1,' "$TMP/u1.csv" | head -5 | cmp -s - <(tail -n +2 "$TMP/user1.csv") ||
        fail "users: user 1 differs from --user 1"
    ok "users"
fi
printf 'user_id\n3\n1\n' >"$TMP/users.txt"
run "users file" 0 -m "$M" --users "$TMP/users.txt" --top 2 &&
    [ "$(tail -n +2 "$TMP/out" | cut -d, -f1 | tr '\n' ' ')" = "3 3 1 1 " ] && ok "users file" ||
    fail "users file order"

# ---- --predict ----
b1=$(sed -n 2p "$TMP/user1.csv" | cut -d, -f3)
s1=$(sed -n 2p "$TMP/user1.csv" | cut -d, -f4)
printf 'user_id,book_id\n1,%s\n2,1\n1,1\n' "$b1" >"$TMP/pairs.csv"
if run "predict" 0 -m "$M" --predict "$TMP/pairs.csv"; then
    [ "$(head -1 "$TMP/out")" = "user_id,book_id,prediction" ] || fail "predict header"
    [ "$(tail -n +2 "$TMP/out" | cut -d, -f1,2 | tr '\n' ' ')" = "1,$b1 2,1 1,1 " ] ||
        fail "predict order"
    p1=$(sed -n 2p "$TMP/out" | cut -d, -f3)
    awk -v a="$p1" -v b="$s1" 'BEGIN { c = b > 5 ? 5 : b < 1 ? 1 : b; exit !(a == c) }' ||
        fail "predict $p1 differs from the recommendation score $s1"
    ok "predict"
fi

# ---- errors ----
run "unknown user" 2 -m "$M" --user 999999 && err_has "unknown user" "--read" && ok "unknown user"
run "top 0" 2 -m "$M" --user 1 --top 0 && err_has "top 0" "--top" && ok "top 0"
run "top negative" 2 -m "$M" --user 1 --top -3 && ok "top negative"
run "top text" 2 -m "$M" --user 1 --top abc && ok "top text"
run "bad user id" 2 -m "$M" --user 1x && err_has "bad user id" "not a user id" && ok "bad user id"
for bad in 0 -1 +1 ' 1' 4294967296 99999999999; do
    run "user id '$bad'" 2 -m "$M" --user "$bad" && err_has "user id '$bad'" "not a user id" &&
        ok "user id '$bad' refused"
done
run "largest id" 2 -m "$M" --user 4294967295 && err_has "largest id" "not in the model" &&
    ok "user id 4294967295 read, then not found"
run "bad list" 2 -m "$M" --read 1,,3 && err_has "bad list" "not a book id" && ok "bad list"
run "bad list 2" 2 -m "$M" --read 12,abc && ok "bad list 2"
run "unknown book in list" 2 -m "$M" --read 1,99999 && err_has "unknown book" "99999" && ok "unknown book in list"
run "unknown similar" 2 -m "$M" --similar 99999 && ok "unknown similar"
printf '2,9\n' >"$TMP/badr.csv"
run "bad rating" 2 -m "$M" --read-file "$TMP/badr.csv" && err_has "bad rating" "1..5" && ok "bad rating"
run "bad range" 2 -m "$M" --users 9-3 && ok "bad range"
run "no mode" 2 -m "$M" && ok "no mode"
run "two modes" 2 -m "$M" --user 1 --similar 2 && ok "two modes"
run "json+csv" 2 -m "$M" --user 1 --json --csv && ok "json+csv"
run "missing model" 1 -m "$TMP/nope.model" --user 1 && err_has "missing model" "nope.model" && ok "missing model"
for f in flipped truncated not_a_model empty newer_version; do
    run "bad model $f" 1 -m "$SRC/bad/model_$f.bin" --user 1 && ok "bad model $f"
done
# a damaged copy of the real model: one byte flipped in the middle (among
# the readers' rows, which a single query checks only for its own reader)
cp "$M" "$TMP/flip.model"
size=$(stat -c %s "$TMP/flip.model")
printf '\x55' | dd of="$TMP/flip.model" bs=1 seek=$((size / 2)) conv=notrunc status=none
run "flipped: --verify" 1 -m "$TMP/flip.model" --verify && err_has "flipped" "checksum mismatch" &&
    ok "flipped real model: --verify"
run "flipped: --users" 1 -m "$TMP/flip.model" --users 1-3 && err_has "flipped users" "checksum" &&
    ok "flipped real model: --users"
run "flipped: --user --verify" 1 -m "$TMP/flip.model" --user 1 --verify &&
    ok "flipped real model: --user with --verify"
run "verify good" 0 -m "$M" --verify && out_has "verify good" "ok (" && ok "verify a good model"
# one byte flipped among the book vectors (right after the header and table):
# every query reads them, so every query refuses the file
cp "$M" "$TMP/flipb.model"
printf '\x55' | dd of="$TMP/flipb.model" bs=1 seek=5000 conv=notrunc status=none
run "flipped books" 1 -m "$TMP/flipb.model" --user 1 && err_has "flipped books" "checksum" &&
    ok "flipped book vectors: --user refused"
run "flipped books similar" 1 -m "$TMP/flipb.model" --similar 1 && ok "flipped book vectors: --similar refused"
head -c $((size / 3)) "$M" >"$TMP/short.model"
run "truncated real model" 1 -m "$TMP/short.model" --user 1 && ok "truncated real model"

if [ "$fails" -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "all bookrec-infer checks passed"

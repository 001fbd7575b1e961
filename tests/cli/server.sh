#!/usr/bin/env bash
# Program test of bookrec-infer --serve: trains two small models on the real
# data, starts the server on 127.0.0.1 with a port the kernel picks (read
# from its start-up line), calls every route and every error of
# docs/HTTP.md with curl, reloads a new model and a damaged one (SIGHUP)
# while a client keeps querying, checks the access log and /metrics, lets a
# slow request run into SIGTERM and checks it is answered and the server
# exits 0. Loopback only: nothing here talks to any other address.
#
#   bash tests/cli/server.sh <build_dir> <data_dir>
set -u
BUILD=${1:?usage: server.sh <build_dir> <data_dir>}
DATA=${2:?usage: server.sh <build_dir> <data_dir>}
BIN=$BUILD/bookrec-infer
TMP=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

if ! command -v curl >/dev/null || ! command -v jq >/dev/null; then
    echo "SKIP: curl and jq are needed (scripts/install-deps.sh installs them)"
    exit 0
fi
if [ ! -e "$DATA/ratings.csv" ] && [ ! -e "$DATA/ratings.csv.gz" ]; then
    echo "SKIP: no data in $DATA"
    exit 0
fi

train() {   # train SEED OUT
    "$BUILD/bookrec-train" --data "$DATA" -q -j 2 --epochs 2 --patience 0 --seed "$1" -o "$2" \
        >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; echo "FAIL: could not train"; exit 1; }
}
train 1 "$TMP/a.model"
train 2 "$TMP/b.model"
M="$TMP/serve.model"
cp "$TMP/a.model" "$M"
# install SRC: replace the served file atomically, as the trainer does
install_model() { cp "$1" "$TMP/next.model" && mv "$TMP/next.model" "$M"; }

"$BIN" -m "$M" --serve 127.0.0.1:0 -j 2 --max-k 50 --max-body 4096 --timeout 5 \
    --access-log "$TMP/access.log" 2>"$TMP/server.err" &
PID=$!
PORT=
for _ in $(seq 1 200); do
    PORT=$(sed -n 's|.* on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$TMP/server.err" | head -1)
    [ -n "$PORT" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$PORT" ]; then
    cat "$TMP/server.err"
    echo "FAIL: the server did not start"
    exit 1
fi
B="http://127.0.0.1:$PORT"
ok "listening on $B"

# req NAME EXPECTED_STATUS CURL_ARGS... : body in $TMP/body, headers in $TMP/hdr
req() {
    local name=$1 want=$2
    shift 2
    local got
    got=$(curl -s -o "$TMP/body" -D "$TMP/hdr" -w '%{http_code}' --max-time 20 "$@")
    if [ "$got" != "$want" ]; then
        fail "$name: status $got, expected $want: $(head -c 300 "$TMP/body")"
        return 1
    fi
    if [ "$want" -ge 400 ] && [ "${RAW_ERROR:-0}" = 0 ]; then
        jq -e '.error | type == "string"' "$TMP/body" >/dev/null 2>&1 ||
            { fail "$name: body is not {\"error\": ...}: $(head -c 300 "$TMP/body")"; return 1; }
    fi
    return 0
}
body_has() { grep -q -- "$2" "$TMP/body" || fail "$1: body lacks '$2': $(head -c 300 "$TMP/body")"; }

# ---- routes ----
if req "healthz" 200 "$B/healthz"; then
    [ "$(jq -r .status "$TMP/body")" = ok ] || fail "healthz status"
    [ "$(jq .model.generation "$TMP/body")" = 1 ] || fail "healthz generation"
    [ "$(jq .model.books "$TMP/body")" = 10000 ] || fail "healthz books"
    FP1=$(jq -r .model.fingerprint "$TMP/body")
    ok "healthz (fingerprint $FP1)"
fi
if req "recommend" 200 "$B/v1/recommend?user=1&k=5"; then
    [ "$(jq '.results | length' "$TMP/body")" = 5 ] || fail "recommend: 5 results"
    [ "$(jq -r '.results[0] | has("book_id") and has("title") and has("authors") and has("score")' "$TMP/body")" = true ] ||
        fail "recommend: fields"
    # the same top 5 as the command line
    "$BIN" -m "$M" --user 1 --top 5 --csv | tail -n +2 | cut -d, -f3 >"$TMP/cli_ids"
    jq -r '.results[].book_id' "$TMP/body" | cmp -s - "$TMP/cli_ids" || fail "recommend differs from --user"
    ok "GET /v1/recommend"
fi
req "recommend include_read" 200 "$B/v1/recommend?user=1&k=50&include_read=1" &&
    body_has "include_read" '"include_read":true' && ok "include_read"
if req "recommend POST" 200 -X POST -H 'Content-Type: application/json' \
    -d '{"read": [2, 3, 5], "ratings": [5, 4, 2], "k": 10}' "$B/v1/recommend"; then
    [ "$(jq '.results | length' "$TMP/body")" = 10 ] || fail "fold-in: 10 results"
    jq -r '.results[].book_id' "$TMP/body" | grep -qxE '2|3|5' && fail "fold-in returned read books"
    ok "POST /v1/recommend"
fi
if req "similar" 200 "$B/v1/similar?book=1&k=5"; then
    [ "$(jq -r .score "$TMP/body")" = cosine ] || fail "similar score kind"
    jq -r '.results[].book_id' "$TMP/body" | grep -qx 1 && fail "similar returned the book itself"
    ok "GET /v1/similar"
fi
if req "books" 200 "$B/v1/books/1"; then
    [ "$(jq -r .title "$TMP/body")" = "The Hunger Games (The Hunger Games, #1)" ] || fail "book title"
    [ "$(jq .year "$TMP/body")" = 2008 ] || fail "book year"
    jq -e '.average_rating > 4' "$TMP/body" >/dev/null || fail "book average rating"
    ok "GET /v1/books/ID"
fi
req "head" 200 -I "$B/healthz" && ok "HEAD /healthz"

# ---- errors ----
req "missing user" 400 "$B/v1/recommend" && body_has "missing user" "missing parameter" && ok "400 missing user"
req "bad user" 400 "$B/v1/recommend?user=abc" && ok "400 malformed user"
req "k 0" 400 "$B/v1/recommend?user=1&k=0" && ok "400 k=0"
req "k over limit" 400 "$B/v1/recommend?user=1&k=51" && body_has "k limit" "between 1 and 50" && ok "400 k over --max-k"
req "k text" 400 "$B/v1/recommend?user=1&k=x" && ok "400 k text"
req "bad flag" 400 "$B/v1/recommend?user=1&include_read=2" && ok "400 include_read"
req "missing book" 400 "$B/v1/similar?k=3" && ok "400 missing book"
req "bad book path" 400 "$B/v1/books/1x" && ok "400 malformed book id"
req "bad json" 400 -X POST -d '{"read": [1,' "$B/v1/recommend" && body_has "bad json" "malformed JSON" && ok "400 malformed JSON"
req "no read" 400 -X POST -d '{"k": 3}' "$B/v1/recommend" && ok "400 missing read"
req "bad read" 400 -X POST -d '{"read": ["x"]}' "$B/v1/recommend" && ok "400 read not ids"
req "ratings length" 400 -X POST -d '{"read": [1, 2], "ratings": [5]}' "$B/v1/recommend" && ok "400 ratings length"
req "rating range" 400 -X POST -d '{"read": [1], "ratings": [7]}' "$B/v1/recommend" && ok "400 rating outside 1..5"
req "empty body" 400 -X POST "$B/v1/recommend" && ok "400 empty body"
req "unknown user" 404 "$B/v1/recommend?user=99999999" && body_has "unknown user" "not in the model" && ok "404 unknown user"
req "unknown similar" 404 "$B/v1/similar?book=99999" && ok "404 unknown book (similar)"
req "unknown book" 404 "$B/v1/books/99999" && ok "404 unknown book"
req "unknown fold-in book" 404 -X POST -d '{"read": [1, 99999]}' "$B/v1/recommend" && ok "404 unknown book (fold-in)"
req "unknown route" 404 "$B/v1/nothing" && ok "404 unknown route"
if req "delete" 405 -X DELETE "$B/healthz"; then
    grep -qi '^Allow: GET, HEAD' "$TMP/hdr" || fail "405 without Allow"
    ok "405 DELETE /healthz"
fi
req "put" 405 -X PUT -d '{}' "$B/v1/recommend" && grep -qi '^Allow: GET, HEAD, POST' "$TMP/hdr" && ok "405 PUT /v1/recommend"
head -c 5000 /dev/zero | tr '\0' ' ' >"$TMP/big.json"
req "body too big" 413 -X POST --data-binary @"$TMP/big.json" "$B/v1/recommend" && ok "413 body over --max-body"
req "chunked too big" 413 -X POST -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big.json" "$B/v1/recommend" &&
    ok "413 chunked body"
req "header too big" 431 -H "X-Big: $(head -c 40000 /dev/zero | tr '\0' a)" "$B/healthz" &&
    body_has "header too big" "over the limit" && ok "431 header over --max-header"
# far over: libmicrohttpd's own 431 (HTML) before the handler sees it
RAW_ERROR=1 req "header far too big" 431 -H "X-Big: $(head -c 100000 /dev/zero | tr '\0' a)" "$B/healthz" &&
    ok "431 header far over the limit"

# ---- metrics ----
if req "metrics" 200 "$B/metrics"; then
    body_has metrics 'bookrec_http_requests_total{route="/v1/recommend",method="GET",code="200"}'
    body_has metrics 'bookrec_http_requests_total{route="/v1/recommend",method="POST",code="413"} 2'
    body_has metrics 'code="405"'
    body_has metrics 'bookrec_http_requests_total{route="/healthz",method="GET",code="431"} 1'
    body_has metrics 'bookrec_http_request_duration_seconds_bucket{route="/v1/recommend",le="+Inf"}'
    body_has metrics "bookrec_model_info{fingerprint=\"$FP1\""
    body_has metrics 'bookrec_model_loaded_timestamp_seconds '
    ok "metrics"
fi

# ---- reload under a steady client: a new model, then a damaged one ----
: >"$TMP/codes"
# 50 requests per curl run (one process, keep-alive), runs until $TMP/stop exists
for i in $(seq 1 50); do
    printf 'url = "%s/v1/recommend?user=%d&k=10"\noutput = /dev/null\n' "$B" "$i"
done >"$TMP/load.cfg"
(
    while [ ! -e "$TMP/stop" ]; do
        curl -s -K "$TMP/load.cfg" -w '%{http_code}\n' --max-time 20 || echo "curl-exit-$?"
    done >"$TMP/codes"
) &
LOADER=$!
sleep 0.2
install_model "$TMP/b.model"
kill -HUP "$PID"
gen=
for _ in $(seq 1 100); do
    gen=$(curl -s --max-time 5 "$B/healthz" | jq .model.generation)
    [ "$gen" = 2 ] && break
    sleep 0.05
done
[ "$gen" = 2 ] || fail "reload: generation $gen, expected 2"
FP2=$(curl -s "$B/healthz" | jq -r .model.fingerprint)
[ "$FP2" != "$FP1" ] || fail "reload: fingerprint unchanged"
grep -q "reloaded" "$TMP/server.err" || fail "reload not logged"
ok "SIGHUP: new model (fingerprint $FP2)"

cp "$TMP/a.model" "$TMP/flip.model"
size=$(stat -c %s "$TMP/flip.model")
printf '\x55' | dd of="$TMP/flip.model" bs=1 seek=$((size / 2)) conv=notrunc status=none
install_model "$TMP/flip.model"
kill -HUP "$PID"
for _ in $(seq 1 100); do
    grep -q "reload refused" "$TMP/server.err" && break
    sleep 0.05
done
grep -q "reload refused.*checksum" "$TMP/server.err" || fail "damaged model: no refusal logged: $(tail -2 "$TMP/server.err")"
req "healthz after damaged" 200 "$B/healthz" && [ "$(jq -r .model.fingerprint "$TMP/body")" = "$FP2" ] &&
    [ "$(jq .model.generation "$TMP/body")" = 2 ] && ok "SIGHUP: damaged model refused, old one serves" ||
    fail "damaged model: healthz"
req "recommend after damaged" 200 "$B/v1/recommend?user=1&k=3" || true
head -c $((size / 3)) "$TMP/a.model" >"$TMP/short.model"
install_model "$TMP/short.model"
kill -HUP "$PID"
sleep 0.3
req "healthz after truncated" 200 "$B/healthz" && [ "$(jq .model.generation "$TMP/body")" = 2 ] &&
    ok "SIGHUP: truncated model refused" || fail "truncated model"
install_model "$TMP/a.model"
kill -HUP "$PID"
sleep 0.3
touch "$TMP/stop"
wait "$LOADER"
n_all=$(wc -l <"$TMP/codes")
n200=$(grep -c '^200$' "$TMP/codes")
[ "$n200" -eq "$n_all" ] && [ "$n_all" -ge 50 ] && ok "$n_all requests during 4 reloads all answered 200" ||
    fail "during reloads: $n200 of $n_all answered 200 ($(sort "$TMP/codes" | uniq -c | tr '\n' ' '))"
req "metrics after reloads" 200 "$B/metrics" &&
    body_has reloads 'bookrec_model_reloads_total{result="failed"} 2' &&
    body_has reloads 'bookrec_model_reloads_total{result="ok"} 2' && ok "reloads counted"

# ---- access log ----
grep -q 'method=GET uri="/v1/recommend?user=1&k=5" route=/v1/recommend status=200 ' "$TMP/access.log" ||
    fail "access log lacks the recommend line: $(head -3 "$TMP/access.log")"
grep -q 'method=DELETE uri="/healthz" route=/healthz status=405' "$TMP/access.log" || fail "access log: 405"
grep -q 'status=404' "$TMP/access.log" || fail "access log: 404"
bad_lines=$(grep -cvE '^time=[0-9T:.-]+Z client=127\.0\.0\.1 method=[A-Z-]+ uri="[^"]*" route=[^ ]+ status=[0-9a-z]+ bytes=[0-9]+ duration_us=[0-9]+ model=[0-9]+$' "$TMP/access.log")
[ "$bad_lines" -eq 0 ] && ok "access log: $(wc -l <"$TMP/access.log") well-formed lines" ||
    fail "access log: $bad_lines malformed lines"

# ---- SIGTERM: a slow request in flight is answered, then exit 0 ----
python3 -c 'import json; print(json.dumps({"read": list(range(1, 300)), "k": 5}))' >"$TMP/slow.json" 2>/dev/null ||
    { printf '{"read": [1'; for i in $(seq 2 299); do printf ',%d' "$i"; done; printf '], "k": 5}'; } >"$TMP/slow.json"
curl -s -o "$TMP/slow.out" -w '%{http_code}' --limit-rate 1K --max-time 30 -X POST \
    --data-binary @"$TMP/slow.json" "$B/v1/recommend" >"$TMP/slow.code" &
SLOW=$!
sleep 0.5
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=
wait "$SLOW"
[ "$rc" -eq 0 ] && ok "SIGTERM: exit 0" || fail "SIGTERM: exit $rc ($(tail -3 "$TMP/server.err"))"
[ "$(cat "$TMP/slow.code")" = 200 ] && ok "SIGTERM: the request in flight was answered" ||
    fail "SIGTERM: request in flight got $(cat "$TMP/slow.code")"
grep -q "stopping (1 requests in flight)" "$TMP/server.err" || fail "SIGTERM: in-flight count not logged"
grep -q "stopped$" "$TMP/server.err" || fail "SIGTERM: no clean stop logged"
curl -s --max-time 2 -o /dev/null "$B/healthz" && fail "still answering after SIGTERM"

# ---- pinning: on one CPU, -j 1 pins its worker there (the start-up line
# names it); --no-pin leaves it free ----
start_line() {
    taskset -c 0 "$BIN" -m "$M" --serve 127.0.0.1:0 -j 1 "$@" 2>"$TMP/pin.err" &
    local pid=$!
    for _ in $(seq 1 200); do
        grep -q "serving" "$TMP/pin.err" && break
        sleep 0.05
    done
    kill -TERM "$pid"
    wait "$pid"
    grep "serving" "$TMP/pin.err"
}
if command -v taskset >/dev/null; then
    start_line | grep -q "with 1 threads on CPUs 0 (pid" && ok "pinned: the start-up line names CPU 0" ||
        fail "pinned: $(cat "$TMP/pin.err")"
    line=$(start_line --no-pin)
    [ -n "$line" ] && ! echo "$line" | grep -q "on CPUs" && ok "--no-pin: no CPUs named" ||
        fail "--no-pin: $(cat "$TMP/pin.err")"
fi

# ---- start-up errors ----
"$BIN" -m "$M" --serve 1.2.3.4.5:x >/dev/null 2>"$TMP/err"; [ $? -eq 2 ] && ok "bad --serve: exit 2" || fail "bad --serve"
"$BIN" -m "$TMP/nope.model" --serve 127.0.0.1:0 >/dev/null 2>"$TMP/err"; [ $? -eq 1 ] && ok "missing model: exit 1" ||
    fail "missing model"
"$BIN" -m "$TMP/flip.model" --serve 127.0.0.1:0 >/dev/null 2>"$TMP/err"; [ $? -eq 1 ] && ok "damaged model: exit 1" ||
    fail "damaged model at start"

if [ "$fails" -ne 0 ]; then
    echo "$fails failure(s)"
    echo "--- server log"; cat "$TMP/server.err"
    exit 1
fi
echo "all bookrec-infer --serve checks passed"

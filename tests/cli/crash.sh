#!/usr/bin/env bash
# crash.sh - crash safety of bookrec-train's model writing: kill -9 the
# trainer at random moments, during training and while the model is being
# written, and check after every kill that the model file at the target path
# is whole.
#
#   bash tests/cli/crash.sh BUILD_DIR [DATA_DIR]
#   BR_CRASH_KILLS=500 bash tests/cli/crash.sh build     # the long run by hand
#   BR_CRASH_LARGE=1 BR_CRASH_KILLS=200 bash tests/cli/crash.sh build   # a 6 MB model
#
# Setup: a small generated ratings file (bookrec-gen) and one complete
# training run, whose model becomes the reference. Then, until
# BR_CRASH_KILLS (default 50) trainers have been killed, alternately:
#   random - kill -9 after a delay drawn uniformly from [0, 0.9 T], T the time
#            one full run takes (measured, then lowered whenever a run
#            outruns its kill: 3/4 of that run's time), so most kills land in loading/training;
#   write  - wait (polling every 2 ms) until the trainer's temporary file
#            <model>.tmp.<pid> appears, then kill -9 at once (2 times in 3)
#            or after a delay drawn from [0, W/2], W the time from the
#            temporary's appearance to the trainer's exit in a calibration
#            run (so kills land in the fwrite, the fsync, the rename or just
#            after it).
# After each kill: the target path must hold either the previous model,
# byte-identical (cmp), or - if the trainer got past its rename - a complete
# new model; either way `bookrec-infer -m M --user 1 --top 1` must succeed
# and nothing else may be at the path. Stale temporaries (<model>.tmp.<pid>,
# which kill -9 leaves behind by design, see br_io.h) are counted and
# removed. Prints a summary line: kills by phase, stale temporaries, runs
# that finished before the kill. BR_CRASH_SEED fixes the random sequence.
# Needs bash, coreutils and cmp.
set -u

build=${1:?usage: crash.sh BUILD_DIR [DATA_DIR]}
build=$(cd "$build" && pwd) || exit 1
train=$build/bookrec-train
infer=$build/bookrec-infer
gen=$build/bookrec-gen   # optional (a BOOKREC_BUILD_BENCH target): awk stands in
for b in "$train" "$infer"; do
    [ -x "$b" ] || { echo "FAIL: no executable $b"; exit 1; }
done
want=${BR_CRASH_KILLS:-50}
seed=${BR_CRASH_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$seed

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bookrec-crash.XXXXXX") || exit 1
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    exec 9>&- 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1
unset BOOKREC_DATA
mkfifo tick && exec 9<>tick   # `read -t X -u 9` sleeps X seconds without a fork

fail() { echo "FAIL: $*"; echo "  (BR_CRASH_SEED=$seed to repeat)"; exit 1; }

# Small by default (a ~90 KB model, ~0.15 s a run); BR_CRASH_LARGE=1: a
# ~6 MB model, whose write and fsync take long enough to be hit often.
if [ -n "${BR_CRASH_LARGE:-}" ]; then
    size=(--users 20000 --books 2000 --ratings 60000) dim=64
else
    size=(--users 1000 --books 500 --ratings 6000) dim=8
fi
if [ -x "$gen" ]; then
    "$gen" "${size[@]}" --seed 7 -q -o r.csv || fail "bookrec-gen"
else
    awk -v u="${size[1]}" -v b="${size[3]}" -v n="${size[5]}" 'BEGIN {
        srand(7); print "user_id,book_id,rating"
        for (i = 0; i < n; i++) print int(rand() * u) + 1 "," int(rand() * b) + 1 "," int(rand() * 5) + 1
    }' >r.csv || fail "awk"
fi
M=$tmp/m.model
args=(--ratings r.csv --data "$tmp/no-data" -q -j 1 --epochs 2 --patience 0 --holdout 0
      --dim "$dim" --seed 11 -o "$M")

# ms: milliseconds since the epoch, without a fork (bash >= 5)
ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

t0=$(ms)
"$train" "${args[@]}" >train.log 2>&1 || { cat train.log; fail "the first training run failed"; }
T=$(( $(ms) - t0 ))
[ "$T" -ge 1 ] || T=1
T0=$T
cp "$M" ref.model

# loads FILE: bookrec-infer maps and validates it (checksum, sizes) and answers.
loads() { "$infer" -m "$1" --user 1 --top 1 >infer.out 2>&1; }
loads "$M" || { cat infer.out; fail "the reference model does not load"; }

# Calibration: W, from the temporary's appearance to the trainer's exit.
"$train" "${args[@]}" >train.log 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null && [ ! -e "$M.tmp.$pid" ]; do read -t 0.002 -u 9; done
t1=$(ms)
wait "$pid" || { cat train.log; fail "the calibration run failed"; }
pid=
W=$(( $(ms) - t1 ))
[ "$W" -ge 1 ] || W=1
loads "$M" || { cat infer.out; fail "the calibration model does not load"; }
cp "$M" ref.model

finished_random=0 kills=0 in_train=0 in_write=0 after_rename=0 finished=0 stale=0 attempts=0
start=$(ms)
while [ "$kills" -lt "$want" ]; do
    attempts=$((attempts + 1))
    [ "$attempts" -le $((want * 3)) ] || fail "only $kills kills in $attempts attempts"
    mode=$((attempts % 2))   # 1: random, 0: write
    t1=$(ms)
    "$train" "${args[@]}" >train.log 2>&1 &
    pid=$!
    if [ "$mode" -eq 1 ]; then
        d=$(( (RANDOM * 32768 + RANDOM) % (T * 9 / 10 + 1) ))
        read -t "$((d / 1000)).$(printf %03d $((d % 1000)))" -u 9
    else
        while kill -0 "$pid" 2>/dev/null && [ ! -e "$M.tmp.$pid" ]; do
            read -t 0.002 -u 9
        done
        if [ $((RANDOM % 3)) -eq 1 ]; then
            d=$(( RANDOM % (W / 2 + 1) ))
            read -t "$((d / 1000)).$(printf %03d $((d % 1000)))" -u 9
        fi
    fi
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        rc=$?
    else
        wait "$pid"
        rc=$?
    fi
    tmpf="$M.tmp.$pid"
    pid=
    if [ "$rc" -eq 137 ]; then
        kills=$((kills + 1))
    elif [ "$rc" -eq 0 ]; then
        finished=$((finished + 1))
        [ "$mode" -eq 1 ] && finished_random=$((finished_random + 1))
        # It outran the kill: runs are faster than T said (a warm cache, a
        # quieter machine). Follow the run times seen.
        [ "$mode" -eq 1 ] && T=$(( ($(ms) - t1) * 3 / 4 + 1 ))
    else
        cat train.log
        fail "the trainer exited with status $rc"
    fi
    [ -f "$M" ] || fail "no model at the target path after kill $kills"
    if cmp -s "$M" ref.model; then
        if [ -e "$tmpf" ]; then
            [ "$rc" -eq 137 ] && in_write=$((in_write + 1))
        else
            [ "$rc" -eq 137 ] && in_train=$((in_train + 1))
        fi
    else
        # The trainer got past its rename: the new model must be complete.
        [ -e "$tmpf" ] && fail "new model at the path but the temporary $tmpf remains"
        [ "$rc" -eq 137 ] && after_rename=$((after_rename + 1))
        cp "$M" ref.model
    fi
    loads "$M" || { cat infer.out; fail "the model at the target path does not load (kill $kills)"; }
    if [ -e "$tmpf" ]; then
        stale=$((stale + 1))
        rm -f "$tmpf"
    fi
    others=$(ls -A | grep -v -x -e r.csv -e m.model -e ref.model -e tick -e train.log -e infer.out \
             -e no-data || true)
    [ -z "$others" ] || fail "unexpected files after kill $kills: $others"
done
secs=$(( ($(ms) - start) / 1000 ))
echo "crash.sh: $kills kills in ${secs}s (one run: ${T0} ms, write phase ${W} ms): $in_train before the write," \
     "$in_write during the write (temporary left), $after_rename after the rename;" \
     "$finished runs finished before their kill ($finished_random random, $((finished - finished_random)) write); $stale stale temporaries removed; model intact and" \
     "loading after every kill (BR_CRASH_SEED=$seed)"
exit 0

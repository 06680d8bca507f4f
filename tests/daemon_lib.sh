# tests/daemon_lib.sh - sourced by the clipmodd tests (daemon_http.sh, daemon_clamd.sh,
# daemon_tusd.sh): a model, a policy with one photo that flags and one that does not,
# and starting and stopping daemons on loopback.
#
# The model is a tiny random checkpoint as in scan_cli.sh: its scores are arbitrary
# but deterministic. measure_photos scans the sample photos once with a threshold no
# photo reaches, takes the photo with the highest score ($HI) and the one with the
# lowest ($LO), and write_policy puts the threshold halfway between them, so that
# exactly $HI is flagged. The daemons are checked on their machinery, not on meaning.
#
# Daemons bind port 0 on 127.0.0.1 and report what they bound in a --ready-file, so
# no port is guessed; every daemon started here is killed when the test exits.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

CLIPMODD="$top_builddir/src/daemon/clipmodd"
PY=/usr/bin/python3
DAEMON_PIDS=""

[ -x "$CLIPMODD" ] || fail "$CLIPMODD is not built"
command -v curl >/dev/null || skip "curl is not installed (apt-get install curl)"

cleanup_daemons() {
    for p in $DAEMON_PIDS; do
        kill "$p" 2>/dev/null || true
    done
    for p in $DAEMON_PIDS; do
        # Give each a moment to stop, then insist.
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -9 "$p" 2>/dev/null || true
    done
}
trap cleanup_daemons EXIT INT TERM

# setup_model NAME: $MODEL, $PHOTOS; skips without the reference or the merges. Each
# test writes its own copy of the checkpoint (same seed, same weights), so tests that
# run in parallel never write one directory at once.
# Policies written by write_policy (tests/lib.sh) carry this name unless told otherwise.
TEST_POLICY_NAME="daemon test"

setup_model() {
    need_reference
    have_bpe || skip "$CLIPMOD_BPE_GZ is absent: policies need the tokenizer"
    PHOTOS=$(photos_dir) || fail "no sample photos"
    MODEL=$(checkpoint "tiny-$1" --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
}


# measure_photos DIR: sets $HI, $LO (paths) and $THRESHOLD between their scores.
measure_photos() {
    write_policy "$1/measure.yaml" 1 flag
    XDG_CACHE_HOME="$1/cache" "$CLIPMOD" scan -m "$MODEL" -p "$1/measure.yaml" --json --quiet \
        "$PHOTOS" >"$1/scores.jsonl" || true
    "$PY" - "$1/scores.jsonl" >"$1/scores" <<'EOF' || fail "cannot read the scores"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["name"], r["categories"][0]["score"])
EOF
    HI=$(sort -k2 -g "$1/scores" | tail -n 1)
    LO=$(sort -k2 -g "$1/scores" | head -n 1)
    THRESHOLD=$("$PY" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); \
assert a - b > 0.002, (a, b); print('%.4f' % ((a + b) / 2))" "${HI#* }" "${LO#* }") ||
        fail "the random model scores every photo alike: no threshold between"
    HI=${HI% *}
    LO=${LO% *}
    echo "flagged photo: $HI, clean photo: $LO, threshold $THRESHOLD"
}

# start_daemon NAME CONFIG [ARGS...]: starts clipmodd; sets $PID, $HTTP (host:port),
# $CLAMD_TCP, and $LOG (its log file). Fails if it is not serving within 60 s.
start_daemon() {
    name=$1
    conf=$2
    shift 2
    ready="$W/$name.ready"
    LOG="$W/$name.log"
    rm -f "$ready"
    XDG_CACHE_HOME="$W/cache" "$CLIPMODD" -c "$conf" --ready-file "$ready" "$@" >"$LOG" 2>&1 &
    PID=$!
    DAEMON_PIDS="$DAEMON_PIDS $PID"
    i=0
    while [ ! -f "$ready" ]; do
        kill -0 "$PID" 2>/dev/null || fail "clipmodd ($name) exited: $(tail -n 20 "$LOG")"
        [ $i -lt 600 ] || fail "clipmodd ($name) is not ready after 60 s: $(tail -n 20 "$LOG")"
        sleep 0.1
        i=$((i + 1))
    done
    HTTP=$(sed -n 's/^http=//p' "$ready")
    CLAMD_TCP=$(sed -n 's/^clamd-tcp=//p' "$ready")
}

# stop_daemon PID: SIGTERM, then wait for it; its exit status in $STOPPED.
stop_daemon() {
    kill "$1"
    set +e
    wait "$1"
    STOPPED=$?
    set -e
}

# json_get FILE EXPR: evaluate a Python expression on the JSON in FILE (as `r`).
json_get() {
    "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# metric NAME_WITH_LABELS: its value from GET /metrics (0 when absent).
metric() {
    curl -s ${AUTH_HEADER:+-H "$AUTH_HEADER"} "http://$HTTP/metrics" |
        awk -v m="$1" '$1 == m { v = $2 } END { print v == "" ? 0 : v }'
}

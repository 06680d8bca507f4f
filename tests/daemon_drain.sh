#!/bin/sh
# daemon_drain.sh - clipmodd's drain on SIGTERM (issue 17; clipmodd(8) STOPPING), on
# one daemon without a balancer (tests/daemon_haproxy.sh has HAProxy in front).
#
# After SIGTERM, for drain-grace: /v1/health answers 503 {"status": "draining"},
# clamd's PING "DRAINING. ERROR", /metrics clipmodd_draining 1, and scans are still
# answered; then new connections are refused while a slow upload begun during the
# grace is still read, scanned and answered 200, and the daemon exits 0, each phase
# logged. A second SIGTERM stops at once (exit 1); a daemon whose health was never
# checked skips the grace; drain-timeout bounds the wait for requests in flight;
# a malformed drain-grace is refused.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_drain"
rm -rf "$W"
mkdir -p "$W"
DEMO="$top_srcdir/models/demo"
IMG="$top_srcdir/samples/water-pistol.png"
[ -f "$DEMO/model.safetensors" ] || fail "$DEMO/model.safetensors is missing"
[ -f "$IMG" ] || fail "$IMG is missing"

# conf FILE GRACE TIMEOUT: the demo model, HTTP and clamd on free loopback ports.
conf() {
    cat >"$1" <<EOF
model: $DEMO
policy: $top_srcdir/policies/demo.yaml
drain-grace: $2
drain-timeout: $3
http:
  listen: 127.0.0.1:0
clamd:
  tcp: 127.0.0.1:0
EOF
}

# A body that takes about 8 s at 25 kB/s: the image, then padding (still 200).
cp "$IMG" "$W/slow.png"
head -c 200000 /dev/zero >>"$W/slow.png"

# code URL [CURL-ARGS...]: the HTTP status (000: no connection), body in $W/body.
code() {
    url=$1
    shift
    curl -s -m 20 -o "$W/body" -w '%{http_code}' "$@" "$url" || true
}
scan_code() { code "http://$1/v1/scan" --data-binary "@$IMG" -H 'Content-Type: image/png'; }

# ping HOST:PORT: clamd's answer to nPING.
ping_clamd() {
    "$PY" - "$1" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), 5)
s.settimeout(5)
s.sendall(b"nPING\n")
print(s.recv(200).decode().strip())
EOF
}

# wait_log FILE TEXT SECONDS: until the log holds TEXT.
wait_log() {
    i=0
    until grep -q "$2" "$1"; do
        [ $i -lt $(($3 * 10)) ] || fail "no \"$2\" in $1 after $3 s: $(tail -n 5 "$1")"
        sleep 0.1
        i=$((i + 1))
    done
}

# ---- the phases, with a slow upload in flight when the doors close --------------
conf "$W/a.yaml" 4s 30s
start_daemon a "$W/a.yaml"
A=$HTTP
ALOG=$LOG
APID=$PID
[ "$(code "http://$A/v1/health")" = 200 ] || fail "health before SIGTERM: $(cat "$W/body")"
grep -q '"status":"ok"' "$W/body" || fail "health says: $(cat "$W/body")"
[ "$(ping_clamd "$CLAMD_TCP")" = PONG ] || fail "PING before SIGTERM"
[ "$(metric clipmodd_draining)" = 0 ] || fail "clipmodd_draining before SIGTERM"

curl -s -m 60 -o "$W/slow.json" -w '%{http_code}' --limit-rate 25k --data-binary "@$W/slow.png" \
    -H 'Content-Type: image/png' "http://$A/v1/scan" >"$W/slow.code" 2>"$W/slow.err" &
SLOW=$!
sleep 0.5
kill -TERM "$APID"
wait_log "$ALOG" 'msg="draining: health checks answer draining' 10
[ "$(code "http://$A/v1/health")" = 503 ] || fail "health while draining: $(cat "$W/body")"
grep -q '"status":"draining"' "$W/body" || fail "health while draining says: $(cat "$W/body")"
[ "$(scan_code "$A")" = 200 ] || fail "a scan during the grace: $(cat "$W/body")"
grep -q '"state"' "$W/body" || fail "a scan during the grace has no verdict: $(cat "$W/body")"
[ "$(ping_clamd "$CLAMD_TCP")" = "DRAINING. ERROR" ] || fail "PING while draining"
[ "$(metric clipmodd_draining)" = 1 ] || fail "clipmodd_draining while draining"
grep -q 'msg="draining: stopped accepting' "$ALOG" &&
    fail "the doors closed before drain-grace (4 s) passed: $(tail -n 5 "$ALOG")"

wait_log "$ALOG" 'msg="draining: stopped accepting' 20
kill -0 "$SLOW" 2>/dev/null ||
    fail "the slow upload ended before the doors closed: nothing was in flight (test setup)"
[ "$(code "http://$A/v1/health")" = 000 ] || fail "a new connection after the doors closed"
wait "$SLOW" || true
[ "$(cat "$W/slow.code")" = 200 ] ||
    fail "the upload in flight when the doors closed: HTTP $(cat "$W/slow.code") $(cat "$W/slow.err")"
set +e
wait "$APID"
STOPPED=$?
set -e
[ "$STOPPED" -eq 0 ] || fail "clipmodd exited $STOPPED after draining: $(tail -n 5 "$ALOG")"
# In order: draining, stopped accepting, the slow scan answered, drained, stopped.
"$PY" - "$ALOG" <<'EOF' || fail "the drain's log: $(cat "$ALOG")"
import sys
lines = open(sys.argv[1]).read().splitlines()
def at(pred, what):
    for i, l in enumerate(lines):
        if pred(l):
            return i
    sys.exit("no log line: " + what)
d = at(lambda l: 'msg="draining: health checks' in l and "signal=SIGTERM" in l, "draining")
s = at(lambda l: 'msg="draining: stopped accepting' in l and "http=1 " in l, "stopped accepting, http=1")
u = at(lambda l: "path=/v1/scan " in l and "status=200" in l and "bytes=20" in l, "the slow scan")
r = at(lambda l: 'msg="drained: every request' in l, "drained")
e = at(lambda l: "msg=stopped" in l, "stopped")
assert d < s < u < r < e, (d, s, u, r, e)
EOF
echo "drain: grace, doors closed with an upload in flight, answered 200, exit 0"

# ---- a second SIGTERM stops at once ----------------------------------------------
conf "$W/b.yaml" 60s 30s
start_daemon b "$W/b.yaml"
[ "$(code "http://$HTTP/v1/health")" = 200 ] || fail "health (b)"
kill -TERM "$PID"
wait_log "$LOG" 'msg="draining: health checks' 10
kill -TERM "$PID"
i=0
while kill -0 "$PID" 2>/dev/null; do
    [ $i -lt 150 ] || fail "a second SIGTERM did not stop clipmodd within 15 s (drain-grace 60 s)"
    sleep 0.1
    i=$((i + 1))
done
set +e
wait "$PID"
STOPPED=$?
set -e
[ "$STOPPED" -eq 1 ] || fail "after a second SIGTERM clipmodd exited $STOPPED, not 1"
grep -q 'msg="second stop signal' "$LOG" || fail "the second signal is not logged"
[ ! -e "$W/b.ready" ] || fail "the ready file is left after a second SIGTERM"
echo "second SIGTERM: exit 1 at once"

# ---- nobody checked the health: no grace -----------------------------------------
conf "$W/c.yaml" 60s 30s
start_daemon c "$W/c.yaml"
[ "$(scan_code "$HTTP")" = 200 ] || fail "scan (c)"
stop_daemon "$PID"
[ "$STOPPED" -eq 0 ] || fail "clipmodd (c) exited $STOPPED"
grep -q 'msg="draining: no health check was asked since start: no grace"' "$LOG" ||
    fail "a daemon nobody checked waited drain-grace: $(tail -n 5 "$LOG")"

# ---- drain-timeout bounds the wait for requests in flight ------------------------
conf "$W/d.yaml" 0 1s
start_daemon d "$W/d.yaml"
[ "$(code "http://$HTTP/v1/health")" = 200 ] || fail "health (d)"
curl -s -m 60 -o /dev/null --limit-rate 25k --data-binary "@$W/slow.png" \
    -H 'Content-Type: image/png' "http://$HTTP/v1/scan" >/dev/null 2>&1 &
SLOW=$!
sleep 0.5
t0=$(date +%s)
stop_daemon "$PID"
t1=$(date +%s)
[ "$STOPPED" -eq 0 ] || fail "clipmodd (d) exited $STOPPED"
[ $((t1 - t0)) -lt 6 ] || fail "drain-timeout 1s: stopping took $((t1 - t0)) s"
grep -q 'msg="draining: drain-timeout passed with requests in flight" .*requests=1' "$LOG" ||
    fail "drain-timeout is not logged: $(tail -n 5 "$LOG")"
wait "$SLOW" || true
echo "drain-grace 0 and drain-timeout 1s: stopped in $((t1 - t0)) s"

# ---- the keys are checked --------------------------------------------------------
conf "$W/bad.yaml" soon 30s
if "$CLIPMODD" --check -c "$W/bad.yaml" >"$W/bad.out" 2>&1; then
    fail "drain-grace: soon was accepted"
fi
grep -q 'bad.yaml:3:.*drain-grace' "$W/bad.out" || fail "drain-grace's problem: $(cat "$W/bad.out")"
echo "PASS"

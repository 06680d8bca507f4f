#!/bin/sh
# daemon_haproxy.sh - a rolling restart of clipmodd behind HAProxy loses nothing
# (issue 17; clipmodd(8) "Behind HAProxy"; contrib/haproxy.cfg).
#
# Two clipmodd (demo model) on fixed free loopback ports, and a real haproxy this
# test starts in the foreground with contrib/haproxy.cfg itself: only its addresses
# and ports are replaced, its log sent to stderr and the privilege lines (chroot,
# user, group) dropped. wrk posts an image to /v1/scan through HAProxy for 15 s; in
# the middle the first daemon gets SIGTERM, drains, exits, and is started again on
# the same ports. Asserted: wrk saw no socket error and no non-2xx answer; HAProxy
# marked the daemon DOWN (HTTP and clamd checks) before it closed its doors; the
# daemon answered scans while draining and exited 0; both daemons served scans,
# the restarted one too once HAProxy had it UP again; the clamd frontend answers.
# Prints the throughput through HAProxy and HAProxy's retries and redispatches.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

command -v haproxy >/dev/null 2>&1 ||
    skip "haproxy is not installed (apt-get install haproxy; tools/install-deps.sh)"
command -v wrk >/dev/null 2>&1 || skip "wrk is not installed (apt-get install wrk; tools/install-deps.sh)"
W="$CLIPMOD_WORK/daemon_haproxy"
rm -rf "$W"
mkdir -p "$W"
DEMO="$top_srcdir/models/demo"
IMG="$top_srcdir/samples/water-pistol.png"
CFG="$top_srcdir/contrib/haproxy.cfg"
[ -f "$DEMO/model.safetensors" ] || fail "$DEMO/model.safetensors is missing"
[ -f "$CFG" ] || fail "$CFG is missing"
# HAProxy retries only requests that fit one buffer (16 kB): the test's image does.
[ "$(wc -c <"$IMG")" -lt 15000 ] || fail "$IMG is too large for HAProxy's retries"

# Seven free loopback ports, held together while chosen so that they differ.
set -- $("$PY" -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
H1=$1 H2=$2 C1=$3 C2=$4 FH=$5 FC=$6 ST=$7

# conf N HTTP-PORT CLAMD-PORT: daemon N. drain-grace is above the checks' ~1.3 s
# with room for a busy machine.
conf() {
    cat >"$W/d$1.yaml" <<EOF
model: $DEMO
policy: $top_srcdir/policies/demo.yaml
drain-grace: 5s
drain-timeout: 30s
http:
  listen: 127.0.0.1:$2
clamd:
  tcp: 127.0.0.1:$3
EOF
}
conf 1 "$H1" "$C1"
conf 2 "$H2" "$C2"
start_daemon d1 "$W/d1.yaml"
PID1=$PID LOG1=$LOG
start_daemon d2 "$W/d2.yaml"
PID2=$PID LOG2=$LOG

# ---- haproxy with the shipped configuration ----------------------------------------
sed -e '/^    chroot /d' -e '/^    user /d' -e '/^    group /d' \
    -e 's|^    log /dev/log local0|    log stderr format raw local0 info|' \
    -e "s|stats socket /run/haproxy/clipmodd.sock|stats socket $W/haproxy.sock|" \
    -e "s|bind :8080|bind 127.0.0.1:$FH|" -e "s|bind :3310|bind 127.0.0.1:$FC|" \
    -e "s|bind 127.0.0.1:8404|bind 127.0.0.1:$ST|" \
    -e "s|10.0.0.11:8093|127.0.0.1:$H1|" -e "s|10.0.0.12:8093|127.0.0.1:$H2|" \
    -e "s|10.0.0.11:3310|127.0.0.1:$C1|" -e "s|10.0.0.12:3310|127.0.0.1:$C2|" \
    "$CFG" >"$W/haproxy.cfg"
grep -v '^ *#' "$W/haproxy.cfg" >"$W/haproxy.lines"
! grep -nE '10\.0\.0\.|:8080|:3310|:8404|/run/haproxy|/dev/log|^    (chroot|user|group) ' \
    "$W/haproxy.lines" || fail "contrib/haproxy.cfg changed: the lines above were not replaced"
[ "$(grep -c "127.0.0.1:" "$W/haproxy.lines")" -eq 7 ] || fail "not every address was replaced"
haproxy -c -f "$W/haproxy.cfg" >"$W/haproxy-check.out" 2>&1 ||
    fail "haproxy refuses the configuration: $(cat "$W/haproxy-check.out")"
haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 &
HPID=$!
DAEMON_PIDS="$DAEMON_PIDS $HPID"

# status BACKEND SERVER: its status in HAProxy's statistics (UP, DOWN, "UP 1/2"...).
status() {
    curl -s -m 5 "http://127.0.0.1:$ST/stats;csv" |
        awk -F, -v b="$1" -v s="$2" '$1 == b && $2 == s { print $18 }'
}
# wait_status BACKEND SERVER STATUS SECONDS
wait_status() {
    i=0
    until [ "$(status "$1" "$2")" = "$3" ]; do
        kill -0 "$HPID" 2>/dev/null || fail "haproxy exited: $(tail -n 20 "$W/haproxy.log")"
        [ $i -lt $(($4 * 10)) ] ||
            fail "$1/$2 is not $3 after $4 s but '$(status "$1" "$2")': $(tail -n 5 "$W/haproxy.log")"
        sleep 0.1
        i=$((i + 1))
    done
}
for s in clipmodd1 clipmodd2; do
    wait_status clipmodd_http $s UP 30
    wait_status clipmodd_clamd $s UP 30
done
echo "haproxy: both daemons UP (HTTP and clamd checks)"

# scans DAEMON-HTTP: its scans answered 200 so far.
scans() {
    HTTP=$1 metric 'clipmodd_http_requests_total{endpoint="/v1/scan",code="200"}'
}

# ---- wrk through HAProxy, counting every answer that is not 2xx ------------------
cat >"$W/scan.lua" <<'EOF'
-- POST the image of $CLIPMOD_IMAGE to /v1/scan; count answers by class.
local f = assert(io.open(os.getenv("CLIPMOD_IMAGE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/png"

local threads = {}
function setup(thread)
    table.insert(threads, thread)
end
function init(args)
    ok, bad = 0, 0
end
function response(status, headers, body)
    if status >= 200 and status < 300 and body:find('"state"', 1, true) then
        ok = ok + 1
    else
        bad = bad + 1
    end
end
function done(summary, latency, requests)
    local o, b = 0, 0
    for _, t in ipairs(threads) do
        o = o + t:get("ok")
        b = b + t:get("bad")
    end
    local e = summary.errors
    io.write(string.format("clipmod: ok=%d bad=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
        o, b, e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
CLIPMOD_IMAGE="$IMG" wrk -t2 -c8 -d15s --timeout 10s -s "$W/scan.lua" \
    "http://127.0.0.1:$FH/v1/scan" >"$W/wrk.out" 2>&1 &
WRK=$!
DAEMON_PIDS="$DAEMON_PIDS $WRK"
sleep 3
[ "$(scans "127.0.0.1:$H1")" -gt 0 ] && [ "$(scans "127.0.0.1:$H2")" -gt 0 ] ||
    fail "after 3 s of wrk a daemon has answered no scan"

# ---- the rolling restart of daemon 1 ---------------------------------------------
before1=$(scans "127.0.0.1:$H1")
kill -TERM "$PID1"
# HAProxy must learn first: both checks DOWN while the doors are still open.
i=0
until [ "$(status clipmodd_http clipmodd1)" = DOWN ] && [ "$(status clipmodd_clamd clipmodd1)" = DOWN ]; do
    ! grep -q 'msg="draining: stopped accepting' "$LOG1" ||
        fail "clipmodd closed its doors before HAProxy marked it DOWN (drain-grace 5 s)"
    [ $i -lt 100 ] || fail "HAProxy did not mark the draining daemon DOWN within 10 s"
    sleep 0.1
    i=$((i + 1))
done
grep -q 'msg="draining: stopped accepting' "$LOG1" &&
    fail "clipmodd closed its doors before HAProxy marked it DOWN"
echo "haproxy: clipmodd1 DOWN (HTTP and clamd) during its grace, $((i / 10)).$((i % 10)) s after SIGTERM"
set +e
wait "$PID1"
STOPPED=$?
set -e
[ "$STOPPED" -eq 0 ] || fail "clipmodd1 exited $STOPPED after SIGTERM: $(tail -n 5 "$LOG1")"
grep -q 'msg="drained: every request in flight was answered"' "$LOG1" ||
    fail "clipmodd1 did not drain: $(tail -n 5 "$LOG1")"
# Scans that came in after SIGTERM (in flight, or sent before the check failed) were
# answered; no scan anywhere in its log got anything but 200.
"$PY" - "$LOG1" <<'EOF' || fail "clipmodd1's log: $(tail -n 5 "$LOG1")"
import sys
lines = open(sys.argv[1]).read().splitlines()
d = next(i for i, l in enumerate(lines) if 'msg="draining: health checks' in l)
scans = [l for l in lines if "path=/v1/scan " in l]
bad = [l for l in scans if "status=200" not in l or "completed=true" not in l]
assert not bad, bad[:3]
late = [l for l in lines[d:] if "path=/v1/scan " in l]
assert late, "no scan answered after SIGTERM"
print("clipmodd1: %d scans, %d of them after SIGTERM, all 200" % (len(scans), len(late)))
EOF
mv "$LOG1" "$W/d1-first.log"
kill -0 "$WRK" 2>/dev/null || fail "wrk ended before the restart (test setup)"
start_daemon d1 "$W/d1.yaml"
PID1=$PID LOG1=$LOG
wait_status clipmodd_http clipmodd1 UP 20
kill -0 "$WRK" 2>/dev/null ||
    fail "wrk ended before the restarted daemon was UP: nothing shows it serving (test setup)"
echo "haproxy: clipmodd1 UP again"

set +e
wait "$WRK"
rc=$?
set -e
cat "$W/wrk.out"
[ "$rc" -eq 0 ] || fail "wrk exited $rc"
line=$(grep '^clipmod: ' "$W/wrk.out") || fail "wrk's script printed no counts"
for zero in bad connect read write status timeout; do
    echo "$line" | grep -q " $zero=0\( \|$\)" || fail "wrk through HAProxy: $zero is not 0: $line"
done
! grep -q 'Non-2xx\|Socket errors' "$W/wrk.out" || fail "wrk reports errors"
ok=$(echo "$line" | sed 's/.* ok=\([0-9]*\).*/\1/')
[ "$ok" -gt 100 ] || fail "only $ok scans in 15 s"
after1=$(scans "127.0.0.1:$H1")
n2=$(scans "127.0.0.1:$H2")
[ "$after1" -gt 0 ] || fail "the restarted clipmodd1 served no scan once UP again"
[ "$n2" -gt 0 ] || fail "clipmodd2 served no scan"
echo "scans: clipmodd1 $before1 before SIGTERM, $after1 after its restart; clipmodd2 $n2; wrk $ok"

# ---- the clamd frontend, after the restart ----------------------------------------
"$PY" - "127.0.0.1:$FC" "$IMG" <<'EOF' || fail "clamd through HAProxy"
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
data = open(sys.argv[2], "rb").read()
for _ in range(4):
    s = socket.create_connection((host, int(port)), 10)
    s.settimeout(20)
    s.sendall(b"zINSTREAM\0" + struct.pack("!L", len(data)) + data + struct.pack("!L", 0))
    answer = b""
    while not answer.endswith(b"\0"):
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    s.close()
    a = answer.rstrip(b"\0").decode()
    assert a.startswith("stream: ") and (a.endswith(" OK") or a.endswith(" FOUND")), a
print("clamd through HAProxy:", a)
EOF

# HAProxy's own view: retries and redispatches (informational), and its errors.
curl -s -m 5 "http://127.0.0.1:$ST/stats;csv" |
    awk -F, '$1 == "clipmodd_http" && $2 == "BACKEND" {
        print "haproxy: clipmodd_http retries=" $16 " redispatches=" $17 " response errors=" $15 }'
echo "PASS"

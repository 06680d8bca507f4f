#!/bin/sh
# daemon_clamd_admin.sh - clipmodd's answers to clamd's administrative commands and
# its record of clamd verdicts: STATS in clamd's layout (POOLS, STATE, THREADS,
# QUEUE, MEMSTATS, END) in plain, n- and z-forms and inside a session;
# VERSIONCOMMANDS listing STATS and SHUTDOWN; VERSION as "clipmod VERSION/GEN/POLICY";
# one log line per verdict given over the protocol (source, category, score,
# threshold, policy, generation); clipmod_flagged_total{category} on /metrics; and
# SHUTDOWN: refused on TCP, obeyed on the unix socket with a clean stop (exit 0);
# byte limits written as 25M; a missing model's error naming `clipmod model fetch` / `clipmod model use`.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_clamd_admin"
rm -rf "$W"
mkdir -p "$W"
setup_model daemon-clamd-admin
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject

cat >"$W/clipmodd.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
clamd:
  tcp: 127.0.0.1:0
  unix-socket: $W/clamd.sock
EOF
start_daemon admin "$W/clipmodd.yaml"
[ -n "$CLAMD_TCP" ] || fail "no clamd TCP address in the ready file"

"$PY" - "$CLAMD_TCP" "$HI" "$LO" "$W/clamd.sock" <<'EOF' || fail "clamd administrative commands"
import re, socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
hi, lo = (open(p, "rb").read() for p in sys.argv[2:4])

def talk(data):
    s = socket.create_connection((host, int(port)), timeout=20)
    s.sendall(data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out

def stream(img, cmd=b"zINSTREAM\0"):
    return cmd + struct.pack("!L", len(img)) + img + struct.pack("!L", 0)

# clamd's STATS layout (clamd/thrmgr.c, thrmgr_printstats), our numbers.
layout = re.compile(
    rb"POOLS: 1\n\nSTATE: VALID PRIMARY\n"
    rb"THREADS: live (\d+)  idle (\d+) max (\d+) idle-timeout (\d+)\n"
    rb"QUEUE: (\d+) items\n\n"
    rb"MEMSTATS: heap [0-9.]+M mmap [0-9.]+M used [0-9.]+M free [0-9.]+M releasable [0-9.]+M "
    rb"pools 1 pools_used [0-9.]+M pools_total [0-9.]+M\nEND")
for cmd, term in ((b"zSTATS\0", b"\0"), (b"nSTATS\n", b"\n"), (b"STATS\n", b"\n")):
    got = talk(cmd)
    assert got.endswith(b"END" + term), (cmd, got)
    m = layout.fullmatch(got[:-1])
    assert m, (cmd, got)
    live, idle, mx, idle_to, queue = (int(x) for x in m.groups())
    # Defaults: scan.workers 1 + scan.url-workers 2; clamd.idle-timeout 30; idle queue.
    assert (live + idle, mx, idle_to, queue) == (3, 3, 30, 0), got
# Inside a session, numbered like every other reply.
got = talk(b"zIDSESSION\0zSTATS\0zEND\0")
assert got.startswith(b"1: POOLS: 1\n") and got.endswith(b"END\0"), got

vc = talk(b"zVERSIONCOMMANDS\0")
assert re.fullmatch(rb"clipmod [0-9.]+/1/daemon test\| COMMANDS:( [A-Z]+)+\0", vc), vc
for c in (b"SCAN", b"INSTREAM", b"STATS", b"SHUTDOWN", b"VERSIONCOMMANDS", b"IDSESSION"):
    assert b" " + c + b" " in vc or vc.endswith(b" " + c + b"\0"), (c, vc)
assert talk(b"nVERSION\n") == vc.split(b"|")[0] + b"\n", talk(b"nVERSION\n")

assert talk(stream(hi)) == b"stream: Clipmod.cat FOUND\0"
assert talk(stream(lo, b"nINSTREAM\n")) == b"stream: OK\n"

# SHUTDOWN over TCP is refused and the daemon goes on.
got = talk(b"zSHUTDOWN\0")
assert got.endswith(b"ERROR\0") and b"unix socket" in got, got
assert talk(b"zPING\0") == b"PONG\0"
print("clamd admin over TCP: ok")
EOF

# Every clamd verdict is logged with its reasons and the policy that gave it: its
# name, and (as on every line, from the runtime logger's context) policy= the 12 hex
# digits of its fingerprint and its generation.
grep 'msg="clamd verdict"' "$LOG" | grep 'reply=FOUND' | grep 'category=cat' |
    grep 'score=' | grep 'threshold=' | grep 'policy_name="daemon test"' | grep -q ' generation=1 ' ||
    fail "no log line for the FOUND verdict: $(grep clamd "$LOG" | tail -n 5)"
grep 'msg="clamd verdict"' "$LOG" | grep 'reply=FOUND' | grep -Eq ' policy=[0-9a-f]{12} ' ||
    fail "the verdict's log line has no policy fingerprint: $(grep clamd "$LOG" | tail -n 2)"
grep 'msg="clamd verdict"' "$LOG" | grep 'reply=OK' | grep -q 'source=' ||
    fail "no log line for the OK verdict: $(grep clamd "$LOG" | tail -n 5)"

# Flagged inputs by category on /metrics, consistent with the FOUND lines logged.
found=$(grep 'msg="clamd verdict"' "$LOG" | grep -c 'reply=FOUND')
[ "$(metric 'clipmod_flagged_total{category="cat"}')" -eq "$found" ] ||
    fail "clipmod_flagged_total{category=\"cat\"} is not $found: $(curl -s "http://$HTTP/metrics" | grep flagged)"

# The policy behind an HTTP verdict is named in the answer's headers, as in the log.
curl -s -D "$W/headers" -o /dev/null -H 'Content-Type: image/png' --data-binary @"$HI" \
    "http://$HTTP/v1/scan"
fp=$(grep 'msg="clamd verdict"' "$LOG" | sed -n 's/.* policy=\([0-9a-f]*\) .*/\1/p' | head -n 1)
[ ${#fp} -eq 12 ] || fail "no 12-hex policy= in the verdict line: $(grep 'clamd verdict' "$LOG" | head -n 1)"
grep -qi "^Clipmod-Policy-Fingerprint: $fp" "$W/headers" ||
    fail "no Clipmod-Policy-Fingerprint $fp header: $(cat "$W/headers")"
grep -qi "^Clipmod-Policy-Generation: 1" "$W/headers" ||
    fail "no Clipmod-Policy-Generation header: $(cat "$W/headers")"

[ "$(metric 'clipmodd_clamd_commands_total{command="STATS"}')" -eq 4 ] ||
    fail "STATS commands are not counted"

# SHUTDOWN on the unix socket stops the daemon as SIGTERM does.
"$PY" - "$W/clamd.sock" <<'EOF' || fail "SHUTDOWN on the unix socket"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(b"zSHUTDOWN\0")
assert s.recv(100) == b"", "SHUTDOWN answers nothing and closes, as clamd"
EOF
i=0
while kill -0 "$PID" 2>/dev/null; do
    [ $i -lt 300 ] || fail "clipmodd still runs 30 s after SHUTDOWN"
    sleep 0.1
    i=$((i + 1))
done
set +e
wait "$PID"
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "clipmodd exited $rc after SHUTDOWN: $(tail -n 5 "$LOG")"
grep -q 'SHUTDOWN' "$LOG" || fail "SHUTDOWN is not logged"
[ ! -e "$W/clamd.sock" ] || fail "the unix socket must be removed after SHUTDOWN"
# Byte limits in the shared size syntax ("25M", binary multiples), and a bad one
# reported at its position.
cat >"$W/sizes.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  max-body-bytes: 25M
  max-body-memory: 1G
clamd:
  stream-max-length: 30MiB
EOF
"$CLIPMODD" --check -c "$W/sizes.yaml" >"$W/sizes.log" 2>&1 ||
    fail "sizes written as 25M are refused: $(cat "$W/sizes.log")"
sed 's/25M$/25X/' "$W/sizes.yaml" >"$W/badsize.yaml"
set +e
"$CLIPMODD" --check -c "$W/badsize.yaml" >"$W/badsize.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a bad size: exit $rc, not 2: $(cat "$W/badsize.log")"
grep -q "badsize.yaml:4:19: max-body-bytes: size '25X': unknown unit" "$W/badsize.log" ||
    fail "a bad size is not reported at its position: $(cat "$W/badsize.log")"

# A missing model: the error names the commands that install one or make it the default.
cat >"$W/nomodel.yaml" <<EOF
model: $W/no-such-model
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
EOF
set +e
"$CLIPMODD" -c "$W/nomodel.yaml" >"$W/nomodel.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "clipmodd without its model exited $rc, not 1: $(cat "$W/nomodel.log")"
grep 'model not loaded' "$W/nomodel.log" | grep "clipmod model fetch NAME" |
    grep -q "clipmod model use NAME" ||
    fail "the missing-model error does not name the commands to run: $(cat "$W/nomodel.log")"
echo "daemon_clamd_admin: ok"

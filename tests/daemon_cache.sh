#!/bin/sh
# daemon_cache.sh - clipmodd's verdict cache (issue 17; clipmodd(8) VERDICT CACHE),
# end to end with curl, the demo model and a real redis-server this test starts on
# a loopback port in its own directory (skipped when redis-server is not installed).
#
# The same image sent 100 times is scanned once (/metrics: 1 miss, 99 hits) and
# every answer equals the first but for "cached": true; other context text is a
# miss; a policy edit + SIGHUP changes every key (a miss); a second clipmodd sharing
# the Redis answers from the first's scan (a Redis hit); a damaged value in Redis
# is ignored and the image scanned; with Redis killed requests still succeed
# (scanned) and the error counter moves. Prints the time of a scan and of a hit.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

command -v redis-server >/dev/null 2>&1 ||
    skip "redis-server is not installed (apt-get install redis-server; tools/install-deps.sh)"
command -v redis-cli >/dev/null 2>&1 || skip "redis-cli is not installed (apt-get install redis-tools)"
W="$CLIPMOD_WORK/daemon_cache"
rm -rf "$W"
mkdir -p "$W/redis"
DEMO="$top_srcdir/models/demo"
IMG="$top_srcdir/tests/data/demo-scenes/water-pistol.png"
IMG2="$top_srcdir/tests/data/demo-scenes/teddy-bear.png"
[ -f "$DEMO/model.safetensors" ] || fail "$DEMO/model.safetensors is missing"
cp "$top_srcdir/policies/demo.yaml" "$W/p.yaml"

# ---- redis-server on a free loopback port, in $W/redis ---------------------------
RPORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$W/redis" --save '' --appendonly no \
    --daemonize no >"$W/redis.log" 2>&1 &
RPID=$!
DAEMON_PIDS="$DAEMON_PIDS $RPID"
i=0
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do
    kill -0 "$RPID" 2>/dev/null || fail "redis-server exited: $(tail -n 5 "$W/redis.log")"
    [ $i -lt 100 ] || fail "redis-server is not answering after 10 s"
    sleep 0.1
    i=$((i + 1))
done
RCLI="redis-cli -p $RPORT"

conf() { # conf FILE
    cat >"$1" <<EOF
model: $DEMO
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
cache:
  memory: 16M
  redis: "redis://127.0.0.1:$RPORT/0"
  ttl: 1h
  redis-timeout: 50ms
EOF
}
conf "$W/a.yaml"
start_daemon a "$W/a.yaml"
A=$HTTP
APID=$PID

# post NAME DAEMON IMAGE [CURL-ARGS...]: the answer in $W/NAME.json; fails unless 200.
post() {
    name=$1 where=$2 img=$3
    shift 3
    code=$(curl -s -m 60 -o "$W/$name.json" -w '%{http_code}' --data-binary "@$img" \
        -H 'Content-Type: image/png' "$@" "http://$where/v1/scan") || code=000
    [ "$code" = 200 ] || fail "$name: HTTP $code: $(cat "$W/$name.json" 2>/dev/null)"
}
# same A B...: the answers are equal to A's but for "cached" (and the generation,
# each daemon's own count of reloads).
same() {
    first=$1
    shift
    "$PY" - "$W/$first.json" "$@" <<'EOF' || fail "an answer differs from $first's"
import json, os, sys
def load(p):
    r = json.load(open(p))
    r.pop("cached", None)
    r.pop("policy_generation", None)
    if os.environ.get("FRESH"):  # two scans: their times differ
        r.pop("elapsed_ms", None)
    return r
a = load(sys.argv[1])
for name in sys.argv[2:]:
    b = load(name)
    if a != b:
        sys.exit("%s\n%s" % (a, b))
EOF
}
cached() { json_get "$W/$1.json" 'r.get("cached", False)'; }
m() { metric "$1"; }
hits() { m 'clipmodd_cache_lookups_total{result="hit"}'; }
misses() { m 'clipmodd_cache_lookups_total{result="miss"}'; }

# ---- 100 times the same image: one scan ------------------------------------------
t0=$("$PY" -c 'import time; print(time.time())')
post first "$A" "$IMG"
t1=$("$PY" -c 'import time; print(time.time())')
[ "$(cached first)" = False ] || fail "the first answer says cached"
for n in $(seq 2 100); do
    post "again$n" "$A" "$IMG"
done
t2=$("$PY" -c 'import time; print(time.time())')
for n in $(seq 2 100); do
    [ "$(cached again$n)" = True ] || fail "answer $n is not cached"
done
same first $(seq 2 100 | sed "s|^|$W/again|; s|\$|.json|")
[ "$(misses)" = 1 ] && [ "$(hits)" = 99 ] ||
    fail "100 requests: $(misses) misses, $(hits) hits (expected 1 and 99)"
[ "$(m clipmodd_batch_size_count)" = 1 ] || fail "the engine ran $(m clipmodd_batch_size_count) passes, not 1"
"$PY" -c 'import sys; a, b, c = map(float, sys.argv[1:]); print("scan (first request): %.1f ms; hit: %.1f ms per request (curl included)" % ((b - a) * 1e3, (c - b) * 1e3 / 99))' "$t0" "$t1" "$t2"
echo "PASS: 100 requests of one image: 1 scan, 99 hits, answers equal"

# ---- other context text: another key -----------------------------------------------
post ctx "$A" "$IMG" -H 'X-Clipmod-Context: pistol%20dagger'
[ "$(cached ctx)" = False ] && [ "$(misses)" = 2 ] || fail "other context text was not a miss"
post ctx2 "$A" "$IMG" -H 'X-Clipmod-Context: pistol%20dagger'
[ "$(cached ctx2)" = True ] || fail "the same context text was not a hit"
same ctx "$W/ctx2.json"
echo "PASS: the same image with other context text is a miss, with the same text a hit"

# ---- a policy edit and SIGHUP: a new key -------------------------------------------
printf '\n# edited\n' >>"$W/p.yaml"
kill -HUP "$APID"
i=0
while [ "$(m 'clipmodd_reloads_total{result="success"}')" != 1 ]; do
    [ $i -lt 300 ] || fail "the reload did not happen"
    sleep 0.1
    i=$((i + 1))
done
post reloaded "$A" "$IMG"
[ "$(cached reloaded)" = False ] && [ "$(misses)" = 3 ] || fail "after a reload the image was not rescanned"
json_get "$W/reloaded.json" 'r["policy_fingerprint"] != json.load(open(sys.argv[1].replace("reloaded", "first")))["policy_fingerprint"]' |
    grep -q True || fail "the reloaded policy has the same fingerprint"
echo "PASS: a policy reload changes the key"

# ---- a second daemon sharing the Redis -----------------------------------------------
conf "$W/b.yaml"
start_daemon b "$W/b.yaml"
B=$HTTP
post shared "$B" "$IMG"
[ "$(cached shared)" = True ] || fail "the second daemon rescanned what the first stored"
HTTP=$B
[ "$(m 'clipmodd_cache_hits_total{tier="redis"}')" = 1 ] || fail "the hit did not come from Redis"
same reloaded "$W/shared.json"
echo "PASS: a second clipmodd answers from the first's scan through Redis"

# ---- a damaged value is ignored -------------------------------------------------------
keys=$($RCLI --scan --pattern 'clipmod:verdict:*')
[ -n "$keys" ] || fail "nothing stored in Redis"
for k in $keys; do
    $RCLI SET "$k" "garbage, not a verdict" >/dev/null
done
start_daemon c "$W/b.yaml"
C=$HTTP
HTTP=$C
post damaged "$C" "$IMG"
[ "$(cached damaged)" = False ] || fail "a damaged value was served"
[ "$(m clipmodd_cache_invalid_total)" = 1 ] || fail "the damaged value was not counted"
FRESH=1 same reloaded "$W/damaged.json"
echo "PASS: a damaged value in Redis is ignored and the image scanned"

# ---- Redis killed: scanning goes on ----------------------------------------------------
HTTP=$A
errs=$(m clipmodd_cache_redis_errors_total)
kill -9 "$RPID"
wait "$RPID" 2>/dev/null || true
post down1 "$A" "$IMG2"
post down2 "$A" "$IMG2"
[ "$(cached down1)" = False ] && [ "$(cached down2)" = True ] ||
    fail "without Redis the memory tier should still answer the second request"
[ "$(m clipmodd_cache_redis_errors_total)" -gt "$errs" ] || fail "the Redis error counter did not move"
post down3 "$C" "$IMG2"
[ "$(cached down3)" = False ] || fail "an unshared daemon answered from a dead Redis"
echo "PASS: with Redis down requests are scanned and answered; errors counted"
echo "PASS: daemon_cache"

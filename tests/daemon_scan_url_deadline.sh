#!/bin/sh
# daemon_scan_url_deadline.sh - /v1/scan-url downloads end at the request's deadline.
# A security review found that downloads went on after their request had been
# answered 503 (deadline), so two requests for slow URLs held both URL workers for
# as long as fetch-timeout-ms and every other URL request waited, then failed. Here
# scan.request-timeout-ms is 1.5 s and fetch-timeout-ms 60 s: two requests for URLs
# that trickle a byte every 0.2 s are answered by their deadline (an unscanned
# "timeout" verdict, or 503 if the scan overran), the server sees both downloads
# stop right then, and a request for a quick URL sent after them is answered 200
# at once.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_scan_url_deadline"
rm -rf "$W"
mkdir -p "$W/www"
setup_model daemon-http
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject
cp "$HI" "$W/www/hi.png"

"$PY" "$top_srcdir/tests/http_server.py" --root "$W/www" --log "$W/server.log" \
    --port-file "$W/port" 2>"$W/server.err" &
DAEMON_PIDS="$DAEMON_PIDS $!"
i=0
while [ ! -f "$W/port" ]; do
    [ $i -lt 100 ] || fail "the test HTTP server did not start: $(cat "$W/server.err")"
    sleep 0.1
    i=$((i + 1))
done
WWW="http://127.0.0.1:$(cat "$W/port")"

cat >"$W/main.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
engine:
  fetch-timeout-ms: 60000
fetch:
  allow: [127.0.0.1/32]
scan:
  url-workers: 2
  request-timeout-ms: 1500
http:
  listen: 127.0.0.1:0
EOF
start_daemon main "$W/main.yaml"
U="http://$HTTP"

scan_url() { # scan_url NAME URL: in the background; status in $W/NAME.code
    curl -s -m 30 -o "$W/$1.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"url\": \"$2\"}" "$U/v1/scan-url" >"$W/$1.code" &
}
wait_code() { # wait_code NAME: until its status is there (at most 20 s)
    k=0
    while [ ! -s "$W/$1.code" ] && [ $k -lt 200 ]; do
        sleep 0.1
        k=$((k + 1))
    done
}

FAILED=""
bad() {
    echo "FAIL: $*"
    FAILED="$FAILED
  $*"
}

t0=$(date +%s.%N)
scan_url slow1 "$WWW/slow?bytes=100000&delay=0.2"
scan_url slow2 "$WWW/slow?bytes=100000&delay=0.2"
wait_code slow1
wait_code slow2
t1=$(date +%s.%N)
for n in slow1 slow2; do
    code=$(cat "$W/$n.code")
    if [ "$code" = 200 ] &&
        json_get "$W/$n.json" 'r["state"] == "unscanned" and r["reason"] == "timeout"' | grep -qx True; then
        echo "ok: $n: 200, unscanned: $(json_get "$W/$n.json" 'r["reason_text"]')"
    elif [ "$code" = 503 ] && grep -q deadline "$W/$n.json"; then
        echo "ok: $n: 503 at its deadline"
    else
        bad "$n: $code $(cat "$W/$n.json")"
    fi
done
took=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
echo "the two slow requests were answered after $took s"
awk "BEGIN { exit !($took < 2.5) }" || bad "the slow requests were answered after $took s, not by their deadline"
# Both URL workers must be free again: a quick URL is scanned at once.
t1=$(date +%s.%N)
scan_url quick "$WWW/hi.png"
wait_code quick
t2=$(date +%s.%N)
if [ "$(cat "$W/quick.code")" = 200 ] &&
    json_get "$W/quick.json" 'r["state"]' | grep -qx flagged; then
    echo "ok: a quick URL after them: 200, flagged, in $(awk "BEGIN { printf \"%.2f\", $t2 - $t1 }") s"
else
    bad "a quick URL after two slow ones: $(cat "$W/quick.code") $(head -c 300 "$W/quick.json")"
fi
# The slow server saw both downloads stop soon after the deadline.
sleep 1
"$PY" - "$W/server.log" "$t0" <<'EOF' || bad "the slow downloads went on after their deadline"
import json, sys
t0 = float(sys.argv[2])
left = [e["time"] - t0 for e in map(json.loads, open(sys.argv[1]))
        if e["event"] == "client-left" and e["path"].startswith("/slow")]
print("slow downloads stopped %s s after the requests" % [round(t, 1) for t in left])
assert len(left) == 2 and all(t < 3.5 for t in left), left
EOF
[ -z "$FAILED" ] || fail "these cases failed:$FAILED"
echo PASS

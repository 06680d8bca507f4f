#!/bin/sh
# daemon_http.sh - clipmodd's HTTP interface end to end, with curl on 127.0.0.1: every
# endpoint, the JSON of `clipmod scan --json`, multipart with several files, ?enforce,
# wrong content type (415), truncated multipart and bad JSON (400), oversized bodies
# (413), bearer tokens (401), a slow client cut off by the idle timeout, a full queue
# and a passed deadline (503 + Retry-After), SIGHUP while requests are in flight (all
# answered), a broken policy on reload (the old one stays), and SIGTERM answering
# what is in flight before exiting. See tests/daemon_lib.sh for the model and policy.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_http"
rm -rf "$W"
mkdir -p "$W"
setup_model daemon-http
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject

# status METHOD URL [CURL ARGS...]: the status code; the body in $W/body, headers in $W/hdr.
status() {
    m=$1
    u=$2
    shift 2
    if [ "$m" = HEAD ]; then
        set -- -I "$@"
    else
        set -- -X "$m" "$@"
    fi
    curl -s -o "$W/body" -D "$W/hdr" -w '%{http_code}' "$@" "$u" || true
}
expect() {
    want=$1
    shift
    got=$(status "$@")
    [ "$got" = "$want" ] || fail "$*: status $got, not $want: $(head -c 400 "$W/body")"
}
header() {
    tr -d '\r' <"$W/hdr" | awk -F': ' -v h="$1" 'tolower($1) == tolower(h) { print $2 }'
}

cat >"$W/main.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  max-body-bytes: 1000000
  max-files: 4
  client-timeout: 2
  text-fields: [note]
scan:
  batch-window-ms: 5
log:
  format: json
EOF
start_daemon main "$W/main.yaml"
U="http://$HTTP"

# ---------------------------------------------------------------------------
# Health, policy, metrics.
expect 200 GET "$U/v1/health"
json_get "$W/body" 'r["status"] == "ok" and r["policy"] == "daemon test" and r["queue"]["capacity"] == 64' |
    grep -qx True || fail "health: $(cat "$W/body")"
expect 200 HEAD "$U/v1/health"
expect 200 GET "$U/v1/policy"
json_get "$W/body" 'r["name"] == "daemon test" and r["categories"][0]["action"] == "reject" and r["generation"] == 1 and r["loaded_at"].endswith("Z")' |
    grep -qx True || fail "policy: $(cat "$W/body")"
expect 200 GET "$U/metrics"
header Content-Type | grep -q '^text/plain; version=0.0.4' || fail "metrics content type"
for m in clipmodd_scans_total clipmodd_unscanned_total clipmodd_request_duration_seconds_bucket \
    clipmodd_batch_size_bucket clipmodd_queue_depth clipmodd_queue_capacity \
    clipmodd_inputs_in_progress clipmodd_rejected_total clipmodd_http_requests_total \
    clipmodd_reloads_total clipmodd_policy_info clipmodd_model_info clipmodd_build_info \
    process_resident_memory_bytes; do
    grep -q "^$m" "$W/body" || fail "metrics lack $m"
done
grep -q '^clipmodd_policy_info{name="daemon test",generation="1"} 1$' "$W/body" ||
    fail "policy info metric"
expect 404 GET "$U/v1/nothing"
expect 405 GET "$U/v1/scan"
[ "$(header Allow)" = POST ] || fail "405 must name the allowed method"
expect 405 POST "$U/v1/health"

# ---------------------------------------------------------------------------
# POST /v1/scan with a raw body: one result object, the CLI's schema.
expect 200 POST "$U/v1/scan?name=hi.png" -H 'Content-Type: image/png' --data-binary "@$HI"
json_get "$W/body" 'r["schema_version"] == 1 and r["name"] == "hi.png" and r["state"] == "flagged" and r["action"] == "reject" and r["category"] == "cat" and r["policy"] == "daemon test" and len(r["categories"][0]["top_prompts"]) == 3' |
    grep -qx True || fail "raw scan, flagged: $(cat "$W/body")"
[ "$(header Clipmod-Action)" = reject ] && [ "$(header Clipmod-State)" = flagged ] ||
    fail "verdict headers: $(cat "$W/hdr")"
# The policy it was judged under, in the body as in the headers (12 hex digits).
fp=$(header Clipmod-Policy-Fingerprint)
json_get "$W/body" "r['policy_fingerprint'] == '$fp' and len('$fp') == 12 and r['policy_generation'] == 1" |
    grep -qx True || fail "policy fields of a scan answer: $(cat "$W/body")"
# The same verdict as the CLI's.
XDG_CACHE_HOME="$W/cache" "$CLIPMOD" scan -m "$MODEL" -p "$W/p.yaml" --json --quiet "$HI" \
    >"$W/cli.json" || true
"$PY" - "$W/body" "$W/cli.json" <<'EOF' || fail "the daemon and the CLI disagree"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert a["state"] == b["state"] and a["action"] == b["action"]
assert abs(a["categories"][0]["score"] - b["categories"][0]["score"]) < 1e-3
EOF
expect 200 POST "$U/v1/scan" -H 'Content-Type: application/octet-stream' --data-binary "@$LO"
json_get "$W/body" 'r["state"] == "clean" and r["action"] == "allow" and r["name"] == "upload"' |
    grep -qx True || fail "raw scan, clean: $(cat "$W/body")"
# No Content-Type at all is a raw body too.
expect 200 POST "$U/v1/scan" -H 'Content-Type:' --data-binary "@$LO"
expect 200 POST "$U/v1/scan?explain=1" -H 'Content-Type: image/png' --data-binary "@$HI"
json_get "$W/body" 'len(r["categories"][0]["top_prompts"]) == 6' | grep -qx True ||
    fail "?explain=1 must list every prompt"
# ?enforce=1: the policy's HTTP status for the action (reject: 403), 422 when unscanned.
expect 403 POST "$U/v1/scan?enforce=1" -H 'Content-Type: image/png' --data-binary "@$HI"
expect 200 POST "$U/v1/scan?enforce=1" -H 'Content-Type: image/png' --data-binary "@$LO"
printf 'not an image\n' >"$W/text.png"
expect 422 POST "$U/v1/scan?enforce=1" -H 'Content-Type: image/png' --data-binary "@$W/text.png"
json_get "$W/body" 'r["state"] == "unscanned" and r["reason"] in ("decode-error", "unsupported")' |
    grep -qx True || fail "unscanned: $(cat "$W/body")"
expect 200 POST "$U/v1/scan" -H 'Content-Type: image/png' --data-binary "@$W/text.png"

# ---------------------------------------------------------------------------
# Multipart: an array in form order, even for one file; listed text fields ignored
# (tests/daemon_multipart.sh has the parts that are not).
expect 200 POST "$U/v1/scan" -F "first=@$HI;filename=one.png" -F note=hello \
    -F "second=@$LO;filename=two.png" -F "third=@$W/text.png"
json_get "$W/body" '[(x["name"], x["state"]) for x in r]' >"$W/got"
grep -q "^\[('one.png', 'flagged'), ('two.png', 'clean'), ('text.png', 'unscanned')\]$" "$W/got" ||
    fail "multipart: $(cat "$W/got")"
[ "$(header Clipmod-Action)" = reject ] || fail "multipart: the most severe action in the header"
expect 200 POST "$U/v1/scan" -F "f=@$LO"
json_get "$W/body" 'isinstance(r, list) and len(r) == 1' | grep -qx True ||
    fail "one file in a form is still an array"
expect 403 POST "$U/v1/scan?enforce=1" -F "a=@$LO" -F "b=@$HI"
expect 413 POST "$U/v1/scan" -F "a=@$LO" -F "b=@$LO" -F "c=@$LO" -F "d=@$LO" -F "e=@$LO"
grep -q 'max-files' "$W/body" || fail "too many files: $(cat "$W/body")"
expect 400 POST "$U/v1/scan" -F note=hello
# Truncated: the closing boundary never comes.
"$PY" - "$HI" "$W/trunc" <<'EOF'
import sys
data = open(sys.argv[1], 'rb').read()
body = (b'--XyZ\r\nContent-Disposition: form-data; name="a"; filename="a.png"\r\n'
        b'Content-Type: image/png\r\n\r\n' + data + b'\r\n--XyZ--\r\n')
open(sys.argv[2], 'wb').write(body[:-40])
EOF
expect 400 POST "$U/v1/scan" -H 'Content-Type: multipart/form-data; boundary=XyZ' \
    --data-binary "@$W/trunc"
grep -q 'truncated' "$W/body" || fail "truncated multipart: $(cat "$W/body")"
expect 400 POST "$U/v1/scan" -H 'Content-Type: multipart/form-data' --data-binary "@$W/trunc"

# Wrong content types: 415 (curl's default form encoding is the classic mistake).
expect 415 POST "$U/v1/scan" --data-binary "@$LO"
expect 415 POST "$U/v1/scan" -H 'Content-Type: text/plain' --data-binary "@$LO"
expect 415 POST "$U/v1/scan-url" -H 'Content-Type: text/plain' -d '{"url":"http://x/"}'
expect 415 POST "$U/v1/tusd" -d '{}'

# A refusal known from the headers is answered after the body (read and dropped):
# answered at once, a client still sending gets a reset and can lose the answer
# (curl saw status 000 under load). Headers first, the body 0.3 s later, slowly.
"$PY" - "${U#http://}" <<'EOF2' || fail "a refusal from the headers must survive a slow body"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
for ctype, boundary in (("text/plain", ""), ("multipart/form-data", "")):
    s = socket.create_connection((host, int(port)), timeout=10)
    body = b"x" * 600000
    s.sendall(("POST /v1/scan HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n"
               "Content-Length: %d\r\n\r\n" % (ctype, len(body))).encode())
    time.sleep(0.3)
    for i in range(0, len(body), 60000):
        s.sendall(body[i:i + 60000])
        time.sleep(0.02)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    want = b"HTTP/1.1 415" if ctype == "text/plain" else b"HTTP/1.1 400"
    assert reply.startswith(want), (ctype, reply[:80])
    s.close()
EOF2
echo "ok   refusals from the headers answered after the body: 415, 400"

# Oversized bodies: 413 whether announced or chunked.
head -c 1200000 /dev/zero >"$W/big"
expect 413 POST "$U/v1/scan" -H 'Content-Type: application/octet-stream' --data-binary "@$W/big"
expect 413 POST "$U/v1/scan" -H 'Content-Type: application/octet-stream' \
    -H 'Transfer-Encoding: chunked' --data-binary "@$W/big"
expect 400 POST "$U/v1/scan" -H 'Content-Type: application/octet-stream' --data-binary ''

# Bad JSON: 400, whatever fetch mode can do.
expect 400 POST "$U/v1/scan-url" -H 'Content-Type: application/json' -d '{"url": '
expect 400 POST "$U/v1/scan-url" -H 'Content-Type: application/json' -d '[1, 2]'
expect 400 POST "$U/v1/scan-url" -H 'Content-Type: application/json' -d '{"link": "http://x/"}'
expect 400 POST "$U/v1/scan-url" -H 'Content-Type: application/json' -d '{"urls": []}'
expect 400 POST "$U/v1/scan-url" -H 'Content-Type: application/json' -d '{"url": 5}'
expect 400 POST "$U/v1/tusd" -H 'Content-Type: application/json' -d 'nope'

# A slow client: headers never finished, cut off after client-timeout (2 s).
"$PY" - "$HTTP" <<'EOF' || fail "a slow client was not disconnected"
import socket, sys, time
host, port = sys.argv[1].rsplit(':', 1)
s = socket.create_connection((host, int(port)))
s.sendall(b'POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc')
s.settimeout(8)
t0 = time.time()
data = s.recv(100)
assert data == b'' or data.startswith(b'HTTP/1.1 4'), data
assert 1 <= time.time() - t0 < 7, time.time() - t0
EOF

# ---------------------------------------------------------------------------
# scan-url: end to end (served from 127.0.0.1).
mkdir -p "$W/www"
cp "$HI" "$W/www/hi.png"
cp "$LO" "$W/www/lo.png"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$W/www" && exec "$PY" -m http.server --bind 127.0.0.1 "$port") >"$W/www.log" 2>&1 &
DAEMON_PIDS="$DAEMON_PIDS $!"
sleep 1
# Loopback is refused by the SSRF guard unless the configuration allows it.
expect 200 POST "$U/v1/scan-url" -H 'Content-Type: application/json' \
    -d "{\"url\": \"http://127.0.0.1:$port/hi.png\"}"
json_get "$W/body" 'r["state"] == "unscanned" and r["reason"] == "blocked-address"' |
    grep -qx True || fail "scan-url to loopback must be blocked: $(cat "$W/body")"
sed "s|^http:|fetch:\n  allow: [127.0.0.1/32]\nhttp:|" "$W/main.yaml" >"$W/fetch.yaml"
start_daemon fetch "$W/fetch.yaml"
expect 200 POST "http://$HTTP/v1/scan-url" -H 'Content-Type: application/json' \
    -d "{\"urls\": [\"http://127.0.0.1:$port/hi.png\", \"http://127.0.0.1:$port/lo.png\"]}"
json_get "$W/body" '[x["state"] for x in r]' | grep -qx "\['flagged', 'clean'\]" ||
    fail "scan-url: $(cat "$W/body")"
HTTP=${U#http://}
echo "scan-url: tested end to end"

# ---------------------------------------------------------------------------
# Reload while requests are in flight: every request is answered with 200, by the
# policy it started with or the new one; then the new one is active.
cat >"$W/reload.yaml" <<EOF
model: $MODEL
policy: $W/r.yaml
http:
  listen: 127.0.0.1:0
scan:
  batch-window-ms: 1000
  max-batch: 64
EOF
write_policy "$W/r.yaml" "$THRESHOLD" reject "before reload"
start_daemon reload "$W/reload.yaml"
RPID=$PID
RU="http://$HTTP"
# The first 20 wait in the collection window (1 s) when SIGHUP comes; 20 more follow.
HTTP=${RU#http://}
i=0
while [ $i -lt 40 ]; do
    curl -s -o "$W/r$i.json" -w '%{http_code}\n' -H 'Content-Type: image/png' \
        --data-binary "@$HI" "$RU/v1/scan" >"$W/r$i.code" &
    i=$((i + 1))
    if [ $i -eq 20 ]; then
        k=0
        while [ "$(metric clipmodd_queue_depth)" -lt 20 ] && [ $k -lt 100 ]; do
            sleep 0.02
            k=$((k + 1))
        done
        write_policy "$W/r.yaml" "$THRESHOLD" reject "after reload"
        kill -HUP "$RPID"
        k=0
        while [ "$(metric 'clipmodd_reloads_total{result="success"}')" != 1 ] && [ $k -lt 100 ]; do
            sleep 0.02
            k=$((k + 1))
        done
    fi
done
wait_all() {
    j=0
    while [ $j -lt 40 ]; do
        k=0
        while [ ! -s "$W/r$j.code" ] && [ $k -lt 300 ]; do
            sleep 0.1
            k=$((k + 1))
        done
        j=$((j + 1))
    done
}
wait_all
cat "$W"/r*.code | sort | uniq -c | tr '\n' ' '
echo
[ "$(cat "$W"/r*.code | grep -c '^200$')" -eq 40 ] || fail "requests failed across a reload"
"$PY" - "$W" <<'EOF' || fail "results across the reload"
import json, sys, collections
rs = [json.load(open("%s/r%d.json" % (sys.argv[1], i))) for i in range(40)]
names = collections.Counter(r["policy"] for r in rs)
assert set(names) == {"before reload", "after reload"}, names
# Each answer names the policy it was judged under: one fingerprint per generation.
gens = {r["policy"]: (r["policy_generation"], r["policy_fingerprint"]) for r in rs}
assert gens["before reload"][0] == 1 and gens["after reload"][0] == 2, gens
assert all(gens[r["policy"]] == (r["policy_generation"], r["policy_fingerprint"]) for r in rs), gens
assert gens["before reload"][1] != gens["after reload"][1], gens
print("policies across the reload:", dict(names))
EOF
HTTP=${RU#http://}
[ "$(metric 'clipmodd_reloads_total{result="success"}')" = 1 ] || fail "reload not counted"
curl -s "$RU/v1/policy" | grep -q '"name":"after reload"' || fail "the new policy is not active"
# Requests came together, so the batcher scanned several per forward pass.
passes=$(metric clipmodd_batch_size_count)
echo "40 images in $passes forward passes"
[ "$passes" -lt 40 ] || fail "no batching: $passes passes for 40 concurrent requests"
# A broken policy is refused; the active one stays and serves.
printf 'version: 1\nname: broken\ncategories: 5\n' >"$W/r.yaml"
kill -HUP "$RPID"
sleep 1
[ "$(metric 'clipmodd_reloads_total{result="failure"}')" = 1 ] || fail "failed reload not counted"
expect 200 POST "$RU/v1/scan" -H 'Content-Type: image/png' --data-binary "@$HI"
json_get "$W/body" 'r["policy"]' | grep -qx "after reload" || fail "the old policy must stay"
grep -q 'policy problem' "$LOG" || fail "the reload's problems must be logged"

# SIGTERM: a request waiting in the batch window is still answered, then the exit is clean.
curl -s -o "$W/last.json" -w '%{http_code}' -H 'Content-Type: image/png' --data-binary "@$LO" \
    "$RU/v1/scan" >"$W/last.code" &
CURL=$!
k=0
while [ "$(metric clipmodd_queue_depth)" -lt 1 ] && [ $k -lt 200 ]; do
    sleep 0.02
    k=$((k + 1))
done
stop_daemon "$RPID"
wait "$CURL" || true
[ "$(cat "$W/last.code")" = 200 ] || fail "a request in flight at SIGTERM: $(cat "$W/last.code")"
[ "$STOPPED" -eq 0 ] || fail "clipmodd exited $STOPPED on SIGTERM"

# ---------------------------------------------------------------------------
# A full queue and a passed deadline: 503 with Retry-After. The collection window
# (1 s) is longer than the deadline (600 ms), so queued requests wait long enough.
cat >"$W/slow.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  max-files: 2
scan:
  batch-window-ms: 1000
  max-batch: 64
  queue-size: 2
  request-timeout-ms: 600
  retry-after: 7
EOF
start_daemon slow "$W/slow.yaml"
for i in 1 2 3; do
    curl -s -D "$W/s$i.hdr" -o "$W/s$i.json" -w '%{http_code}' -H 'Content-Type: image/png' \
        --data-binary "@$LO" "http://$HTTP/v1/scan" >"$W/s$i.code" &
    sleep 0.05
done
wait_three() {
    for i in 1 2 3; do
        k=0
        while [ ! -s "$W/s$i.code" ] && [ $k -lt 100 ]; do
            sleep 0.1
            k=$((k + 1))
        done
    done
}
wait_three
for i in 1 2 3; do
    [ "$(cat "$W/s$i.code")" = 503 ] || fail "request $i: $(cat "$W/s$i.code") $(cat "$W/s$i.json")"
    tr -d '\r' <"$W/s$i.hdr" | grep -qi '^Retry-After: 7$' || fail "503 without Retry-After"
done
cat "$W"/s?.json | grep -q 'queue is full' || fail "no request was refused for a full queue"
[ "$(grep -l 'deadline' "$W"/s?.json | wc -l)" -eq 2 ] || fail "two requests must pass their deadline"
[ "$(metric 'clipmodd_rejected_total{reason="queue-full"}')" = 1 ] || fail "queue-full metric"
[ "$(metric 'clipmodd_rejected_total{reason="deadline"}')" = 2 ] || fail "deadline metric"

# ---------------------------------------------------------------------------
# Bearer token: 401 without it or with another; /v1/health stays open for probes.
printf 's3cret-token-0123456789\n' >"$W/token"
chmod 600 "$W/token"
cat >"$W/auth.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  auth-token-file: $W/token
EOF
start_daemon auth "$W/auth.yaml"
AU="http://$HTTP"
expect 401 POST "$AU/v1/scan" -H 'Content-Type: image/png' --data-binary "@$LO"
header WWW-Authenticate | grep -q '^Bearer' || fail "401 without WWW-Authenticate"
expect 401 POST "$AU/v1/scan" -H 'Authorization: Bearer s3cret-token-0123456780' \
    -H 'Content-Type: image/png' --data-binary "@$LO"
expect 401 GET "$AU/metrics"
expect 401 GET "$AU/v1/policy"
expect 200 GET "$AU/v1/health"
expect 200 POST "$AU/v1/scan" -H 'Authorization: Bearer s3cret-token-0123456789' \
    -H 'Content-Type: image/png' --data-binary "@$LO"
AUTH_HEADER='Authorization: Bearer s3cret-token-0123456789'
expect 200 GET "$AU/metrics" -H "$AUTH_HEADER"

# A configuration with problems: every one with file:line:column; nothing starts.
printf 'http:\n  listen: 127.0.0.1:0\n  max-body: 5\nscan:\n  workers: 0\nlog:\n  levle: info\n' >"$W/bad.yaml"
set +e
"$CLIPMODD" -c "$W/bad.yaml" -m "$MODEL" -p "$W/p.yaml" --check >"$W/out" 2>"$W/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a bad configuration must exit 2, not $rc"
# (src/common/yaml.c's wording: the section, a "did you mean" for a near miss, the
# allowed keys.)
grep -q "bad.yaml:3:3: unknown key 'max-body' in http; allowed: .*max-body-bytes" "$W/err" ||
    fail "config problem positions: $(cat "$W/err")"
grep -q "bad.yaml:7:3: unknown key 'levle' in log (did you mean 'level'?)" "$W/err" ||
    fail "config did-you-mean: $(cat "$W/err")"
grep -q "bad.yaml:5:12: workers must be" "$W/err" || fail "config range: $(cat "$W/err")"
"$CLIPMODD" -m "$MODEL" -p "$W/p.yaml" -c "$W/main.yaml" --check >/dev/null 2>&1 ||
    fail "--check on a good configuration"

# The request log is structured (json here): one object per line.
"$PY" - "$W/main.log" <<'EOF' || fail "the log is not JSON lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
reqs = [l for l in lines if l["msg"] == "http"]
assert reqs and all({"ts", "level", "method", "path", "status", "ms"} <= set(l) for l in reqs)
EOF
echo "PASS"

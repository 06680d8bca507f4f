#!/bin/sh
# daemon_http_hardening.sh - clipmodd's HTTP door against malformed and hostile
# requests, each case a defect a security review found:
#   - /v1/scan-url with more URLs than http.max-files is 413 (it read a freed JSON
#     array and answered 400);
#   - a JSON parse error that quotes a cut UTF-8 sequence is 400, not 500;
#   - ambiguous framing (two Content-Length headers, Content-Length with
#     Transfer-Encoding, a Transfer-Encoding other than chunked) is 400 and closes
#     the connection, so nothing smuggled after it is answered;
#   - an auth-token-file its group or others may read is refused at start.
# Every case is checked and reported; the test fails at the end if any failed.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_http_hardening"
rm -rf "$W"
mkdir -p "$W"
setup_model daemon-http
write_policy "$W/p.yaml" 0.5 reject

FAILED=""
bad() {
    echo "FAIL: $*"
    FAILED="$FAILED
  $*"
}
ok() { echo "ok: $*"; }

# raw HOST:PORT PYTHON-BYTES-EXPR: send the bytes, print what comes back until the
# server closes (or 3 s of silence: then the last line is <open>).
raw() {
    "$PY" - "$1" "$2" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(':', 1)
s = socket.create_connection((host, int(port)))
s.sendall(eval(sys.argv[2]))
s.settimeout(3)
out = b''
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    out += b'\n<closed>'
except socket.timeout:
    out += b'\n<open>'
except ConnectionResetError:
    out += b'\n<reset>'
sys.stdout.write(out.decode('latin1'))
EOF
}

cat >"$W/main.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  max-files: 4
EOF
start_daemon main "$W/main.yaml"
U="http://$HTTP"

# ---------------------------------------------------------------------------
# Defect 1: five URLs when max-files is 4: 413, as clipmodd(8) says.
code=$(curl -s -o "$W/body" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"urls": ["http://a/1", "http://a/2", "http://a/3", "http://a/4", "http://a/5"]}' \
    "$U/v1/scan-url")
if [ "$code" = 413 ] && grep -q 'max-files' "$W/body"; then
    ok "scan-url over max-files: 413"
else
    bad "scan-url with 5 URLs over max-files 4: $code $(cat "$W/body")"
fi
# ...and the other refusals of that body still say 400.
code=$(curl -s -o "$W/body" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"urls": "http://a/1"}' "$U/v1/scan-url")
[ "$code" = 400 ] || bad "scan-url with urls not an array: $code, not 400"

# ---------------------------------------------------------------------------
# Defect 12: jansson's message quotes the token, cut after a UTF-8 lead byte.
for ep in scan-url tusd; do
    "$PY" -c 'import sys; sys.stdout.buffer.write(b"{\"url\": \"\\u" + "\u00e9".encode() * 3)' \
        >"$W/cut.json"
    code=$(curl -s -o "$W/body" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$W/cut.json" "$U/v1/$ep")
    if [ "$code" = 400 ] && json_get "$W/body" 'r["error"].startswith("bad JSON")' | grep -qx True; then
        ok "/v1/$ep: invalid UTF-8 in a JSON error: 400"
    else
        bad "/v1/$ep: a JSON error quoting invalid UTF-8: $code $(head -c 200 "$W/body")"
    fi
done

# ---------------------------------------------------------------------------
# Defect 13: framing two parsers could read differently. The second request hidden
# in the first one's body must never be answered.
SMUGGLED='b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"'
check_framing() {
    what=$1
    out=$(raw "$HTTP" "$2")
    first=$(printf '%s\n' "$out" | head -n 1 | tr -d '\r')
    answers=$(printf '%s\n' "$out" | grep -c '^HTTP/1.1 ' || true)
    if [ "$first" = "HTTP/1.1 400 Bad Request" ] && [ "$answers" -eq 1 ] &&
        printf '%s\n' "$out" | tail -n 1 | grep -q '<closed>'; then
        ok "$what: 400, connection closed"
    else
        bad "$what: $(printf '%s' "$out" | tr '\r\n' '  ' | head -c 400)"
    fi
}
check_framing "two Content-Length headers" \
    'b"POST /v1/scan-url HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 41\r\n\r\n{}" + '"$SMUGGLED"
check_framing "two equal Content-Length headers" \
    'b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + '"$SMUGGLED"
check_framing "Content-Length with Transfer-Encoding" \
    'b"POST /v1/scan-url HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + '"$SMUGGLED"
check_framing "Transfer-Encoding twice" \
    'b"POST /v1/scan-url HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + '"$SMUGGLED"
# Well-framed requests one after the other on a kept-alive connection are answered.
"$PY" - "$HTTP" <<'EOF' || bad "a kept-alive connection with well-framed requests"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], timeout=5)
for body in (b"{}", b"[]"):
    c.request("POST", "/v1/scan-url", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.status == 400 and r.getheader("Connection") != "close", (r.status, r.getheaders())
c.request("GET", "/v1/health")
assert c.getresponse().status == 200
EOF

# ---------------------------------------------------------------------------
# Defect 17a: the token file is a secret: mode 0644 or 0640 refused, 0600 and 0400 accepted.
printf 's3cret-token-0123456789\n' >"$W/token"
printf 'model: %s\npolicy: %s\nhttp:\n  auth-token-file: %s\n' "$MODEL" "$W/p.yaml" "$W/token" \
    >"$W/auth.yaml"
for mode in 644 640 604 660; do
    chmod "$mode" "$W/token"
    set +e
    "$CLIPMODD" -c "$W/auth.yaml" --check >"$W/out" 2>"$W/err"
    rc=$?
    set -e
    if [ "$rc" -eq 2 ] && grep -q "auth.yaml:4:20: auth-token-file $W/token: permissions 0$mode are too open" "$W/err" &&
        grep -q "chmod 600" "$W/err"; then
        ok "token file mode $mode refused"
    else
        bad "token file mode $mode: exit $rc: $(cat "$W/err" | head -c 300)"
    fi
done
for mode in 600 400; do
    chmod "$mode" "$W/token"
    "$CLIPMODD" -c "$W/auth.yaml" --check >"$W/out" 2>"$W/err" ||
        bad "token file mode $mode must be accepted: $(head -c 300 "$W/err")"
done

if [ -n "$FAILED" ]; then
    fail "these cases failed:$FAILED"
fi
echo PASS

#!/bin/sh
# fetch.sh - `clipmod scan --url`: downloads, the SSRF guard and every failure as a
# verdict, against tests/http_server.py on 127.0.0.1 (and [::1]) only.
#
# Nothing here sends a packet beyond loopback. URLs naming other addresses
# (10.0.0.1, 169.254.169.254 ...) are refused before any connection, and the test
# checks that from the outside: the server's log of connections stays empty for
# every refused URL that names this host in some spelling, and the refusals come
# from the guard ("blocked-address"), never from a failed connection.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
W="$CLIPMOD_WORK/fetch"
rm -rf "$W"
mkdir -p "$W/www/interrupt"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY
# fetch mode never uses a proxy; curl in this script's helpers should not either.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY


now_ms() { echo $(($(date +%s%N) / 1000000)); }

# json_check FILE PYTHON-EXPRESSIONS: assert over rs, the JSON lines of FILE.
json_check() {
    f=$1
    shift
    "$PY" -c "import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
$*" "$f" || fail "JSON check failed on: $(cat "$f")"
}

# The server's log: events since the last mark.
mark_log() { : >"$W/server.log"; }
connections() { grep -c '"event": "connect"' "$W/server.log" || true; }

# ---------------------------------------------------------------------------
"$CLIPMOD" scan --help >"$W/help"
for opt in --url --allow-fetch --fetch-connect-ms --fetch-timeout-ms --fetch-max-redirects \
    --fetch-parallel; do
    grep -q -- "$opt" "$W/help" || fail "scan --help does not list $opt"
done

need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: policies need the tokenizer"
photos=$(photos_dir) || fail "no sample photos"
model=$(checkpoint tiny-scan --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
    --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
cat >"$W/p.yaml" <<'EOF'
version: 1
name: fetch test
templates: ["a photo of {}."]
neutral: [a city street, a bowl of fruit]
categories:
  - id: cat
    prompts: [a cat]
    contrast: [a dog]
    threshold: 0.999
    action: flag
EOF
cp "$photos/chelsea.png" "$W/www/cat.png"
cp "$photos/rocket.jpg" "$W/www/rocket.jpg"
cp "$photos/rocket.jpg" "$W/www/interrupt/rocket.jpg"
img_bytes=$(wc -c <"$W/www/cat.png")

# ---------------------------------------------------------------------------
# The server: loopback only, a free port, killed however this script ends.
"$PY" "$top_srcdir/tests/http_server.py" --root "$W/www" --log "$W/server.log" \
    --port-file "$W/port" --port6-file "$W/port6" 2>"$W/server.err" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
trap 'exit 99' HUP INT TERM
i=0
while [ ! -s "$W/port" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "the test server did not start: $(cat "$W/server.err")"
    kill -0 $server 2>/dev/null || fail "the test server died: $(cat "$W/server.err")"
    sleep 0.1
done
port=$(cat "$W/port")
base="http://127.0.0.1:$port"
port6=
[ -s "$W/port6" ] && port6=$(cat "$W/port6")
echo "test server on $base${port6:+ and http://[::1]:$port6}"

scan() { "$CLIPMOD" scan -m "$model" -p "$W/p.yaml" "$@"; }
open_scan() { scan --allow-fetch 127.0.0.1/32 "$@"; }

# ---------------------------------------------------------------------------
# An image served on loopback, opened with --allow-fetch: scanned like the file.
mark_log
run 0 open_scan --json --quiet --url "$base/cat.png"
cp "$W/out" "$W/url.json"
run 0 scan --json --quiet "$W/www/cat.png"
"$PY" - "$W/url.json" "$W/out" "$base/cat.png" <<'EOF' || fail "the URL's verdict differs from the file's"
import json, sys
u, f = (json.loads(open(p).read()) for p in sys.argv[1:3])
assert u["name"] == sys.argv[3], u["name"]
assert u["state"] == f["state"] == "clean", (u, f)
assert u["image"] == f["image"], (u["image"], f["image"])
assert abs(u["categories"][0]["score"] - f["categories"][0]["score"]) < 1e-6
EOF
grep -q '"agent": "clipmod/[0-9.]* (image content moderation)' "$W/server.log" || fail "no clipmod User-Agent"
echo "ok   scan --url with --allow-fetch 127.0.0.1/32: same verdict as the file"

# Readable output: the URL is the name; exit codes as for files.
run 0 open_scan --quiet --url "$base/cat.png"
[ "$(cat "$W/out")" = "$base/cat.png: clean" ] || fail "readable line: $(cat "$W/out")"
run 0 open_scan --hook --url "$base/cat.png"
[ "$(cat "$W/out")" = allow ] || fail "--hook --url: $(cat "$W/out")"
run 3 open_scan --hook --url "$base/status/404"
grep -q "unscanned (http-status: HTTP 404" "$W/err" || fail "--hook reason: $(cat "$W/err")"

# ---------------------------------------------------------------------------
# The SSRF guard, on by default: every spelling of this host, and other private
# addresses, refused before any connection.
set -- "$base/cat.png" "http://localhost:$port/cat.png" "http://2130706433:$port/cat.png" \
    "http://0177.0.0.1:$port/cat.png" "http://127.1:$port/cat.png" "http://0x7f.1:$port/cat.png" \
    "http://[::ffff:127.0.0.1]:$port/cat.png" "http://0.0.0.0:$port/cat.png" \
    "http://foo.localhost:$port/cat.png" "http://[::1]:${port6:-$port}/cat.png" \
    "http://10.0.0.1/cat.png" "http://169.254.169.254/latest/meta-data/" \
    "http://[fe80::1]/" "http://100.64.0.1/" "http://192.168.1.1/" "http://[fd00::1]/" \
    "http://[64:ff9b::a9fe:a9fe]/"
n=$#
mark_log
t0=$(now_ms)
run 2 scan --json --quiet --url "$@"
[ "$(connections)" -eq 0 ] || fail "a refused URL reached the server: $(cat "$W/server.log")"
json_check "$W/out" "
assert len(rs) == $n, len(rs)
for r in rs:
    assert r['state'] == 'unscanned' and r['reason'] == 'blocked-address', r
    assert 'only to public addresses' in r['reason_text'] and r['categories'] == [], r
assert rs[0]['reason_text'].startswith('127.0.0.1 is a loopback address'), rs[0]
assert rs[1]['reason_text'].startswith('localhost resolves to '), rs[1]
for r in rs[2:6]:
    assert r['reason_text'].startswith('127.0.0.1 is a loopback'), r  # as curl spells it
assert 'IPv6 form of an IPv4' in rs[6]['reason_text'], rs[6]
assert 'unspecified' in rs[7]['reason_text'], rs[7]
assert rs[10]['reason_text'].startswith('10.0.0.1 is a private'), rs[10]
assert rs[11]['reason_text'].startswith('169.254.169.254 is a link-local'), rs[11]
assert 'NAT64' in rs[16]['reason_text'], rs[16]"
[ $(($(now_ms) - t0)) -lt 10000 ] || fail "refusals must not wait for timeouts"
run 3 scan --hook --url "http://2130706433:$port/cat.png"
[ "$(cat "$W/out")" = unscanned ] || fail "--hook on a blocked URL: $(cat "$W/out")"
grep -q "blocked-address" "$W/err" || fail "--hook: the reason on stderr: $(cat "$W/err")"
[ "$(connections)" -eq 0 ] || fail "a refused URL reached the server"
echo "ok   SSRF guard: $n URLs refused, no connection reached the server"

# The allow-list opens exactly what it names.
run 2 scan --json --quiet --allow-fetch 10.0.0.0/8 --url "$base/cat.png"
json_check "$W/out" "assert rs[0]['reason'] == 'blocked-address', rs"
run 0 scan --json --quiet --allow-fetch localhost --url "http://localhost:$port/cat.png"
run 2 scan --json --quiet --allow-fetch localhost --url "$base/cat.png"
json_check "$W/out" "assert rs[0]['reason'] == 'blocked-address', rs  # a name, not its address"
run 0 scan --json --quiet --allow-fetch 127.0.0.0/8 --url "http://127.1:$port/cat.png"
for bad in 127.1 10.0.0.0/33 "" "http://x" "fe80::1%lo"; do
    run 2 scan --allow-fetch "$bad" --url "$base/cat.png"
    grep -q -- "--allow-fetch" "$W/err" || fail "a bad --allow-fetch '$bad': $(cat "$W/err")"
done
echo "ok   --allow-fetch: networks and host names, nothing more"

# ---------------------------------------------------------------------------
# Failures are verdicts, in input order, each with its reason.
mark_log
t0=$(now_ms)
run 2 open_scan --json --quiet --max-file-bytes 150000 --fetch-timeout-ms 1500 --url \
    "$base/endless" "$base/announce-big" "$base/slow?bytes=1000&delay=0.1" "$base/loop" \
    "$base/html" "$base/status/404" "$base/status/503" "$base/cat.png" \
    "$base/interrupt/rocket.jpg" "ftp://127.0.0.1:$port/cat.png" "cat.png" \
    "$base/no-such-file.png" "http://127.0.0.1:1/cat.png" "https://127.0.0.1:$port/cat.png" \
    "$base/rocket.jpg"
elapsed=$(($(now_ms) - t0))
json_check "$W/out" "
want = [('too-large', 'stopped there'), ('too-large', 'announced 10000000000 bytes'),
        ('timeout', '1500 ms'), ('network-error', 'more than 5 redirects'),
        ('unsupported', ''), ('http-status', 'HTTP 404'), ('http-status', 'HTTP 503'),
        ('too-large', 'announced $img_bytes bytes'), ('network-error', ''),
        ('bad-url', 'only http and https'), ('bad-url', 'not a valid absolute URL'),
        ('http-status', 'HTTP 404'), ('network-error', ''), ('network-error', 'TLS: '),
        (None, None)]
assert len(rs) == len(want), len(rs)
for r, (reason, words) in zip(rs, want):
    assert r['reason'] == reason, (r['name'], r['reason'], r['reason_text'], reason)
    if reason:
        assert r['state'] == 'unscanned' and r['categories'] == [], r
        assert words in r['reason_text'], (r['name'], r['reason_text'], words)
assert rs[-1]['state'] == 'clean' and rs[-1]['name'].endswith('/rocket.jpg')"
# The endless body and the 10 GB one were stopped at the cap, not read to the end.
[ "$elapsed" -lt 15000 ] || fail "the batch took $elapsed ms: a transfer was not stopped"
grep -q '"event": "client-left", "path": "/endless"' "$W/server.log" ||
    fail "the endless transfer was not cut off by the client"
# Exactly 1 + 5 requests for the loop: the redirect cap, counted by the server.
[ "$(grep -c '"path": "/loop"' "$W/server.log")" -eq 6 ] || fail "redirect loop: not 6 requests"
echo "ok   byte cap, slow server, redirect loop, HTML, 404/503, cut body, TLS, bad URLs ($elapsed ms)"

run 2 open_scan --json --quiet --fetch-max-redirects 2 --url "$base/loop" \
    "$base/chain?n=2&to=/cat.png" "$base/chain?n=3&to=/cat.png"
json_check "$W/out" "
assert rs[0]['reason'] == 'network-error' and 'more than 2 redirects' in rs[0]['reason_text']
assert rs[1]['state'] == 'clean', rs[1]
assert rs[2]['reason'] == 'network-error', rs[2]"
# A slow start is a connect-or-first-byte timeout too; the whole budget covers redirects.
run 2 open_scan --json --quiet --fetch-timeout-ms 1000 --url \
    "$base/chain?n=2&to=/slow%3Fbytes%3D100%26delay%3D0.1"
json_check "$W/out" "assert rs[0]['reason'] == 'timeout' and 'after 2 redirects' in rs[0]['reason_text'], rs"

# ---------------------------------------------------------------------------
# Redirects are checked hop by hop: to a blocked address, to another scheme.
mark_log
enc() { "$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
set -- "$base/redirect?to=$(enc http://169.254.169.254/latest/meta-data/)" \
    "$base/redirect?to=$(enc "http://10.0.0.1:$port/cat.png")" \
    "$base/redirect?to=$(enc "http://[::1]:${port6:-$port}/cat.png")" \
    "$base/redirect?to=$(enc "http://2130706433:$port/cat.png")" \
    "$base/redirect?to=$(enc "http://localhost:$port/cat.png")" \
    "$base/redirect?to=$(enc file:///etc/passwd)" \
    "$base/redirect?to=$(enc gopher://127.0.0.1/)" \
    "$base/redirect?to=$(enc /cat.png)"
run 2 scan --json --quiet --allow-fetch 127.0.0.1/32 --url "$@"
json_check "$W/out" "
reasons = [r['reason'] for r in rs]
assert reasons == ['blocked-address', 'blocked-address', 'blocked-address', None, None,
                   'bad-url', 'bad-url', None], reasons
assert '169.254.169.254 is a link-local' in rs[0]['reason_text'] and 'redirect 1' in rs[0]['reason_text']
assert '::1 is a loopback' in rs[2]['reason_text'], rs[2]
assert all(r['state'] == 'clean' for r in rs[3:5] + rs[7:]), rs"
# Only the first server answered; [::1] was never reached.
grep -q '"listener": "::1"' "$W/server.log" && fail "a redirect reached [::1]"
echo "ok   redirects to blocked addresses and other schemes are refused at their hop"

# No cookies kept, no credentials carried to another host.
mark_log
run 0 scan --json --quiet --allow-fetch 127.0.0.1/32 --allow-fetch localhost --url \
    "http://user:secret@127.0.0.1:$port/redirect?to=$(enc "http://localhost:$port/redirect?to=/cat.png")"
"$PY" - "$W/server.log" <<'EOF' || fail "cookies or credentials were sent on: $(cat "$W/server.log")"
import json, sys
reqs = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "request"]
assert len(reqs) == 3, reqs
assert reqs[0]["authorization"], reqs[0]        # the URL's own host gets its credentials
assert not reqs[1]["authorization"] and not reqs[2]["authorization"], reqs
assert not any(r["cookie"] for r in reqs), reqs  # Set-Cookie was ignored
EOF
echo "ok   no cookies, no credentials across hosts"

# ---------------------------------------------------------------------------
# --url -: a list on stdin; several downloads at once, results in input order.
{
    echo "# a list of URLs"
    for i in 1 2 3 4; do echo "  $base/delay?s=1.5&file=/cat.png"; done
    echo ""
    echo "$base/status/404"
    echo "$base/rocket.jpg"
} >"$W/list"
t0=$(now_ms)
run 2 open_scan --json --quiet --fetch-parallel 4 --batch 8 --url - <"$W/list"
elapsed=$(($(now_ms) - t0))
json_check "$W/out" "
assert len(rs) == 6, [r['name'] for r in rs]
assert all(r['state'] == 'clean' for r in rs[:4]), rs
assert rs[0]['name'] == '$base/delay?s=1.5&file=/cat.png'
assert rs[4]['reason'] == 'http-status' and rs[5]['name'] == '$base/rocket.jpg'"
[ "$elapsed" -lt 5500 ] || fail "4 downloads of 1.5 s each took $elapsed ms: not in parallel"
echo "ok   --url - with --fetch-parallel 4: $elapsed ms for 4 x 1.5 s, input order kept"
printf '%s\n%s\n' "$base/cat.png" "$base/rocket.jpg" >"$W/two"
run 2 open_scan --hook --url - <"$W/two"
[ ! -s "$W/out" ] || fail "--hook with two URLs must print nothing on stdout"
run 2 scan --url
echo "PASS"

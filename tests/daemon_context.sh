#!/bin/sh
# daemon_context.sh - clipmodd passes the text that comes with an image to the engine
# (clipmodd(8) CONTEXT, issue 15), end to end with curl against a real clipmodd on
# loopback and the demo model (whose text tower knows emoji names: "pistol" and
# "dagger" are weapons, "grinning face" is not).
#
# The sample water pistol scores a little under the test policy's weapons threshold
# on its own; the policy's weapons category uses context (mode raise). Both
# thresholds are set from scores measured here with `clipmod scan --context` on the
# exact texts each door must hand over (file name first, then the text, one per
# line), so the test checks the daemon's joining and passing, not the demo model's
# luck. Through every door - a multipart `text` field, the X-Clipmod-Context header
# of a raw body, scan-url's "text", tusd's upload metadata - harmful words flag the
# image (flagged_by image+context) and neutral words leave it clean; two requests
# batched into one forward pass keep their own contexts; `context: off` ignores
# them all; the clamd protocol answers as before. Hostile context (10 MB field,
# invalid UTF-8, NUL bytes, 100,000 tiny words, right-to-left marks, bad
# percent-encoding, a huge header) is capped, cleaned or refused with a JSON error,
# the image still scanned when accepted, and the daemon never falls over.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_context"
rm -rf "$W"
mkdir -p "$W/www" "$W/uploads"
DEMO="$top_srcdir/models/demo"
[ -f "$DEMO/model.safetensors" ] || fail "$DEMO/model.safetensors is missing"
IMG="$top_srcdir/tests/data/demo-scenes/water-pistol.png"
cp "$IMG" "$W/www/water-pistol.png"
cp "$IMG" "$W/www/sandwich.png" # the same image under another name
WEIGHT=0.35

# policy FILE THRESHOLD CONTEXT_THRESHOLD: the demo policy's templates and neutral
# prompts, and its weapons category alone, with context on.
policy() {
    "$PY" - "$top_srcdir/policies/demo.yaml" "$@" "$WEIGHT" <<'EOF'
import re
import sys
src, out, theta, tau, weight = sys.argv[1:]
s = open(src).read()
head = s[:s.index("categories:")]
cat = s[s.index("  - id: weapons"):s.index("  - id: alcohol")]
# drop weapons' own threshold and action, whatever the shipped values
cat, n = re.subn(r"\n    threshold: [^\n]*", "", cat, count=1)
assert n == 1, "no threshold line in demo.yaml's weapons category"
cat = cat.replace("    action: flag\n", "")
cat += ("    threshold: %s\n    action: reject\n    context:\n      prompts: [pistol, dagger]\n"
        "      weight: %s\n      mode: raise\n      threshold: %s\n" % (theta, weight, tau))
open(out, "w").write(head.replace("name: clipmod demo (emoji)", "name: daemon context test")
                     + "categories:\n" + cat)
EOF
}

# The texts each door hands over: harmful and neutral, with and without a file name.
HARM="pistol dagger"
NEUTRAL="grinning face"
FNAME="water-pistol.png"
policy "$W/measure.yaml" 0.99 0.99
measure() { # measure CONTEXT: "image_score context_score" of the sample with that context
    "$CLIPMOD" scan -m "$DEMO" -p "$W/measure.yaml" --json --quiet --context "$1" "$IMG" |
        "$PY" -c 'import json, sys; c = json.loads(sys.stdin.readline())["categories"][0]; print(c["image_score"], c["context"]["score"])'
}
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
M_H1=$(measure "$HARM") || fail "clipmod scan --context failed"
M_H2=$(measure "$FNAME
$HARM")
M_N1=$(measure "$NEUTRAL")
M_N2=$(measure "$FNAME
$NEUTRAL")
echo "measured (image, context): harm $M_H1 / $M_H2, neutral $M_N1 / $M_N2"
eval "$("$PY" - "$M_H1" "$M_H2" "$M_N1" "$M_N2" "$WEIGHT" <<'EOF'
import sys
h = [tuple(map(float, a.split())) for a in sys.argv[1:3]]
n = [tuple(map(float, a.split())) for a in sys.argv[3:5]]
w = float(sys.argv[5])
s = h[0][0]
th, tn = min(t for _, t in h), max(t for _, t in n)
assert th - tn > 0.1, "the demo model does not tell the texts apart: %r %r" % (h, n)
tau = (th + tn) / 2
raised = s + w * th * (1 - s)
assert raised - s > 0.01, (s, raised)
print("S=%.4f TAU=%.4f THETA=%.4f T_H1=%s T_H2=%s" % (s, tau, (s + raised) / 2, h[0][1], h[1][1]))
EOF
)" || fail "cannot choose thresholds from the measured scores"
echo "image score $S, policy threshold $THETA, context threshold $TAU"
policy "$W/p.yaml" "$THETA" "$TAU"

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

conf() { # conf FILE [EXTRA-TOP-LEVEL-YAML]
    cat >"$1" <<EOF
model: $DEMO
policy: $W/p.yaml
fetch:
  allow: [127.0.0.1/32]
scan:
  batch-window-ms: 300
http:
  listen: 127.0.0.1:0
clamd:
  tcp: 127.0.0.1:0
tusd:
  roots: [$W/uploads]
${2:-}
EOF
}
conf "$W/main.yaml"
conf "$W/small.yaml" "engine:
  max-context-bytes: 1024"
conf "$W/off.yaml" "context: off"
start_daemon main "$W/main.yaml"
MAIN=$HTTP
MAIN_CLAMD=$CLAMD_TCP
MAIN_PID=$PID
start_daemon small "$W/small.yaml"
SMALL=$HTTP
start_daemon off "$W/off.yaml"
OFF=$HTTP
HTTP=$MAIN # for metric

FAILED=""
# req NAME CURL-ARGS...: the answer in $W/NAME.json, the status in $W/NAME.code.
req() {
    name=$1
    shift
    curl -s -m 60 -o "$W/$name.json" -w '%{http_code}' "$@" >"$W/$name.code" || true
}
# ok NAME EXPR WHAT: EXPR (Python, the answer as `r`, its status as `code`) must hold.
ok() {
    if "$PY" - "$W/$1.json" "$(cat "$W/$1.code")" "$2" <<'EOF'; then
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except ValueError:
    r = open(sys.argv[1], "rb").read()
code = int(sys.argv[2])
sys.exit(0 if eval(sys.argv[3]) else 1)
EOF
        echo "ok: $3"
    else
        echo "FAIL: $3: $(cat "$W/$1.code") $(head -c 600 "$W/$1.json")"
        FAILED="$FAILED|$3"
    fi
}
alive() { # alive WHAT: the main daemon still answers
    req health -H 'Accept: application/json' "http://$MAIN/v1/health"
    ok health 'code == 200 and r["status"] == "ok"' "$1: clipmodd still serves"
}
W0='r[0]["categories"][0]'
W1='r["categories"][0]'

# ---- A multipart text field (the part's file name first, then the text) ---------
req mp_harm -F "image=@$IMG" -F "text=$HARM" "http://$MAIN/v1/scan"
ok mp_harm "code == 200 and len(r) == 1 and r[0]['state'] == 'flagged' and $W0['flagged_by'] == 'image+context'" \
    "multipart with a harmful text field: flagged by image+context"
ok mp_harm "$W0['context']['window'] == '$HARM' and r[0]['context']['windows'] == 2 and r[0]['context']['bytes'] == len('$FNAME') + 1 + len('$HARM') and abs($W0['context']['score'] - $T_H2) < 1e-3 and abs($W0['image_score'] - $S) < 1e-3" \
    "multipart: the context is the file name, then the text (scored as clipmod scan --context)"
ok mp_harm "r[0]['context']['bytes'] == len('$FNAME\n$HARM') and not r[0]['context']['cut']" \
    "multipart: the result's context block"
req mp_neutral -F "image=@$IMG" -F "text=$NEUTRAL" "http://$MAIN/v1/scan"
ok mp_neutral "code == 200 and r[0]['state'] == 'clean' and $W0['score'] < $THETA" \
    "multipart with a neutral text field: clean"
req mp_none -F "image=@$IMG;filename=" "http://$MAIN/v1/scan"
ok mp_none "code == 200 and r[0]['state'] == 'clean' and 'context' not in r[0]" \
    "multipart without a file name or text: no context, clean (the image alone is under)"
# Two files, one text: each gets its own file name and the shared text.
req mp_two -F "a=@$IMG;filename=$FNAME" -F "b=@$IMG;filename=sandwich.png" -F "text=$HARM" \
    "http://$MAIN/v1/scan"
ok mp_two "code == 200 and [x['categories'][0]['context']['window'] for x in r] == ['$HARM', '$HARM'] and [x['context']['bytes'] for x in r] == [len('$FNAME\n$HARM'), len('sandwich.png\n$HARM')]" \
    "multipart with two files: each its own file name, then the shared text"
# Listed text fields stay dropped; the text field is never scanned as a file.
req mp_text_file -F "image=@$IMG" -F "text=@$W/p.yaml" "http://$MAIN/v1/scan"
ok mp_text_file "code == 200 and len(r) == 2 and r[1]['state'] == 'unscanned'" \
    "a text field carrying a file name is a file, and scanned"

# ---- A raw body with X-Clipmod-Context (percent-encoded UTF-8) -----------------
raw() { # raw NAME DAEMON[/v1/scan?QUERY] [CURL-ARGS...]
    name=$1
    where=$2
    shift 2
    case $where in */*) ;; *) where="$where/v1/scan" ;; esac
    req "$name" --data-binary "@$IMG" -H 'Content-Type: image/png' "$@" "http://$where"
}
raw raw_harm "$MAIN" -H 'X-Clipmod-Context: pistol%20dagger'
ok raw_harm "code == 200 and r['state'] == 'flagged' and $W1['flagged_by'] == 'image+context' and $W1['context']['window'] == '$HARM' and abs($W1['context']['score'] - $T_H1) < 1e-3" \
    "raw body with X-Clipmod-Context: flagged by image+context"
raw raw_neutral "$MAIN" -H 'X-Clipmod-Context: grinning%20face'
ok raw_neutral "code == 200 and r['state'] == 'clean'" "raw body with neutral context: clean"
raw raw_plain "$MAIN"
ok raw_plain "code == 200 and r['state'] == 'clean' and 'context' not in r and 'context' not in $W1" \
    "raw body without context: clean, no context in the answer"
raw raw_name "$MAIN/v1/scan?name=$FNAME" -H 'X-Clipmod-Context: pistol%20dagger'
ok raw_name "r['name'] == '$FNAME' and $W1['context']['window'] == '$HARM' and r['context']['windows'] == 2 and r['context']['bytes'] == len('$FNAME\n$HARM')" \
    "raw body: ?name= is the file name, before the header's text"
raw raw_enforce "$MAIN/v1/scan?enforce=1" -H 'X-Clipmod-Context: pistol%20dagger'
ok raw_enforce "code == 403" "?enforce=1 with harmful context: the policy's reject status"

# ---- scan-url: "text" (shared) and {"url", "text"} entries ---------------------
url_req() { # url_req NAME JSON
    req "$1" -H 'Content-Type: application/json' --data-binary "$2" "http://$MAIN/v1/scan-url"
}
url_req url_harm "{\"url\": \"$WWW/water-pistol.png\", \"text\": \"$HARM\"}"
ok url_harm "code == 200 and r['state'] == 'flagged' and $W1['flagged_by'] == 'image+context' and $W1['context']['window'] == '$HARM'" \
    "scan-url with a harmful text: flagged by image+context"
url_req url_neutral "{\"url\": \"$WWW/water-pistol.png\", \"text\": \"$NEUTRAL\"}"
ok url_neutral "code == 200 and r['state'] == 'clean'" "scan-url with a neutral text: clean"
url_req url_each "{\"urls\": [{\"url\": \"$WWW/water-pistol.png\", \"text\": \"$HARM\"}, {\"url\": \"$WWW/sandwich.png\", \"text\": \"$NEUTRAL\"}, \"$WWW/water-pistol.png\"]}"
ok url_each "code == 200 and [x['state'] for x in r] == ['flagged', 'clean', 'clean'] and 'context' not in r[2]" \
    "scan-url: each URL its own text"
url_req url_bad "{\"urls\": [{\"url\": \"$WWW/water-pistol.png\", \"txt\": \"$HARM\"}]}"
ok url_bad "code == 400 and 'error' in r" "scan-url: an entry with an unknown key is 400"
url_req url_badtype "{\"url\": \"$WWW/water-pistol.png\", \"text\": 5}"
ok url_badtype "code == 400 and 'text' in r['error']" "scan-url: a text that is not a string is 400"

# ---- tusd: the upload metadata's filename and caption keys ---------------------
tusd() { # tusd NAME ID META-JSON (or @FILE holding it)
    cp "$IMG" "$W/uploads/$2"
    "$PY" - "$top_srcdir/tests/tusd_hook_fixture/pre-finish.json" "$2" "$W/uploads/$2" \
        "$(stat -c %s "$IMG")" "$3" >"$W/$1.request" <<'EOF'
import json, sys
src, uid, path, size, meta = sys.argv[1:]
t = open(src).read().replace("@ID@", uid).replace("@PATH@", path).replace("@SIZE@", size)
r = json.loads(t)
r["Event"]["Upload"]["MetaData"] = json.loads(open(meta[1:]).read() if meta[0] == "@" else meta)
print(json.dumps(r))
EOF
    req "$1" -H 'Content-Type: application/json' --data-binary "@$W/$1.request" "http://$MAIN/v1/tusd"
}
tusd tusd_harm up-harm "{\"filename\": \"$FNAME\", \"caption\": \"$HARM\", \"filetype\": \"image/png\"}"
ok tusd_harm "code == 200 and r['RejectUpload'] is True and r['HTTPResponse']['StatusCode'] == 403 and r['Verdict']['categories'][0]['flagged_by'] == 'image+context' and r['Verdict']['categories'][0]['context']['window'] == '$HARM' and r['Verdict']['context']['windows'] == 2" \
    "tusd pre-finish with a harmful caption: refused (flagged by image+context)"
tusd tusd_neutral up-neutral "{\"filename\": \"$FNAME\", \"caption\": \"$NEUTRAL\"}"
ok tusd_neutral "code == 200 and r['RejectUpload'] is False and r['Verdict']['state'] == 'clean'" \
    "tusd pre-finish with a neutral caption: accepted"
tusd tusd_keys up-keys "{\"name\": \"a.png\", \"description\": \"d\", \"alt\": \"e\", \"title\": \"f\", \"text\": \"g\", \"other\": \"pistol\"}"
ok tusd_keys "r['Verdict']['context']['windows'] == 5 and r['Verdict']['context']['bytes'] == len('a.png\nd\ne\nf\ng')" \
    "tusd: name (no filename), description, alt, title, text, one piece per line; other keys ignored"

# ---- Batching: two requests in one pass keep their own contexts ----------------
before=$(metric 'clipmodd_batch_size_count')
raw batch_harm "$MAIN" -H 'X-Clipmod-Context: pistol%20dagger' &
p1=$!
raw batch_neutral "$MAIN" -H 'X-Clipmod-Context: grinning%20face' &
p2=$!
wait $p1 $p2
after=$(metric 'clipmodd_batch_size_count')
ok batch_harm "r['state'] == 'flagged' and $W1['context']['window'] == '$HARM'" \
    "batched: the harmful request keeps its context"
ok batch_neutral "r['state'] == 'clean' and $W1['context']['window'] == '$NEUTRAL'" \
    "batched: the neutral request keeps its context"
if [ "$((after - before))" -eq 1 ]; then
    echo "ok: the two requests were scanned in one forward pass"
else
    echo "FAIL: the two requests took $((after - before)) passes (batch-window-ms 300)"
    FAILED="$FAILED|one pass"
fi

# ---- context: off -------------------------------------------------------------
req off_mp -F "image=@$IMG" -F "text=$HARM" "http://$OFF/v1/scan"
ok off_mp "code == 200 and len(r) == 1 and r[0]['state'] == 'clean' and 'context' not in r[0]" \
    "context: off: the text field is read and dropped (not scanned), the image judged alone"
raw off_raw "$OFF" -H 'X-Clipmod-Context: %zz'
ok off_raw "code == 200 and r['state'] == 'clean' and 'context' not in r" \
    "context: off: the header is ignored"

# ---- The clamd protocol: no text there, unchanged -------------------------------
"$PY" - "$MAIN_CLAMD" "$IMG" >"$W/clamd.out" <<'EOF' || true
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
data = open(sys.argv[2], "rb").read()
s = socket.create_connection((host, int(port)), timeout=30)
s.sendall(b"zINSTREAM\0" + struct.pack(">I", len(data)) + data + struct.pack(">I", 0))
print(s.recv(4096).rstrip(b"\0").decode())
EOF
if grep -qx 'stream: OK' "$W/clamd.out"; then
    echo "ok: clamd INSTREAM: the image alone is under the threshold (stream: OK)"
else
    echo "FAIL: clamd INSTREAM: $(cat "$W/clamd.out")"
    FAILED="$FAILED|clamd"
fi

# ---- Hostile context ------------------------------------------------------------
head -c 10485760 /dev/zero | tr '\0' 'a' >"$W/10mb.txt"
req big_field -F "image=@$IMG" -F "text=<$W/10mb.txt" "http://$MAIN/v1/scan"
ok big_field "code == 413 and 'context-fields' in r['error'] and r['status'] == 413" \
    "a 10 MB text field: 413 with a JSON error"
alive "after a 10 MB text field"
"$PY" -c 'import sys; sys.stdout.write("pistol dagger " * 4300)' >"$W/60k.txt"
req cut_field -F "image=@$IMG" -F "text=<$W/60k.txt" "http://$MAIN/v1/scan"
ok cut_field "code == 200 and r[0]['state'] in ('clean', 'flagged') and r[0]['context']['cut'] and r[0]['context']['bytes'] > 60000 and r[0]['context']['bytes_used'] <= 16384" \
    "60 KB of text (over max-context-bytes, under the cap): accepted, cut, the image scanned"
printf 'pistol\000dagger\377\376 \342\200\256grinning\000' >"$W/bin.txt"
req bin_field -F "image=@$IMG" -F "text=<$W/bin.txt" "http://$MAIN/v1/scan"
ok bin_field "code == 200 and r[0]['state'] != 'unscanned' and {'invalid-utf8', 'control', 'invisible'} <= set(r[0]['context']['cleaned'])" \
    "NUL bytes, invalid UTF-8 and a right-to-left override in the field: cleaned, the image scanned"
raw rtl "$MAIN" -H 'X-Clipmod-Context: %E2%80%AEpistol%E2%80%AC%E2%80%8B%20dagger%E2%80%8F'
ok rtl "code == 200 and r['state'] == 'flagged' and 'invisible' in r['context']['cleaned'] and $W1['context']['window'] == '$HARM'" \
    "right-to-left and zero-width marks around the words: dropped, the words still count"
raw nul_hdr "$MAIN" -H 'X-Clipmod-Context: pistol%00dagger%FF%FE'
ok nul_hdr "code == 200 and r['state'] != 'unscanned' and {'control', 'invalid-utf8'} <= set(r['context']['cleaned'])" \
    "NUL and invalid UTF-8 percent-encoded in the header: cleaned, the image scanned"
"$PY" -c 'import sys; sys.stdout.write("a " * 100000)' >"$W/words.txt"
req words_field -F "image=@$IMG" -F "text=<$W/words.txt" "http://$MAIN/v1/scan"
ok words_field "code == 413 and 'error' in r" "100,000 tiny words in a field (200 KB): 413"
"$PY" -c 'import json; print(json.dumps({"filename": "x.png", "caption": "a " * 100000}))' >"$W/words.meta"
tusd tusd_words up-words "@$W/words.meta"
ok tusd_words "code == 200 and r['Verdict']['state'] != 'unscanned' and r['Verdict']['context']['cut'] and r['Verdict']['context']['windows'] <= 8" \
    "100,000 tiny words in tusd metadata: cut to the cap and the windows, the upload scanned"
raw bad_escape "$MAIN" -H 'X-Clipmod-Context: pistol%2'
ok bad_escape "code == 400 and 'percent-encoded' in r['error']" "a broken percent escape: 400"
raw two_headers "$MAIN" -H 'X-Clipmod-Context: pistol' -H 'X-Clipmod-Context: dagger'
ok two_headers "code == 400 and 'more than one' in r['error']" "two X-Clipmod-Context headers: 400"
"$PY" -c 'import sys; sys.stdout.write("a%20" * 2500)' >"$W/10k.hdr"
raw small_hdr "$SMALL" -H "X-Clipmod-Context: $(cat "$W/10k.hdr")"
ok small_hdr "code == 413 and 'max-context-bytes' in r['error']" \
    "a header of 5,000 bytes of text, over 4 x max-context-bytes (1024): 413"
"$PY" -c 'import sys; sys.stdout.write("X-Clipmod-Context: " + "a%20" * 50000)' >"$W/200k.hdr"
raw huge_hdr "$MAIN" -H "@$W/200k.hdr"
ok huge_hdr "code >= 400 and code < 500" "a 200 KB header: refused by the HTTP reader"
alive "after a 200 KB header"
"$PY" -c 'import json; print(json.dumps({"url": "http://127.0.0.1:1/x.png", "text": "a " * 40000}))' >"$W/url_big.request"
req url_big -H 'Content-Type: application/json' --data-binary "@$W/url_big.request" "http://$MAIN/v1/scan-url"
ok url_big "code == 413 and 'larger than 65536 bytes' in r['error']" "scan-url: 80 KB of text: 413"
"$PY" -c 'import json; print(json.dumps({"urls": ["http://127.0.0.1:1/x.png", {"url": "http://127.0.0.1:1/y.png", "text": "a " * 40000}]}))' >"$W/url_big2.request"
req url_big2 -H 'Content-Type: application/json' --data-binary "@$W/url_big2.request" "http://$MAIN/v1/scan-url"
ok url_big2 "code == 413 and 'a URL' in r['error']" "scan-url: 80 KB of one URL's text: 413"

kill -0 "$MAIN_PID" 2>/dev/null || fail "clipmodd exited: $(tail -n 20 "$W/main.log")"
[ -z "$FAILED" ] || fail "cases failed: ${FAILED#|}"
echo "PASS: context through every door of clipmodd"

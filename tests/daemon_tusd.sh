#!/bin/sh
# daemon_tusd.sh - clipmodd's tusd hook endpoint (POST /v1/tusd) with the hook requests
# of tests/tusd_hook_fixture/: pre-create is let through, pre-finish sets the client's
# status for a refused upload, post-finish deletes a refused upload or moves a held
# one to quarantine, uploads are read only inside tusd.roots (symbolic links and ".."
# that lead out are refused), and anything clipmodd cannot judge fails closed.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_tusd"
F="$top_srcdir/tests/tusd_hook_fixture"
rm -rf "$W"
mkdir -p "$W/uploads" "$W/quarantine" "$W/outside"
setup_model daemon-tusd
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject

cat >"$W/clipmodd.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
tusd:
  roots: [$W/uploads]
  delete-rejected: true
  quarantine-dir: $W/quarantine
EOF
start_daemon tusd "$W/clipmodd.yaml"
U="http://$HTTP/v1/tusd"

# upload ID SOURCE: what tusd's file store leaves: the data and its .info file.
upload() {
    cp "$2" "$W/uploads/$1"
    sed -e "s|@ID@|$1|g" -e "s|@PATH@|$W/uploads/$1|g" -e "s|@SIZE@|$(stat -c %s "$2")|g" \
        "$F/upload.info" >"$W/uploads/$1.info"
}
# hook FIXTURE ID PATH: post the filled-in fixture; status in $CODE, reply in $W/reply.
hook() {
    size=$(stat -c %s "$3" 2>/dev/null || echo 0)
    sed -e "s|@ID@|$2|g" -e "s|@PATH@|$3|g" -e "s|@SIZE@|$size|g" "$F/$1" >"$W/request.json"
    CODE=$(curl -s -o "$W/reply" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$W/request.json" "$U")
}
check() {
    "$PY" -c 'import json, re, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$W/reply" "$1" || fail "$2: $(cat "$W/reply")"
}

# pre-create: nothing to scan yet; an empty response lets tusd go on.
hook pre-create.json "" /nonexistent
[ "$CODE" = 200 ] && [ "$(cat "$W/reply")" = "{}" ] || fail "pre-create: $CODE $(cat "$W/reply")"

# pre-finish, flagged (reject): tusd is told to answer the client 403 with the message.
upload up-hi "$HI"
hook pre-finish.json up-hi "$W/uploads/up-hi"
[ "$CODE" = 200 ] || fail "pre-finish: $CODE"
check 'r["HTTPResponse"]["StatusCode"] == 403 and r["RejectUpload"] is True' "pre-finish, rejected"
check 'json.loads(r["HTTPResponse"]["Body"])["action"] == "reject" and json.loads(r["HTTPResponse"]["Body"])["category"] == "cat"' \
    "the client's body"
check 'r["HTTPResponse"]["Header"]["Clipmod-Action"] == "reject" and r["HTTPResponse"]["Header"]["Content-Type"] == "application/json"' \
    "the client's headers"
check 'r["Verdict"]["state"] == "flagged" and r["Verdict"]["name"] == "up-hi"' "the verdict"
# The policy it was judged under: 12 hex digits and generation 1, in the verdict, the
# client's headers and the refusal's body alike.
check 're.fullmatch("[0-9a-f]{12}", r["Verdict"]["policy_fingerprint"]) and r["Verdict"]["policy_generation"] == 1 and r["HTTPResponse"]["Header"]["Clipmod-Policy-Fingerprint"] == r["Verdict"]["policy_fingerprint"] and r["HTTPResponse"]["Header"]["Clipmod-Policy-Generation"] == "1" and json.loads(r["HTTPResponse"]["Body"])["policy_generation"] == 1' \
    "the policy of a tusd verdict"
[ -f "$W/uploads/up-hi" ] || fail "pre-finish must not touch the file"

# pre-finish, clean: tusd's own answer stands, with the verdict in headers.
upload up-lo "$LO"
hook pre-finish.json up-lo "$W/uploads/up-lo"
check '"StatusCode" not in r["HTTPResponse"] and r["RejectUpload"] is False' "pre-finish, clean"
# (The headers name the policy too, since issue 12: fingerprint and generation.)
check 'r["HTTPResponse"]["Header"] == {"Clipmod-Action": "allow", "Clipmod-State": "clean", "Clipmod-Policy-Fingerprint": r["Verdict"]["policy_fingerprint"], "Clipmod-Policy-Generation": "1"}' \
    "pre-finish, clean headers"

# post-finish: the refused upload and its .info are deleted; the clean one stays.
hook post-finish.json up-hi "$W/uploads/up-hi"
check 'r.get("ClipmodFile") == "deleted"' "post-finish, rejected"
[ ! -e "$W/uploads/up-hi" ] && [ ! -e "$W/uploads/up-hi.info" ] ||
    fail "a refused upload must be deleted with its .info file"
hook post-finish.json up-lo "$W/uploads/up-lo"
check '"ClipmodFile" not in r and not r["RejectUpload"]' "post-finish, clean"
[ -f "$W/uploads/up-lo" ] || fail "a clean upload must stay"

# Not an image: refused (422 to the client) unless tusd.accept-unscanned.
printf 'not an image\n' >"$W/text"
upload up-text "$W/text"
hook pre-finish.json up-text "$W/uploads/up-text"
check 'r["HTTPResponse"]["StatusCode"] == 422 and r["Verdict"]["state"] == "unscanned"' \
    "an unscanned upload"

# Only inside the roots: a path outside, a link that leads out, ".." and a relative path
# are refused with 422 (tusd then fails the request: closed, not open).
cp "$HI" "$W/outside/secret"
ln -s "$W/outside/secret" "$W/uploads/up-link"
for p in "$W/outside/secret" "$W/uploads/up-link" "$W/uploads/../outside/secret" \
    "uploads/up-lo" "/etc/passwd"; do
    hook pre-finish.json up-x "$p"
    [ "$CODE" = 422 ] || fail "$p must be refused, got $CODE: $(cat "$W/reply")"
done
grep -q "outside the configured roots" "$W/reply" || fail "the refusal must say why"
# An upload without a local file and without tusd.download-url: 422.
hook s3store-post-finish.json up-lo "$W/uploads/up-lo"
[ "$CODE" = 422 ] || fail "s3store without download-url: $CODE"
# IDs that would climb out are refused before anything is read.
hook pre-finish.json "../../etc/passwd" "$W/uploads/up-lo"
[ "$CODE" = 400 ] || fail "an ID with ..: $CODE"
printf '{"Type": 5}' >"$W/request.json"
CODE=$(curl -s -o "$W/reply" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary "@$W/request.json" "$U")
[ "$CODE" = 400 ] || fail "a malformed hook request: $CODE"

# Quarantine: after a reload with action quarantine, post-finish moves the upload.
write_policy "$W/p.yaml" "$THRESHOLD" quarantine
kill -HUP "$PID"
i=0
until curl -s "http://$HTTP/v1/policy" | grep -q '"action":"quarantine"'; do
    [ $i -lt 100 ] || fail "the reload did not happen"
    sleep 0.1
    i=$((i + 1))
done
upload up-q "$HI"
hook pre-finish.json up-q "$W/uploads/up-q"
check '"StatusCode" not in r["HTTPResponse"] and r["HTTPResponse"]["Header"]["Clipmod-Action"] == "quarantine"' \
    "pre-finish, quarantine (202 is not a refusal)"
check 'r["Verdict"]["policy_generation"] == 2' "the generation after a reload"
hook post-finish.json up-q "$W/uploads/up-q"
check 'r.get("ClipmodFile", "").startswith("moved to ")' "post-finish, quarantine"
[ -f "$W/quarantine/up-q" ] && [ -f "$W/quarantine/up-q.info" ] && [ ! -e "$W/uploads/up-q" ] ||
    fail "the held upload must be moved to the quarantine directory"
# A file that tusd did not create (no .info naming it) is never moved, whatever a hook
# request says (daemon_tusd_delete.sh has the other cases, for deletion).
cp "$HI" "$W/uploads/photo.png"
hook post-finish.json photo.png "$W/uploads/photo.png"
check 'r.get("ClipmodFile", "").startswith("kept: ")' "post-finish naming a file that is not an upload"
[ -f "$W/uploads/photo.png" ] && [ ! -e "$W/quarantine/photo.png" ] ||
    fail "a file that is not an upload must not be moved to quarantine"

[ "$(metric 'clipmodd_inputs_total{interface="tusd"}')" -ge 6 ] || fail "tusd inputs metric"

# An upload without a local path is downloaded from tusd (GET /files/ID).
mkdir -p "$W/www/files"
cp "$HI" "$W/www/files/remote-hi"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$W/www" && exec "$PY" -m http.server --bind 127.0.0.1 "$port") >"$W/www.log" 2>&1 &
DAEMON_PIDS="$DAEMON_PIDS $!"
cat >>"$W/clipmodd.yaml" <<EOF
  download-url: http://127.0.0.1:$port/files/
fetch:
  allow: [127.0.0.1/32]
EOF
start_daemon tusd-fetch "$W/clipmodd.yaml"
U="http://$HTTP/v1/tusd"
sleep 0.5
hook s3store-post-finish.json remote-hi /nonexistent
check 'r["Verdict"]["state"] == "flagged"' "an upload fetched from tusd"
echo "download-url: tested end to end"

echo "PASS"

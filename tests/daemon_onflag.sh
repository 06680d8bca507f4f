#!/bin/sh
# daemon_onflag.sh - clipmodd's on-flag command (clipmodd(8), ON-FLAG COMMAND): a real
# hook script is exec'd for every flagged verdict (and, with on-flag.unscanned, every
# unscanned one) from the HTTP door and the clamd protocol, never for a clean one; the
# verdict arrives in CLIPMOD_* variables only (checked against the policy's own
# threshold and the answer's Clipmod-Policy-Fingerprint header), the argv is passed as
# written (no shell), a hostile file name stays a literal value (its $(...) and
# backquotes are never run), the rest of the environment is PATH alone, and a hook
# that outlives on-flag.timeout is killed with its process group while the scan's
# answer never waits for it. Also the plugins: list: a real operator plugin
# (audit-log) loaded from the configuration records the verdicts, and a plugin that
# cannot be loaded stops clipmodd with a line naming it.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_onflag"
rm -rf "$W"
mkdir -p "$W/out"
setup_model daemon-onflag
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject

# The hook: its argv and environment into one file per run; a file named slow-*
# makes it record its pid and sleep past the timeout (and say so if it ever wakes).
cat >"$W/hook.sh" <<'EOF'
#!/bin/sh
out=$1
f="$out/run.$$"
{
    printf 'ARGC=%s\n' "$#"
    for a in "$@"; do printf 'ARG=%s\n' "$a"; done
    env | sort
} >"$f.tmp"
mv "$f.tmp" "$f.env"
case "$CLIPMOD_FILENAME" in
slow-*)
    echo $$ >"$out/slow.pid"
    sleep 30 &
    echo $! >"$out/slow-child.pid"
    wait
    touch "$out/slow-woke"
    ;;
esac
EOF
chmod 755 "$W/hook.sh"

cat >"$W/clipmodd.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
clamd:
  tcp: 127.0.0.1:0
plugins:
  - path: $top_builddir/plugins/.libs/audit-log.so
    config: path=$W/audit.jsonl
on-flag:
  command: ["$W/hook.sh", "$W/out", "two words; \$(not run)"]
  timeout: 1s
  max-running: 4
  unscanned: true
EOF
start_daemon onflag "$W/clipmodd.yaml"
grep -q 'msg="on-flag command set"' "$LOG" || fail "the hook is not announced: $(cat "$LOG")"

# wait_runs N: until N hook runs have written their file (10 s at most).
wait_runs() {
    i=0
    while [ "$(ls "$W/out" | grep -c '\.env$')" -lt "$1" ]; do
        [ $i -lt 100 ] || fail "expected $1 hook runs, got: $(ls "$W/out")"
        sleep 0.1
        i=$((i + 1))
    done
}

# A clean image: no hook.
curl -s -o /dev/null -H 'Content-Type: image/png' --data-binary "@$LO" "http://$HTTP/v1/scan"
sleep 1
[ -z "$(ls "$W/out")" ] || fail "a clean verdict ran the hook: $(cat "$W"/out/*.env)"

# A flagged image over HTTP, by a hostile multipart file name.
hostile='x$(touch '"$W"'/pwned)`touch '"$W"'/pwned2`;rm -f *;.png'
"$PY" - "$HTTP" "$HI" "$hostile" "$W/headers" <<'EOF' || fail "multipart upload"
import http.client, sys
host, img, name, hdrs = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3], sys.argv[4]
b = "XyZboundary"
body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f'Content-Type: image/png\r\n\r\n').encode() + img + f"\r\n--{b}--\r\n".encode()
c = http.client.HTTPConnection(host, timeout=30)
c.request("POST", "/v1/scan", body, {"Content-Type": f"multipart/form-data; boundary={b}"})
r = c.getresponse()
r.read()
assert r.status == 200, r.status
open(hdrs, "w").write("".join(f"{k}: {v}\n" for k, v in r.getheaders()))
EOF
wait_runs 1
run=$(ls "$W"/out/*.env)
fp=$(sed -n 's/^Clipmod-Policy-Fingerprint: //p' "$W/headers")
[ ${#fp} -eq 12 ] || fail "no fingerprint header: $(cat "$W/headers")"
thr=$("$PY" -c "print('%.4f' % float('$THRESHOLD'))")
"$PY" - "$run" "$W" "$fp" "$thr" "$hostile" <<'EOF' || fail "the hook's view of an HTTP verdict: $(cat "$run")"
import sys
run, w, fp, thr, hostile = sys.argv[1:6]
lines = open(run).read().splitlines()
args = [l[4:] for l in lines if l.startswith("ARG=")]
env = dict(l.split("=", 1) for l in lines if "=" in l and not l.startswith(("ARG", "ARGC")))
assert args == [w + "/out", "two words; $(not run)"], args
want = {"CLIPMOD_VERDICT": "flagged", "CLIPMOD_CATEGORY": "cat", "CLIPMOD_ACTION": "reject",
        "CLIPMOD_SOURCE": "clipmodd:http", "CLIPMOD_POLICY": fp, "CLIPMOD_GENERATION": "1",
        "CLIPMOD_THRESHOLD": thr, "CLIPMOD_FILENAME": hostile, "CLIPMOD_FLAGGED_BY": "image"}
for k, v in want.items():
    assert env.get(k) == v, (k, env.get(k), v)
assert float(env["CLIPMOD_SCORE"]) >= float(thr), env["CLIPMOD_SCORE"]
assert "CLIPMOD_REASON" not in env, env
# Nothing of clipmodd's own environment (HOME, XDG_CACHE_HOME, ...) reaches the hook.
extra = set(env) - set(want) - {"CLIPMOD_SCORE", "PATH", "PWD", "SHLVL", "_", "OLDPWD"}
assert not extra, extra
assert env["PATH"] == "/usr/bin:/bin", env["PATH"]
EOF
[ ! -e "$W/pwned" ] && [ ! -e "$W/pwned2" ] || fail "the hostile file name was run by a shell"
rm -f "$W"/out/*.env

# An unscanned input (on-flag.unscanned: true) and a flagged one over the clamd protocol.
printf 'not an image\n' >"$W/text.png"
curl -s -o /dev/null -H 'Content-Type: image/png' --data-binary "@$W/text.png" "http://$HTTP/v1/scan"
wait_runs 1
grep -q '^CLIPMOD_VERDICT=unscanned$' "$W"/out/*.env && grep -q '^CLIPMOD_REASON=.' "$W"/out/*.env ||
    fail "unscanned verdict: $(cat "$W"/out/*.env)"
rm -f "$W"/out/*.env
"$PY" - "$CLAMD_TCP" "$HI" <<'EOF' || fail "clamd INSTREAM"
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
img = open(sys.argv[2], "rb").read()
s = socket.create_connection((host, int(port)), timeout=30)
s.sendall(b"zINSTREAM\0" + struct.pack("!L", len(img)) + img + struct.pack("!L", 0))
out = s.recv(4096)
assert out.endswith(b"FOUND\0"), out
EOF
wait_runs 1
grep -q '^CLIPMOD_SOURCE=clipmodd:clamd$' "$W"/out/*.env && grep -q '^CLIPMOD_FILENAME=stream$' "$W"/out/*.env ||
    fail "clamd verdict: $(cat "$W"/out/*.env)"
rm -f "$W"/out/*.env

# A hook past its timeout (1 s): killed with its children; the answer did not wait.
start=$(date +%s)
curl -s -o /dev/null -F "f=@$HI;filename=slow-1.png" "http://$HTTP/v1/scan"
[ $(($(date +%s) - start)) -lt 10 ] || fail "the scan's answer waited for the hook"
i=0
until grep -q 'msg="on_flag timed out' "$LOG"; do
    [ $i -lt 100 ] || fail "the slow hook was not killed: $(tail -n 5 "$LOG")"
    sleep 0.1
    i=$((i + 1))
done
[ -s "$W/out/slow.pid" ] || fail "the slow hook did not run"
# Gone, or a zombie waiting for init (whose reaping here may lag): never running.
child=$(cat "$W/out/slow-child.pid")
i=0
while state=$(cut -d' ' -f3 "/proc/$child/stat" 2>/dev/null) && [ "$state" != Z ]; do
    [ $i -lt 30 ] || fail "the hook's child outlived the timeout (state $state)"
    sleep 0.1
    i=$((i + 1))
done
[ ! -e "$W/out/slow-woke" ] || fail "the slow hook finished"

stop_daemon "$PID"
[ "$STOPPED" -eq 0 ] || fail "clipmodd exited $STOPPED"

# The plugin saw the scans, under the name the client gave.
"$PY" - "$W/audit.jsonl" "$hostile" <<'EOF' || fail "audit-log plugin: $(cat "$W/audit.jsonl")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert any(l["name"] == sys.argv[2] and l["state"] == "flagged" for l in lines), lines
assert any(l["state"] == "clean" for l in lines), lines
EOF
printf 'model: %s\npolicy: %s\nplugins:\n  - path: %s\n' "$MODEL" "$W/p.yaml" "$W/nothere.so" >"$W/noplugin.yaml"
set +e
"$CLIPMODD" --check -c "$W/noplugin.yaml" >"$W/noplugin.out" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q "nothere.so" "$W/noplugin.out" ||
    fail "a missing plugin: exit $rc: $(cat "$W/noplugin.out")"

# refused NAME COMMAND MESSAGE: an on-flag.command that --check refuses (exit 2)
# with MESSAGE at line 2, column 12 of NAME.yaml.
refused() {
    printf 'on-flag:\n  command: %s\n' "$2" >"$W/$1.yaml"
    set +e
    "$CLIPMODD" --check -c "$W/$1.yaml" -m "$MODEL" -p "$W/p.yaml" >"$W/$1.out" 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 2 ] && grep -q "$1.yaml:2:12: $3" "$W/$1.out" ||
        fail "on-flag.command $2: exit $rc: $(cat "$W/$1.out")"
}
# A command that is not an absolute path is refused at its position; an empty one
# names no program and is refused too, not read as "no hook".
refused rel '[hook.sh]' "command must start with an absolute path"
refused empty '[]' "command is empty"
echo "PASS"

#!/bin/sh
# daemon_tusd_delete.sh - tusd post-finish with tusd.delete-rejected deletes only what
# tusd's filestore created: the upload file (named after the upload ID) and its
# ID.info beside it, whose JSON (written by tusd, tests/tusd_hook_fixture/upload.info)
# names the same ID, Storage.Path and size. Hook requests are not authenticated, so
# requests that name other files inside tusd.roots must delete nothing:
#
#  - Storage.Path naming a file that is not an upload (a non-image, so "unscanned",
#    so refused), with or without a matching ID;
#  - a real rejected upload with InfoPath naming another file;
#  - .info files that name another ID, another path, another size; a .info that is a
#    symbolic link; an upload reached through a symbolic link named like the ID.
#
# Real uploads (a plain ID, an ID with a slash as tusd maps it to a subdirectory, a
# request without InfoPath) are still deleted with their .info.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_tusd_delete"
F="$top_srcdir/tests/tusd_hook_fixture"
rm -rf "$W"
mkdir -p "$W/uploads/sub" "$W/uploads/elsewhere"
setup_model daemon-tusd-delete
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
EOF
start_daemon tusd-delete "$W/clipmodd.yaml"

timeout 120 "$PY" - "http://$HTTP/v1/tusd" "$W/uploads" "$F" "$HI" <<'EOF' ||
import json, os, shutil, sys, urllib.error, urllib.request
url, up, fixture, hi = sys.argv[1:5]
failures = []

def info_json(uid, path, size):
    text = open(os.path.join(fixture, "upload.info")).read()
    return text.replace("@ID@", uid).replace("@PATH@", path).replace("@SIZE@", str(size))

def upload(uid, src=hi, info=None):
    """What tusd's filestore leaves for upload `uid`: ID and ID.info."""
    path = os.path.join(up, uid)
    shutil.copy(src, path)
    with open(path + ".info", "w") as f:
        f.write(info if info is not None else info_json(uid, path, os.path.getsize(path)))
    return path

def hook(uid, path, info_path="default"):
    """Post a post-finish hook request built from the fixture; the parsed reply."""
    size = os.path.getsize(path) if os.path.exists(path) else 0
    text = open(os.path.join(fixture, "post-finish.json")).read()
    req = json.loads(text.replace("@ID@", uid).replace("@PATH@", path)
                     .replace("@SIZE@", str(size)))
    storage = req["Event"]["Upload"]["Storage"]
    if info_path is None:
        del storage["InfoPath"]
    elif info_path != "default":
        storage["InfoPath"] = info_path
    r = urllib.request.Request(url, json.dumps(req).encode(),
                               {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return {"HTTP status": e.code}

def check(what, ok, detail):
    print("%s %s: %s" % ("ok:  " if ok else "FAIL:", what, detail))
    if not ok:
        failures.append(what)

def must_keep(what, reply, *paths):
    gone = [p for p in paths if not os.path.lexists(p)]
    check(what, not gone and reply.get("RejectUpload") is True and
          reply.get("ClipmodFile", "").startswith("kept: "),
          "deleted %s" % gone if gone else reply.get("ClipmodFile", reply))

def must_delete(what, reply, *paths):
    left = [p for p in paths if os.path.lexists(p)]
    check(what, not left and reply.get("ClipmodFile") == "deleted",
          "left %s, %s" % (left, reply.get("ClipmodFile")) if left else "deleted")

# Files in the upload directory that are not uploads (made again before each case, so
# that each case is judged on its own).
notes = os.path.join(up, "notes.txt")
victim = os.path.join(up, "victim.db")
def plant():
    for p in (notes, victim):
        with open(p, "w") as f:
            f.write("not an upload\n")

# A non-image named as the upload: unscanned, so refused; never deleted.
plant()
must_keep("Storage.Path naming a non-upload, ID matching", hook("notes.txt", notes), notes)
plant()
must_keep("Storage.Path naming a non-upload, another ID", hook("up-x", notes), notes)
plant()
must_keep("same, without InfoPath", hook("notes.txt", notes, None), notes)

# A real rejected upload, with InfoPath naming another file: neither is deleted.
plant()
real = upload("up-real")
must_keep("InfoPath naming another file", hook("up-real", real, victim), victim, real,
          real + ".info")

# .info files that do not describe the upload.
size = os.path.getsize(hi)
p = upload("up-other-id", info=info_json("up-someone-else", os.path.join(up, "up-other-id"), size))
must_keep(".info naming another ID", hook("up-other-id", p), p, p + ".info")
p = upload("up-other-path", info=info_json("up-other-path", victim, size))
must_keep(".info naming another path", hook("up-other-path", p), p, p + ".info")
p = upload("up-other-size", info=info_json("up-other-size", os.path.join(up, "up-other-size"), 7))
must_keep(".info with another size", hook("up-other-size", p), p, p + ".info")
p = upload("up-info-link")
os.rename(p + ".info", os.path.join(up, "elsewhere", "up-info-link.info"))
os.symlink(os.path.join(up, "elsewhere", "up-info-link.info"), p + ".info")
must_keep(".info that is a symbolic link", hook("up-info-link", p), p,
          os.path.join(up, "elsewhere", "up-info-link.info"))
target = upload("up-target")
alias = os.path.join(up, "alias")
os.symlink(target, alias)
with open(alias + ".info", "w") as f:
    f.write(info_json("alias", alias, os.path.getsize(target)))
must_keep("upload reached through a link named like the ID", hook("alias", alias), target,
          target + ".info")
# A .info file that is not JSON.
p = upload("up-garbage", info="{not json")
must_keep(".info that is not JSON", hook("up-garbage", p), p, p + ".info")

# Real uploads are deleted with their .info.
p = upload("up-hi")
must_delete("a rejected upload", hook("up-hi", p), p, p + ".info")
p = upload("sub/up-nested")
must_delete("a rejected upload with a slash in its ID", hook("sub/up-nested", p), p, p + ".info")
p = upload("up-no-infopath")
must_delete("a request without InfoPath", hook("up-no-infopath", p, None), p, p + ".info")

if failures:
    raise SystemExit("FAIL: " + "; ".join(failures))
EOF
    fail "post-finish deleted what tusd did not create (see above)"
grep -q 'tusd: refused upload not deleted.*the .info file names another upload ID' "$LOG" ||
    fail "the refusal to delete must be logged with its reason: $(tail -n 3 "$LOG")"
stop_daemon "$PID"
[ "$STOPPED" -eq 0 ] || fail "clipmodd exited $STOPPED"
echo "PASS"

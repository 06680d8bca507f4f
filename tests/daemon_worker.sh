#!/bin/sh
# daemon_worker.sh - clipmodd --worker on a Redis stream (issue 17; clipmodd(8) WORKER,
# docs/queue.md), end to end with the demo model and a real redis-server this test
# starts on a loopback port in its own directory (skipped without redis-server).
#
# 500 jobs (paths inside the worker's root, image bytes with a text, replies to a
# stream, and jobs made to fail: damaged images, a URL the SSRF guard refuses, a path
# outside the root, an entry without an id, an entry delivered too often) go through
# two workers; one is kill -9'ed while it holds jobs, and the other takes them over
# after claim-idle. Then: every job id has exactly one result (a hash, and one reply
# entry for the jobs that asked), the same verdict JSON as POST /v1/scan, nothing is
# pending, the dead-letter stream holds exactly the jobs made to fail, each with its
# reason; an id enqueued twice has one reply entry; a download that times out (from a
# server on 127.0.0.2 that never answers, allowed by fetch.allow) is retried through
# the pending list and dead-lettered at its third attempt. Last, SIGTERM while jobs
# are in flight: the worker exits 0 and every job it read has its result, none pending.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

command -v redis-server >/dev/null 2>&1 ||
    skip "redis-server is not installed (apt-get install redis-server; tools/install-deps.sh)"
command -v redis-cli >/dev/null 2>&1 || skip "redis-cli is not installed (apt-get install redis-tools)"
W="$CLIPMOD_WORK/daemon_worker"
rm -rf "$W"
mkdir -p "$W/redis" "$W/root"
DEMO="$top_srcdir/models/demo"
[ -f "$DEMO/model.safetensors" ] || fail "$DEMO/model.safetensors is missing"
n=0
for f in "$top_srcdir"/samples/*.png; do
    [ $n -lt 8 ] || break
    cp "$f" "$W/root/img$n.png"
    n=$((n + 1))
done
[ $n -ge 2 ] || fail "fewer than 2 sample images in $top_srcdir/samples"
printf 'this is not an image, whatever its name says\n' >"$W/root/damaged.png"

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

# q.py: enqueue (RESP through redis-cli --pipe: image bytes as they are) and check.
cat >"$W/q.py" <<'EOF'
import json, os, socket, subprocess, sys

PORT = int(os.environ["RPORT"])
W = os.environ["W"]

class Redis:
    """A small RESP client: this test reads replies exactly, binary values included."""
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        self.f = self.s.makefile("rb")
    def __call__(self, *args):
        self.s.sendall(resp(args))
        return self.read()
    def read(self):
        line = self.f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)

def resp(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

def pairs(flat):
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

ROOT = os.path.join(W, "root")
IMAGES = sorted(p for p in os.listdir(ROOT) if p.startswith("img"))

def plan(first, count):
    """The jobs: (id, fields, expected dead-letter reasons or None)."""
    jobs = []
    for i in range(first, first + count):
        jid = "job-%04d" % i
        img = os.path.join(ROOT, IMAGES[i % len(IMAGES)])
        if i % 50 == 7:
            jobs.append((jid, {"path": os.path.join(ROOT, "damaged.png")}, {"unsupported", "decode-error"}))
        elif i % 50 == 17:
            jobs.append((jid, {"bytes": b"\x89PNG\r\n\x1a\n broken"}, {"unsupported", "decode-error"}))
        elif i % 50 == 27:
            jobs.append((jid, {"url": "http://127.0.0.1:1/x.png"}, {"blocked-address"}))
        elif i % 50 == 37:
            jobs.append((jid, {"path": "/etc/hostname"}, {"refused"}))
        elif i % 10 == 3:
            jobs.append((jid, {"bytes": open(img, "rb").read(), "text": "a caption"}, None))
        elif i % 10 == 5:
            jobs.append((jid, {"path": img, "reply": "clipmod:replies"}, None))
        else:
            jobs.append((jid, {"path": img}, None))
    return jobs

def enqueue(jobs, extra=()):
    cmds = [resp(["XADD", "clipmod:jobs", "*", "id", jid] + [x for kv in f.items() for x in kv])
            for jid, f, _ in jobs]
    cmds += [resp(c) for c in extra]
    p = subprocess.run(["redis-cli", "-p", str(PORT), "--pipe"], input=b"".join(cmds),
                       capture_output=True)
    if p.returncode or b"errors: 0" not in p.stdout:
        sys.exit("redis-cli --pipe: %s %s" % (p.stdout, p.stderr))

def results(r, ids):
    return {jid: pairs(r("HGETALL", "clipmod:result:" + jid)) for jid in ids}

def check_first(first, count):
    r = Redis()
    jobs = plan(first, count)
    res = results(r, [j for j, _, _ in jobs])
    problems = []
    want_dead = {}
    for jid, f, dead in jobs:
        got = res[jid]
        if not got:
            problems.append("%s: no result" % jid)
            continue
        status = got.get("status", b"").decode()
        if dead:
            want_dead[jid] = dead
            if status != "failed" or got.get("reason", b"").decode() not in dead or not got.get("error"):
                problems.append("%s: expected failed %s, got %r" % (jid, dead, got))
        elif status != "done" or got.get("id", b"").decode() != jid:
            problems.append("%s: expected done, got %r" % (jid, got))
        # Every job has a verdict but those refused before scanning (a path outside the root).
        if "verdict" in got:
            v = json.loads(got["verdict"])
            if v["state"] not in ("clean", "flagged", "unscanned") or "policy_fingerprint" not in v:
                problems.append("%s: verdict %r" % (jid, v))
        elif dead != {"refused"}:
            problems.append("%s: no verdict" % jid)
    # The dead letters: exactly the jobs made to fail, the id-less entry and the poison.
    letters = [pairs(e[1]) for e in r("XRANGE", "clipmod:dead", "-", "+")]
    ids = [l["id"].decode() for l in letters]
    if sorted(i for i in ids if i.startswith("job-")) != sorted(want_dead):
        problems.append("dead letters %s, expected %s" % (sorted(ids), sorted(want_dead)))
    for l in letters:
        jid = l["id"].decode()
        if not l.get("reason") or not l.get("error") or not l.get("entry"):
            problems.append("dead letter without reason, error or entry: %r" % l)
        if jid in want_dead and l["reason"].decode() not in want_dead[jid]:
            problems.append("dead letter %s: reason %r" % (jid, l["reason"]))
    others = sorted((i, l["reason"].decode(), l["attempts"].decode())
                    for i, l in zip(ids, letters) if not i.startswith("job-"))
    want = [("", "bad-job", "1"), ("bad-1", "bad-job", "1"), ("poison", "max-attempts", "5"),
            ("slow", "timeout or network", "3")]
    if len(others) != 4 or others[:3] != want[:3] or others[3][0] != "slow" or \
            others[3][1] not in ("timeout", "network") or others[3][2] != "3":
        problems.append("other dead letters: %r, expected %r" % (others, want))
    # A bad entry with an id and a reply is answered there too.
    bad = [pairs(e[1]) for e in r("XRANGE", "clipmod:bad-replies", "-", "+")]
    if len(bad) != 1 or bad[0]["status"] != b"failed" or b"colour" not in bad[0]["error"]:
        problems.append("the bad entry's reply: %r" % bad)
    # Replies: one entry per job that asked, none twice.
    replies = [pairs(e[1])["id"].decode() for e in r("XRANGE", "clipmod:replies", "-", "+")]
    asked = sorted(jid for jid, f, _ in jobs if "reply" in f)
    if sorted(replies) != asked:
        problems.append("%d reply entries for %d jobs that asked (%d distinct)"
                        % (len(replies), len(asked), len(set(replies))))
    pending = r("XPENDING", "clipmod:jobs", "clipmod")[0]
    if pending:
        problems.append("%d entries still pending" % pending)
    if problems:
        sys.exit("\n".join(problems[:20]))
    print("%d jobs: %d done, %d failed and dead-lettered, %d replies, 0 pending"
          % (count, count - len(want_dead), len(want_dead), len(replies)))

def same_as_http(jid, http_json, path):
    """The worker's verdict is what POST /v1/scan answers (but its time and generation)."""
    a = json.loads(Redis()("HGET", "clipmod:result:" + jid, "verdict"))
    b = json.load(open(http_json))
    for d in (a, b):
        for k in ("elapsed_ms", "cached", "policy_generation", "name"):
            d.pop(k, None)
    if a != b:
        sys.exit("the worker's verdict differs from /v1/scan's:\n%s\n%s" % (a, b))

def pending_of(consumer):
    return len(Redis()("XPENDING", "clipmod:jobs", "clipmod", "-", "+", "100", consumer))

def check_drained(first, count):
    """After SIGTERM: every job has a result or is still unread in the stream; 0 pending."""
    r = Redis()
    ids = ["job-%04d" % i for i in range(first, first + count)]
    res = results(r, ids)
    done = [j for j in ids if res[j]]
    left = [pairs(e[1])["id"].decode() for e in r("XRANGE", "clipmod:jobs", "-", "+")]
    pending = r("XPENDING", "clipmod:jobs", "clipmod")[0]
    if pending or sorted(done + left) != ids:
        sys.exit("after SIGTERM: %d results, %d unread, %d pending, of %d jobs"
                 % (len(done), len(left), pending, count))
    print("SIGTERM: %d jobs had results, %d left unread in the stream, 0 pending"
          % (len(done), len(left)))

if __name__ == "__main__":
    what = sys.argv[1]
    if what == "enqueue":
        enqueue(plan(int(sys.argv[2]), int(sys.argv[3])))
    elif what == "enqueue-extra":
        # Entries without an id or with an unknown field, an id enqueued twice with a
        # reply, a slow download.
        enqueue([], [["XADD", "clipmod:jobs", "*", "path", os.path.join(ROOT, IMAGES[0])],
                     ["XADD", "clipmod:jobs", "*", "id", "bad-1", "path", "/a", "colour", "red", "reply", "clipmod:bad-replies"],
                     ["XADD", "clipmod:jobs", "*", "id", "slow", "url", "http://127.0.0.2:%s/slow.png" % os.environ["SLOW_PORT"]],
                     ["XADD", "clipmod:jobs", "*", "id", "dup", "path", os.path.join(ROOT, IMAGES[0]), "reply", "clipmod:dup"],
                     ["XADD", "clipmod:jobs", "*", "id", "dup", "path", os.path.join(ROOT, IMAGES[0]), "reply", "clipmod:dup"]])
    elif what == "check":
        check_first(int(sys.argv[2]), int(sys.argv[3]))
    elif what == "same":
        same_as_http(sys.argv[2], sys.argv[3], sys.argv[4])
    elif what == "pending":
        print(pending_of(sys.argv[2]))
    elif what == "results":
        print(sum(1 for v in results(Redis(), ["job-%04d" % i for i in range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3]))]).values() if v))
    elif what == "drained":
        check_drained(int(sys.argv[2]), int(sys.argv[3]))
EOF
# A server on 127.0.0.2 that accepts connections and never answers.
SLOW_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0)); print(s.getsockname()[1])')
"$PY" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.2", int(sys.argv[1]))); s.listen(16)
held, end = [], time.time() + 120
s.settimeout(1)
while time.time() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' "$SLOW_PORT" &
DAEMON_PIDS="$DAEMON_PIDS $!"
export RPORT W SLOW_PORT
q() { "$PY" "$W/q.py" "$@"; }

# ---- a poison entry: delivered 4 times to a consumer that never answers ------------
$RCLI XGROUP CREATE clipmod:jobs clipmod 0 MKSTREAM >/dev/null
poison=$($RCLI XADD clipmod:jobs '*' id poison path "$W/root/img0.png")
$RCLI XREADGROUP GROUP clipmod ghost COUNT 1 STREAMS clipmod:jobs '>' >/dev/null
for n in 1 2 3; do
    $RCLI XCLAIM clipmod:jobs clipmod ghost 0 "$poison" >/dev/null
done

# ---- two workers ----------------------------------------------------------------
conf() { # conf FILE CONSUMER
    cat >"$1" <<EOF
model: $DEMO
policy: $top_srcdir/policies/demo.yaml
engine:
  fetch-timeout-ms: 400
fetch:
  allow: [127.0.0.2/32]
scan:
  request-timeout-ms: 20000
worker:
  redis: "redis://127.0.0.1:$RPORT/0"
  consumer: $2
  roots: [$W/root]
  concurrency: 8
  block: 200ms
  claim-idle: 2s
  max-attempts: 3
  result-ttl: 1h
EOF
}
conf "$W/a.yaml" a
conf "$W/b.yaml" b
start_daemon a "$W/a.yaml" --worker
APID=$PID
start_daemon b "$W/b.yaml" --worker --listen 127.0.0.1:0
BPID=$PID
B=$HTTP
[ -z "$(sed -n 's/^http=//p' "$W/a.ready")" ] || fail "--worker started the HTTP door without --listen"

# ---- 500 jobs; worker a killed while it holds some ----------------------------------
q enqueue 0 500
q enqueue-extra
# About half done (the stream holds the entries not yet answered), a holding jobs.
t_end=$(($(date +%s) + 60))
while :; do
    [ "$(date +%s)" -lt $t_end ] || fail "worker a never held a job to be killed with"
    if [ "$($RCLI XLEN clipmod:jobs)" -gt 250 ]; then
        sleep 0.02
        continue
    fi
    kill -STOP "$APID"
    if [ "$(q pending a)" -gt 0 ]; then
        break
    fi
    kill -CONT "$APID"
done
held=$(q pending a)
kill -9 "$APID"
wait "$APID" 2>/dev/null || true
echo "worker a killed (-9) holding $held jobs, $(q results 0 500) of 500 results written"
i=0
until [ "$($RCLI XLEN clipmod:jobs)" = 0 ] && [ "$(q pending a)" = 0 ] && [ "$(q pending b)" = 0 ]; do
    kill -0 "$BPID" 2>/dev/null || fail "worker b exited: $(tail -n 20 "$W/b.log")"
    [ $i -lt 600 ] || fail "jobs left after 60 s: $($RCLI XLEN clipmod:jobs) in the stream, $(q pending a) pending with a"
    sleep 0.1
    i=$((i + 1))
done
HTTP=$B
[ "$(metric 'clipmodd_worker_jobs_total{outcome="reclaimed"}')" -ge "$held" ] ||
    fail "worker b reclaimed $(metric 'clipmodd_worker_jobs_total{outcome="reclaimed"}') jobs, a held $held"
q check 0 500
echo "PASS: 500 jobs through two workers, one killed: one result each, the failing ones dead-lettered"
echo "PASS: a download that times out is retried, then dead-lettered at its third attempt"

[ "$($RCLI XLEN clipmod:dup)" = 1 ] || fail "an id enqueued twice has $($RCLI XLEN clipmod:dup) reply entries"
echo "PASS: an id enqueued twice has one result and one reply entry"

img=$W/root/img1.png
code=$(curl -s -m 60 -o "$W/http.json" -w "%{http_code}" -H "Content-Type: image/png" --data-binary "@$img" \
    "http://$B/v1/scan") || code=000
[ "$code" = 200 ] || fail "POST /v1/scan: HTTP $code"
q same job-0001 "$W/http.json" "$img"
echo "PASS: the worker writes the verdict JSON of POST /v1/scan"

# ---- SIGTERM while jobs are in flight -------------------------------------------------
q enqueue 1000 1000
t_end=$(($(date +%s) + 30))
until [ "$(q pending b)" -gt 0 ]; do
    [ "$(date +%s)" -lt $t_end ] || fail "worker b never held a job"
done
stop_daemon "$BPID"
[ "$STOPPED" = 0 ] || fail "worker b exited $STOPPED on SIGTERM: $(tail -n 20 "$W/b.log")"
grep -q 'msg="worker stopped"' "$W/b.log" || fail "worker b did not log its stop"
q drained 1000 1000
echo "PASS: SIGTERM: the worker finished the jobs it held, wrote their results and exited 0"
echo "PASS: daemon_worker"

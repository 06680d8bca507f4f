#!/bin/sh
# daemon_body_memory.sh - http.max-body-memory: request bodies are held in memory
# while they arrive, and a security review measured 20 unfinished 24 MiB uploads
# holding 563 MB (about 6 GB for one client at the defaults). Here the budget is
# 3 MB and the body limit 2 MB: of six uploads that announce 2 MB and stop short of
# the end, one is taken and five are refused at once (503, Retry-After); of four
# chunked uploads that stop after 1.5 MB, the budget is checked as bytes arrive and
# those over it end in 503 too; a form likewise. Meanwhile the daemon's resident
# memory grows by less than the budget, /v1/health answers, and once the held
# bodies are done, the budget is free again.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_body_memory"
rm -rf "$W"
mkdir -p "$W"
setup_model daemon-http
write_policy "$W/p.yaml" 0.5 reject

cat >"$W/main.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  max-body-bytes: 2000000
  max-body-memory: 3000000
scan:
  retry-after: 9
EOF
if ! "$CLIPMODD" -c "$W/main.yaml" --check >"$W/check.out" 2>&1; then
    # An older clipmodd without the keys: run without them, to show what happens.
    echo "FAIL: the configuration is refused: $(tail -n 1 "$W/check.out")"
    sed -i '/max-body-memory/d' "$W/main.yaml"
fi
# The budget must hold at least one body of the largest size.
sed 's/max-body-memory: 3000000/max-body-memory: 1000000/' "$W/main.yaml" >"$W/small.yaml"
if "$CLIPMODD" -c "$W/small.yaml" --check >"$W/small.out" 2>&1 ||
    ! grep -q 'http.max-body-memory (1000000) must be at least http.max-body-bytes (2000000)' "$W/small.out"; then
    echo "FAIL: a budget below max-body-bytes must be refused: $(tail -n 1 "$W/small.out")"
fi
start_daemon main "$W/main.yaml"

"$PY" - "$HTTP" "$PID" <<'EOF' || fail "the memory budget does not hold (see above)"
import os, socket, sys, time

addr, pid = sys.argv[1], int(sys.argv[2])
host, port = addr.rsplit(":", 1)
failed = []


def check(name, cond, got=""):
    print(("ok: " if cond else "FAIL: ") + name + ("" if cond else ": %s" % (got,))[:300])
    if not cond:
        failed.append(name)


def rss_kb():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def read_head(f):
    status = int(f.readline().split()[1])
    headers = {}
    for line in iter(f.readline, b"\r\n"):
        k, _, v = line.decode("latin1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


class Upload:
    """A POST /v1/scan with Expect: 100-continue, sent in two steps."""

    def __init__(self, length=None, ctype="application/octet-stream"):
        self.s = socket.create_connection((host, int(port)), timeout=30)
        self.f = self.s.makefile("rb")
        self.chunked = length is None
        head = "POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nExpect: 100-continue\r\n" % ctype
        head += "Transfer-Encoding: chunked\r\n" if self.chunked else "Content-Length: %d\r\n" % length
        self.s.sendall(head.encode() + b"\r\n")
        self.status, self.headers = read_head(self.f)  # 100, or the refusal

    def send(self, data):
        if not self.chunked:
            self.s.sendall(data)
            return
        for i in range(0, len(data), 65536):
            chunk = data[i:i + 65536]
            self.s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def finish(self, rest=b""):
        self.send(rest)
        if self.chunked:
            self.s.sendall(b"0\r\n\r\n")
        self.status, self.headers = read_head(self.f)
        self.f.read(int(self.headers.get("content-length", "0")))
        self.s.close()
        return self.status


def health_ms():
    t0 = time.time()
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    ok = s.recv(100).startswith(b"HTTP/1.1 200")
    s.close()
    return ok, (time.time() - t0) * 1e3


body = os.urandom(2000000)
before = rss_kb()

# Announced: six uploads of 2 MB, each stopping 1000 bytes short.
ups = [Upload(len(body)) for _ in range(6)]
taken = [u for u in ups if u.status == 100]
refused = [u for u in ups if u.status != 100]
for u in taken:
    u.send(body[:-1000])
check("announced 2 MB x 6, budget 3 MB: one taken", len(taken) == 1, [u.status for u in ups])
check("the others: 503 with Retry-After: 9", len(refused) == 5 and
      all(u.status == 503 and u.headers.get("retry-after") == "9" for u in refused),
      [(u.status, u.headers.get("retry-after")) for u in refused])

# Chunked: the budget is checked as bytes arrive (the taken upload still holds 2 MB).
chunked = [Upload() for _ in range(4)]
for u in chunked:
    if u.status == 100:
        u.send(body[:1500000])
time.sleep(0.5)
grown = rss_kb() - before
print("resident memory grew by %d kB while 10 uploads were held" % grown)
# Under ASan (the sanitizer build) freed memory stays resident in its quarantine.
check("resident memory grew by less than the budget + 2 MB",
      grown < 5000 or os.environ.get("CLIPMOD_SANITIZERS"), "%d kB" % grown)
ok, ms = health_ms()
check("/v1/health answers meanwhile", ok and ms < 1000, "%s %.0f ms" % (ok, ms))
codes = [u.finish(body[1500000:1600000]) if u.status == 100 else u.status for u in chunked]
check("chunked uploads over the budget: 503", codes == [503] * 4, codes)

# A form over the budget, chunked, is refused the same way.
B = b"XyZbd"
form = (b"--" + B + b"\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.png\"\r\n\r\n" +
        body[:1600000] + b"\r\n--" + B + b"--\r\n")
u = Upload(ctype="multipart/form-data; boundary=XyZbd")
code = u.finish(form) if u.status == 100 else u.status
check("a chunked form over the budget: 503", code == 503, code)

# The held upload ends (200: scanned, unscanned bytes); then the budget is free again.
check("the held upload is answered", taken and taken[0].finish(body[-1000:]) == 200)
u = Upload(len(body))
code = u.finish(body) if u.status == 100 else u.status
check("after it, a 2 MB upload is taken again", code == 200, code)
sys.exit(1 if failed else 0)
EOF
m=$(metric 'clipmodd_rejected_total{reason="body-memory"}')
[ "$m" = 10 ] || fail "clipmodd_rejected_total{reason=\"body-memory\"} is $m, not 10"
echo PASS

#!/bin/sh
# daemon_slowloris.sh - slow clients (slowloris): a security review kept /v1/health
# unanswered for two minutes with 256 connections that each sent one header line
# every ~10 s, never idle long enough for http.client-timeout. Here 40 connections
# from 127.0.0.2 (as many as http.max-connections) send a header line every 0.5 s
# and never finish their request head. With http.max-connections-per-ip 16 only 16
# of them are taken, with http.header-timeout 2 those are answered 408 and closed
# about 2 s after they connected, and /v1/health from 127.0.0.1 answers quickly
# all along. A kept-alive connection whose next request head trickles is closed too
# (without a 408: its client cannot tell an answer to what it has not sent yet).
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_slowloris"
rm -rf "$W"
mkdir -p "$W"
setup_model daemon-http
write_policy "$W/p.yaml" 0.5 reject
"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0))' 2>/dev/null ||
    skip "cannot bind 127.0.0.2 (the slow clients need a second loopback address)"

cat >"$W/main.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  max-connections: 40
  max-connections-per-ip: 16
  header-timeout: 2
  client-timeout: 30
EOF
if ! "$CLIPMODD" -c "$W/main.yaml" --check >"$W/check.out" 2>&1; then
    # An older clipmodd without the keys: run without them, to show what happens.
    echo "FAIL: the configuration is refused: $(tail -n 1 "$W/check.out")"
    sed -i '/max-connections-per-ip\|header-timeout/d' "$W/main.yaml"
fi
start_daemon main "$W/main.yaml"

"$PY" - "$HTTP" <<'EOF' || fail "slow clients were not contained (see above)"
import select, socket, sys, time

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)
failed = []


def check(name, cond, got=""):
    print(("ok: " if cond else "FAIL: ") + name + ("" if cond else ": %s" % (got,))[:300])
    if not cond:
        failed.append(name)


def health():
    """GET /v1/health from 127.0.0.1: (answered with 200, milliseconds)."""
    t0 = time.time()
    try:
        s = socket.create_connection((host, port), timeout=3)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ok = s.recv(100).startswith(b"HTTP/1.1 200")
        s.close()
    except OSError:
        ok = False
    return ok, (time.time() - t0) * 1e3


class Slow:
    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.2", 0))
        self.s.connect((host, port))
        self.t0 = time.time()
        self.closed = None  # seconds after connecting
        self.data = b""
        self.send(b"GET /v1/health HTTP/1.1\r\n")

    def send(self, line):
        if self.closed is None:
            try:
                self.s.send(line)
            except OSError:
                self.close()

    def close(self):
        if self.closed is None:
            self.closed = time.time() - self.t0
            self.s.close()

    def read(self):
        try:
            d = self.s.recv(4096)
        except OSError:
            d = b""
        if d:
            self.data += d
        else:
            self.close()


slow = [Slow() for _ in range(40)]
start = time.time()
checks, next_line, probes = [0.7, 1.5, 3.0, 4.5], start + 0.5, []
while time.time() - start < 6:
    now = time.time()
    if now >= next_line:
        for c in slow:
            c.send(b"X-Slow: y\r\n")
        next_line += 0.5
    if checks and now - start >= checks[0]:
        checks.pop(0)
        probes.append(health())
    live = [c for c in slow if c.closed is None]
    if not live:
        time.sleep(0.05)
        continue
    r, _, _ = select.select([c.s for c in live], [], [], 0.05)
    for c in live:
        if c.s in r:
            c.read()

refused = [c for c in slow if c.closed is not None and c.closed < 1 and not c.data]
taken = [c for c in slow if c not in refused]
timed_out = [c for c in taken if c.data.startswith(b"HTTP/1.1 408") and c.closed is not None]
print("40 slow connections: %d refused at once, %d taken; 408 after %s s" % (
    len(refused), len(taken), sorted(set(round(c.closed, 1) for c in timed_out))))
print("/v1/health during the attack: %s" % ["%s %.0f ms" % p for p in probes])
check("at most 16 connections from 127.0.0.2 taken", len(taken) <= 16, len(taken))
check("every taken slow connection answered 408 and closed",
      taken and len(timed_out) == len(taken), [(c.closed, c.data[:20]) for c in taken])
check("closed 1.5 to 3.5 s after connecting (header-timeout 2)",
      timed_out and all(1.5 <= c.closed <= 3.5 for c in timed_out), [c.closed for c in timed_out])
check("/v1/health answered within 1 s all along", len(probes) == 4 and
      all(ok and ms < 1000 for ok, ms in probes), probes)

# A kept-alive connection: one request answered, then the next head trickles.
t0 = time.time()
first = got = b""
try:
    s = socket.create_connection((host, port), timeout=3)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(4096)
    t0 = time.time()
    s.sendall(b"GET /v1/health HTTP/1.1\r\n")
    while time.time() - t0 < 6:
        s.sendall(b"X-Slow: y\r\n")
        s.settimeout(0.5)
        try:
            d = s.recv(4096)
            if not d:
                break
            got += d
        except socket.timeout:
            pass
except OSError:
    pass
took = time.time() - t0
check("kept alive: the next head within header-timeout too, closed without an answer",
      first.startswith(b"HTTP/1.1 200") and got == b"" and 1.5 <= took <= 3.5,
      (first[:15], got[:15], round(took, 1)))
sys.exit(1 if failed else 0)
EOF
m=$(metric 'clipmodd_rejected_total{reason="header-timeout"}')
[ "$m" -ge 17 ] || fail "clipmodd_rejected_total{reason=\"header-timeout\"} is $m, not 17 or more"
echo PASS

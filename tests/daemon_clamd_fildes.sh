#!/bin/sh
# daemon_clamd_fildes.sh - what clipmodd's clamd FILDES does with the descriptors a
# client passes (SCM_RIGHTS over the unix socket, from Python's socket.send_fds):
#
#  - a regular file and a pipe are read through the descriptor itself and scanned;
#  - an O_PATH descriptor, a write-only one, a directory and a socket are refused with
#    an ERROR line (read through /proc/self/fd, they would be read with the daemon's
#    rights: an O_PATH descriptor gives no right to read);
#  - a pipe whose writer stays open is answered with an ERROR line once
#    clamd.read-timeout has passed, and logged; with clamd.max-connections such
#    pipes at once, the daemon serves new clients again after that deadline;
#  - a regular file over clamd.stream-max-length is refused.
# Every client call has its own timeout, so a daemon that hangs fails the test.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_clamd_fildes"
rm -rf "$W"
mkdir -p "$W/files"
setup_model daemon-clamd-fildes
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject

cp "$HI" "$W/files/hi.png"
cp "$LO" "$W/files/lo.png"
max=$(stat -c %s "$HI" "$LO" | sort -n | tail -n 1)
max=$((max + 4096))
head -c $((max + 10)) /dev/zero >"$W/files/big.bin"

# Three connections at most, two seconds for a passed descriptor to be read.
cat >"$W/clipmodd.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
clamd:
  unix-socket: $W/clamd.sock
  stream-max-length: $max
  max-connections: 3
  read-timeout: 2
EOF
start_daemon fildes "$W/clipmodd.yaml"
[ -S "$W/clamd.sock" ] || fail "no clamd unix socket"

timeout 120 "$PY" - "$W/clamd.sock" "$W/files" <<'EOF' || fail "FILDES (see above); daemon log: $(tail -n 5 "$LOG")"
import os, re, socket, sys, threading, time
sock, files = sys.argv[1], sys.argv[2]
HI, LO, BIG = (os.path.join(files, n) for n in ("hi.png", "lo.png", "big.bin"))

def connect(timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    return s

failures = []

def read_all(s):
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        return out + b"<no answer within %.0f s>" % s.gettimeout()
    except ConnectionError as e:
        return out + b"<%s>" % str(e).encode()
    return out

def fildes(fd, timeout=15):
    """zFILDES with `fd` passed; the reply (the connection closes after it)."""
    s = connect(timeout)
    s.sendall(b"zFILDES\0")
    socket.send_fds(s, [b"\0"], [fd])
    out = read_all(s)
    s.close()
    return out

def expect(what, got, pattern):
    """Check one answer; failures are collected so that one run shows them all."""
    ok = re.fullmatch(pattern, got)
    print("%s %s: %r" % ("ok:  " if ok else "FAIL:", what, got))
    if not ok:
        failures.append(what)

FOUND = rb"fd\[\d+\]: Clipmod\.cat FOUND\0"
REFUSED = rb"fd\[\d+\]: Access denied \(%s\)\. ERROR\0"

# A regular file and a pipe whose writer closed: read through the descriptor, scanned.
fd = os.open(HI, os.O_RDONLY)
expect("regular file", fildes(fd), FOUND)
os.close(fd)
fd = os.open(LO, os.O_RDONLY)
expect("clean regular file", fildes(fd), rb"fd\[\d+\]: OK\0")
os.close(fd)
r, w = os.pipe()
data = open(HI, "rb").read()
t = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
t.start()
expect("pipe", fildes(r), FOUND)
t.join()
os.close(r)

# O_PATH gives no right to read; neither does a write-only descriptor.
fd = os.open(HI, os.O_PATH)
expect("O_PATH descriptor", fildes(fd), REFUSED % rb"O_PATH descriptor")
os.close(fd)
fd = os.open(HI, os.O_WRONLY)
expect("write-only descriptor", fildes(fd), REFUSED % rb"descriptor not open for reading")
os.close(fd)
# Not inputs: a directory, a socket (whose peer stays open).
fd = os.open(files, os.O_RDONLY | os.O_DIRECTORY)
expect("directory", fildes(fd), REFUSED % rb"not a regular file or pipe")
os.close(fd)
a, b = socket.socketpair()
expect("socket", fildes(a.fileno()), REFUSED % rb"not a regular file or pipe")
a.close()
b.close()
# Over stream-max-length.
fd = os.open(BIG, os.O_RDONLY)
expect("regular file over the cap", fildes(fd), rb"fd\[\d+\]: size limit exceeded ERROR\0")
os.close(fd)

# Pipes whose writers stay open, as many as clamd.max-connections, all at once: each
# is answered with an error once read-timeout (2 s) has passed, and then the daemon
# serves again.
pipes = [os.pipe() for _ in range(3)]
replies = [None] * 3
def stuck(i):
    replies[i] = fildes(pipes[i][0], timeout=10)
start = time.monotonic()
threads = [threading.Thread(target=stuck, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
took = time.monotonic() - start
for i, got in enumerate(replies):
    expect("pipe %d with its writer open" % i, got,
           rb"fd\[\d+\]: read timed out \(clamd\.read-timeout\)\. ERROR\0")
print("stuck pipes answered after %.1f s" % took)
if not 1.5 <= took <= 8:
    failures.append("the stuck pipes were answered after %.1f s, not about 2 s" % took)
# The writers are still open: a new client must be served all the same.
s = connect(5)
s.sendall(b"zPING\0")
expect("PING while the writers are still open", read_all(s), rb"PONG\0")
s.close()
for r, w in pipes:
    os.close(r)
    os.close(w)
if failures:
    raise SystemExit("FAIL: " + "; ".join(failures))
EOF
grep -q 'clamd: passed descriptor not read.*read timed out' "$LOG" ||
    fail "the expired read must be logged: $(tail -n 5 "$LOG")"
grep -q 'clamd: passed descriptor refused.*O_PATH' "$LOG" ||
    fail "the refusal must be logged: $(tail -n 5 "$LOG")"
stop_daemon "$PID"
[ "$STOPPED" -eq 0 ] || fail "clipmodd exited $STOPPED"
echo "PASS"

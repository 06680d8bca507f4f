#!/bin/sh
# daemon_clamd.sh - clipmodd's clamd protocol, with the real clamdscan client (Debian's
# clamdscan package) pointed at clipmodd through a private clamd.conf (--config-file):
# no clamd runs. Clean and flagged images over INSTREAM (TCP), paths with CONTSCAN
# (inside clamd.roots, and refused outside them), a directory, FILDES over the unix
# socket, IDSESSION (--multiscan --stream), an oversized stream, and the raw protocol
# (z/n/old-style commands, numbered session replies, IDSESSION only with a prefix) from
# Python. FILDES with hostile descriptors is in daemon_clamd_fildes.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

command -v clamdscan >/dev/null || skip "clamdscan is not installed (apt-get install clamdscan)"
W="$CLIPMOD_WORK/daemon_clamd"
rm -rf "$W"
mkdir -p "$W/files/dir" "$W/outside"
setup_model daemon-clamd
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject

cp "$HI" "$W/files/hi.png"
cp "$LO" "$W/files/lo.png"
cp "$HI" "$W/outside/hi.png"
cp "$HI" "$W/files/dir/a-hi.png"
cp "$LO" "$W/files/dir/b-lo.png"
printf 'not an image\n' >"$W/files/dir/c-text.png"
ln -s "$W/outside/hi.png" "$W/files/escape.png"
# Streams up to the larger photo pass; 1 MiB of noise does not.
max=$(stat -c %s "$HI" "$LO" | sort -n | tail -n 1)
max=$((max + 4096))
head -c 1048576 /dev/urandom >"$W/files/big.bin"

cat >"$W/clipmodd.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
clamd:
  tcp: 127.0.0.1:0
  unix-socket: $W/clamd.sock
  stream-max-length: $max
  roots: [$W/files]
EOF
start_daemon clamd "$W/clipmodd.yaml"
[ -n "$CLAMD_TCP" ] || fail "no clamd TCP address in the ready file"
[ -S "$W/clamd.sock" ] || fail "no clamd unix socket"

# clamdscan's own StreamMaxLength is larger than clipmodd's, so clipmodd's limit is tested.
printf 'TCPSocket %s\nTCPAddr 127.0.0.1\nStreamMaxLength 100M\n' "${CLAMD_TCP##*:}" >"$W/tcp.conf"
printf 'LocalSocket %s\nStreamMaxLength 100M\n' "$W/clamd.sock" >"$W/unix.conf"

# cs EXPECTED_STATUS ARGS...: clamdscan with its output in $W/out.
cs() {
    want=$1
    shift
    set +e
    clamdscan --no-summary "$@" >"$W/out" 2>&1
    got=$?
    set -e
    [ "$got" -eq "$want" ] || fail "clamdscan $*: exit $got, not $want: $(cat "$W/out")"
}

cs 0 --config-file="$W/tcp.conf" --ping 1
cs 0 --config-file="$W/tcp.conf" --version
grep -q '^clipmod 0\.[0-9.]*/1/daemon test$' "$W/out" || fail "VERSION: $(cat "$W/out")"

# INSTREAM over TCP: flagged, clean, oversized.
cs 1 --config-file="$W/tcp.conf" --stream "$W/files/hi.png"
grep -q "hi.png: Clipmod.cat FOUND$" "$W/out" || fail "flagged stream: $(cat "$W/out")"
cs 0 --config-file="$W/tcp.conf" --stream "$W/files/lo.png"
grep -q "lo.png: OK$" "$W/out" || fail "clean stream: $(cat "$W/out")"
cs 2 --config-file="$W/tcp.conf" --stream "$W/files/big.bin"
grep -q "INSTREAM size limit exceeded. ERROR" "$W/out" || fail "oversized stream: $(cat "$W/out")"
# An unscanned input is an ERROR, never an OK.
cs 2 --config-file="$W/tcp.conf" --stream "$W/files/dir/c-text.png"
grep -q "c-text.png: Clipmod.Unscanned.[a-z-]* ERROR$" "$W/out" || fail "unscanned: $(cat "$W/out")"

# CONTSCAN by path (clamdscan's default on a local clamd): inside the roots only.
cs 1 --config-file="$W/tcp.conf" "$W/files/hi.png"
grep -q "^$W/files/hi.png: Clipmod.cat FOUND$" "$W/out" || fail "CONTSCAN: $(cat "$W/out")"
cs 0 --config-file="$W/tcp.conf" "$W/files/lo.png"
cs 2 --config-file="$W/tcp.conf" "$W/outside/hi.png"
grep -q "Access denied. ERROR" "$W/out" || fail "a path outside the roots: $(cat "$W/out")"
# A directory: what is not clean is listed, in name order.
cs 1 --config-file="$W/tcp.conf" "$W/files/dir"
grep -q "a-hi.png: Clipmod.cat FOUND$" "$W/out" || fail "directory: $(cat "$W/out")"
grep -q "c-text.png: Clipmod.Unscanned" "$W/out" || fail "directory: $(cat "$W/out")"
! grep -q "b-lo.png" "$W/out" || fail "a clean file in a directory is not listed"

# FILDES over the unix socket, and IDSESSION with several streams.
cs 1 --config-file="$W/unix.conf" --fdpass "$W/files/hi.png"
grep -q "hi.png: Clipmod.cat FOUND$" "$W/out" || fail "FILDES: $(cat "$W/out")"
cs 0 --config-file="$W/unix.conf" --fdpass "$W/files/lo.png"
cs 1 --config-file="$W/tcp.conf" --multiscan --stream "$W/files/hi.png" "$W/files/lo.png"
grep -q "hi.png: Clipmod.cat FOUND$" "$W/out" && grep -q "lo.png: OK$" "$W/out" ||
    fail "IDSESSION: $(cat "$W/out")"
cs 1 --config-file="$W/unix.conf" --stream - <"$W/files/hi.png"

# The raw protocol, as rspamd, amavis or Nextcloud speak it.
set -- "$CLAMD_TCP" "$W/files/hi.png" "$W/files/lo.png" "$W/files/escape.png"
"$PY" - "$@" <<'EOF' || fail "raw clamd protocol"
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
hi, lo = (open(p, "rb").read() for p in sys.argv[2:4])

def talk(data, want_close=True):
    s = socket.create_connection((host, int(port)), timeout=20)
    s.sendall(data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out

def stream(img, cmd=b"zINSTREAM\0", chunk=8192):
    body = b"".join(struct.pack("!L", len(img[i:i + chunk])) + img[i:i + chunk]
                    for i in range(0, len(img), chunk))
    return cmd + body + struct.pack("!L", 0)

assert talk(b"zPING\0") == b"PONG\0"
assert talk(b"nPING\n") == b"PONG\n"
assert talk(b"PING\n") == b"PONG\n"
assert talk(b"zVERSION\0").startswith(b"clipmod 0.")
assert b"INSTREAM" in talk(b"nVERSIONCOMMANDS\n")
assert talk(stream(hi)) == b"stream: Clipmod.cat FOUND\0", talk(stream(hi))
assert talk(stream(lo, b"nINSTREAM\n")) == b"stream: OK\n"
assert talk(b"zFROB\0") == b"UNKNOWN COMMAND\0"
# A session: numbered replies, in order; END closes.
session = b"zIDSESSION\0" + b"zPING\0" + stream(hi) + stream(lo) + b"zVERSION\0" + b"zEND\0"
replies = talk(session).split(b"\0")
assert replies[0] == b"1: PONG", replies
assert replies[1] == b"2: stream: Clipmod.cat FOUND", replies
assert replies[2] == b"3: stream: OK", replies
assert replies[3].startswith(b"4: clipmod 0."), replies
# A link inside the roots to a file outside them is refused (clamdscan skips links
# itself, so it is sent raw).
esc = sys.argv[4].encode()
assert talk(b"zCONTSCAN " + esc + b"\0") == esc + b": Access denied. ERROR\0"
assert talk(b"zSCAN /etc/passwd\0") == b"/etc/passwd: Access denied. ERROR\0"
# CONTSCAN is not allowed inside a session, as in clamd.
assert b"ERROR" in talk(b"zIDSESSION\0zCONTSCAN /\0")
# IDSESSION needs the z or n prefix (clamd's parse_command: not for old-style
# commands): unprefixed it is an unknown command and the connection ends.
s = socket.create_connection((host, int(port)), timeout=5)
s.sendall(b"IDSESSION\n")
try:
    got = s.recv(100)
except socket.timeout:
    got = b"<no answer: a session was opened>"
s.close()
assert got == b"UNKNOWN COMMAND\n", got
assert talk(b"nIDSESSION\nnPING\nnEND\n") == b"1: PONG\n"
print("raw protocol: ok")
EOF

[ "$(metric 'clipmodd_clamd_commands_total{command="INSTREAM"}')" -ge 5 ] ||
    fail "clamd commands are not counted"
[ "$(metric 'clipmodd_inputs_total{interface="clamd"}')" -ge 10 ] || fail "clamd inputs metric"
stop_daemon "$PID"
[ "$STOPPED" -eq 0 ] || fail "clipmodd exited $STOPPED"
[ ! -e "$W/clamd.sock" ] || fail "the unix socket must be removed at exit"

# A file that is not a socket at the socket's path is never replaced: clipmodd does not
# start, and its log says why (ENOTSOCK, not whatever errno was left over).
echo "keep me" >"$W/clamd.sock"
set +e
XDG_CACHE_HOME="$W/cache" timeout 60 "$CLIPMODD" -c "$W/clipmodd.yaml" >"$W/taken.log" 2>&1
got=$?
set -e
[ "$got" -ne 0 ] && [ "$got" -ne 124 ] || fail "clipmodd started (or hung) over a regular file: exit $got"
grep -q 'cannot listen on the unix socket.*Socket operation on non-socket' "$W/taken.log" ||
    fail "the refusal does not say why: $(tail -n 5 "$W/taken.log")"
[ "$(cat "$W/clamd.sock")" = "keep me" ] || fail "the regular file at the socket path was changed"
echo "PASS"

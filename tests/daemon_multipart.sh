#!/bin/sh
# daemon_multipart.sh - multipart/form-data on POST /v1/scan: every part is a file to
# scan unless it is a text field listed in http.text-fields. A security review found
# a clean image plus a flagged one named only by filename*= (RFC 5987) answered 200
# clean: the second part was skipped. Here such parts, parts without any file name,
# RFC 2231 continuations and listed fields carrying a file are all scanned; file
# names are decoded; bodies that two readers could read differently (repeated
# headers or parameters, bare-LF delimiters, the boundary inside a part or after the
# end) are 400; limits (part headers, parts, boundary length) are 413 or 400. Bodies
# are sent in small pieces too, so that delimiters split between reads are found.
# Every case is checked and reported; the test fails at the end if any failed.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_multipart"
rm -rf "$W"
mkdir -p "$W"
setup_model daemon-http
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" reject

# Two daemons: the defaults (no text field listed), and one listing two text fields.
cat >"$W/main.yaml" <<EOF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  max-files: 4
scan:
  batch-window-ms: 5
EOF
sed 's/^  max-files: 4$/  max-files: 4\n  text-fields: [note, comment]/' "$W/main.yaml" >"$W/fields.yaml"
start_daemon main "$W/main.yaml"
MAIN=$HTTP
FIELDS=""
if "$CLIPMODD" -c "$W/fields.yaml" --check >"$W/check.out" 2>&1; then
    start_daemon fields "$W/fields.yaml"
    FIELDS=$HTTP
else
    echo "FAIL: http.text-fields refused: $(tail -n 1 "$W/check.out")"
fi

"$PY" - "$MAIN" "$FIELDS" "$HI" "$LO" <<'EOF' || fail "multipart cases failed (see above)"
import json, socket, sys

main, fields = sys.argv[1], sys.argv[2]
hi, lo = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
B = "clipmodTestBoundary7Hq"
failed = []


def part(headers, data):
    return b"--" + B.encode() + b"\r\n" + b"".join(h.encode("latin1") + b"\r\n" for h in headers) + \
        b"\r\n" + data + b"\r\n"


def form(*parts, end=None, boundary=B):
    return b"".join(parts) + (end if end is not None else b"--" + boundary.encode() + b"--\r\n")


def read_head(f):
    status = int(f.readline().split()[1])
    headers = {}
    for line in iter(f.readline, b"\r\n"):
        k, _, v = line.decode("latin1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def post(body, query="", ctype=None, pieces=None, to=None):
    """POST /v1/scan with Expect: 100-continue, as curl does: a request refused on its
    headers is answered before its body is sent. With `pieces`, the body is chunked in
    pieces of that size, one write each."""
    addr = main if to is None else to
    if not addr:
        return None, "no daemon with http.text-fields"
    s = socket.create_connection(tuple(addr.rsplit(":", 1)), timeout=30)
    f = s.makefile("rb")
    head = "POST /v1/scan%s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nExpect: 100-continue\r\n" % (
        query, ctype or "multipart/form-data; boundary=" + B)
    head += "Transfer-Encoding: chunked\r\n" if pieces else "Content-Length: %d\r\n" % len(body)
    s.sendall(head.encode() + b"\r\n")
    status, headers = read_head(f)
    if status == 100:
        if pieces:
            for i in range(0, len(body), pieces):
                chunk = body[i:i + pieces]
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        else:
            s.sendall(body)
        status, headers = read_head(f)
    data = f.read(int(headers.get("content-length", "0")))
    s.close()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def check(name, cond, got):
    print(("ok: " if cond else "FAIL: ") + name + ("" if cond else ": %r" % (got,))[:400])
    if not cond:
        failed.append(name)


def states(r):
    return [(x["name"], x["state"]) for x in r] if isinstance(r, list) else r


FD = 'Content-Disposition: form-data; '

# The review's case: a clean image, and a flagged one named only by filename*=.
body = form(part([FD + 'name="a"; filename="clean.png"', "Content-Type: image/png"], lo),
            part([FD + "name=\"b\"; filename*=UTF-8''hidden.png", "Content-Type: image/png"], hi))
st, r = post(body)
check("filename*= only: scanned", st == 200 and states(r) == [("clean.png", "clean"), ("hidden.png", "flagged")], (st, states(r)))
st, r = post(body, "?enforce=1")
check("filename*= only: ?enforce=1 is 403", st == 403, (st, r))

# No file name at all, and a name that is not a listed text field: a file.
st, r = post(form(part([FD + 'name="a"; filename="clean.png"'], lo), part([FD + 'name="avatar"'], hi)))
check("no file name, unlisted field: scanned", st == 200 and states(r) == [("clean.png", "clean"), ("avatar", "flagged")], (st, states(r)))

# RFC 2231 continuations (not decoded): still a file, named by its field.
st, r = post(form(part([FD + 'name="note"; filename*0="hid"; filename*1="den.png"'], hi)), to=fields)
check("filename*0= continuation in a listed field: scanned", st == 200 and states(r) == [("note", "flagged")], (st, states(r)))

# A listed text field is not scanned; with a file name or an image type it is.
st, r = post(form(part([FD + 'name="note"'], b"hello"), part([FD + 'name="comment"', "Content-Type: text/plain; charset=utf-8"], b"hi"),
                  part([FD + 'name="a"; filename="x.png"'], lo)), to=fields)
check("listed text fields: ignored", st == 200 and states(r) == [("x.png", "clean")], (st, states(r)))
st, r = post(form(part([FD + 'name="note"; filename="n.png"'], hi)), to=fields)
check("listed field with a filename: scanned", st == 200 and states(r) == [("n.png", "flagged")], (st, states(r)))
st, r = post(form(part([FD + 'name="note"', "Content-Type: image/png"], hi)), to=fields)
check("listed field with Content-Type image/png: scanned", st == 200 and states(r) == [("note", "flagged")], (st, states(r)))
st, r = post(form(part(['Content-Disposition: attachment; name="note"'], hi)), to=fields)
check("a part that is not form-data: scanned", st == 200 and states(r) == [("note", "flagged")], (st, states(r)))
st, r = post(form(part(["Content-Type: image/png"], hi)))
check("a part without Content-Disposition: scanned", st == 200 and states(r) == [("upload", "flagged")], (st, states(r)))
st, r = post(form(part([FD + 'name="note"'], b"only text")), to=fields)
check("only listed text fields: 400", st == 400, (st, r))

# Names: filename* wins over filename and is decoded (UTF-8, ISO-8859-1).
st, r = post(form(part([FD + "name=\"a\"; filename=\"plain.png\"; filename*=UTF-8''%E2%82%AC%20rates.png"], lo),
                  part([FD + "name=\"b\"; filename*=iso-8859-1'fr'caf%E9.png"], lo)))
check("filename* decoded", st == 200 and [x["name"] for x in r] == ["\u20ac rates.png", "caf\u00e9.png"], (st, r))

# Delimiters split anywhere: the same form in 1-, 7- and 1000-byte pieces.
body = form(part([FD + 'name="a"; filename="one.png"'], lo), part([FD + 'name="b"; filename="two.png"'], hi))
for n in (1, 7, 1000):
    st, r = post(body, pieces=n)
    check("form in %d-byte pieces" % n, st == 200 and states(r) == [("one.png", "clean"), ("two.png", "flagged")], (st, states(r)))
# Preamble and transport padding are allowed (RFC 2046); data with CRLF-- look-alikes kept whole.
tricky = b"\r\n--" + B[:-1].encode() + b"\r\n-\r\n--\r\r\n"
st, r = post(b"a preamble\r\n" + form(part([FD + 'name="t"; filename="t.bin"'], tricky), end=b"--" + B.encode() + b"--   \r\n"))
check("preamble and look-alikes", st == 200 and states(r) == [("t.bin", "unscanned")], (st, r))

# Ambiguous bodies: 400.
def bad(name, body, want=400, **kw):
    st, r = post(body, **kw)
    check(name + ": %d" % want, st == want, (st, r))

bad("two Content-Disposition headers", form(part([FD + 'name="note"', FD + 'name="a"; filename="x.png"'], hi)), to=fields)
bad("two name parameters", form(part([FD + 'name="note"; name="a"; filename="x.png"'], hi)), to=fields)
bad("two filename parameters", form(part([FD + 'name="a"; filename="x.png"; filename="y.png"'], hi)))
bad("a folded header line", form(part([FD + 'name="a";', ' filename="x.png"'], hi)))
bad("a header line without a colon", form(part([FD + 'name="a"', "garbage"], hi)))
bad("bare-LF delimiters", ("--%s\nContent-Disposition: form-data; name=\"a\"; filename=\"x.png\"\n\n" % B).encode() + lo + ("\n--%s--\n" % B).encode())
bad("the boundary inside a part (LF before it)", form(part([FD + 'name="a"; filename="x.png"'], lo + b"\n--" + B.encode() + b"\n" + hi)))
bad("a part after the closing delimiter", form(part([FD + 'name="a"; filename="x.png"'], lo), end=b"--" + B.encode() + b"--\r\n" + part([FD + 'name="b"; filename="y.png"'], hi) + b"--" + B.encode() + b"--\r\n"))
bad("text after a delimiter", form(part([FD + 'name="a"; filename="x.png"'], lo), end=b"--" + B.encode() + b"xyz\r\n"))
bad("truncated", form(part([FD + 'name="a"; filename="x.png"'], lo), end=b""))
bad("a boundary of 71 characters", form(part([FD + 'name="a"; filename="x.png"'], lo), boundary="b" * 71),
    ctype="multipart/form-data; boundary=" + "b" * 71)
bad("two boundary parameters", body, ctype="multipart/form-data; boundary=%s; boundary=other" % B)

# Limits: part headers over 8 KiB, more parts than max-files + 64 text fields: 413.
bad("part headers over 8 KiB", form(part([FD + 'name="a"; filename="x.png"', "X-Pad: " + "p" * 9000], lo)), 413)
bad("5 files over max-files 4", form(*[part([FD + 'name="f%d"; filename="f%d.png"' % (i, i)], lo) for i in range(5)]), 413)
bad("69 parts", form(*[part([FD + 'name="note"'], b"x") for i in range(69)]), 413, to=fields)

if failed:
    sys.exit(1)
EOF
echo PASS

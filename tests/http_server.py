#!/usr/bin/python3
"""A small HTTP server for clipmod's fetch and model tests: loopback only.

    http_server.py --root DIR --log FILE --port-file FILE [--port6-file FILE]

Binds 127.0.0.1 on a free port (written to --port-file once listening) and, with
--port6-file, [::1] too. Every connection and request is appended to --log as one
JSON object per line, so tests can prove that a refused URL never reached it.

Files under --root are served with Range support (bytes=N- and bytes=N-M; 206,
or 416 with "Content-Range: bytes */SIZE"), which is the hub's resolve layout when
the root holds ORG/NAME/resolve/REVISION/FILE (the path is URL-decoded, so
refs%2Fpr%2F32 is the directory refs/pr/32). A path containing "interrupt" is cut
in the middle the first time it is asked for without a Range (the connection
closes after half the bytes); a path containing "norange" ignores Range.

Behaviours for the fetch tests:
  /slow?bytes=N&delay=S      200 image/png, Content-Length N, one byte every S seconds
  /endless                   200 image/png without a length, bytes until the client leaves
  /announce-big              200 with Content-Length 10 GB, then a trickle
  /loop                      302 to itself
  /redirect?to=URL           302 to URL (anything, relative included), setting a cookie
  /chain?n=K&to=URL          K redirects through /chain, then to URL
  /status/NNN                status NNN with a small HTML page
  /html                      200 text/html: a web page where an image was expected
  /delay?s=S&file=PATH       wait S seconds, then serve the file PATH under the root
  /headers                   200 text/plain: the request's headers, for inspection
"""
import argparse
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOG_LOCK = threading.Lock()
CUT_DONE = set()


def log(**entry):
    entry["time"] = round(time.time(), 3)
    with LOG_LOCK, open(ARGS.log, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "clipmod-test"

    def setup(self):
        super().setup()
        log(event="connect", listener=self.server.name, peer=self.client_address[0])

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def send_simple(self, status, body=b"", ctype="text/html", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = urllib.parse.unquote(url.path)
        log(event="request", listener=self.server.name, path=self.path,
            range=self.headers.get("Range"), agent=self.headers.get("User-Agent"),
            cookie=self.headers.get("Cookie"), authorization=self.headers.get("Authorization"))
        try:
            self.route(path, q)
        except (BrokenPipeError, ConnectionResetError):
            log(event="client-left", path=self.path)

    def route(self, path, q):
        if path == "/slow":
            self.send_response(200)
            n = int(q.get("bytes", "100000"))
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(n))
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(n):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(float(q.get("delay", "0.2")))
        elif path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"\x89PNG\r\n\x1a\n" + b"\0" * 65528
            sent = 0
            try:
                while sent < 1 << 34:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            finally:
                log(event="endless-stopped", sent=sent)
            self.close_connection = True
        elif path == "/announce-big":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(10 ** 10))
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"\xff" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            self.close_connection = True
        elif path == "/loop":
            self.send_simple(302, b"<a href=/loop>loop</a>", headers=[("Location", "/loop")])
        elif path == "/redirect":
            # A cookie too: a client that keeps cookies would send it on the next request.
            self.send_simple(302, b"moved", headers=[("Location", q["to"]),
                                                     ("Set-Cookie", "session=s3cret; Path=/")])
        elif path == "/chain":
            n = int(q.get("n", "1"))
            to = q["to"] if n <= 1 else "/chain?" + urllib.parse.urlencode(
                {"n": n - 1, "to": q["to"]})
            self.send_simple(302, b"", headers=[("Location", to)])
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self.send_simple(code, b"<html><body>status %d</body></html>" % code)
        elif path == "/html":
            page = b"<!DOCTYPE html><html><head><title>A photo</title></head>" \
                   b"<body><img src=cat.jpg></body></html>\n"
            self.send_simple(200, page, ctype="image/jpeg")  # lying about its type
        elif path == "/headers":
            self.send_simple(200, str(self.headers).encode(), ctype="text/plain")
        elif path == "/delay":
            time.sleep(float(q.get("s", "1")))
            self.serve_file(q["file"])
        else:
            self.serve_file(path)

    def serve_file(self, path):
        root = os.path.realpath(ARGS.root)
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            self.send_simple(404, b"<html><body>not found</body></html>")
            return
        with open(full, "rb") as f:
            data = f.read()
        size = len(data)
        rng = self.headers.get("Range")
        if rng and "norange" not in path and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            first = int(first)
            last = int(last) if last else size - 1
            if first >= size:
                self.send_simple(416, b"", headers=[("Content-Range", "bytes */%d" % size)])
                return
            last = min(last, size - 1)
            body = data[first:last + 1]
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, size))
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        if "interrupt" in path and not rng and path not in CUT_DONE:
            CUT_DONE.add(path)
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            log(event="cut", path=path, sent=len(body) // 2, size=size)
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def serve(server):
    server.serve_forever(poll_interval=0.2)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--port6-file")
    ARGS = p.parse_args()
    servers = []
    s4 = Server(("127.0.0.1", 0), Handler)
    s4.name = "127.0.0.1"
    servers.append((s4, ARGS.port_file))
    if ARGS.port6_file:
        try:
            s6 = Server6(("::1", 0), Handler)
            s6.name = "::1"
            servers.append((s6, ARGS.port6_file))
        except OSError as e:
            print("http_server: no [::1] listener: %s" % e, file=sys.stderr)
    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s, _ in servers]
    for t in threads:
        t.start()
    # The port files appear only once every socket listens: they are the "ready" signal.
    for s, port_file in servers:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % s.server_address[1])
        os.rename(tmp, port_file)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()

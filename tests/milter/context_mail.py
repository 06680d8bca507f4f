#!/usr/bin/env python3
"""context_mail.py - write the mails of milter_context.sh: an image shown by an HTML body.

Usage: context_mail.py OUT IMAGE --id ID [options]
  --html TEXT      the HTML body's words, a paragraph of their own after "Here is your
                   present", above the image (default: none)
  --alt TEXT       the <img> element's alt (default: none)
  --plain TEXT     a text/plain alternative too (the milter reads it instead of the HTML)
  --subject TEXT   a Subject header (default: none)
  --filename NAME  the image part's file name (default: none)
  --hostile        a text/plain part of 10 MB (100,000 tiny words, invalid UTF-8, NUL
                   bytes, right-to-left and zero-width marks) and 2 MB of HTML tag soup
                   whose <img> alt holds the same, base64 so SMTP carries every byte

The HTML is a whole page as clients write it (head, title, style, a comment), its words
as character references where that proves they are decoded (&#112;istol is pistol).
Only the standard library: any python3 runs it.
"""
import argparse
import base64
import sys


def b64(data):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i : i + 76] for i in range(0, len(s), 76)) + "\n"


def html_page(text, alt):
    words = "".join("&#%d;" % ord(c) if c == "p" else c for c in text or "")
    alt_attr = ' alt="%s"' % alt if alt is not None else ""
    return (
        "<!DOCTYPE html><html><head><title>not shown</title>"
        "<style>p { font-family: sans-serif; }</style></head>\n"
        "<body><!-- a comment nobody reads -->\n<p>Here is your present</p><p>%s</p>\n"
        '<p><img src="cid:gift.1@context.test"%s width="48" height="48"></p>\n'
        "</body></html>\n" % (words, alt_attr)
    )


def hostile_text():
    words = " ".join("abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(100000)).encode()
    junk = (
        b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\x00\x00 \x00"
        + "\u200f\u202e\u200b\u2066 right-to-left \u202c\u200e".encode()
        + b"\x01\x1b[31m\x7f "
    )
    block = words + b"\n" + junk * 64 + b"\n"
    out = bytearray()
    while len(out) < 10 << 20:
        out += block
    return bytes(out[: 10 << 20])


def hostile_html():
    soup = (
        '<div><b><i><img src="cid:nothing" alt="\u200f\x00x"><p title="a>b" <!-- '
        "&#x &#99999999999; &amp <script>x<y</script> <style>"
    ).encode()
    return soup * ((2 << 20) // len(soup))


def part(ctype, body, encoding="7bit", extra=""):
    return "Content-Type: %s\nContent-Transfer-Encoding: %s\n%s\n%s" % (
        ctype,
        encoding,
        extra,
        body,
    )


def related(a, image):
    img_headers = "Content-ID: <gift.1@context.test>\nContent-Disposition: inline%s\n" % (
        '; filename="%s"' % a.filename if a.filename else ""
    )
    html = html_page(a.html, a.alt)
    if a.hostile:
        html_part = part("text/html; charset=utf-8", b64(hostile_html() + html.encode()), "base64")
    else:
        html_part = part("text/html; charset=utf-8", html)
    parts = [html_part, part("image/png", b64(image), "base64", img_headers)]
    if a.hostile:
        parts.insert(0, part("text/plain; charset=utf-8", b64(hostile_text()), "base64"))
    return multipart("related", "rel", parts)


def multipart(kind, boundary, parts):
    body = "".join("--%s\n%s\n" % (boundary, p) for p in parts) + "--%s--\n" % boundary
    return 'Content-Type: multipart/%s; boundary="%s"\n\n%s' % (kind, boundary, body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("image")
    ap.add_argument("--id", required=True)
    ap.add_argument("--html")
    ap.add_argument("--alt")
    ap.add_argument("--plain")
    ap.add_argument("--subject")
    ap.add_argument("--filename")
    ap.add_argument("--hostile", action="store_true")
    a = ap.parse_args()
    image = open(a.image, "rb").read()
    body = related(a, image)
    if a.plain is not None:
        body = multipart(
            "alternative", "alt", [part("text/plain; charset=utf-8", a.plain + "\n"), body]
        )
    head = "From: sender@example.org\nTo: user@clipmod.test\n"
    if a.subject is not None:
        head += "Subject: %s\n" % a.subject
    head += (
        "Date: Sun, 06 Dec 2026 10:00:00 +0000\nMessage-ID: <%s@context.test>\n"
        "X-Test-Id: %s\nMIME-Version: 1.0\n" % (a.id, a.id)
    )
    with open(a.out, "w", newline="\r\n") as f:
        f.write(head + body)


if __name__ == "__main__":
    sys.exit(main())

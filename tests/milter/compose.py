#!/usr/bin/env python3
"""compose.py - write a test mail message with images, for milter_postfix.sh and milter_load.sh.

Usage: compose.py [options] OUT [IMAGE...]
  --shape attach   multipart/mixed: a text part, each image attached (default)
  --shape inline   multipart/alternative with multipart/related HTML showing the images
                   through cid: references, as Thunderbird and Outlook send them
  --shape nested   the images inside a forwarded message (message/rfc822), itself
                   attached to a message that has no image of its own
  --shape text     no image at all (IMAGE arguments are ignored)
  --from ADDR, --to ADDR, --subject TEXT, --id TEXT (becomes X-Test-Id)
  --header "Name: value"   an extra header (repeatable), e.g. a forged verdict
  --qp             encode images quoted-printable instead of base64

Only the standard library: any python3 runs it.
"""
import argparse
import mimetypes
import os
import sys
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid


def image_type(path):
    t = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return t.split("/", 1)


def qp_binary(data):
    """Quoted-printable that keeps binary exact: CR and LF are =0D and =0A, never line
    ends (the email package would turn them into bare line breaks, which SMTP servers
    rewrite as CRLF: the image would change in transit). Backslash and percent are
    encoded too: swaks reads "\\n" and "%TOKEN%" in the DATA it sends."""
    lines, line = [], ""
    for b in data:
        t = chr(b) if 33 <= b <= 126 and b not in (37, 61, 92) else "=%02X" % b
        if len(line) + len(t) > 75:
            lines.append(line + "=")
            line = ""
        line += t
    lines.append(line)
    return "\n".join(lines)


def requote(msg):
    """Re-encode every image part of msg as binary-safe quoted-printable."""
    for part in msg.walk():
        if part.get_content_maintype() == "image":
            data = part.get_payload(decode=True)
            del part["Content-Transfer-Encoding"]
            part["Content-Transfer-Encoding"] = "quoted-printable"
            part.set_payload(qp_binary(data))


def add_image(msg, path, disposition="attachment", cid=None):
    maintype, subtype = image_type(path)
    data = open(path, "rb").read()
    msg.add_attachment(data, maintype=maintype, subtype=subtype,
                       filename=os.path.basename(path), disposition=disposition, cid=cid)


def build(args, images):
    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = args.to
    msg["Subject"] = args.subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="clipmod.test")
    if args.id:
        msg["X-Test-Id"] = args.id
    for h in args.header:
        name, value = h.split(":", 1)
        msg[name.strip()] = value.strip()

    if args.shape == "text" or not images:
        msg.set_content("No pictures today.\n")
    elif args.shape == "attach":
        msg.set_content("Pictures attached.\n")
        for p in images:
            add_image(msg, p)
    elif args.shape == "inline":
        cids = [make_msgid(domain="clipmod.test") for _ in images]
        msg.set_content("Pictures inline (HTML only).\n")
        html = "".join('<p><img src="cid:%s"></p>' % c[1:-1] for c in cids)
        msg.add_alternative("<html><body>%s</body></html>" % html, subtype="html")
        related = msg.get_payload()[1]
        for p, c in zip(images, cids):
            maintype, subtype = image_type(p)
            related.add_related(open(p, "rb").read(), maintype=maintype, subtype=subtype,
                                cid=c, filename=os.path.basename(p))
    elif args.shape == "nested":
        inner = EmailMessage()
        inner["From"] = "friend@example.net"
        inner["To"] = args.sender
        inner["Subject"] = "the pictures"
        inner.set_content("Here.\n")
        for p in images:
            add_image(inner, p)
        msg.set_content("Forwarding what I got.\n")
        if args.qp:
            requote(inner)
        msg.add_attachment(inner, disposition="attachment", filename="forwarded.eml")
    if args.qp:
        requote(msg)
    return msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["attach", "inline", "nested", "text"], default="attach")
    ap.add_argument("--from", dest="sender", default="sender@example.org")
    ap.add_argument("--to", default="user@clipmod.test")
    ap.add_argument("--subject", default="pictures")
    ap.add_argument("--id")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--qp", action="store_true")
    ap.add_argument("out")
    ap.add_argument("images", nargs="*")
    args = ap.parse_args()
    data = build(args, args.images).as_bytes(policy=SMTP)
    with open(args.out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    sys.exit(main())

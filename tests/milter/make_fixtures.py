#!/usr/bin/python3
"""make_fixtures.py - write the .eml fixtures of test_milter_mime.c (run once; committed).

Each message is written out by hand in the shape a real client produces (boundaries,
header order, folding, Content-Id and filename styles of Thunderbird, Outlook and Apple
Mail), around three tiny images that are committed next to them (tiny.png, tiny.jpg,
tiny.gif). The unit test checks that the MIME walk finds exactly the expected parts and
that their decoded bytes equal those files.

Usage: tests/milter/make_fixtures.py [DIR]   (default: this script's directory)
The images are made with PIL only when missing, so the .eml files stay stable.
"""
import base64
import binascii
import os
import quopri
import sys
import urllib.parse

DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def images():
    paths = {k: os.path.join(DIR, "tiny." + k) for k in ("png", "jpg", "gif")}
    if not all(os.path.exists(p) for p in paths.values()):
        from PIL import Image

        im = Image.new("RGB", (16, 16))
        im.putdata([(x * 16, y * 16, 128) for y in range(16) for x in range(16)])
        im.save(paths["png"], optimize=True)
        im.save(paths["jpg"], quality=80)
        im.convert("P").resize((8, 8)).save(paths["gif"])
    return {k: open(p, "rb").read() for k, p in paths.items()}


IMG = images()


def b64(data, width=76):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i : i + width] for i in range(0, len(s), width))


def qp(data):
    return quopri.encodestring(data).decode("ascii")


def write(name, text):
    with open(os.path.join(DIR, name), "w", newline="\n") as f:
        f.write(text)


# Thunderbird 115: mixed > alternative > (plain, related > (html, inline png)), jpeg attached.
write(
    "thunderbird.eml",
    f"""Return-Path: <anna@example.org>
Message-ID: <3f6b1c2e-5a7d-4c11-9d0e-2b7f8a1e4c55@example.org>
Date: Tue, 12 Nov 2024 10:14:03 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Content-Language: en-US
To: Ben <ben@example.com>
From: Anna <anna@example.org>
Subject: Holiday pictures
Content-Type: multipart/mixed; boundary="------------0mB7h2kTYyF1vyg0aCqbyTza"

This is a multi-part message in MIME format.
--------------0mB7h2kTYyF1vyg0aCqbyTza
Content-Type: multipart/alternative;
 boundary="------------xLn1Px7Jz1cZ8yQ3wQK0e2Cr"

--------------xLn1Px7Jz1cZ8yQ3wQK0e2Cr
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 7bit

Hi Ben,

the view from the hotel, and the beach.

Anna

--------------xLn1Px7Jz1cZ8yQ3wQK0e2Cr
Content-Type: multipart/related;
 boundary="------------r2FhWMJ1cK9hJdGm3c0V7b0s"

--------------r2FhWMJ1cK9hJdGm3c0V7b0s
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 7bit

<!DOCTYPE html>
<html>
  <head>
    <meta http-equiv="content-type" content="text/html; charset=UTF-8">
  </head>
  <body>
    <p>Hi Ben,</p>
    <p>the view from the hotel, <img moz-do-not-send="false"
        src="cid:part1.AbCdEf01.GhIjKl23@example.org" alt="" width="16"
        height="16" class=""> and the beach.</p>
    <p>Anna<br>
    </p>
  </body>
</html>
--------------r2FhWMJ1cK9hJdGm3c0V7b0s
Content-Type: image/png; name="inline.png"
Content-Disposition: inline; filename="inline.png"
Content-Id: <part1.AbCdEf01.GhIjKl23@example.org>
Content-Transfer-Encoding: base64

{b64(IMG["png"], 72)}

--------------r2FhWMJ1cK9hJdGm3c0V7b0s--

--------------xLn1Px7Jz1cZ8yQ3wQK0e2Cr--
--------------0mB7h2kTYyF1vyg0aCqbyTza
Content-Type: image/jpeg; name="beach.jpg"
Content-Disposition: attachment; filename="beach.jpg"
Content-Transfer-Encoding: base64

{b64(IMG["jpg"], 72)}

--------------0mB7h2kTYyF1vyg0aCqbyTza--
""",
)

# Outlook (Microsoft 365): mixed > related(type=alternative) > (alternative, image001.png),
# then a photo sent as application/octet-stream named .JPG and a .docx that is no image.
write(
    "outlook.eml",
    f"""Received: from DB9PR07MB1234.eurprd07.prod.outlook.com ([fe80::1]) by
 DB9PR07MB1234.eurprd07.prod.outlook.com ([fe80::1%4]) with mapi id 15.20.8137.011;
 Tue, 12 Nov 2024 09:02:11 +0000
From: Carla Diaz <carla@corp.example>
To: "Ben" <ben@example.com>
Subject: Scan of the contract
Thread-Topic: Scan of the contract
Thread-Index: AQHbNPz8l5l0oYk3xUOe0n5zr3vJ8g==
Date: Tue, 12 Nov 2024 09:02:11 +0000
Message-ID: <DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2C@DB9PR07MB1234.eurprd07.prod.outlook.com>
Accept-Language: en-GB, en-US
Content-Language: en-GB
X-MS-Has-Attach: yes
X-MS-TNEF-Correlator:
Content-Type: multipart/mixed;
	boundary="_005_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_"
MIME-Version: 1.0

--_005_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_
Content-Type: multipart/related;
	boundary="_004_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_";
	type="multipart/alternative"

--_004_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_
Content-Type: multipart/alternative;
	boundary="_000_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_"

--_000_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Hello Ben,

Please find the scan attached.

Kind regards,
Carla

[cid:image001.png@01DB34FC.AB12CD30]

--_000_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html xmlns:v=3D"urn:schemas-microsoft-com:vml" xmlns:o=3D"urn:schemas-micr=
osoft-com:office:office"><head><meta http-equiv=3D"Content-Type" content=3D=
"text/html; charset=3Dus-ascii"></head><body lang=3D"EN-GB"><div class=3D"W=
ordSection1"><p class=3D"MsoNormal">Hello Ben,<o:p></o:p></p><p class=3D"Ms=
oNormal"><img width=3D"16" height=3D"16" id=3D"Picture_x0020_1" src=3D"cid:=
image001.png@01DB34FC.AB12CD30"><o:p></o:p></p></div></body></html>

--_000_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_--

--_004_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_
Content-Type: image/png; name="image001.png"
Content-Description: image001.png
Content-Disposition: inline; filename="image001.png"; size={len(IMG["png"])};
	creation-date="Tue, 12 Nov 2024 09:02:10 GMT";
	modification-date="Tue, 12 Nov 2024 09:02:10 GMT"
Content-ID: <image001.png@01DB34FC.AB12CD30>
Content-Transfer-Encoding: base64

{b64(IMG["png"])}

--_004_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_--

--_005_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_
Content-Type: application/octet-stream; name="Scan 2024-11-12.JPG"
Content-Description: Scan 2024-11-12.JPG
Content-Disposition: attachment; filename="Scan 2024-11-12.JPG"; size={len(IMG["jpg"])};
	creation-date="Tue, 12 Nov 2024 09:01:55 GMT";
	modification-date="Tue, 12 Nov 2024 09:01:55 GMT"
Content-Transfer-Encoding: base64

{b64(IMG["jpg"])}

--_005_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_
Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;
	name="Contract.docx"
Content-Description: Contract.docx
Content-Disposition: attachment; filename="Contract.docx"; size=22;
	creation-date="Tue, 12 Nov 2024 09:01:40 GMT";
	modification-date="Tue, 12 Nov 2024 09:01:40 GMT"
Content-Transfer-Encoding: base64

{b64(b"PK" + bytes([3, 4]) + b"not a real document")}

--_005_DB9PR07MB1234A1B2C3D4E5F6A7B8C9D0A1B2CDB9PR07MB1234eurp_--
""",
)

# Apple Mail (iPhone): alternative > (plain, related > (html, jpeg, unnamed
# octet-stream holding a PNG, RFC 2231 UTF-8 file name)).
write(
    "applemail.eml",
    f"""Content-Type: multipart/alternative; boundary=Apple-Mail-5E2D4C1B-8F3A-4B2E-9C7D-1A2B3C4D5E6F
Content-Transfer-Encoding: 7bit
From: Dana <dana@icloud.example>
Mime-Version: 1.0 (1.0)
Date: Tue, 12 Nov 2024 11:20:45 +0100
Subject: Look at this
Message-Id: <7C1E9A3B-2D4F-4A6B-8C0D-E1F2A3B4C5D6@icloud.example>
To: ben@example.com
X-Mailer: iPhone Mail (21H221)


--Apple-Mail-5E2D4C1B-8F3A-4B2E-9C7D-1A2B3C4D5E6F
Content-Type: text/plain;
	charset=utf-8
Content-Transfer-Encoding: quoted-printable

Look at this=F0=9F=98=80

Sent from my iPhone
--Apple-Mail-5E2D4C1B-8F3A-4B2E-9C7D-1A2B3C4D5E6F
Content-Type: multipart/related;
	type="text/html";
	boundary=Apple-Mail-9A8B7C6D-5E4F-3A2B-1C0D-F9E8D7C6B5A4
Content-Transfer-Encoding: 7bit

--Apple-Mail-9A8B7C6D-5E4F-3A2B-1C0D-F9E8D7C6B5A4
Content-Type: text/html;
	charset=utf-8
Content-Transfer-Encoding: 7bit

<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body dir="auto">Look at this<img src="cid:A1B2C3D4-E5F6-4A5B-8C9D-0E1F2A3B4C5D" alt="IMG_0042.jpeg"><br><br><div dir="ltr">Sent from my iPhone</div></body></html>
--Apple-Mail-9A8B7C6D-5E4F-3A2B-1C0D-F9E8D7C6B5A4
Content-Type: image/jpeg;
	name=IMG_0042.jpeg;
	x-apple-part-url=A1B2C3D4-E5F6-4A5B-8C9D-0E1F2A3B4C5D
Content-Disposition: inline;
	filename=IMG_0042.jpeg
Content-Transfer-Encoding: base64
Content-Id: <A1B2C3D4-E5F6-4A5B-8C9D-0E1F2A3B4C5D>

{b64(IMG["jpg"])}
--Apple-Mail-9A8B7C6D-5E4F-3A2B-1C0D-F9E8D7C6B5A4
Content-Type: application/octet-stream;
	x-unix-mode=0644;
	name=photo
Content-Disposition: attachment;
	filename=photo
Content-Transfer-Encoding: base64

{b64(IMG["png"])}
--Apple-Mail-9A8B7C6D-5E4F-3A2B-1C0D-F9E8D7C6B5A4
Content-Type: image/png;
	name*=utf-8''Gr%C3%BC%C3%9Fe.png
Content-Disposition: inline;
	filename*=utf-8''Gr%C3%BC%C3%9Fe.png
Content-Transfer-Encoding: base64

{b64(IMG["png"])}
--Apple-Mail-9A8B7C6D-5E4F-3A2B-1C0D-F9E8D7C6B5A4--

--Apple-Mail-5E2D4C1B-8F3A-4B2E-9C7D-1A2B3C4D5E6F--
""",
)

# A forward of a forward: message/rfc822 inside message/rfc822.
inner = f"""From: Eve <eve@example.net>
To: Carla <carla@corp.example>
Subject: the gif
Date: Mon, 11 Nov 2024 18:00:00 +0000
MIME-Version: 1.0
Content-Type: image/gif; name="dance.gif"
Content-Transfer-Encoding: base64

{b64(IMG["gif"])}
"""
middle = f"""From: Carla <carla@corp.example>
To: Anna <anna@example.org>
Subject: Fwd: the gif
Date: Tue, 12 Nov 2024 08:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="middle-boundary"

--middle-boundary
Content-Type: text/plain; charset=us-ascii

See below, and this picture.

--middle-boundary
Content-Type: image/png; name="chart.png"
Content-Disposition: attachment; filename="chart.png"
Content-Transfer-Encoding: base64

{b64(IMG["png"])}
--middle-boundary
Content-Type: message/rfc822
Content-Disposition: attachment; filename="the gif.eml"

{inner}
--middle-boundary--
"""
write(
    "nested.eml",
    f"""From: Anna <anna@example.org>
To: Ben <ben@example.com>
Subject: Fwd: Fwd: the gif
Date: Tue, 12 Nov 2024 12:00:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer-boundary"

--outer-boundary
Content-Type: text/plain; charset=us-ascii

Forwarding as an attachment.

--outer-boundary
Content-Type: message/rfc822
Content-Disposition: attachment; filename="Fwd the gif.eml"

{middle}
--outer-boundary--
""",
)

# multipart/alternative whose HTML carries images as data: URIs (base64 wrapped by
# quoted-printable soft breaks, and a percent-encoded SVG), and a quoted-printable GIF.
png_uri = "data:image/png;base64," + base64.b64encode(IMG["png"]).decode()
svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'
svg_uri = "data:image/svg+xml," + urllib.parse.quote(svg.decode())
html = f"""<html><body><p>Inline, no attachment:</p>
<img src="{png_uri}" alt="logo">
<img src='{svg_uri}'>
<img src="https://tracker.example/pixel.gif">
<p>data:image/ that is only text, and data:text/plain,hello</p>
</body></html>
""".encode()
plain_qp = qp("Offers \u2014 open in a browser.".encode())
write(
    "alternative_inline.eml",
    f"""From: Newsletter <news@shop.example>
To: ben@example.com
Subject: Our offers
Date: Tue, 12 Nov 2024 13:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-1"

--alt-1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

{plain_qp}
--alt-1
Content-Type: multipart/related; boundary="rel-1"

--rel-1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

{qp(html)}
--rel-1
Content-Type: image/gif; name="spacer.gif"
Content-Transfer-Encoding: quoted-printable

{qp(IMG["gif"])}
--rel-1--

--alt-1--
""",
)

# Broken encodings: junk inside base64 (decoders skip it), an unknown encoding, base64
# of nothing but junk, and a multipart whose closing boundary never comes.
junky = b64(IMG["png"]).split("\n")
junky[0] = junky[0][:10] + "!!*" + junky[0][10:]
junky.insert(1, "~~~~")
write(
    "broken.eml",
    f"""From: Someone <x@example.net>
To: ben@example.com
Subject: broken
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="brk"

--brk
Content-Type: text/plain

text
--brk
Content-Type: image/png; name="junk-inside.png"
Content-Transfer-Encoding: base64

{chr(10).join(junky)}
--brk
Content-Type: image/jpeg; name="base65.jpg"
Content-Transfer-Encoding: base65

{b64(IMG["jpg"])}
--brk
Content-Type: image/gif; name="only-junk.gif"
Content-Transfer-Encoding: base64

!!!! **** ~~~~
--brk
Content-Type: image/png; name="unclosed.png"
Content-Transfer-Encoding: base64

{b64(IMG["png"])}
""",
)

# 0-byte attachments: an empty PNG, white space only, an empty unnamed octet-stream.
write(
    "empty_attachment.eml",
    """From: Someone <x@example.net>
To: ben@example.com
Subject: empty
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="emp"

--emp
Content-Type: text/plain

The attachment is empty.
--emp
Content-Type: image/png; name="empty.png"
Content-Disposition: attachment; filename="empty.png"
Content-Transfer-Encoding: base64

--emp
Content-Type: image/jpeg; name="blank.jpg"
Content-Transfer-Encoding: base64

   

--emp
Content-Type: application/octet-stream; name="empty.bin"
Content-Transfer-Encoding: base64

--emp--
""",
)

# Truncated base64: one body cut mid-line (length not a multiple of 4), one cut at a
# line end (looks whole; the image decoder finds it short).
lines = b64(IMG["jpg"]).split("\n")
assert len(lines) >= 4
cut_mid = "\n".join(lines[:2]) + "\n" + lines[2][:-3]
assert len(cut_mid.replace("\n", "")) % 4
cut_line = "\n".join(lines[:3])
write(
    "truncated_base64.eml",
    f"""From: Someone <x@example.net>
To: ben@example.com
Subject: cut
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="cut"

--cut
Content-Type: image/jpeg; name="mid.jpg"
Content-Transfer-Encoding: base64

{cut_mid}
--cut
Content-Type: image/jpeg; name="line.jpg"
Content-Transfer-Encoding: base64

{cut_line}
--cut--
""",
)

# Nothing here is an image: text attachments (one holding PNG bytes), a PDF, a zip.
write(
    "not_images.eml",
    f"""From: Someone <x@example.net>
To: ben@example.com
Subject: documents
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="doc"

--doc
Content-Type: text/plain

Documents attached.
--doc
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

some notes
--doc
Content-Type: text/plain
Content-Transfer-Encoding: base64

{b64(IMG["png"])}
--doc
Content-Type: application/pdf; name="report.pdf"
Content-Transfer-Encoding: base64

{b64(b"%PDF-1.4 not really")}
--doc
Content-Type: application/zip; name="photos.zip"
Content-Transfer-Encoding: base64

{b64(b"PK" + bytes([3, 4]) + bytes(20))}
--doc--
""",
)

# Outlook Express era: a uuencoded GIF.
write(
    "uuencode.eml",
    f"""From: Old <old@example.net>
To: ben@example.com
Subject: uu
MIME-Version: 1.0
Content-Type: image/gif; name="old.gif"
Content-Transfer-Encoding: x-uuencode

begin 644 old.gif
{"".join(binascii.b2a_uu(IMG["gif"][i:i + 45]).decode() for i in range(0, len(IMG["gif"]), 45))}`
end
""",
)

# A fragment of a split message.
write(
    "partial.eml",
    """From: Someone <x@example.net>
To: ben@example.com
Subject: part 1 of 2
MIME-Version: 1.0
Content-Type: message/partial; id="abc@example.net"; number=1; total=2

From: Someone <x@example.net>
Subject: big
Content-Type: image/png
Content-Transfer-Encoding: base64

iVBORw0KGgo=
""",
)
def uu(data):
    return "".join(binascii.b2a_uu(data[i : i + 45]).decode() for i in range(0, len(data), 45))


def entities(s):
    """Every character of s as a decimal character reference, then some as hex."""
    return "".join("&#%d;" % ord(c) if i % 2 else "&#x%x;" % ord(c) for i, c in enumerate(s))


# Images a mail client shows that a scanner reading only plain "data:image/" and MIME
# parts would miss: data: URIs written with HTML character references (named,
# decimal, hex; inside the base64 too), an image behind data:application/octet-stream,
# an XHTML part, and uuencoded blocks inside a plain text body (Thunderbird and
# Outlook show them as attachments). A uuencoded text file and a data: URI of text
# are not images.
PNG64 = base64.b64encode(IMG["png"]).decode()
write(
    "obfuscated.eml",
    f"""From: Mallory <m@example.net>
To: ben@example.com
Subject: look
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="obf"

--obf
Content-Type: text/html; charset=utf-8

<html><body>
<img src="data&#58;image/png;base64,{PNG64}">
<img src="data&colon;image/gif;base64,{base64.b64encode(IMG["gif"]).decode()}">
<img src="&#100;ata:image/jpeg;base64,{b64(IMG["jpg"], 60).replace(chr(10), "&#10;")}">
<img src="{entities("data:image/png;base64,")}{PNG64.replace("+", "&#43;").replace("/", "&sol;")}">
<div style="background:url(&#x64;&#x61;ta:application/octet-stream;base64,{PNG64})">x</div>
<img src="da&Tab;ta:text/plain,hello">
</body></html>
--obf
Content-Type: text/plain; charset=us-ascii

Here are the photos, old style.

begin 644 holiday.jpg
{uu(IMG["jpg"])}`
end

and the notes:

begin 600 notes.txt
{uu(b"just some notes, not a picture")}`
end

begin 644 noname
{uu(IMG["gif"])}`
end
--obf
Content-Type: application/xhtml+xml; name="page.xhtml"

<?xml version="1.0"?>
<html xmlns="http://www.w3.org/1999/xhtml"><body>
<img src="data:image/png;base64,{PNG64}"/>
</body></html>
--obf--
""",
)

def zip_bytes(entries):
    """A zip archive of (name, data, compress) entries, made by Python's zipfile."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data, deflate in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 11, 12, 10, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            z.writestr(info, data)
    return buf.getvalue()


def pdf_bytes():
    """A small PDF with two image XObjects (one spelled /Im#61ge) and a form XObject."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 16 16] /Resources"
        b" << /XObject << /I1 4 0 R /I2 5 0 R /F1 6 0 R >> >> >>",
        b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray"
        b" /BitsPerComponent 8 /Length 1 >>\nstream\n\x80\nendstream",
        b"<< /Type /XObject /Subtype\n%a comment\n/Im#61ge /Width 1 /Height 1"
        b" /ColorSpace /DeviceGray /BitsPerComponent 8 /Length 1 >>\nstream\n\x40\nendstream",
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 1 1] /Length 0 >>\nstream\n\nendstream",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


def attachment(ctype, name, data):
    return (
        f"--box\nContent-Type: {ctype}; name=\"{name}\"\n"
        f"Content-Disposition: attachment; filename=\"{name}\"\n"
        f"Content-Transfer-Encoding: base64\n\n{b64(data)}\n"
    )


# Pictures inside containers the milter counts but does not scan: a zip of photos
# (stored, deflated, and one known only by its bytes), an office document (a zip
# with [Content_Types].xml), a PDF with two image XObjects, a cut zip, a zip with no
# pictures, and a zip uuencoded in plain text.
PHOTOS_ZIP = zip_bytes(
    [
        ("holiday/", b"", False),
        ("holiday/a.png", IMG["png"], False),
        ("holiday/b.JPG", IMG["jpg"], True),
        ("holiday/scan0001", IMG["png"], False),
        ("holiday/readme.txt", b"the beach", True),
    ]
)
DOCX = zip_bytes(
    [
        ("[Content_Types].xml", b"<Types/>", True),
        ("word/document.xml", b"<w:document/>", True),
        ("word/media/image1.png", IMG["png"], False),
    ]
)
write(
    "containers.eml",
    "From: Anna <anna@example.org>\nTo: ben@example.com\nSubject: files\nMIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="box"\n\n'
    "--box\nContent-Type: text/plain\n\nThe files, and the old way:\n\n"
    f"begin 644 more.zip\n{uu(zip_bytes([('c.gif', IMG['gif'], True)]))}`\nend\n\n"
    + attachment("application/zip", "photos.zip", PHOTOS_ZIP)
    + attachment(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "letter.docx", DOCX
    )
    + attachment("application/pdf", "report.pdf", pdf_bytes())
    + attachment("application/octet-stream", "cut.zip", PHOTOS_ZIP[: len(PHOTOS_ZIP) // 2])
    + attachment("application/zip", "texts.zip", zip_bytes([("a.txt", b"a", True)]))
    + "--box--\n",
)

print("make_fixtures: wrote the fixtures in", DIR)

#!/bin/sh
# format_sniff.sh - a refused format never reaches its library.
#
# libvips' generic probe runs every loader's detector on every file, and some of
# those parse the file themselves (OpenSlide opens any file scanned by path, cfitsio
# opens it as FITS) even when the loader is blocked; poppler parsed a PDF before
# "operation is blocked" fired. clipmod sniffs the format from the first bytes and
# calls only that format's loader. This test scans a PDF, an SVG, a FITS file, a
# Hamamatsu VMS slide index and an Aperio-style (OpenSlide) TIFF by path under
# `strace -f -k -P FILE`, which logs every system call touching the file with its
# stack, and fails if any stack passes through poppler, OpenSlide, cfitsio, OpenEXR,
# librsvg or ImageMagick. The refused files must be "unscanned" (blocked), the TIFF
# scanned by libtiff like any TIFF.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the policy's prompts cannot be tokenized"
command -v strace >/dev/null 2>&1 || skip "strace is not installed (tools/install-deps.sh installs it)"
strace -f -k -qq -e trace=none -o /dev/null true 2>/dev/null ||
    skip "strace cannot trace here (ptrace refused, or built without stack traces -k)"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
W="$CLIPMOD_WORK/format-sniff"
rm -rf "$W"
mkdir -p "$W/in"
W=$(cd "$W" && pwd) # strace -P matches absolute paths

"$REF_PYTHON" - "$W/in" <<'PY'
import os, sys
from PIL import Image
out = sys.argv[1]
def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
write("doc.pdf", b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
      b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
      b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 64 64]>>endobj\n"
      b"trailer<</Root 1 0 R>>\n%%EOF\n")
write("shape.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
      b'width="64" height="64"><rect width="64" height="64"/></svg>')
# FITS: 80-character header cards in a 2880-byte block, then 64x64 bytes of data.
cards = ["SIMPLE  =                    T", "BITPIX  =                    8",
         "NAXIS   =                    2", "NAXIS1  =                   64",
         "NAXIS2  =                   64", "END"]
header = "".join(c.ljust(80) for c in cards).ljust(2880).encode()
write("sky.fits", header + bytes(range(256)) * 16 + b"\0" * (2880 - 4096 % 2880))
# OpenSlide's Hamamatsu index file: an INI text naming the slide's JPEGs.
write("slide.vms", b"[Virtual Microscope Specimen]\r\nNoLayers=1\r\nImageFile=slide.jpg\r\n")
# An Aperio-style whole-slide TIFF: tiled, with Aperio's ImageDescription.
im = Image.new("RGB", (256, 192), (200, 120, 80))
im.save(os.path.join(out, "aperio.svs"), "TIFF", tile=True,
        description="Aperio Image Library v12.0.15\r\n256x192 [0,0 256x192] (256x256) JPEG/RGB Q=70")
PY

# Which verdict each file must get.
want() {
    case $1 in
    aperio.svs) echo "scanned" ;;
    *) echo "unscanned blocked" ;;
    esac
}
forbidden='libpoppler|vips-poppler|libopenslide|vips-openslide|libcfitsio|libOpenEXR|librsvg|vips-magick|libMagick'
bad=0
for f in "$W"/in/*; do
    name=$(basename "$f")
    set +e
    # (LeakSanitizer cannot run under ptrace: the sanitizer build checks leaks elsewhere.)
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
        strace -f -k -qq -P "$f" -e trace=openat,open,read,pread64,mmap -o "$W/$name.strace" \
        "$CLIPMOD" scan -q --json -m "$model" -p "$top_srcdir/policies/default.yaml" --no-cache \
        "$f" > "$W/$name.json" 2> "$W/$name.err"
    rc=$?
    set -e
    [ $rc -lt 128 ] || fail "$name: clipmod crashed (exit $rc)"
    got=$("$REF_PYTHON" -c 'import json, sys
r = json.loads(open(sys.argv[1]).readline())
print("unscanned " + r["reason"] if r["state"] == "unscanned" else "scanned")' "$W/$name.json") ||
        fail "$name: no JSON result ($(cat "$W/$name.err"))"
    # The trace must show clipmod reading the file: proof that strace saw it at all.
    grep -q 'libclipmod' "$W/$name.strace" || fail "$name: strace logged no access by libclipmod"
    libs=$(grep -oE "$forbidden" "$W/$name.strace" | sort -u | tr '\n' ' ')
    if [ "$got" = "$(want "$name")" ] && [ -z "$libs" ]; then
        echo "ok   $name: $got, read by clipmod only"
    else
        echo "FAIL $name: $got (want $(want "$name")); touched by: ${libs:-clipmod only}"
        bad=1
    fi
done
[ $bad -eq 0 ] || fail "a refused format reached its decoder, or a verdict is wrong (traces in $W)"

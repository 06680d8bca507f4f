#!/bin/sh
# bad_inputs.sh - hostile and broken images end as "unscanned" with the right reason.
#
# Truncated, empty, mislabelled, a header claiming 100000 x 100000 pixels, a
# decompression bomb, SVG and PDF (blocked loaders), a GIF with 3000 frames, an
# input over the byte limit, and a decode that overruns the time limit: each must
# give state "unscanned" with its reason, quickly, and the scan must neither crash
# nor leak (checked under valgrind when it is installed). Animations are sampled,
# and AVIF, HEIC, CMYK, 16-bit and grey images are scanned. valgrind 3.19 cannot run
# libhwy's AVX-512 code (libvips' JPEG XL module loads it) and dies of SIGILL: then
# the valgrind run is repeated without libvips' loadable modules, and if valgrind
# still fails by itself (not by finding an error) that part is skipped, saying so.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the policy's prompts cannot be tokenized"
photos=$(photos_dir) || fail "no sample photos"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
bad="$CLIPMOD_WORK/bad"
"$REF_PYTHON" "$top_srcdir/tests/make_bad_inputs.py" "$photos" "$bad" >/dev/null
"$top_builddir/tests/tools/heif_write" "$photos/chelsea.png" "$bad/cat.avif" "$bad/cat.heic" ||
    fail "could not write AVIF/HEIC test inputs"
policy="$top_srcdir/policies/default.yaml"
scan() { "$CLIPMOD" scan -q --json -m "$model" -p "$policy" --cache-dir "$CLIPMOD_WORK/cache" "$@"; }

out="$CLIPMOD_WORK/bad.jsonl"
set +e
start=$(date +%s)
scan "$bad"/* > "$out"
rc=$?
scan --max-file-bytes 1000 "$photos/chelsea.png" >> "$out"
# The bomb again with the pixel limit lifted: now only the time limit stops it.
scan --max-pixels 200000000 --max-scan-ms 50 "$bad/bomb.png" >> "$out"
elapsed=$(($(date +%s) - start))
set -e
[ $rc -lt 128 ] || fail "clipmod crashed (exit $rc)"
[ $rc -ne 0 ] || fail "unscanned inputs must not exit 0"

"$REF_PYTHON" - "$out" <<'PY'
import json, os, sys
want = {
    "truncated.jpg": ("unscanned", "decode-error"),
    "empty.jpg": ("unscanned", "decode-error"),
    "text.jpg": ("unscanned", "unsupported"),
    "huge-header.png": ("unscanned", "too-many-pixels"),
    "bomb.png": ("unscanned", "too-many-pixels"),
    "shape.svg": ("unscanned", "blocked"),
    "doc.pdf": ("unscanned", "blocked"),
    "many-frames.gif": ("unscanned", "too-many-frames"),
    "chelsea.png": ("unscanned", "too-large"),
    "bomb.png#2": ("unscanned", "timeout"),
}
seen, bad = {}, 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    name = os.path.basename(r["name"])
    key = name + "#2" if name in seen else name
    seen[key] = r
for name, (state, reason) in want.items():
    r = seen.get(name)
    got = (r["state"], r["reason"]) if r else None
    ok = got == (state, reason) and (r["reason_text"] or "")
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {got} {r['reason_text'] if r else ''}")
    bad += not ok
# Formats people upload: each must be scanned, at the photo's size (451 x 300).
for name in ("cat.avif", "cat.heic", "cmyk.jpg", "rgb16.png", "grey.png"):
    r = seen[name]
    ok = r["state"] != "unscanned" and (r["image"]["width"], r["image"]["height"]) == (451, 300)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {r['state']} {r['image']} {r['reason_text'] or ''}")
    bad += not ok
# Content decides, not the name: a PNG called .jpg is scanned.
r = seen["png-named.jpg"]
print(f"{'ok  ' if r['state'] != 'unscanned' else 'FAIL'} png-named.jpg: {r['state']}")
bad += r["state"] == "unscanned"
# Animations: 20 frames, of which the policy's default 8 are sampled.
for name in ("animated.gif", "animated.webp"):
    r = seen[name]
    ok = r["image"]["frames"] == 20 and r["image"]["frames_scanned"] == 8
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {r['image']}")
    bad += not ok
sys.exit(1 if bad else 0)
PY
echo "all inputs in ${elapsed}s"
[ "$elapsed" -lt 60 ] || fail "hostile inputs took ${elapsed}s"

# valgrind_verdict LOG STATUS: "ok", "fail", or "skip: WHY" when valgrind itself
# failed: killed by a signal with no error summary, stopped by an instruction it
# cannot execute inside a system library (valgrind 3.19 and libhwy's AVX-512 code,
# which libvips loads through libjxl, on AVX-512 hosts) with no error found before,
# or failed internally ("the 'impossible' happened") while in a system library.
valgrind_verdict() {
    log=$1 status=$2
    summary=$(grep -o 'ERROR SUMMARY: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || :)
    # 99 is --error-exitcode; below 128 it is clipmod's own status (0, 1 or 2).
    if [ "$status" -eq 99 ] || [ "${summary:-0}" -ne 0 ]; then
        echo fail
        return
    fi
    if [ -z "$summary" ] && grep -q "valgrind: the 'impossible' happened" "$log"; then
        # valgrind's own failure (3.19 on an Intel Xeon: "VEX temporary storage exhausted"
        # translating libdav1d's AVX-512 code), reported with the stack of the thread it
        # was running: a skip when that thread was in a system library.
        tid=$(sed -n 's/^ *running_tid=\([0-9]*\).*/\1/p' "$log" | head -n 1)
        frame=$(awk -v t="Thread ${tid:-?}:" 'index($0, t) == 1 { want = 1; next }
            want && / at 0x/ { print; exit }' "$log" | sed 's/^==[0-9]*== *//')
        why=$(grep -m 1 -A 1 "impossible' happened" "$log" | tail -n 1 | sed 's/^ *//')
        case $frame in
        *"(in /usr/lib/"* | *"(in /lib/"* | *"(in /lib64/"*)
            echo "skip: valgrind $(valgrind --version 2>/dev/null | sed 's/^valgrind-//') failed by itself ($why) in a system library, $frame"
            ;;
        *) echo fail ;;
        esac
        return
    fi
    if [ "$status" -lt 128 ]; then
        [ -n "$summary" ] && echo ok || echo fail
        return
    fi
    if [ -z "$summary" ]; then
        echo "skip: valgrind was killed by signal $((status - 128)) without an error summary"
        return
    fi
    grep -qE 'unhandled instruction|Unrecognised instruction|Illegal opcode' "$log" ||
        { echo fail; return; }
    frame=$(awk '/Illegal opcode/ { want = 1; next } want && / at 0x/ { print; exit }' "$log" |
        sed 's/^==[0-9]*== *//')
    case $frame in
    *"(in /usr/lib/"* | *"(in /lib/"* | *"(in /lib64/"*)
        echo "skip: valgrind $(valgrind --version 2>/dev/null | sed 's/^valgrind-//') cannot execute an instruction in a system library, $frame"
        ;;
    *) echo fail ;;
    esac
}

# run_valgrind LOG [ENV=VALUE ...]: the scan of every bad input under valgrind;
# prints valgrind_verdict's answer.
run_valgrind() {
    log=$1
    shift
    bin="$top_builddir/src/cli/.libs/clipmod"
    [ -x "$bin" ] || bin="$CLIPMOD"
    set +e
    env "$@" LD_LIBRARY_PATH="$top_builddir/.libs" valgrind --log-file="$log" --leak-check=full \
        --errors-for-leak-kinds=definite --show-leak-kinds=definite --error-exitcode=99 \
        --suppressions="$top_srcdir/tests/valgrind.supp" \
        "$bin" scan -q --json -m "$model" -p "$policy" --cache-dir "$CLIPMOD_WORK/cache" \
        "$bad"/* > /dev/null 2>&1
    vrc=$?
    set -e
    valgrind_verdict "$log" "$vrc"
}

if [ -n "${CLIPMOD_SANITIZERS:-}" ]; then
    echo "note: sanitizer build: ASan/UBSan checked the scan above; valgrind cannot run it"
elif command -v valgrind >/dev/null 2>&1; then
    log="$CLIPMOD_WORK/valgrind.txt"
    verdict=$(run_valgrind "$log")
    case $verdict in
    "skip: "*"system library"*)
        # libhwy comes in with libvips' loadable modules (JPEG XL, HEIF ...): run again
        # without them (libvips looks for its modules under $VIPSHOME/lib), so clipmod
        # and the built-in loaders (JPEG, PNG, GIF, WebP, TIFF) are still checked.
        echo "note: ${verdict#skip: }"
        echo "note: again with libvips' loadable modules off: HEIF/AVIF inputs are not covered under valgrind"
        mkdir -p "$CLIPMOD_WORK/no-vips-modules"
        log="$CLIPMOD_WORK/valgrind-no-modules.txt"
        verdict=$(run_valgrind "$log" VIPSHOME="$CLIPMOD_WORK/no-vips-modules")
        ;;
    esac
    case $verdict in
    ok) echo "ok   valgrind: no memory errors, no definite leaks" ;;
    skip:*)
        echo "SKIP (valgrind part only): ${verdict#skip: }."
        echo "     That measures valgrind, not clipmod; the sanitizer build (--enable-sanitizers) scans the same inputs. Log: $log"
        ;;
    *)
        cat "$log"
        fail "valgrind found errors or leaks (log: $log)"
        ;;
    esac
else
    echo "note: valgrind is not installed; leak check skipped"
fi

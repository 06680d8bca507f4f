#!/bin/sh
# oom.sh - every allocation of the library can fail without a crash or a leak.
#
# tests/tools/oom_walk fails the 1st, 2nd, 3rd ... allocation (src/lib's cm_* allocator
# and jansson's) while loading a tiny checkpoint, compiling a policy (prompt cache off,
# cold and warm) and scanning a batch of small images (PNG, JPEG, an animated GIF, a
# truncated PNG), until a run completes untouched. Each run must end in
# CLIPMOD_E_NOMEM (a scan may instead give an input "unscanned" with a reason). Leaks
# are caught by LeakSanitizer in the --enable-sanitizers build; the normal build
# checks the return codes and that nothing crashes. libyaml's and libvips' own
# allocations are not reached (no hooks; GLib aborts on failure by design).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
W="$CLIPMOD_WORK/oom"
rm -rf "$W"
mkdir -p "$W"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the policy's prompts cannot be tokenized"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
write_policy "$W/policy.yaml" 0.5 flag "oom walk"

"$REF_PYTHON" - "$W" <<'EOF' || fail "cannot write the test images"
import sys
from PIL import Image
w = sys.argv[1]
def gradient(size, phase):
    img = Image.new("RGB", size)
    img.putdata([((x * 7 + phase) % 256, (y * 5) % 256, (x * y + phase) % 256)
                 for y in range(size[1]) for x in range(size[0])])
    return img
gradient((48, 40), 0).save(f"{w}/a.png")
gradient((64, 48), 50).save(f"{w}/b.jpg", quality=85)
frames = [gradient((32, 32), 40 * i) for i in range(3)]
frames[0].save(f"{w}/c.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
data = open(f"{w}/a.png", "rb").read()
open(f"{w}/d.png", "wb").write(data[: len(data) // 2])
EOF

# One thread everywhere, so the n-th allocation is the same one in every run.
VIPS_CONCURRENCY=1 OPENBLAS_NUM_THREADS=1 XDG_CACHE_HOME="$W/xdg"
export VIPS_CONCURRENCY OPENBLAS_NUM_THREADS XDG_CACHE_HOME
set +e
"$top_builddir/tests/tools/oom_walk" "$model" "$W/policy.yaml" "$W" \
    "$W/a.png" "$W/b.jpg" "$W/c.gif" "$W/d.png" >"$W/out" 2>"$W/err"
rc=$?
set -e
cat "$W/out"
[ "$rc" -eq 0 ] || fail "oom_walk exited $rc: $(head -c 4000 "$W/err")"
grep -q "^input 3 .*: unscanned" "$W/out" || fail "the truncated PNG was scanned"
for phase in "load model" "compile/no cache" "compile/cold" "compile/warm" "scan batch"; do
    grep -q "^$phase .* 0 wrong" "$W/out" || fail "no clean walk over $phase"
done
echo "PASS"

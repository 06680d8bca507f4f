#!/bin/sh
# quickstart.sh - the README's main job: scan the sample images with the demo model.
#
# The demo model (models/demo) is a small CLIP trained here on emoji, so this works
# offline; policies/demo.yaml is written for it. Real moderation needs a real CLIP
# model and policies/default.yaml (README: "Using a real model").
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${top_builddir:-$top}
clipmod="$build/src/cli/clipmod"
"$clipmod" policy check --quiet --model "$top/models/demo" "$top/policies/demo.yaml"
set +e
"$clipmod" scan --model "$top/models/demo" --policy "$top/policies/demo.yaml" --explain \
    "$top"/samples/*.png
rc=$?
set -e
# 0 (all clean) and 1 (something flagged) are both the expected outcome here.
[ $rc -le 1 ] || exit $rc

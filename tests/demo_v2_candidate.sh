#!/bin/sh
# demo_v2_candidate.sh - the demo model v2 candidate (models/demo-v2-candidate, issue 16)
# and the policy written for it, as its model card describes them.
#
# Checks, with the C engine:
#   1. the artefact (check_demo_artefact): config.json names it clipmod/demo-emoji,
#      vocab_size = 512 + merges + 2, the files <= 15 MiB;
#   2. its demo.yaml passes `clipmod policy check` with the candidate, and every
#      threshold in it was chosen on the development style's renders and never on
#      EmojiOne (the evaluation style): the comment evaluate.py --write-policy leaves
#      on each threshold line names the directory it was chosen on;
#   3. the model card's numbers: tools/demo/evaluate.py re-measures EmojiOne with that
#      policy and every number must match the card within the card's tolerance.
# Step 3 needs ruby-gemojione (apt cache or `apt-get download`), fonts-noto-color-emoji
# and unicode-cldr-core: without them the test skips (77) after steps 1-2.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

M="$top_srcdir/models/demo-v2-candidate"
W="$CLIPMOD_WORK/demo_v2_candidate"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY

[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing"
need_reference

# 1. The artefact.
check_demo_artefact "$M"

# 2. The policy: valid for the model, thresholds never chosen on EmojiOne.
run 0 "$CLIPMOD" policy check --model "$M" "$M/demo.yaml"
n=$(grep -Ec '^ +threshold: [0-9.]+' "$M/demo.yaml")
[ "$n" -ge 6 ] || fail "demo.yaml has $n thresholds, expected the 6 categories"
chosen=$(grep -Ec '^ +threshold: [0-9.]+ +# chosen on [a-z-]+-png$' "$M/demo.yaml")
[ "$chosen" -eq "$n" ] || fail "only $chosen of $n thresholds say the renders they were chosen on"
! grep -Ei '^ +threshold:.*(emojione|gemojione|assets)' "$M/demo.yaml" ||
    fail "a threshold was chosen on EmojiOne, the evaluation style"

# 3. The model card's numbers.
check_demo_card "$M" "$M/demo.yaml"

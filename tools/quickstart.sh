#!/bin/sh
# quickstart.sh - the README's main job: scan the sample images with the demo model.
#
# The demo model (models/demo) is a small CLIP trained here on emoji, so this works
# offline; policies/demo.yaml is written for it. The samples are chosen by a rule
# (samples/README.md), not by what the model gets right, so the table shows its
# mistakes too. Real moderation needs a real CLIP model and policies/default.yaml
# (README: "Using a real model").
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${top_builddir:-$top}
clipmod="$build/src/cli/clipmod"
cd "$top"
"$clipmod" policy check --quiet --model models/demo policies/demo.yaml
cat <<'TXT'
clipmod quick start: samples/ scanned with the demo model (models/demo) and
policies/demo.yaml. The samples are each demo category's first emoji (the file
name says which) and three emoji the model never saw in training, which should be
clean; samples/README.md has the rule and the right answers.

TXT
set +e
# The demo model's notice goes to stderr once, before the table.
"$clipmod" scan --table --no-summary --model models/demo --policy policies/demo.yaml \
    samples/*.png 2>&1
rc=$?
set -e
# 0 (all clean) and 1 (something flagged) are both the expected outcome here.
[ $rc -le 1 ] || exit $rc
cat <<'TXT'

Next steps: `clipmod scan --explain FILE` shows why; a real CLIP model and
policies/default.yaml for real moderation (README, "Using a real model"; `clipmod
model fetch`); tune thresholds on your own labelled images (`clipmod policy
evaluate`, clipmod-policy(5)); run the daemons for uploads (clipmodd(8)) and mail
(clipmod-milter(8)).
TXT

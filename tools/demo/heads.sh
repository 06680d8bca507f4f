#!/bin/sh
# heads.sh CLIPMOD MODEL POLICY WORK - learned heads on the demo model, measured on
# a style it never saw (`make evaluate-demo-heads`).
#
# Trains one head per demo category with `clipmod head train` on Noto renders only
# (the training style: each category's clean renders plus augmented ones, 16
# images per category in all, and 200 clean emoji), then evaluates the demo policy
# on every EmojiOne image (tools/demo/emojione.sh) three ways: prompts only, heads
# only (score: head) and both (score: mean). Prints a Markdown table of ROC AUCs
# per category, as the model card shows it. The EmojiOne images never train a head.
set -eu
clipmod=${1:?usage: heads.sh CLIPMOD MODEL POLICY WORK}
model=$2
policy=$3
work=$4
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
mkdir -p "$work"
png=$("$here/emojione.sh" "$work/emojione")
rm -rf "$work/noto16" "$work/eo" "$work/heads" "$work/pol"
"$py" "$here/../labelled-set.py" --out "$work/noto16" --noto --clean 200 --augment 16 --seed 2 >/dev/null
"$py" "$here/../labelled-set.py" --out "$work/eo" --emojione "$png" --clean 100000 >/dev/null
"$clipmod" head train -q --no-progress --model "$model" --policy "$policy" --all \
    -o "$work/heads" "$work/noto16" >"$work/train.txt"
mkdir -p "$work/pol"
cp "$policy" "$work/pol/base.yaml"
cats=$(sed -n 's/^  - id: *//p' "$policy")
for mode in head mean; do
    {
        echo "version: 1"
        echo "include: [base.yaml]"
        echo "categories:"
        for c in $cats; do
            printf '  - id: %s\n    head: ../heads/%s.safetensors\n    score: %s\n' "$c" "$c" "$mode"
        done
    } >"$work/pol/$mode.yaml"
    "$clipmod" policy evaluate -q --json --no-attribution --no-progress --model "$model" \
        --policy "$work/pol/$mode.yaml" "$work/eo" >"$work/eval-$mode.json"
done
"$py" - "$work" <<'EOF'
import json, sys
w = sys.argv[1]
head = {c["id"]: c for c in json.load(open(w + "/eval-head.json"))["categories"]}
mean = {c["id"]: c for c in json.load(open(w + "/eval-mean.json"))["categories"]}
print("| category | EmojiOne positives / negatives | prompts | head | mean of both | best |")
print("|---|---|---|---|---|---|")
better = 0
for cid, c in head.items():
    h = c["head"]; p, hd, m = h["prompts_roc_auc"], h["head_roc_auc"], mean[cid]["head"]["policy_roc_auc"]
    best = max((p, "prompts"), (hd, "head"), (m, "mean"))[1]
    better += best != "prompts"
    print("| %s | %d / %d | %.3f | %.3f | %.3f | %s |" % (cid, h["positives"], h["negatives"], p, hd, m, best))
print("\nhead or mean beats prompts-only for %d of %d categories" % (better, len(head)))
EOF

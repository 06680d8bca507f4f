#!/bin/sh
# milter_context.sh - clipmod-milter gives each image the mail's text as its context
# (issue 15), end to end behind a real Postfix on 127.0.0.1.
#
# The demo model (models/demo) and a policy that includes policies/demo.yaml and gives
# its weapons category `context: {prompts: [pistol, dagger, bomb], mode: raise}` and
# the action reject. The image is tests/data/demo-scenes/teddy-bear.png, clean on its own: its weapons
# score is measured first and the threshold set 0.05 above it. Each mail, Subject "A
# gift for you", shows it as teddy.png in an HTML body (multipart/related, the image by
# cid:) whose last paragraph holds the words (the demo text tower knows emoji names,
# not sentences: each line of the context is a window of its own, so the Subject and
# the file name do not dilute them); the words are written as character references
# where that proves they are decoded (&#112;istol):
#   (--message) harmful words      -> reject, the log line says flagged_by=image+context
#                                     with the image and context scores and the prompt
#   (--message) the same, action tag -> delivered flagged: the verdict header says
#                                     flagged-by=image+context, image-score, context-score,
#                                     context-prompt; the summary "by image+context (...)"
#   (--message) context: off       -> accepted clean: the text is not read
#   (--message) a text/plain part with neutral words besides the harmful HTML -> the
#                                     plain text is the message's text: accepted
#   (SMTP) harmful words next to the image -> 550 with the policy's own reply
#   (SMTP) neutral words ("birthday cake", alt "grinning face") -> delivered, clean,
#                                     the header giving the image and context scores
#   (SMTP) hostile context: a 10 MB text part (100,000 tiny words, invalid UTF-8, NUL
#          bytes, right-to-left and zero-width marks) and 2 MB of HTML tag soup
#                                  -> the image is still scanned and the mail delivered,
#                                     the milter alive, the context cut to its cap
#
# Needs root, postfix and swaks installed (tools/install-deps.sh); skips otherwise.
# MILTER_WRAPPER runs the milter under a tool, as in milter_postfix.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/milter/postfix.sh"

MILTER="$top_builddir/plugins/milter/clipmod-milter"
MAIL="$top_srcdir/tests/milter/context_mail.py"
MODEL="$top_srcdir/models/demo"
IMAGE="$top_srcdir/tests/data/demo-scenes/teddy-bear.png"
W="$CLIPMOD_WORK/milter_context"

if why=$(pf_missing); then
    skip "$why"
fi
[ -x "$MILTER" ] || skip "$MILTER is not built (make plugins/milter/clipmod-milter)"
[ -r "$MODEL/model.safetensors" ] || skip "the demo model is absent ($MODEL)"

rm -rf "$W"
mkdir -p "$W/msg"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
LC_ALL=C
export LC_ALL
PF=$(mktemp -d /tmp/clipmod-postfix.XXXXXX)
MPID=

cleanup() {
    pf_stop
    if [ -n "$MPID" ] && kill -0 "$MPID" 2>/dev/null; then
        kill "$MPID" 2>/dev/null || true
        wait "$MPID" 2>/dev/null || true
    fi
    [ -f "$PF/maillog" ] && cp "$PF/maillog" "$W/postfix.log"
    rm -rf "$PF"
}
trap cleanup EXIT
trap 'exit 99' INT TERM

# policy FILE THRESHOLD ACTION: the demo policy, weapons judged with its context.
policy() {
    cat >"$1" <<EOF
# The demo policy; weapons scored with the mail's text as context (mode raise).
version: 1
name: mail context test
include: $top_srcdir/policies/demo.yaml
actions:
  reject:
    smtp: "550 5.7.1 Context test: this picture is not accepted here"
categories:
  - id: weapons
    threshold: $2
    action: $3
    context:
      prompts: [pistol, dagger, bomb]
      mode: raise
EOF
}

# ---------------------------------------------------------------------------
# The image's own weapons score; the threshold a little above it.
policy "$W/policy.yaml" 0.99 reject
"$CLIPMOD" scan -m "$MODEL" -p "$W/policy.yaml" --json --quiet "$IMAGE" >"$W/score.json" \
    2>"$W/score.err" || fail "measuring scan failed: $(cat "$W/score.err")"
threshold=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = [c for c in r["categories"] if c["id"] == "weapons"][0]["score"]
assert r["state"] == "clean" and s < 0.5, r
print("%.4f" % (s + 0.05))' "$W/score.json") || fail "cannot read the score: $(cat "$W/score.json")"
echo "teddy-bear.png: weapons $(python3 -c 'import sys; print(float(sys.argv[1]) - 0.05)' \
    "$threshold") on its own, threshold $threshold"
policy "$W/policy.yaml" "$threshold" reject
policy "$W/policy-tag.yaml" "$threshold" tag

mail() { python3 "$MAIL" "$@" || fail "context_mail.py $*"; }
gift() { mail "$@" --subject "A gift for you" --filename teddy.png; }
gift "$W/msg/harmful.eml" "$IMAGE" --id harmful --html "pistol" --alt dagger
gift "$W/msg/neutral.eml" "$IMAGE" --id neutral --html "birthday cake" --alt "grinning face"
gift "$W/msg/plain.eml" "$IMAGE" --id plain --html "pistol" --plain "birthday cake"
mail "$W/msg/hostile.eml" "$IMAGE" --id hostile --hostile
[ "$(wc -c <"$W/msg/hostile.eml")" -gt $((13 << 20)) ] || fail "the hostile mail is too small"

MPORT=$(pf_free_port)
SPORT=$(pf_free_port)
# milter_config [POLICY [EXTRA LINE]]
milter_config() {
    cat >"$W/milter.yaml" <<EOF
# clipmod-milter for the context end-to-end test.
socket: inet:$MPORT@127.0.0.1
model: $MODEL
policy: ${1:-policy.yaml}
cache-dir: cache
workers: 2
log:
  format: logfmt
  target: stderr
  level: info
on-fail: tempfail
EOF
    [ -z "${2:-}" ] || echo "$2" >>"$W/milter.yaml"
}

# message NAME FILE [POLICY [EXTRA LINE]]: --message, the output unfolded in $W/NAME.out.
message() {
    milter_config "${3:-}" "${4:-}"
    "$MILTER" -c "$W/milter.yaml" --message "$2" >"$W/$1.raw" 2>&1 ||
        fail "--message $1: $(cat "$W/$1.raw")"
    sed -e ':a' -e 'N' -e '$!ba' -e 's/\n\t/ /g' "$W/$1.raw" >"$W/$1.out"
}
expect() {
    grep -q -- "$2" "$W/$1.out" || fail "$1: no line matching '$2' in: $(cat "$W/$1.out")"
}

message harmful "$W/msg/harmful.eml"
expect harmful '^decision: reject 550 5.7.1 Context test'
expect harmful 'msg="milter verdict" .*state=flagged .*category=weapons .*flagged_by=image+context image_score=0\.[0-9]* context_score=0\.[0-9]* context_prompt='
message harmful-tag "$W/msg/harmful.eml" policy-tag.yaml
expect harmful-tag '^decision: accept'
expect harmful-tag '^X-Clipmod-Verdict: flagged; action=tag;'
expect harmful-tag 'state=flagged action=tag category=weapons score=0\.[0-9]* flagged-by=image+context image-score=0\.[0-9]* context-score=0\.[0-9]* context-prompt="[a-z]*" context-text="[a-z ]*pistol"'
expect harmful-tag '^X-Clipmod-Summary: flagged (tag): 2 teddy.png: weapons 0\.[0-9]* >= [0-9.]* by image+context (image 0\.[0-9]*, context 0\.[0-9]*: [a-z]*); 1 of 1 image flagged'
message context-off "$W/msg/harmful.eml" policy.yaml "context: off"
expect context-off '^decision: accept'
expect context-off '^X-Clipmod-Verdict: clean; action=allow;'
grep -q 'context-score' "$W/context-off.out" && fail "context: off still scored the text"
message plain "$W/msg/plain.eml"
expect plain '^decision: accept'
expect plain 'state=clean .*category=weapons .*image-score=0\.[0-9]* context-score=0\.[0-9]*'
echo "ok --message: harmful words flag (image+context), tag headers, context: off, text/plain first"

# ---------------------------------------------------------------------------
# The milter, then Postfix.
milter_config
${MILTER_WRAPPER:-} "$MILTER" -c "$W/milter.yaml" >"$W/milter.log" 2>&1 &
MPID=$!
i=0
until grep -q "msg=listening" "$W/milter.log"; do
    kill -0 "$MPID" 2>/dev/null || fail "clipmod-milter exited: $(cat "$W/milter.log")"
    i=$((i + 1))
    [ $i -lt 600 ] || fail "clipmod-milter did not start listening"
    sleep 0.1
done
PF_FROM=sender@example.org
PF_TO=user@clipmod.test
pf_setup "$PF" "$SPORT" "inet:127.0.0.1:$MPORT" tempfail
pf_start || fail "postfix did not start: $(cat "$PF/maillog")"
echo "postfix on 127.0.0.1:$SPORT, clipmod-milter (pid $MPID) on 127.0.0.1:$MPORT"

delivered=0
# send ID EXPECTED_REPLY_PREFIX
send() {
    pf_send "$W/$1.swaks" "$W/msg/$1.eml" || true
    got=$(pf_reply "$W/$1.swaks")
    case "$got" in
    "$2"*) echo "ok $1: $got" ;;
    *) fail "$1: expected a reply starting '$2', got '$got' (milter log: $(tail -n 3 "$W/milter.log"))" ;;
    esac
    case "$2" in
    250*)
        delivered=$((delivered + 1))
        pf_wait_delivered "$delivered" 60 || fail "$1 was accepted but not delivered"
        ;;
    esac
}
# header ID NAME: the unfolded value of header NAME in the delivered message ID.
header() {
    python3 - "$PF_MBOX" "$1" "$2" <<'EOF'
import mailbox, sys
box, want, name = sys.argv[1:]
for m in mailbox.mbox(box):
    if m["X-Test-Id"] == want:
        for v in m.get_all(name) or []:
            print(" ".join(v.split()))
        break
else:
    sys.exit("no delivered message " + want)
EOF
}
expect_header() {
    v=$(header "$1" "$2") || fail "$1 was not delivered"
    printf '%s\n' "$v" | grep -q -- "$3" || fail "$1: $2 is '$v', expected it to match '$3'"
}

send harmful "550 5.7.1 Context test: this picture is not accepted here"
grep -q 'msg="milter verdict" .*qid=[0-9A-F]* .*state=flagged decision=reject .*category=weapons .*flagged_by=image+context' \
    "$W/milter.log" || fail "harmful: no flagged_by=image+context verdict line in the milter log"

send neutral "250 "
expect_header neutral X-Clipmod-Verdict '^clean; action=allow; policy="mail context test"; images=1; flagged=0; unscanned=0'
expect_header neutral X-Clipmod-Verdict 'state=clean action=allow category=weapons score=0\.[0-9]* image-score=0\.[0-9]* context-score=0\.[0-4][0-9]* context-prompt="[a-z]*" context-text="[A-Za-z ]*"'
expect_header neutral X-Clipmod-Verdict 'name="teddy.png"'
expect_header neutral X-Clipmod-Summary '^clean: 1 image scanned, none flagged'

start=$(date +%s)
send hostile "250 "
took=$(($(date +%s) - start))
kill -0 "$MPID" 2>/dev/null || fail "clipmod-milter died on the hostile mail: $(tail -n 20 "$W/milter.log")"
expect_header hostile X-Clipmod-Verdict '^clean; action=allow; policy="mail context test"; images=1; flagged=0; unscanned=0'
# Its text was scored (cut to max-context-bytes), and quoted cleaned in the header.
expect_header hostile X-Clipmod-Verdict 'state=clean action=allow category=weapons score=0\.[0-9]* image-score=0\.[0-9]* context-score=0\.[0-9]* context-prompt="[a-z]*" context-text="[ -~]*"'
# The header holds printable ASCII only, however hostile the text it was judged with.
header hostile X-Clipmod-Verdict | LC_ALL=C grep -q '[^ -~]' && fail "hostile: a non-ASCII byte in the verdict header"
grep -q 'msg="milter verdict" .*state=clean decision=accept images=1 flagged=0 unscanned=0 .*bytes=1[0-9]\{7\} ' \
    "$W/milter.log" || fail "hostile: no verdict line with images=1 unscanned=0 for a message of 10+ MB"
echo "ok hostile context: 10 MB of text, invalid UTF-8, NUL bytes, marks: scanned, delivered in ${took}s"

# The milter is still serving: the neutral mail again.
sed -e 's/^X-Test-Id: neutral/X-Test-Id: again/' "$W/msg/neutral.eml" >"$W/msg/again.eml"
send again "250 "
[ "$(pf_count_delivered)" -eq "$delivered" ] ||
    fail "$(pf_count_delivered) messages delivered, expected $delivered"
echo "delivered $delivered, refused 1"

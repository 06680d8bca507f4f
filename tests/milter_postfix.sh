#!/bin/sh
# milter_postfix.sh - clipmod-milter end to end behind a real Postfix on 127.0.0.1.
#
# A private Postfix instance (tests/milter/postfix.sh: own configuration, queue and
# mailbox in a temporary directory, SMTP on a free port of 127.0.0.1, the system
# Postfix left alone) passes every message to clipmod-milter over inet:127.0.0.1;
# messages are sent with swaks and the outcome is read from the SMTP replies, the
# delivered mailbox and the hold queue:
#   clean image                 -> delivered, with X-Clipmod-Verdict and the summary
#   forged verdict header       -> replaced by ours
#   flagged image (attached, inline quoted-printable, in a forwarded message)
#                               -> refused with the policy's own SMTP reply
#   corrupt image               -> OnFail: 451 4.7.1 (on-fail: tempfail)
#   listed sender               -> delivered, "skipped"
#   authenticated sender        -> "skipped" (through --message --auth: no SASL here)
#   (--message) zip, office document and PDF: images inside counted in the headers;
#               archives-with-images: reject and documents-with-images: quarantine
#               decide; images behind HTML references found; a nesting bomb deferred
#   on-flag hook (a script that saves its environment): run once per flagged image
#               delivered over SMTP, never for --message; it gets the category, score,
#               threshold, action, policy fingerprint and generation; a hostile file
#               name ($(...), backquotes, quotes) reaches it literally, nothing runs it
#   SIGHUP, policy now "tag"    -> the same milter process delivers it tagged
#   SIGHUP, policy "quarantine" -> Postfix's hold queue
#   SIGHUP, on-fail accept-with-header -> corrupt image delivered, marked unscanned
#   milter stopped              -> Postfix's milter_default_action: tempfail, then
#                                  accept (delivered without our header)
#
# The model is a tiny checkpoint with random weights: its scores are arbitrary but
# deterministic. As in scan_cli.sh, the sample photos are scanned once, the highest
# and lowest scoring ones are taken, and the threshold goes halfway between: the
# first must be flagged and the second not, whatever the numbers are.
#
# Needs root, postfix and swaks installed (tools/install-deps.sh); skips otherwise.
# MILTER_WRAPPER runs the milter under a tool, e.g.
#   MILTER_WRAPPER="valgrind --leak-check=full --errors-for-leak-kinds=definite
#       --error-exitcode=3" tests/milter_postfix.sh
# ("possibly lost" blocks are the stacks of libmilter's own threads, never joined.)
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/milter/postfix.sh"

MILTER="$top_builddir/plugins/milter/clipmod-milter"
COMPOSE="$top_srcdir/tests/milter/compose.py"
W="$CLIPMOD_WORK/milter_postfix"

if why=$(pf_missing); then
    skip "$why"
fi
[ -x "$MILTER" ] || skip "$MILTER is not built (make plugins/milter/clipmod-milter)"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: policies need the tokenizer"
photos=$(photos_dir) || fail "no sample photos"
model=$(checkpoint tiny-milter --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
    --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"

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

# policy FILE THRESHOLD ACTION: one category; the reject reply is the policy's own.
policy() {
    cat >"$1" <<EOF
# A test policy: one category scored against its contrast and the neutral prompts.
version: 1
name: mail test
templates: ["a photo of {}."]
neutral: [a city street, a bowl of fruit, a mountain lake]
actions:
  reject:
    smtp: "550 5.7.1 Test policy: this picture is not accepted here"
categories:
  - id: cat
    prompts: [a cat, a kitten sleeping]
    contrast: [a dog]
    threshold: $2
    action: $3
EOF
}

# ---------------------------------------------------------------------------
# Measure the photos, place the threshold between the highest and the lowest.
policy "$W/policy.yaml" 1 reject
"$CLIPMOD" scan -m "$model" -p "$W/policy.yaml" --json --quiet "$photos" >"$W/scores.jsonl" ||
    [ $? -eq 1 ] || fail "measuring scan failed"
"$REF_PYTHON" - "$W/scores.jsonl" >"$W/scores" <<'EOF' || fail "cannot read the scores"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["name"], r["categories"][0]["score"])
EOF
hi=$(sort -k2 -g "$W/scores" | tail -n 1)
lo=$(sort -k2 -g "$W/scores" | head -n 1)
hi_score=${hi#* }
hi=${hi% *}
lo_score=${lo#* }
lo=${lo% *}
threshold=$("$REF_PYTHON" -c "import sys; a, b = map(float, sys.argv[1:]); assert a - b > 0.002; \
print('%.4f' % ((a + b) / 2))" "$hi_score" "$lo_score") ||
    fail "the random model scores every photo alike ($hi_score, $lo_score)"
echo "flagged photo: $hi ($hi_score), clean photo: $lo ($lo_score), threshold $threshold"
policy "$W/policy.yaml" "$threshold" reject

# A PNG cut in half: the engine cannot decode it.
head -c 20000 "$lo" >"$W/msg/broken.png"

compose() { python3 "$COMPOSE" "$@" || fail "compose.py $*"; }
compose --id clean "$W/msg/clean.eml" "$lo"
compose --id forged --shape inline --qp --header "X-Clipmod-Verdict: clean; forged=yes" \
    --header "X-Clipmod-Summary: clean: trust me" "$W/msg/forged.eml" "$lo"
compose --id flagged "$W/msg/flagged.eml" "$lo" "$hi"
compose --id flagged-inline --shape inline --qp "$W/msg/flagged-inline.eml" "$hi"
compose --id flagged-nested --shape nested "$W/msg/flagged-nested.eml" "$hi"
# A file name a shell would run: it must reach the on-flag hook as text.
hostile='$(touch pwned) ;`touch pwned2`&'\''q'\''.png'
mkdir -p "$W/hostile"
cp "$hi" "$W/hostile/$hostile"
compose --id hostile "$W/msg/hostile.eml" "$W/hostile/$hostile"
compose --id corrupt "$W/msg/corrupt.eml" "$lo" "$W/msg/broken.png"
compose --id text --shape text "$W/msg/text.eml"
compose --id skipped --from trusted@example.org "$W/msg/skipped.eml" "$hi"
compose --id tagged "$W/msg/tagged.eml" "$hi"
compose --id held "$W/msg/held.eml" "$hi"
compose --id unscanned "$W/msg/unscanned.eml" "$W/msg/broken.png"
compose --id down-tempfail "$W/msg/down-tempfail.eml" "$lo"
compose --id down-accept "$W/msg/down-accept.eml" "$lo"

# ---------------------------------------------------------------------------
# The milter, then Postfix.
MPORT=$(pf_free_port)
SPORT=$(pf_free_port)
# The on-flag hook: its CLIPMOD_* environment, as given, into a file of its own.
mkdir -p "$W/hooks"
cat >"$W/hook.sh" <<'EOF'
#!/bin/sh
env | grep '^CLIPMOD_' | LC_ALL=C sort >"$1/hook.$$.tmp" && mv "$1/hook.$$.tmp" "$1/hook.$$.env"
EOF
chmod +x "$W/hook.sh"
milter_config() {
    cat >"$W/milter.yaml" <<EOF
# clipmod-milter for the Postfix end-to-end test.
socket: inet:$MPORT@127.0.0.1
model: $model
policy: policy.yaml
cache-dir: cache
workers: 2
log:
  format: ${LOG_FORMAT:-logfmt}
  target: stderr
  level: info
on-fail: $1
skip:
  authenticated: true
  senders: [trusted@example.org]
on-flag:
  command: [$W/hook.sh, $W/hooks]
  timeout: 10s
  max-running: 4
EOF
}
milter_config tempfail
"$MILTER" -c "$W/milter.yaml" --check >"$W/check.out" 2>&1 || fail "--check: $(cat "$W/check.out")"
# SMTP AUTH needs a SASL server this instance does not have: --message plays the
# {auth_authen} macro instead, through the same decision code.
"$MILTER" -c "$W/milter.yaml" --message "$W/msg/flagged.eml" --auth alice >"$W/auth.out" 2>&1 ||
    fail "--message --auth: $(cat "$W/auth.out")"
grep -q '^X-Clipmod-Verdict: skipped; reason="authenticated sender"' "$W/auth.out" ||
    fail "an authenticated sender was not skipped: $(cat "$W/auth.out")"
"$MILTER" -c "$W/milter.yaml" --message "$W/msg/flagged.eml" >"$W/noauth.out" 2>&1 ||
    fail "--message: $(cat "$W/noauth.out")"
grep -q '^decision: reject 550 5.7.1 Test policy' "$W/noauth.out" ||
    fail "--message without AUTH: $(cat "$W/noauth.out")"
echo "ok --message: authenticated sender skipped, the same message otherwise refused"

# message NAME FILE [CONFIG LINE]: --message on FILE, with CONFIG LINE added to the
# configuration; the output unfolded (a header's continuation lines joined) in $W/NAME.out.
message() {
    milter_config tempfail
    [ -z "${3:-}" ] || echo "$3" >>"$W/milter.yaml"
    "$MILTER" -c "$W/milter.yaml" --message "$2" >"$W/$1.raw" 2>&1 ||
        fail "--message $1: $(cat "$W/$1.raw")"
    sed -e ':a' -e 'N' -e '$!ba' -e 's/\n\t/ /g' "$W/$1.raw" >"$W/$1.out"
}
# expect NAME PATTERN: the (unfolded) --message output has a line matching PATTERN.
expect() {
    grep -q -- "$2" "$W/$1.out" || fail "$1: no line matching '$2' in: $(cat "$W/$1.out")"
}
# Images inside archives and PDFs are counted and reported, and delivered by default.
message containers "$top_srcdir/tests/milter/containers.eml"
expect containers '^decision: accept'
expect containers '^X-Clipmod-Verdict: clean; .*contained-images=7;'
expect containers 'container=2 name="photos.zip" kind=zip entries=4 images=3;'
expect containers 'container=4 name="report.pdf" kind=pdf images=2;'
expect containers 'container=5 name="cut.zip" kind=zip state=unreadable'
expect containers '^X-Clipmod-Summary: clean: no images; 7 images inside 6 archives or documents'
expect containers 'msg="milter verdict" .* containers=6 contained_images=7 unreadable=some'
message archives-reject "$top_srcdir/tests/milter/containers.eml" "archives-with-images: reject"
expect archives-reject '^decision: reject 554 5.7.1 Images inside an archive or document'
message documents-held "$top_srcdir/tests/milter/containers.eml" "documents-with-images: quarantine"
expect documents-held '^decision: quarantine (clipmod: 3 letter.docx: images inside'
# Images a client shows behind HTML character references, in XHTML, uuencoded in text.
message obfuscated "$top_srcdir/tests/milter/obfuscated.eml"
expect obfuscated 'msg="milter verdict" .* images=8 '
# A nesting bomb is refused before GMime parses it: OnFail, with the reason.
/usr/bin/python3 -c '
import sys
out = ["From: x@example.org\nMIME-Version: 1.0\n"]
out += ["Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n" % (i, i) for i in range(20000)]
sys.stdout.write("".join(out) + "Content-Type: image/png\n\nx\n")' >"$W/msg/bomb.eml"
message bomb "$W/msg/bomb.eml"
expect bomb '^decision: tempfail 451 4.7.1'
expect bomb 'msg="milter verdict" .*reason="MIME parts nested more than 16 levels deep'
echo "ok --message: archives and PDFs counted (accept, reject, quarantine), hidden images found, nesting bomb deferred"
# log: {format: json}: the verdict line is one JSON object with clipmodd's field names.
LOG_FORMAT=json message json "$W/msg/flagged.eml"
LOG_FORMAT=
grep '^{' "$W/json.out" | "$REF_PYTHON" -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
v = [l for l in lines if l["msg"] == "milter verdict"]
assert len(v) == 1, lines
v = v[0]
assert v["level"] == "info" and v["qid"] == "TEST" and v["state"] == "flagged", v
assert v["decision"] == "reject" and v["images"] == 2 and v["flagged"] == 1, v
assert v["category"] == "cat" and v["action"] == "reject" and v["policy_name"] == "mail test", v
assert len(v["policy"]) == 12 and v["generation"] == 1, v
' || fail "json log: $(cat "$W/json.out")"
echo "ok log format json: the verdict line parses, with policy and generation"
milter_config tempfail
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
held_expected=0
# send ID EXPECTED_REPLY_PREFIX [swaks options]; with held_expected=1 a 250 means held.
send() {
    id=$1
    want=$2
    shift 2
    pf_send "$W/$id.swaks" "$W/msg/$id.eml" "$@" || true
    got=$(pf_reply "$W/$id.swaks")
    case "$got" in
    "$want"*) echo "ok $id: $got" ;;
    *) fail "$id: expected a reply starting '$want', got '$got' (milter log: $(tail -n 3 "$W/milter.log"))" ;;
    esac
    case "$want$held_expected" in
    250*0)
        delivered=$((delivered + 1))
        pf_wait_delivered "$delivered" 30 || fail "$id was accepted but not delivered"
        ;;
    esac
}

# header ID NAME: the unfolded value(s) of header NAME in the delivered message ID.
header() {
    "$REF_PYTHON" - "$PF_MBOX" "$1" "$2" <<'EOF'
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
    case "$v" in
    *"$3"*) ;;
    *) fail "$1: $2 is '$v', expected it to contain '$3'" ;;
    esac
}

# ---------------------------------------------------------------------------
send clean "250 "
expect_header clean X-Clipmod-Verdict 'clean; action=allow; policy="mail test"; images=1; flagged=0'
expect_header clean X-Clipmod-Verdict "state=clean action=allow category=cat score="
expect_header clean X-Clipmod-Summary "clean: 1 image scanned, none flagged"
# Every verdict names the exact policy: its fingerprint (SHA-256, 64 hex) and generation.
fp1=$(header clean X-Clipmod-Verdict | grep -o 'fingerprint=[0-9a-f]\{64\}; generation=1;') ||
    fail "clean: no fingerprint and generation 1 in '$(header clean X-Clipmod-Verdict)'"
fp1=${fp1%%;*}
# Its log line names it too (the first 12 hex digits, as clipmodd's lines).
fp1_12=$(echo "${fp1#fingerprint=}" | cut -c1-12)
grep -q "msg=\"milter verdict\" policy=$fp1_12 generation=1 qid=[0-9A-F]* from=\"<sender@example.org>\" state=clean decision=accept images=1 flagged=0 unscanned=0 .*policy_name=\"mail test\"" \
    "$W/milter.log" || fail "the milter's verdict log line lacks policy=$fp1_12 generation=1"
# Every line after the load names the policy, start-up lines included.
grep -q "msg=listening policy=$fp1_12 generation=1 socket=" "$W/milter.log" ||
    fail "the listening line does not name the policy"

send forged "250 "
[ "$(header forged X-Clipmod-Verdict | wc -l)" -eq 1 ] || fail "forged: more than one verdict header"
expect_header forged X-Clipmod-Verdict 'clean; action=allow; policy="mail test"; images=1'
header forged X-Clipmod-Verdict | grep -q forged && fail "forged: the sender's header survived"
[ "$(header forged X-Clipmod-Summary)" = "clean: 1 image scanned, none flagged" ] ||
    fail "forged: summary is '$(header forged X-Clipmod-Summary)'"

send flagged "550 5.7.1 Test policy: this picture is not accepted here"
send flagged-inline "550 5.7.1 Test policy: this picture is not accepted here"
send flagged-nested "550 5.7.1 Test policy: this picture is not accepted here"
send hostile "550 5.7.1 Test policy: this picture is not accepted here"

# on-flag: one hook per flagged image sent over SMTP (flagged, inline, nested, hostile);
# none for the clean images, none for the --message runs above (which flagged some).
hooks() { find "$W/hooks" -name '*.env' | wc -l; }
i=0
while [ "$(hooks)" -lt 4 ] && [ $i -lt 100 ]; do
    i=$((i + 1))
    sleep 0.1
done
sleep 0.5 # a hook that should not have run would have written by now
[ "$(hooks)" -eq 4 ] || fail "on-flag: $(hooks) hooks ran, expected 4 (one per flagged image)"
env_file=$(grep -l -F -x "CLIPMOD_FILENAME=$hostile" "$W/hooks"/*.env) ||
    fail "on-flag: no hook saw the file name '$hostile' literally: $(cat "$W/hooks"/*.env)"
for want in CLIPMOD_VERDICT=flagged CLIPMOD_CATEGORY=cat CLIPMOD_ACTION=reject \
    CLIPMOD_SOURCE=milter "CLIPMOD_POLICY=${fp1#fingerprint=}" CLIPMOD_GENERATION=1 \
    "CLIPMOD_THRESHOLD=$threshold" CLIPMOD_FLAGGED_BY=image; do
    grep -q -F -x "$want" "$env_file" || fail "on-flag: no $want in $(cat "$env_file")"
done
score=$(sed -n 's/^CLIPMOD_SCORE=//p' "$env_file")
"$REF_PYTHON" -c 'import sys; assert abs(float(sys.argv[1]) - float(sys.argv[2])) < 1e-3' \
    "$score" "$hi_score" || fail "on-flag: CLIPMOD_SCORE=$score, the photo scores $hi_score"
for f in pwned pwned2; do
    for d in . "$W" "$W/hooks" "$W/hostile" /tmp; do
        [ ! -e "$d/$f" ] || fail "on-flag: the file name was run by a shell ($d/$f exists)"
    done
done
echo "ok on-flag: 4 hooks for 4 flagged images; category, score, threshold, policy, generation; '$hostile' literal"
send corrupt "451 4.7.1 Images in this message could not be scanned"
send text "250 "
expect_header text X-Clipmod-Verdict "clean; action=allow; policy=\"mail test\"; images=0"
PF_FROM=trusted@example.org
send skipped "250 "
PF_FROM=sender@example.org
expect_header skipped X-Clipmod-Verdict 'skipped; reason="listed sender"'
expect_header skipped X-Clipmod-Verdict "$fp1; generation=1"
grep -q "qid=[0-9A-F]\{6,\} from=\"<sender@example.org>\" state=unscanned decision=tempfail images=2 flagged=0 unscanned=1" \
    "$W/milter.log" || fail "the milter log lacks the queue id and verdict line for the corrupt image"

# ---------------------------------------------------------------------------
# Reloads: same process, new engine; messages after the signal use it.
reload() {
    n=$(grep -c 'msg="policy reloaded"' "$W/milter.log" || true)
    kill -HUP "$MPID"
    i=0
    until [ "$(grep -c 'msg="policy reloaded"' "$W/milter.log")" -gt "$n" ]; do
        i=$((i + 1))
        [ $i -lt 300 ] || fail "no reload after SIGHUP: $(tail -n 5 "$W/milter.log")"
        sleep 0.1
    done
    kill -0 "$MPID" || fail "clipmod-milter died on SIGHUP"
}
policy "$W/policy.yaml" "$threshold" tag
reload
send tagged "250 "
expect_header tagged X-Clipmod-Verdict "flagged; action=tag"
expect_header tagged X-Clipmod-Summary "flagged (tag):"
# The reloaded policy (another file content) has another fingerprint and generation 2.
fp2=$(header tagged X-Clipmod-Verdict | grep -o 'fingerprint=[0-9a-f]\{64\}; generation=2;') ||
    fail "tagged: no fingerprint and generation 2 in '$(header tagged X-Clipmod-Verdict)'"
[ "${fp2%%;*}" != "$fp1" ] || fail "tagged: the reloaded policy kept the fingerprint $fp1"
fp2_12=$(echo "${fp2#fingerprint=}" | cut -c1-12)
grep -q "msg=\"policy reloaded\" policy=$fp2_12 generation=2 " "$W/milter.log" ||
    fail "the reload line does not name the new policy ($fp2_12, generation 2)"

policy "$W/policy.yaml" "$threshold" quarantine
reload
held_expected=1
send held "250 "
held_expected=0
i=0
while [ "$(find "$PF/queue/hold" -type f 2>/dev/null | wc -l)" -lt 1 ] && [ $i -lt 50 ]; do
    i=$((i + 1))
    sleep 0.1
done
sleep 0.5 # were it wrongly released, the delivery would happen by now
held=$(find "$PF/queue/hold" -type f 2>/dev/null | wc -l)
[ "$held" -eq 1 ] || fail "held: $held messages in Postfix's hold queue, expected 1"
[ "$(pf_count_delivered)" -eq "$delivered" ] || fail "held: the quarantined message was delivered"
grep -q "decision=quarantine" "$W/milter.log" || fail "held: no quarantine decision logged"
echo "ok held: in Postfix's hold queue"

milter_config accept-with-header
reload
send unscanned "250 "
expect_header unscanned X-Clipmod-Verdict "unscanned; policy=\"mail test\"; images=1; flagged=0; unscanned=1"
expect_header unscanned X-Clipmod-Verdict "reason=decode-error"
expect_header unscanned X-Clipmod-Summary "unscanned: 1 image not scanned"

# ---------------------------------------------------------------------------
# The milter stops: Postfix applies milter_default_action.
kill -TERM "$MPID"
wait "$MPID" || fail "clipmod-milter exited with status $? on SIGTERM"
MPID=
grep -q "stopped" "$W/milter.log" || fail "no orderly stop logged"
send down-tempfail "451 4.7.1 Service unavailable"
postconf -c "$PF_CONF" milter_default_action=accept
pf_reload
sleep 1
send down-accept "250 "
[ -z "$(header down-accept X-Clipmod-Verdict)" ] || fail "down-accept: a verdict without a milter?"

[ "$(pf_count_delivered)" -eq "$delivered" ] ||
    fail "$(pf_count_delivered) messages delivered, expected $delivered"
echo "delivered $delivered, held 1, refused 3, deferred 2, milter down: 1 deferred, 1 accepted"

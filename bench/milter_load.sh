#!/bin/sh
# milter_load.sh - clipmod-milter under load behind a real Postfix: messages/s and no
# message lost. A benchmark, run by hand, never part of `make check`.
#
# Usage: bench/milter_load.sh [--messages N] [--concurrency C] [--shape tiny|b32]
#                             [--model DIR] [--workers W] [--hup-every S] [--keep]
#   --messages N     messages to send (default 200, at least 200 for the report)
#   --concurrency C  SMTP sessions at once, each one swaks process (default 20)
#   --shape S        the random checkpoint's shape: tiny (default; times the mail
#                    path: SMTP, Postfix, MIME, the milter) or b32 (ViT-B/32 sized:
#                    times real inference, about 600 MB written once to the work dir)
#   --model DIR      use this model directory instead (a trained model, the demo one)
#   --workers W      clipmod-milter's scans at once (default: one per CPU)
#   --hup-every S    send the milter SIGHUP every S seconds while messages flow (a
#                    policy reload with messages in flight; default 2, 0: never)
#   --keep           keep the Postfix instance directory
#
# The same private Postfix as tests/milter_postfix.sh (tests/milter/postfix.sh) on
# 127.0.0.1, clipmod-milter on inet:127.0.0.1. Messages cycle through four kinds, each
# with a known outcome: a clean photo (delivered), two photos of which one is flagged
# (refused, 550), a corrupt image next to a clean one (OnFail, 451) and a message
# without images (delivered). Every swaks reply is classified; the mailbox is counted
# once Postfix's queue is empty. The run fails unless
#     delivered + rejected + tempfailed == sent
# and each kind got exactly its expected outcome.
#
# Needs root, postfix, swaks and a built clipmod-milter, like the end-to-end test.
# Work directory: $CLIPMOD_WORK (default <builddir>/tests/work), under milter_load/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${top_srcdir:=$(cd "$here/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/milter/postfix.sh"

N=200
C=20
SHAPE=tiny
MODEL=
WORKERS=0
HUP=2
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    --messages) N=$2; shift 2 ;;
    --concurrency) C=$2; shift 2 ;;
    --shape) SHAPE=$2; shift 2 ;;
    --model) MODEL=$2; SHAPE=$(basename "$2"); shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --hup-every) HUP=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "milter_load.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

MILTER="$top_builddir/plugins/milter/clipmod-milter"
COMPOSE="$top_srcdir/tests/milter/compose.py"
W="$CLIPMOD_WORK/milter_load"
if why=$(pf_missing); then
    skip "$why"
fi
[ -x "$MILTER" ] || skip "$MILTER is not built"
photos=$(photos_dir) || fail "no sample photos"
if [ -n "$MODEL" ]; then
    model=$MODEL
else
    need_reference
    have_bpe || skip "$CLIPMOD_BPE_GZ is absent"
    model=$(checkpoint "load-$SHAPE" --shape "$SHAPE" --layout hf --dtype f32 --act quick_gelu \
        --seed 5 --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
fi

rm -rf "$W"
mkdir -p "$W/msg" "$W/out"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME LC_ALL=C
PF=$(mktemp -d /tmp/clipmod-postfix-load.XXXXXX)
MPID=
cleanup() {
    pf_stop
    if [ -n "$MPID" ] && kill -0 "$MPID" 2>/dev/null; then
        kill "$MPID" 2>/dev/null || true
        wait "$MPID" 2>/dev/null || true
    fi
    [ -f "$PF/maillog" ] && cp "$PF/maillog" "$W/postfix.log"
    [ "$KEEP" -eq 1 ] && echo "postfix instance kept in $PF" || rm -rf "$PF"
}
trap cleanup EXIT
trap 'exit 99' INT TERM

# The policy: threshold halfway between the highest and lowest scoring photos.
policy() {
    cat >"$W/policy.yaml" <<EOF
version: 1
name: load test
templates: ["a photo of {}."]
neutral: [a city street, a bowl of fruit, a mountain lake]
categories:
  - id: cat
    prompts: [a cat, a kitten sleeping]
    contrast: [a dog]
    threshold: $1
    action: reject
EOF
}
policy 1
"$CLIPMOD" scan -m "$model" -p "$W/policy.yaml" --json --quiet "$photos" >"$W/scores.jsonl" || true
"$REF_PYTHON" - "$W/scores.jsonl" >"$W/scores" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["name"], r["categories"][0]["score"])
EOF
hi=$(sort -k2 -g "$W/scores" | tail -n 1)
lo=$(sort -k2 -g "$W/scores" | head -n 1)
threshold=$("$REF_PYTHON" -c "import sys; print('%.4f' % ((float(sys.argv[1]) + float(sys.argv[2])) / 2))" \
    "${hi#* }" "${lo#* }")
hi=${hi% *}
lo=${lo% *}
policy "$threshold"
head -c 20000 "$lo" >"$W/msg/broken.png"
python3 "$COMPOSE" --id clean "$W/msg/clean.eml" "$lo"
python3 "$COMPOSE" --id flagged --shape inline "$W/msg/flagged.eml" "$lo" "$hi"
python3 "$COMPOSE" --id corrupt "$W/msg/corrupt.eml" "$lo" "$W/msg/broken.png"
python3 "$COMPOSE" --id text --shape text "$W/msg/text.eml"

MPORT=$(pf_free_port)
SPORT=$(pf_free_port)
cat >"$W/milter.yaml" <<EOF
socket: inet:$MPORT@127.0.0.1
model: $model
policy: policy.yaml
cache-dir: cache
workers: $WORKERS
log: stderr
EOF
"$MILTER" -c "$W/milter.yaml" >"$W/milter.log" 2>&1 &
MPID=$!
i=0
until grep -q "msg=listening" "$W/milter.log"; do
    kill -0 "$MPID" 2>/dev/null || fail "clipmod-milter exited: $(cat "$W/milter.log")"
    i=$((i + 1))
    [ $i -lt 600 ] || fail "clipmod-milter did not start"
    sleep 0.1
done
pf_setup "$PF" "$SPORT" "inet:127.0.0.1:$MPORT" tempfail
pf_start || fail "postfix did not start"

# One sender per message, run C at a time by xargs: kind, reply class, seconds.
cat >"$W/send_one.sh" <<EOF
#!/bin/sh
i=\$1
case \$((i % 4)) in 0) k=clean ;; 1) k=flagged ;; 2) k=corrupt ;; *) k=text ;; esac
t0=\$(date +%s.%N)
swaks --server 127.0.0.1 --port $SPORT --helo load.example --from sender@example.org \\
    --to user@clipmod.test --data "$W/msg/\$k.eml" --timeout 300 >"$W/out/\$i.swaks" 2>&1
t1=\$(date +%s.%N)
r=\$(sed -n 's/^<[-*~]\\{1,2\\} *\\([2-5][0-9][0-9]\\)[ -].*\$/\\1/p' "$W/out/\$i.swaks" | grep -v '^221' | tail -n 1)
echo "\$i \$k \${r:-none} \$t0 \$t1" >"$W/out/\$i.result"
EOF
chmod +x "$W/send_one.sh"

echo "sending $N messages, $C at a time, model $SHAPE, milter workers $([ "$WORKERS" = 0 ] && echo "one per CPU" || echo "$WORKERS")"
start=$(date +%s.%N)
HPID=
if [ "$HUP" != 0 ]; then
    (while sleep "$HUP"; do kill -HUP "$MPID" 2>/dev/null || exit 0; done) &
    HPID=$!
fi
seq 1 "$N" | xargs -P "$C" -n 1 "$W/send_one.sh"
smtp_done=$(date +%s.%N)
[ -n "$HPID" ] && kill "$HPID" 2>/dev/null
kill -0 "$MPID" 2>/dev/null || fail "clipmod-milter died during the run: $(tail -n 5 "$W/milter.log")"
reloads=$(grep -c "msg=\"policy reloaded\"" "$W/milter.log" || true)
echo "policy reloads (SIGHUP) during the run: $reloads"
cat "$W"/out/*.result >"$W/results"

sent=$(wc -l <"$W/results")
accepted=$(awk '$3 ~ /^2/' "$W/results" | wc -l)
rejected=$(awk '$3 ~ /^5/' "$W/results" | wc -l)
tempfailed=$(awk '$3 ~ /^4/' "$W/results" | wc -l)
# Accepted mail is delivered once Postfix's queue drains.
pf_wait_delivered "$accepted" 300 || true
drained=$(date +%s.%N)
delivered=$(pf_count_delivered)
left=$(find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/hold" \
    -type f 2>/dev/null | wc -l)

"$REF_PYTHON" - "$W/results" "$start" "$smtp_done" "$drained" "$N" "$C" "$sent" "$delivered" \
    "$rejected" "$tempfailed" "$accepted" "$left" "$SHAPE" "$W/milter.log" <<'EOF'
import re, sys
(path, start, smtp_done, drained, n, c, sent, delivered, rejected, tempfailed, accepted, left,
 shape, milter_log) = sys.argv[1:]
start, smtp_done, drained = float(start), float(smtp_done), float(drained)
n, c, sent, delivered, rejected, tempfailed, accepted, left = map(
    int, (n, c, sent, delivered, rejected, tempfailed, accepted, left))
rows = [l.split() for l in open(path)]
lat = sorted(float(r[4]) - float(r[3]) for r in rows)
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
expect = {"clean": "2", "text": "2", "flagged": "5", "corrupt": "4"}
wrong = [r for r in rows if r[2][:1] != expect[r[1]]]
print(f"sent {sent}: delivered {delivered}, rejected {rejected}, tempfailed {tempfailed}"
      f" (accepted {accepted}, left in queue {left})")
print(f"SMTP phase {smtp_done - start:.2f} s: {sent / (smtp_done - start):.1f} messages/s at"
      f" concurrency {c}; with delivery {sent / (drained - start):.1f} messages/s")
print(f"per message (swaks start to QUIT): median {pct(0.5) * 1000:.0f} ms, p95 {pct(0.95) * 1000:.0f} ms,"
      f" max {lat[-1] * 1000:.0f} ms; model {shape}")
# The milter's own time per message (MIME walk, queueing for a worker, scan), from its log.
ms = sorted(float(m) for m in re.findall(r" ms=([0-9.]+)$", open(milter_log).read(), re.M))
if ms:
    mp = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
    print(f"in the milter: median {mp(0.5):.0f} ms, p95 {mp(0.95):.0f} ms, max {ms[-1]:.0f} ms"
          f" over {len(ms)} messages")
ok = sent == n and delivered + rejected + tempfailed == sent and accepted == delivered and not wrong and not left
for r in wrong[:10]:
    print("unexpected outcome:", " ".join(r[:3]))
print("OK: nothing lost" if ok else "FAIL: delivered + rejected + tempfailed != sent, or wrong outcomes")
sys.exit(0 if ok else 1)
EOF

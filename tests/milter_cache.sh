#!/bin/sh
# milter_cache.sh - clipmod-milter's verdict cache (issue 17; clipmod-milter(8),
# VERDICT CACHE) behind a real Postfix on 127.0.0.1, with a real redis-server this
# test starts on a loopback port in its own directory.
#
# The demo model; a policy that includes policies/demo.yaml and rejects weapons. One
# mail (water-pistol.png shown by an HTML body, the same Subject, words and file name
# each time, so the same context) is sent 100 times, a session each, by Python's
# smtplib (swaks, a process per mail, would take most of the minute):
#   milter A (cache: memory 16M + redis)
#     100 x the mail       -> 100 x 550 with the policy's reply; the log: one message
#                             with cache_misses=1, 99 with cache_hits=1, the same state,
#                             decision, category and score on all 100; SIGUSR1: hits=99
#                             misses=1 stores=1 (scanned once)
#     policy edited (action tag) + SIGHUP
#                          -> the next mail is scanned again (cache_misses=1: the policy
#                             fingerprint is in the key), delivered flagged/tag; the one
#                             after it is a hit and its verdict header says cached=yes
#   milter B (cache: redis only, no memory tier), Postfix now pointing at B
#     the mail             -> a Redis hit (A scanned it): cache_hits=1, redis_hits=1
#     redis-server stopped with SIGSTOP (a Redis that hangs), then killed (down):
#       the mail and a clean one (teddy-bear.png) each time
#                          -> delivered with their right verdicts (flagged/tag, clean),
#                             never 451; redis_errors counted; only slower
#
# Needs root, postfix, swaks (tests/milter/postfix.sh), python3 and redis-server;
# skips otherwise. MILTER_WRAPPER runs the milters under a tool, as in milter_postfix.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/milter/postfix.sh"

MILTER="$top_builddir/plugins/milter/clipmod-milter"
MAIL="$top_srcdir/tests/milter/context_mail.py"
MODEL="$top_srcdir/models/demo"
PISTOL="$top_srcdir/tests/data/demo-scenes/water-pistol.png"
TEDDY="$top_srcdir/tests/data/demo-scenes/teddy-bear.png"
W="$CLIPMOD_WORK/milter_cache"
N=100
PY=/usr/bin/python3
# postfix.sh runs python3 too: Debian's, never a slower wrapper found first in PATH.
PATH=/usr/bin:$PATH

if why=$(pf_missing); then
    skip "$why"
fi
[ -x "$MILTER" ] || skip "$MILTER is not built (make plugins/milter/clipmod-milter)"
[ -r "$MODEL/model.safetensors" ] || skip "the demo model is absent ($MODEL)"
command -v redis-server >/dev/null 2>&1 ||
    skip "redis-server is not installed (apt-get install redis-server; tools/install-deps.sh)"
command -v redis-cli >/dev/null 2>&1 || skip "redis-cli is not installed (apt-get install redis-tools)"

rm -rf "$W"
mkdir -p "$W/msg" "$W/redis"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
LC_ALL=C
export LC_ALL
PF=$(mktemp -d /tmp/clipmod-postfix.XXXXXX)
APID=
BPID=
RPID=

cleanup() {
    pf_stop
    # All told at once: each milter takes a few seconds to stop (libmilter's loop).
    for p in $APID $BPID $RPID; do
        kill -CONT "$p" 2>/dev/null || true
        kill "$p" 2>/dev/null || true
    done
    for p in $APID $BPID $RPID; do
        wait "$p" 2>/dev/null || true
    done
    [ -f "$PF/maillog" ] && cp "$PF/maillog" "$W/postfix.log"
    rm -rf "$PF"
}
trap cleanup EXIT
trap 'exit 99' INT TERM

# ---- redis-server on a free loopback port, in $W/redis ----------------------------
RPORT=$(pf_free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$W/redis" --save '' --appendonly no \
    --daemonize no >"$W/redis.log" 2>&1 &
RPID=$!
i=0
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do
    kill -0 "$RPID" 2>/dev/null || fail "redis-server exited: $(tail -n 5 "$W/redis.log")"
    [ $i -lt 100 ] || fail "redis-server is not answering after 10 s"
    sleep 0.1
    i=$((i + 1))
done

# policy ACTION: the demo policy, weapons with ACTION and a reply of its own.
policy() {
    cat >"$W/policy.yaml" <<EOF
# The demo policy; weapons $1 (milter_cache.sh).
version: 1
name: mail cache test
include: $top_srcdir/policies/demo.yaml
actions:
  reject:
    smtp: "550 5.7.1 Cache test: this picture is not accepted here"
categories:
  - id: weapons
    action: $1
EOF
}
policy reject

# milter_config NAME PORT MEMORY: a milter sharing the Redis, with MEMORY of LRU.
milter_config() {
    cat >"$W/$1.yaml" <<EOF
# clipmod-milter $1 for the verdict cache test.
socket: inet:$2@127.0.0.1
model: $MODEL
policy: policy.yaml
cache-dir: cache
workers: 2
log:
  format: logfmt
  target: stderr
  level: info
on-fail: tempfail
cache:
  memory: $3
  redis: "redis://127.0.0.1:$RPORT/0"
  ttl: 1h
  redis-timeout: 50ms
EOF
}
# start_milter NAME: in the background, logging to $W/NAME.log; its pid in $PID.
start_milter() {
    ${MILTER_WRAPPER:-} "$MILTER" -c "$W/$1.yaml" >"$W/$1.log" 2>&1 &
    PID=$!
    i=0
    until grep -q "msg=listening" "$W/$1.log" 2>/dev/null; do
        kill -0 "$PID" 2>/dev/null || fail "clipmod-milter $1 exited: $(cat "$W/$1.log")"
        i=$((i + 1))
        [ $i -lt 600 ] || fail "clipmod-milter $1 did not start listening"
        sleep 0.1
    done
}
# wait_log NAME PATTERN [COUNT]: until PATTERN is in $W/NAME.log COUNT times (60 s at most).
wait_log() {
    i=0
    while [ "$(grep -c -- "$2" "$W/$1.log" || true)" -lt "${3:-1}" ]; do
        i=$((i + 1))
        [ $i -lt 600 ] || fail "$1: no line matching '$2' after 60 s: $(tail -n 5 "$W/$1.log")"
        sleep 0.1
    done
}
# counters NAME: SIGUSR1, then the new "verdict cache counters" line in $W/NAME.counters.
counters() {
    pid=$APID
    [ "$1" = a ] || pid=$BPID
    before=$(grep -c 'msg="verdict cache counters"' "$W/$1.log" || true)
    kill -USR1 "$pid"
    wait_log "$1" 'msg="verdict cache counters" .*why=sigusr1' $((before + 1))
    grep 'msg="verdict cache counters"' "$W/$1.log" | tail -n 1 >"$W/$1.counters"
}
# counter NAME FIELD: a number of the last counters line.
counter() {
    sed -n "s/.* $2=\([0-9]*\).*/\1/p" "$W/$1.counters"
}

MPORT_A=$(pf_free_port)
MPORT_B=$(pf_free_port)
SPORT_A=$(pf_free_port)
SPORT_B=$(pf_free_port)
milter_config a "$MPORT_A" 16M
milter_config b "$MPORT_B" 0
start_milter a
APID=$PID
PF_FROM=sender@example.org
PF_TO=user@clipmod.test
# Two SMTP ports: SPORT_A's mail goes through milter a, SPORT_B's through milter b
# (master.cf's -o), so switching milters needs no Postfix restart.
pf_setup "$PF" "$SPORT_A" "inet:127.0.0.1:$MPORT_A" tempfail
echo "127.0.0.1:$SPORT_B inet n - n - - smtpd -o smtpd_milters=inet:127.0.0.1:$MPORT_B" \
    >>"$PF_CONF/master.cf"
pf_start || fail "postfix did not start: $(cat "$PF/maillog")"
SPORT=$SPORT_A
echo "postfix on 127.0.0.1:$SPORT_A (milter a, pid $APID) and :$SPORT_B (milter b), redis on $RPORT"

# The mails: the same words, Subject and file name (so the same context) each time.
"$PY" "$MAIL" "$W/msg/pistol.eml" "$PISTOL" --id pistol --subject "Campaign" \
    --filename offer.png --html "Our summer offer" --alt "summer offer" || fail "context_mail.py"
"$PY" "$MAIL" "$W/msg/teddy.eml" "$TEDDY" --id teddy --subject "Campaign" \
    --filename offer.png --html "Our summer offer" --alt "summer offer" || fail "context_mail.py"

# send MESSAGE COUNT PREFIX: COUNT copies, each with X-Test-Id PREFIX-i, each in an
# SMTP session of its own (as a campaign's copies come; Postfix slows down and then
# drops a client after 10 and 20 refused messages in one session); "i code text" per
# copy in $W/PREFIX.replies.
cat >"$W/send.py" <<'EOF'
import smtplib, sys
port, path, count, prefix, out = sys.argv[1:]
msg = open(path, "rb").read()
head, sep, body = msg.partition(b"\r\n\r\n")
with open(out, "w") as f:
    for i in range(int(count)):
        test_id = ("%s-%d" % (prefix, i)).encode()
        h = b"\r\n".join(
            b"X-Test-Id: " + test_id if l.startswith(b"X-Test-Id:") else l for l in head.split(b"\r\n")
        )
        s = smtplib.SMTP("127.0.0.1", int(port), "client.example", timeout=120)
        s.mail("sender@example.org")
        s.rcpt("user@clipmod.test")
        try:
            code, text = s.data(h + sep + body)
        except smtplib.SMTPResponseException as e:
            code, text = e.smtp_code, e.smtp_error
        s.quit()
        f.write("%d %d %s\n" % (i, code, text.decode(errors="replace").replace("\n", " ")))
EOF
send() {
    "$PY" "$W/send.py" "$SPORT" "$W/msg/$1.eml" "$2" "$3" "$W/$3.replies" >"$W/$3.send.err" 2>&1 ||
        fail "sending $3: $(tail -n 5 "$W/$3.send.err")"
    [ "$(wc -l <"$W/$3.replies")" -eq "$2" ] || fail "$3: $(wc -l <"$W/$3.replies") replies, not $2"
}
# replies PREFIX WANT: every reply of PREFIX is WANT.
replies() {
    bad=$(grep -v "^[0-9]* $2" "$W/$1.replies" | head -n 3) || true
    [ -z "$bad" ] || fail "$1: replies other than '$2': $bad"
}
# verdicts NAME: the "milter verdict" lines of milter NAME, one per message.
verdicts() {
    grep 'msg="milter verdict"' "$W/$1.log"
}

# ---------------------------------------------------------------------------
# 1. The same image 100 times: scanned once.
t0=$(date +%s.%N)
send pistol "$N" campaign
t1=$(date +%s.%N)
replies campaign "550 5.7.1 Cache test: this picture is not accepted here"
wait_log a 'msg="milter verdict"' "$N"
[ "$(verdicts a | wc -l)" -eq "$N" ] || fail "$(verdicts a | wc -l) verdict lines, not $N"
[ "$(verdicts a | grep -c ' cache_hits=0 cache_misses=1 ')" -eq 1 ] ||
    fail "not exactly one message scanned: $(verdicts a | grep -v ' cache_hits=1 ' | head -n 3)"
[ "$(verdicts a | grep -c ' cache_hits=1 cache_misses=0 ')" -eq $((N - 1)) ] ||
    fail "not $((N - 1)) messages answered by the cache"
# The same verdict for all: state, decision, category, score.
kinds=$(verdicts a | sed 's/.* \(state=[a-z]* decision=[a-z]*\) .* \(category=[a-z]* score=[0-9.]*\) .*/\1 \2/' |
    sort | uniq -c)
[ "$(printf '%s\n' "$kinds" | wc -l)" -eq 1 ] || fail "the verdicts differ: $kinds"
printf '%s\n' "$kinds" | grep -q "$N state=flagged decision=reject category=weapons score=0\.[0-9]*$" ||
    fail "unexpected verdicts: $kinds"
counters a
[ "$(counter a hits)" -eq $((N - 1)) ] && [ "$(counter a misses)" -eq 1 ] &&
    [ "$(counter a stores)" -eq 1 ] && [ "$(counter a memory_hits)" -eq $((N - 1)) ] ||
    fail "counters after $N copies: $(cat "$W/a.counters")"
[ "$(redis-cli -p "$RPORT" --scan --pattern 'clipmod:verdict:*' | wc -l)" -eq 1 ] ||
    fail "not one verdict in Redis: $(redis-cli -p "$RPORT" --scan --pattern '*')"
scan_ms=$(verdicts a | grep ' cache_misses=1 ' | sed 's/.* ms=\([0-9.]*\).*/\1/')
hit_ms=$(verdicts a | grep ' cache_hits=1 ' | sed 's/.* ms=\([0-9.]*\).*/\1/' | sort -n |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "ok $N copies in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s: 550 each," \
    "scanned once ($scan_ms ms), $((N - 1)) hits (median $hit_ms ms);" \
    "$(sed 's/.* \(hits=.*\)/\1/' "$W/a.counters")"

# ---------------------------------------------------------------------------
# 2. A policy edit and reload change the key: the next mail is scanned again.
policy tag
kill -HUP "$APID"
wait_log a 'msg="policy reloaded"'
grep -q 'msg="policy reloaded" .*generation=2' "$W/a.log" || fail "no generation 2: $(tail -n 3 "$W/a.log")"
send pistol 2 reloaded
replies reloaded 250
verdicts a | tail -n 2 | head -n 1 | grep -q 'state=flagged decision=accept .* action=tag .* cache_hits=0 cache_misses=1 ' ||
    fail "after the reload the mail was not scanned again: $(verdicts a | tail -n 2)"
verdicts a | tail -n 1 | grep -q 'state=flagged decision=accept .* cache_hits=1 cache_misses=0 ' ||
    fail "the mail after it was not a hit: $(verdicts a | tail -n 1)"
pf_wait_delivered 2 60 || fail "the 2 tagged mails were not delivered"
# header ID: the unfolded X-Clipmod-Verdict of the delivered message ID.
header() {
    "$PY" - "$PF_MBOX" "$1" <<'EOF'
import mailbox, sys
box, want = sys.argv[1:]
for m in mailbox.mbox(box):
    if m["X-Test-Id"] == want:
        print(" ".join(m["X-Clipmod-Verdict"].split()))
        break
else:
    sys.exit("no delivered message " + want)
EOF
}
h0=$(header reloaded-0) || fail "reloaded-0 was not delivered"
h1=$(header reloaded-1) || fail "reloaded-1 was not delivered"
case "$h0" in
"flagged; action=tag; "*generation=2*) ;;
*) fail "reloaded-0: X-Clipmod-Verdict is '$h0'" ;;
esac
case "$h0" in *cached=yes*) fail "reloaded-0 was scanned, its header says cached: $h0" ;; esac
case "$h1" in *"state=flagged action=tag category=weapons"*"cached=yes") ;; *) fail "reloaded-1: '$h1'" ;; esac
[ "$(printf '%s\n' "$h1" | sed 's/ cached=yes$//')" = "$h0" ] ||
    fail "the cached verdict's header differs from the scanned one: '$h0' vs '$h1'"
echo "ok reload: the next mail was scanned again (new key), the one after it cached=yes"

# ---------------------------------------------------------------------------
# 3. Milter B shares the Redis: the mail A scanned is a Redis hit there.
start_milter b
BPID=$PID
SPORT=$SPORT_B
send pistol 1 shared
replies shared 250
wait_log b 'msg="milter verdict"'
verdicts b | grep -q 'state=flagged decision=accept .* cache_hits=1 cache_misses=0 ' ||
    fail "milter b did not get A's verdict from Redis: $(verdicts b)"
counters b
[ "$(counter b redis_hits)" -eq 1 ] && [ "$(counter b misses)" -eq 0 ] ||
    fail "milter b's counters: $(cat "$W/b.counters")"
echo "ok milter b (no memory tier) answered from Redis what milter a scanned"

# 4. Redis hangs (SIGSTOP), then is gone: scanned, right verdicts, never 451.
# expect_b PREFIX STATE: B's last verdict line is STATE, accepted, and was scanned.
expect_b() {
    verdicts b | tail -n 1 | grep -q "state=$2 decision=accept .* cache_hits=0 cache_misses=1 " ||
        fail "$1: $(verdicts b | tail -n 1)"
}
kill -STOP "$RPID"
n_b=1
for what in hung down; do
    for m in pistol teddy; do
        send "$m" 1 "$what-$m"
        replies "$what-$m" 250
        n_b=$((n_b + 1))
        wait_log b 'msg="milter verdict"' "$n_b"
        case $m in pistol) expect_b "$what-$m" flagged ;; teddy) expect_b "$what-$m" clean ;; esac
    done
    if [ "$what" = hung ]; then
        kill -CONT "$RPID"
        kill "$RPID"
        wait "$RPID" 2>/dev/null || true
        RPID=
    fi
done
counters b
[ "$(counter b redis_errors)" -ge 1 ] || fail "no Redis error counted: $(cat "$W/b.counters")"
kill -0 "$BPID" 2>/dev/null || fail "milter b died"
echo "ok Redis hung then down: 4 mails delivered with their verdicts," \
    "$(verdicts b | tail -n 4 | sed 's/.* ms=\([0-9.]*\).*/\1/' | tr '\n' ' ')ms;" \
    "redis_errors=$(counter b redis_errors)"

#!/bin/sh
# rspamd_module.sh - contrib/rspamd/clipmod.lua end to end with Debian's rspamd on
# loopback: clipmodd with the test model and policy of tests/daemon_lib.sh (one
# photo flagged as category "cat", one clean), a private rspamd (its own config,
# pid, db and log in the work dir; only a normal worker; no redis, no DNS lists: no
# stock rules are loaded, only the module) and rspamc on three messages:
#   (a) the flagged photo attached -> CLIPMOD_CAT with its configured score (7.5)
#       and the category/score/threshold in its options;
#   (b) the clean photo attached   -> no CLIPMOD_ category symbol;
#   (c) clipmodd stopped           -> CLIPMOD_FAIL, and rspamd still answers.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

RSPAMD=$(command -v rspamd) || skip "rspamd is not installed (tools/install-deps.sh installs it)"
RSPAMC=$(command -v rspamc) || skip "rspamc is not installed (it comes with rspamd)"

W="$CLIPMOD_WORK/rspamd_module"
rm -rf "$W"
mkdir -p "$W/rspamd/db" "$W/rspamd/tmp"
setup_model rspamd
measure_photos "$W"
write_policy "$W/p.yaml" "$THRESHOLD" flag

cat >"$W/main.yaml" <<CONF
model: $MODEL
policy: $W/p.yaml
http:
  listen: 127.0.0.1:0
  max-body-bytes: 20000000
scan:
  batch-window-ms: 5
CONF
start_daemon main "$W/main.yaml"
CLIPMODD_PID=$PID

# rspamd cannot bind port 0 and report it: take a free port from the kernel.
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
R="$W/rspamd"
cat >"$R/rspamd.conf" <<CONF
options {
  pidfile = "$R/rspamd.pid";
  dbdir = "$R/db";
  tempdir = "$R/tmp";
  filters = "";
  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }
}
logging { type = "file"; filename = "$R/rspamd.log"; level = "info"; }
worker "normal" { bind_socket = "127.0.0.1:$PORT"; count = 1; task_timeout = 20s; }
actions { reject = 15; add_header = 6; greylist = 4; }
lua = "$top_srcdir/contrib/rspamd/clipmod.lua";
clipmod {
  url = "http://$HTTP/v1/scan";
  timeout = 10;
  retries = 1;
  min_size = 1;
  unscanned_score = 0.5;
  fail_score = 0.01;
  categories { cat = 7.5; }
}
CONF
timeout 60 rspamadm configtest -c "$R/rspamd.conf" >"$W/configtest.log" 2>&1 ||
    fail "rspamadm configtest: $(tail -n 20 "$W/configtest.log")"

INSECURE=""
[ "$(id -u)" != 0 ] || INSECURE=--insecure # root: rspamd runs workers as root only when told
"$RSPAMD" -f $INSECURE -c "$R/rspamd.conf" >"$W/rspamd.out" 2>&1 &
RSPAMD_PID=$!
DAEMON_PIDS="$DAEMON_PIDS $RSPAMD_PID"
i=0
until curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/ping"; do
    kill -0 "$RSPAMD_PID" 2>/dev/null || fail "rspamd exited: $(tail -n 20 "$W/rspamd.out" "$R/rspamd.log")"
    [ $i -lt 300 ] || fail "rspamd is not answering after 30 s: $(tail -n 20 "$R/rspamd.log")"
    sleep 0.1
    i=$((i + 1))
done

# mail NAME IMAGE: a message with IMAGE attached as NAME.
mail() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "alice@example.org"
m["To"] = "bob@example.org"
m["Subject"] = "a photo"
m["Message-ID"] = "<rspamd-test@example.org>"
m["Date"] = "Fri, 04 Dec 2026 20:00:00 +0000"
m.set_content("Here is the photo.\n")
m.add_attachment(open(sys.argv[2], "rb").read(), maintype="image", subtype="png",
                 filename=sys.argv[1])
sys.stdout.write(m.as_string())
PYEOF
}
check() {
    timeout 60 "$RSPAMC" -h "127.0.0.1:$PORT" -t 30 symbols "$1" >"$2" 2>&1 ||
        fail "rspamc on $1: $(cat "$2")"
    echo "--- rspamc $(basename "$1"):"
    grep -E 'Action|Spam|Score|CLIPMOD' "$2" || true
}

mail flagged.png "$HI" >"$W/flagged.eml"
mail clean.png "$LO" >"$W/clean.eml"

# (a) flagged image: the symbol, its score, the verdict in its options.
check "$W/flagged.eml" "$W/a.out"
grep -Eq 'Symbol: CLIPMOD_CAT \(7\.50\)\[cat, score=[0-9.]+, threshold=[0-9.]+, flagged\.png\]' "$W/a.out" ||
    fail "(a) no CLIPMOD_CAT (7.50) with its options: $(cat "$W/a.out")"
if grep -q 'CLIPMOD_FAIL\|CLIPMOD_UNSCANNED' "$W/a.out"; then fail "(a) an error symbol: $(cat "$W/a.out")"; fi

# (b) clean image: scanned, no category symbol.
check "$W/clean.eml" "$W/b.out"
if grep -q 'CLIPMOD_' "$W/b.out"; then fail "(b) a clipmod symbol for a clean image: $(cat "$W/b.out")"; fi
n=$(grep -c '/v1/scan' "$LOG" || true)
[ "$n" -ge 2 ] || fail "(b) clipmodd was not asked for both images ($n requests logged)"

# (c) clipmodd gone: rspamd answers, with CLIPMOD_FAIL and no category symbol.
stop_daemon "$CLIPMODD_PID"
check "$W/flagged.eml" "$W/c.out"
grep -q 'Symbol: CLIPMOD_FAIL' "$W/c.out" || fail "(c) no CLIPMOD_FAIL: $(cat "$W/c.out")"
if grep -q 'CLIPMOD_CAT' "$W/c.out"; then fail "(c) a category without clipmodd: $(cat "$W/c.out")"; fi
echo "rspamd_module: ok"

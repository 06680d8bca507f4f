# tests/milter/postfix.sh - a private Postfix instance for the milter tests (sourced).
#
# Used by tests/milter_postfix.sh and bench/milter_load.sh. The instance lives in its
# own directory (configuration, queue, data, mailbox, log): the system Postfix, if
# any, is neither read nor changed, and may keep running on port 25. It listens on
# 127.0.0.1 only, on a port of its own, delivers everything for @clipmod.test into
# one mbox file through virtual(8) (no system users involved), bounces nothing to
# the outside (default_transport = error) and logs to a file (no syslog needed).
#
# Needs root (Postfix's master runs as root and drops to the postfix user), the
# postfix package (not started: this file starts its own master) and swaks.
#
#   pf_setup DIR SMTP_PORT MILTER_SOCKET DEFAULT_ACTION   write the instance
#   pf_start / pf_stop / pf_reload                        postfix -c DIR ...
#   pf_send OUT MESSAGE [swaks options]                   send; transcript in OUT
#   pf_count_delivered                                     messages in the mailbox
#   pf_wait_delivered N SECONDS                            until N are delivered
#   pf_reply OUT                                           the server's final reply

# Whether this machine can run the instance; prints why not (for a SKIP).
pf_missing() {
    [ "$(id -u)" -eq 0 ] || { echo "not root (Postfix's master must start as root)"; return 0; }
    [ -x /usr/sbin/postfix ] || { echo "postfix is not installed (apt-get install postfix)"; return 0; }
    command -v swaks >/dev/null 2>&1 || { echo "swaks is not installed (apt-get install swaks)"; return 0; }
    id postfix >/dev/null 2>&1 || { echo "no postfix user (is the postfix package installed?)"; return 0; }
    return 1
}

# A free TCP port on 127.0.0.1, from the kernel.
pf_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pf_setup() {
    PF_DIR=$1
    PF_PORT=$2
    PF_MILTER=$3
    PF_DEFAULT_ACTION=$4
    PF_CONF=$PF_DIR/etc
    PF_MBOX=$PF_DIR/vmail/inbox
    PF_LOG=$PF_DIR/maillog
    mkdir -p "$PF_CONF" "$PF_DIR/queue" "$PF_DIR/data" "$PF_DIR/vmail"
    # Every component of the path must be searchable by the postfix user.
    chmod 755 "$PF_DIR" "$PF_CONF" "$PF_DIR/vmail"
    chown postfix "$PF_DIR/data"
    # virtual(8) delivers as nobody:nogroup, the uid/gid below.
    chown 65534:65534 "$PF_DIR/vmail"
    : >"$PF_LOG"
    cat >"$PF_CONF/main.cf" <<EOF
# A private instance for clipmod-milter tests (tests/milter/postfix.sh).
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = $PF_LOG
maillog_file_prefixes = $PF_DIR
myhostname = mx.clipmod.test
mydomain = clipmod.test
myorigin = \$mydomain
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_banner = \$myhostname ESMTP clipmod test instance
virtual_mailbox_domains = clipmod.test
virtual_mailbox_base = $PF_DIR/vmail
virtual_mailbox_maps = static:inbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
virtual_destination_concurrency_limit = 1
default_transport = error
relay_transport = error
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
message_size_limit = 20480000
# No DNS: every lookup of this instance is for names it owns or none.
disable_dns_lookups = yes
smtp_host_lookup = native
smtpd_peername_lookup = no
# The filter under test.
smtpd_milters = $PF_MILTER
milter_default_action = $PF_DEFAULT_ACTION
milter_connect_timeout = 5s
milter_command_timeout = 30s
milter_content_timeout = 120s
# Enough parallel SMTP sessions for the load run (concurrency 20).
default_process_limit = 50
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
anvil_rate_time_unit = 60s
# Never slow SMTP down to the delivery rate: the load run measures the filter.
in_flow_delay = 0s
EOF
    # No chroot: it would need copies of /etc files inside the queue directory.
    cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
}

pf_start() {
    /usr/sbin/postfix -c "$PF_CONF" start >"$PF_DIR/postfix-start.out" 2>&1 ||
        { cat "$PF_DIR/postfix-start.out" >&2; return 1; }
    # Wait for the SMTP listener.
    i=0
    while ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PF_PORT), 1)" \
        2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "postfix did not listen on $PF_PORT" >&2; return 1; }
        sleep 0.1
    done
}

pf_stop() {
    [ -n "${PF_CONF:-}" ] && /usr/sbin/postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
}

pf_reload() {
    /usr/sbin/postfix -c "$PF_CONF" reload >/dev/null 2>&1
}

# pf_send OUT MESSAGE [swaks options]: exit status of swaks; transcript in OUT.
pf_send() {
    out=$1
    msg=$2
    shift 2
    swaks --server 127.0.0.1 --port "$PF_PORT" --helo client.example \
        --from "${PF_FROM:-sender@example.org}" --to "${PF_TO:-user@clipmod.test}" \
        --data "$msg" --timeout 120 "$@" >"$out" 2>&1
}

# The server's reply to the end of DATA (or to whatever failed first), e.g.
# "550 5.7.1 Message refused ...".
pf_reply() {
    sed -n 's/^<[-*~]\{1,2\} *\([2-5][0-9][0-9][ -].*\)$/\1/p' "$1" | grep -v '^221' | tail -n 1
}

pf_count_delivered() {
    if [ -f "$PF_MBOX" ]; then grep -c '^From ' "$PF_MBOX" || true; else echo 0; fi
}

pf_wait_delivered() {
    want=$1
    secs=$2
    i=0
    while [ "$(pf_count_delivered)" -lt "$want" ]; do
        i=$((i + 1))
        [ $i -le $((secs * 10)) ] || return 1
        sleep 0.1
    done
}

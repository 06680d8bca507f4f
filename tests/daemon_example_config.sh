#!/bin/sh
# daemon_example_config.sh - contrib/clipmodd.yaml, the example make install puts in
# $(sysconfdir)/clipmod: clipmodd accepts it as shipped; every setting it shows
# commented out ("# key: value") is a real key with a valid value (the file with all
# of them uncommented is accepted too); and it lists every key clipmodd knows, each
# section's allowed keys being taken from clipmodd's own "unknown key" message, so a
# key added to config.c without its line in the example fails here.
. "${top_srcdir:-$(dirname "$0")/..}/tests/daemon_lib.sh"

W="$CLIPMOD_WORK/daemon_example_config"
rm -rf "$W"
mkdir -p "$W"
EXAMPLE="$top_srcdir/contrib/clipmodd.yaml"
[ -f "$EXAMPLE" ] || fail "no $EXAMPLE"
setup_model daemon-example
write_policy "$W/p.yaml" 0.5 flag

# As shipped (model and policy from the command line, as on a machine without them).
XDG_CACHE_HOME="$W/cache" "$CLIPMODD" --check -c "$EXAMPLE" -m "$MODEL" -p "$W/p.yaml" \
    >"$W/shipped.out" 2>&1 || fail "the example is refused: $(cat "$W/shipped.out")"

# Every commented-out setting uncommented; paths that must exist point into $W.
printf 'a-token-of-at-least-16-chars\n' >"$W/token"
chmod 600 "$W/token"
mkdir -p "$W/roots" "$W/cache"
sed -E -e 's/^( *)# ( *)((- )?[a-z][a-z-]*:( |$))/\1\2\3/' "$EXAMPLE" |
    sed -e "s|^model: .*|model: $MODEL|" -e "s|^merges: .*|# merges: (in the model)|" \
        -e "s|^policy: .*|policy: $W/p.yaml|" -e "s|^cache-dir: .*|cache-dir: $W/cache|" \
        -e "s|/usr/local/lib/clipmod/|$top_builddir/plugins/.libs/|" \
        -e "s|path=/var/log/clipmod/audit.jsonl|path=$W/audit.jsonl|" \
        -e "s|auth-token-file: .*|auth-token-file: $W/token|" \
        -e "s|unix-socket: .*|unix-socket: $W/clamd.sock|" >"$W/all.yaml"
n_example=$(grep -cE '^ *# *(- )?[a-z][a-z-]*:( |$)' "$EXAMPLE")
n_all=$(grep -cE '^ *# *(- )?[a-z][a-z-]*:( |$)' "$W/all.yaml")
[ "$n_all" -le 1 ] && [ "$n_example" -gt 20 ] ||
    fail "uncommenting failed: $n_example commented settings, $n_all left"
XDG_CACHE_HOME="$W/cache" "$CLIPMODD" --check -c "$W/all.yaml" >"$W/all.out" 2>&1 ||
    fail "the example with every setting uncommented is refused: $(cat "$W/all.out")"

# Completeness: each section's allowed keys, as clipmodd names them.
for section in "" engine fetch scan http tusd clamd on-flag log; do
    if [ -z "$section" ]; then
        printf 'no-such-key: 1\n' >"$W/unknown.yaml"
    else
        printf '%s:\n  no-such-key: 1\n' "$section" >"$W/unknown.yaml"
    fi
    set +e
    "$CLIPMODD" --check -c "$W/unknown.yaml" -m "$MODEL" -p "$W/p.yaml" >"$W/unknown.out" 2>&1
    set -e
    keys=$(sed -n "s/.*unknown key 'no-such-key'.*; allowed: //p" "$W/unknown.out" | tr -d ',')
    [ -n "$keys" ] || fail "no allowed keys for '$section': $(cat "$W/unknown.out")"
    for k in $keys; do
        if [ -z "$section" ]; then
            grep -qE "^(# )?$k:" "$EXAMPLE" || fail "the example lacks the top-level key '$k'"
        else
            # Inside the section: between "SECTION:" and the next top-level line.
            sed -n "/^$section:/,/^[a-z]/p" "$EXAMPLE" | grep -qE "^ +(# )?$k:" ||
                fail "the example lacks '$section.$k'"
        fi
    done
done
# The plugins entries' own keys.
grep -qE '^# +- path:' "$EXAMPLE" && grep -qE '^# +config:' "$EXAMPLE" ||
    fail "the example lacks a plugins entry with path and config"
echo "PASS"

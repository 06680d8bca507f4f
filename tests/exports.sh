#!/bin/sh
# exports.sh - libclipmod.so exports exactly the public API: every dynamic symbol it
# defines is a clipmod_* name declared with CLIPMOD_API in include/clipmod/clipmod.h,
# and every function declared there is exported (internal cm_* and the YAML reader
# compiled into the library stay hidden; a new public function is not forgotten).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
so="$top_builddir/.libs/libclipmod.so"
command -v nm >/dev/null 2>&1 || skip "nm is not installed (binutils)"
[ -e "$so" ] || skip "$so is absent (a static-only build)"
W="$CLIPMOD_WORK/exports"
mkdir -p "$W"

# Defined dynamic symbols; nm -D prints "ADDRESS TYPE NAME".
nm -D --defined-only "$so" | awk 'NF == 3 { print $3 }' | sed 's/@.*//' | sort -u >"$W/exported"
[ -s "$W/exported" ] || fail "nm lists no symbol in $so"
grep -v '^clipmod_' "$W/exported" >"$W/foreign" || true
[ ! -s "$W/foreign" ] || fail "exported beyond clipmod_*: $(tr '\n' ' ' <"$W/foreign")"

# Declared: the name before "(" on each CLIPMOD_API declaration (a declaration may
# wrap, so the header is joined into one line per semicolon first).
tr '\n' ' ' <"$top_srcdir/include/clipmod/clipmod.h" | tr ';' '\n' |
    grep 'CLIPMOD_API' | sed -n 's/.*[ *]\(clipmod_[a-z0-9_]*\)(.*/\1/p' | sort -u >"$W/declared"
[ "$(wc -l <"$W/declared")" -gt 50 ] || fail "could not read the declarations of clipmod.h"
comm -23 "$W/declared" "$W/exported" >"$W/missing"
[ ! -s "$W/missing" ] || fail "declared but not exported: $(tr '\n' ' ' <"$W/missing")"
comm -13 "$W/declared" "$W/exported" >"$W/undeclared"
[ ! -s "$W/undeclared" ] || fail "exported but not declared in clipmod.h: $(tr '\n' ' ' <"$W/undeclared")"
echo "PASS: $(wc -l <"$W/exported") symbols, all clipmod_* and declared in clipmod.h"

#!/bin/sh
# check-style.sh - the project's style gate (`make check-style`, a phase of .ci/run).
#
# Owns four checks over the C sources, each listing every offender before failing:
#  1. clang-format --dry-run --Werror with the committed .clang-format over src/,
#     include/, plugins/, tests/unit, tests/fuzz, tests/tools and bench (*.c, *.h);
#  2. banned functions (sprintf, vsprintf, strcpy, strcat, atoi, atol, gets): their
#     bounded or checked replacements are snprintf, memcpy with lengths, strtol;
#  3. layering: no program source (src/cli, src/daemon, src/common, plugins) includes
#     a header of the library's internals (src/lib); programs use include/clipmod;
#  4. no assignment inside an `if` condition (tools/assign-in-if.awk, as curl's
#     checksrc): `rc = f(); if (rc)`, never `if ((rc = f()))`.
# Usage: tools/check-style.sh [SRCDIR]   (default: the directory above this script).
# Exit 0 clean, 1 when a check fails, 77 when clang-format is not installed.
set -u
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 99
status=0

files=$(find src include plugins tests/unit tests/fuzz tests/tools bench \
    -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null | sort)

# 1. Formatting.
if command -v clang-format >/dev/null 2>&1; then
    bad=
    for f in $files; do
        if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
            bad="$bad $f"
        fi
    done
    if [ -n "$bad" ]; then
        echo "check-style: not clang-formatted (clang-format -i FILE):"
        for f in $bad; do echo "  $f"; done
        status=1
    fi
else
    echo "check-style: clang-format is not installed (apt-get install clang-format)" >&2
    exit 77
fi

# 2. Banned functions. The allowlist names FILE:FUNCTION pairs with a reason each;
#    keep it short. (None today.)
allow=''
banned='\<(sprintf|vsprintf|strcpy|strcat|atoi|atol|gets)[[:space:]]*\('
hits=$(grep -nE "$banned" $files 2>/dev/null |
    grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/?\*|//)' || true)
for a in $allow; do
    hits=$(printf '%s\n' "$hits" | grep -v "^${a%%:*}:.*\<${a#*:}[[:space:]]*(" || true)
done
if [ -n "$hits" ]; then
    echo "check-style: banned functions (use snprintf, memcpy with lengths, strtol with checks):"
    printf '%s\n' "$hits" | sed 's/^/  /'
    status=1
fi

# 3. Layering: programs see include/clipmod and src/common, never src/lib.
prog=$(printf '%s\n' $files | grep -E '^(src/cli|src/daemon|src/common|plugins)/' || true)
layer=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<][^">]*(src/lib/|\.\./lib/)' \
    $prog /dev/null 2>/dev/null || true)
if [ -n "$layer" ]; then
    echo "check-style: program sources include the library's internal headers (src/lib):"
    printf '%s\n' "$layer" | sed 's/^/  /'
    status=1
fi

# 4. No assignments in if conditions.
assign=$(awk -f tools/assign-in-if.awk $files 2>/dev/null || true)
if [ -n "$assign" ]; then
    echo "check-style: assignments in if conditions (assign first, then test the variable):"
    printf '%s\n' "$assign" | sed 's/^/  /'
    status=1
fi

[ "$status" -eq 0 ] && echo "check-style: clean"
exit "$status"

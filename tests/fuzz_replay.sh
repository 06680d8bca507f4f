#!/bin/sh
# fuzz_replay.sh - replay every fuzz target's committed corpus (tests/fuzz/README.md).
#
# Each target in FUZZ_TARGETS (set by the Makefile) runs once over every file of
# tests/fuzz/corpus/NAME: seeds and the reproducers of bugs fuzzing found, so each
# fixed crash, leak or hang stays a regression test. In ordinary builds the targets
# are linked with tests/fuzz/replay.c; under --enable-fuzzing they are libFuzzer
# binaries, which run the files they are given one by one (with ASan, UBSan and leak
# checking). Any crash, sanitizer report or hang (more than FUZZ_REPLAY_TIMEOUT
# seconds per target) fails the test. FUZZ_VALGRIND=1 runs the ordinary build's
# replays under valgrind (memory errors and definite leaks fail).
#
# It also fails when a tests/fuzz/fuzz_*.c is not registered in Makefile.am or a
# registered target has no corpus: an unregistered target is never replayed.
# FUZZ_REPLAY="policy ssrf" replays only the targets named (e.g. while others'
# targets do not build: make check TESTS=tests/fuzz_replay.sh FUZZ_REPLAY=policy).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

[ "${FUZZ_TARGETS+set}" = set ] || fail "FUZZ_TARGETS is not set (run through make check)"
[ -n "$FUZZ_TARGETS" ] || skip "no fuzz targets are registered in Makefile.am"
: "${FUZZ_REPLAY_TIMEOUT:=300}"
: "${FUZZ_VALGRIND:=0}"
: "${FUZZ_REPLAY:=}"
W="$CLIPMOD_WORK/fuzz_replay"
mkdir -p "$W"

for src in "$top_srcdir"/tests/fuzz/fuzz_*.c; do
    [ -f "$src" ] || continue
    name=$(basename "$src" .c)
    case " $FUZZ_TARGETS " in
    *" tests/fuzz/$name "*) ;;
    *) fail "$src is not registered: add 'FUZZ_TARGETS += tests/fuzz/$name' to Makefile.am (tests/fuzz/README.md)" ;;
    esac
done

wrapper=
if [ "$FUZZ_VALGRIND" = 1 ]; then
    command -v valgrind >/dev/null 2>&1 || skip "FUZZ_VALGRIND=1 but valgrind is not installed"
    wrapper="valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite
        --suppressions=$top_srcdir/tests/valgrind.supp"
fi

total=0
for t in $FUZZ_TARGETS; do
    name=$(basename "$t")
    name=${name#fuzz_}
    if [ -n "$FUZZ_REPLAY" ]; then
        case " $FUZZ_REPLAY " in
        *" $name "* | *" fuzz_$name "*) ;;
        *) continue ;;
        esac
    fi
    bin="$top_builddir/$t"
    corpus="$top_srcdir/tests/fuzz/corpus/$name"
    [ -x "$bin" ] || fail "$bin was not built"
    [ -d "$corpus" ] || fail "fuzz_$name has no corpus directory $corpus"
    # The files one by one, sorted (libFuzzer would fuzz a directory, not replay it).
    find "$corpus" -type f ! -name '.*' | LC_ALL=C sort >"$W/$name.list"
    n=$(wc -l <"$W/$name.list")
    [ "$n" -gt 0 ] || fail "fuzz_$name: empty corpus $corpus"
    set --
    while IFS= read -r f; do
        set -- "$@" "$f"
    done <"$W/$name.list"
    set +e
    # shellcheck disable=SC2086 # wrapper is a word list
    timeout "$FUZZ_REPLAY_TIMEOUT" $wrapper "$bin" "$@" >"$W/$name.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$W/$name.log"
        [ "$rc" -eq 124 ] && fail "fuzz_$name: replay took longer than $FUZZ_REPLAY_TIMEOUT s"
        fail "fuzz_$name: replay failed (exit $rc), log $W/$name.log"
    fi
    echo "ok   fuzz_$name: $n inputs replayed"
    total=$((total + n))
done
[ "$total" -gt 0 ] || fail "FUZZ_REPLAY='$FUZZ_REPLAY' names no registered target"
echo "ok   $total inputs replayed in all"

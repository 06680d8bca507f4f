#!/bin/sh
# tests/fuzz/run.sh - `make fuzz` and `make fuzz-merge` (tests/fuzz/README.md).
#
#   run.sh fuzz    run each target (or $FUZZ_TARGET) for $FUZZ_SECONDS seconds over its
#                  committed corpus, writing new inputs to a scratch corpus in
#                  $top_builddir/tests/fuzz/work/NAME/corpus (never to the source tree),
#                  crashes to work/NAME/; print execs, coverage and corpus size per target.
#   run.sh merge   minimise each target's committed corpus together with its scratch
#                  corpus, in place: files with names of their own (hand-written seeds,
#                  regress-* reproducers) are always kept; the 40-hex-digit names that
#                  libFuzzer gives are replaced by the smallest set that adds edge
#                  coverage (-use_counters=0: hit counts would keep many near-copies),
#                  then the largest of those are dropped until the corpus fits in
#                  $FUZZ_CORPUS_BYTES (default 100 KiB; the scratch corpus keeps all).
#
# Set by the Makefile: top_srcdir, top_builddir, FUZZ_TARGETS (paths), FUZZ_ENGINE
# (non-empty under --enable-fuzzing), FUZZ_TARGET, FUZZ_SECONDS, FUZZ_ARGS, FUZZ_NICE,
# FUZZ_CORPUS_BYTES.
set -eu
# libFuzzer logs hold raw input bytes; sed must not stop at invalid UTF-8.
export LC_ALL=C
mode=${1:-fuzz}
: "${FUZZ_SECONDS:=60}"
: "${FUZZ_TARGET:=}"
: "${FUZZ_ARGS:=}"
: "${FUZZ_NICE:=}"
: "${FUZZ_ENGINE:=}"
: "${FUZZ_CORPUS_BYTES:=102400}"

if [ -z "$FUZZ_ENGINE" ]; then
    echo "make $mode: this build has no libFuzzer; configure a separate build directory with" >&2
    echo "  $top_srcdir/configure CC=clang --enable-fuzzing" >&2
    exit 1
fi

# Targets to run: all, or the one named by FUZZ_TARGET (policy, fuzz_policy or a path).
targets=
for t in $FUZZ_TARGETS; do
    name=$(basename "$t")
    name=${name#fuzz_}
    case "$FUZZ_TARGET" in
    "" | "$name" | "fuzz_$name" | "$t") targets="$targets $name" ;;
    esac
done
if [ -z "$targets" ]; then
    echo "make $mode: no fuzz target named '$FUZZ_TARGET' (targets: $FUZZ_TARGETS)" >&2
    exit 1
fi

# Total size in bytes of the files in a directory.
bytes_in() {
    find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}

is_hash_name() {
    case "$1" in
    *[!0-9a-f]*) return 1 ;;
    esac
    [ ${#1} -eq 40 ]
}

# fuzz NAME: one libFuzzer run, then a one-line summary from its final stats.
fuzz_one() {
    name=$1
    bin="$top_builddir/tests/fuzz/fuzz_$name"
    seeds="$top_srcdir/tests/fuzz/corpus/$name"
    work="$top_builddir/tests/fuzz/work/$name"
    dict="$top_srcdir/tests/fuzz/$name.dict"
    mkdir -p "$work/corpus"
    set -- -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=25 \
        -rss_limit_mb=2048 -artifact_prefix="$work/"
    [ -f "$dict" ] && set -- "$@" -dict="$dict"
    echo "== fuzz_$name: $FUZZ_SECONDS s (log: $work/log)"
    set +e
    # shellcheck disable=SC2086 # FUZZ_NICE and FUZZ_ARGS are word lists
    $FUZZ_NICE "$bin" "$@" $FUZZ_ARGS "$work/corpus" "$seeds" >"$work/log" 2>&1
    rc=$?
    set -e
    last=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$work/log")
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p')
    echo "fuzz_$name: execs ${execs:-?} (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}," \
        "corpus ${corp:-?} (inputs/bytes), peak rss ${rss:-?} MB," \
        "new inputs in scratch: $(find "$work/corpus" -type f | wc -l)"
    if [ "$rc" -ne 0 ]; then
        echo "fuzz_$name: FAILED (exit $rc); artifacts:" $(ls "$work" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' || true)
        grep -E '^==[0-9]+==ERROR|SUMMARY:|^Test unit written' "$work/log" | head -n 5 || true
        return 1
    fi
}

# merge NAME: see the header.
merge_one() {
    name=$1
    bin="$top_builddir/tests/fuzz/fuzz_$name"
    seeds="$top_srcdir/tests/fuzz/corpus/$name"
    work="$top_builddir/tests/fuzz/work/$name"
    mkdir -p "$work/corpus"
    rm -rf "$work/merged"
    mkdir -p "$work/merged"
    before=$(bytes_in "$seeds")
    nbefore=$(find "$seeds" -type f | wc -l)
    for f in "$seeds"/*; do
        [ -f "$f" ] || continue
        is_hash_name "$(basename "$f")" || cp "$f" "$work/merged/"
    done
    # shellcheck disable=SC2086
    $FUZZ_NICE "$bin" -merge=1 -use_counters=0 -max_len=65536 -timeout=25 "$work/merged" "$seeds" \
        "$work/corpus" \
        >"$work/merge.log" 2>&1 || {
        echo "fuzz_$name: merge failed, see $work/merge.log" >&2
        return 1
    }
    for f in "$seeds"/*; do
        [ -f "$f" ] || continue
        is_hash_name "$(basename "$f")" && rm -f "$f"
    done
    # Over the budget: drop the largest merged inputs (named files always stay).
    dropped=0
    ls -S "$work/merged" >"$work/merged.bysize"
    while [ "$(bytes_in "$work/merged")" -gt "$FUZZ_CORPUS_BYTES" ]; do
        f=
        while IFS= read -r candidate; do
            if is_hash_name "$candidate" && [ -f "$work/merged/$candidate" ]; then
                f=$candidate
                break
            fi
        done <"$work/merged.bysize"
        [ -n "$f" ] || break
        rm -f "$work/merged/$f"
        dropped=$((dropped + 1))
    done
    for f in "$work/merged"/*; do
        [ -f "$f" ] || continue
        is_hash_name "$(basename "$f")" && cp "$f" "$seeds/"
    done
    echo "fuzz_$name: committed corpus $nbefore files / $before bytes ->" \
        "$(find "$seeds" -type f | wc -l) files / $(bytes_in "$seeds") bytes" \
        "($dropped of the largest new inputs left out to stay under $FUZZ_CORPUS_BYTES bytes)"
}

status=0
for name in $targets; do
    case "$mode" in
    fuzz) fuzz_one "$name" || status=1 ;;
    merge) merge_one "$name" || status=1 ;;
    *)
        echo "run.sh: unknown mode $mode" >&2
        exit 2
        ;;
    esac
done
exit $status

#!/bin/sh
# scan_habits.sh - the clamscan habits of `clipmod scan`: -i/--infected, --move and
# --copy (never overwriting), --exclude/--include(-dir) regular expressions,
# -f/--file-list, --log (appended, with the summary), and sidecar files (a .txt or
# .json beside the photos) skipped inside directories instead of failing the run.
#
# The model is the tiny random checkpoint of scan_cli.sh: its scores are arbitrary,
# so a threshold of 0.0001 flags every photo and one of 1 flags none; what is checked is
# the machinery around the verdicts.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

W="$CLIPMOD_WORK/scan_habits"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY
LC_ALL=C
export LC_ALL

# Help lists every habit (no model needed).
"$CLIPMOD" scan --help >"$W/help"
for opt in -i, --infected --move --copy --exclude --include --exclude-dir --include-dir \
    -f, --file-list --log "Skipped files"; do
    grep -q -- "$opt" "$W/help" || fail "scan --help does not list $opt"
done
grep -q "POSIX extended" "$W/help" || fail "scan --help must say the patterns are regexes"
run 2 "$CLIPMOD" scan --exclude '(' x.png
grep -q "bad pattern" "$W/err" || fail "a bad regex must be refused: $(cat "$W/err")"
run 2 "$CLIPMOD" scan --move "$W" --copy "$W" x.png

need_reference
photos=$(photos_dir) || fail "no sample photos"
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: policies need the tokenizer"
model=$(checkpoint tiny-scan --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
    --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
write_policy "$W/all.yaml" 0.0001 flag
write_policy "$W/none.yaml" 1 flag
scan() { "$CLIPMOD" scan -m "$model" "$@"; }

# A folder of three photos and two sidecars.
D="$W/in"
mkdir -p "$D/sub" "$D/skipme"
cp "$photos/astronaut.png" "$D/a.png"
cp "$photos/camera.png" "$D/b.png"
cp "$photos/coffee.png" "$D/sub/c.png"
cp "$photos/coffee.png" "$D/skipme/d.png"
echo "caption" >"$D/a.txt"
echo '{"k": 1}' >"$D/meta.json"

# Sidecars: skipped and counted, the run stays clean (it exited 2 before).
run 0 scan -p "$W/none.yaml" "$D"
grep -q "^Skipped files: 2$" "$W/out" || fail "sidecars not counted: $(cat "$W/out")"
grep -q "a.txt\|meta.json" "$W/out" && fail "a sidecar got a result line"
grep -q "^Scanned files: 2$" "$W/out" || fail "the photos must still be scanned"
# ...but a non-image named explicitly stays an error.
run 2 scan -p "$W/none.yaml" "$D/a.txt"
grep -q "^$D/a.txt: unscanned" "$W/out" || fail "an explicit non-image: $(cat "$W/out")"

# -i: clean inputs are not printed; flagged and unscanned ones are.
run 0 scan -p "$W/none.yaml" -i --quiet "$D"
[ ! -s "$W/out" ] || fail "-i printed clean files: $(cat "$W/out")"
run 1 scan -p "$W/all.yaml" --infected --quiet "$D/a.png" "$W/missing.png"
grep -q "^$D/a.png: FLAGGED" "$W/out" || fail "-i must print flagged files"
grep -q "^$W/missing.png: unscanned" "$W/out" || fail "-i must still print unscanned inputs"

# --exclude / --include (regex on the whole path), --exclude-dir / --include-dir.
run 0 scan -p "$W/none.yaml" -r --quiet --exclude 'b\.png$' --exclude-dir '/skipme$' "$D"
[ "$(cat "$W/out")" = "$D/a.png: clean
$D/sub/c.png: clean" ] || fail "--exclude/--exclude-dir: $(cat "$W/out")"
run 0 scan -p "$W/none.yaml" -r --quiet --include '/b\.png$' --include 'c\.png$' "$D"
[ "$(cat "$W/out")" = "$D/b.png: clean
$D/sub/c.png: clean" ] || fail "--include: $(cat "$W/out")"
run 0 scan -p "$W/none.yaml" -r --quiet --include-dir '/sub$' "$D"
[ "$(cat "$W/out")" = "$D/a.png: clean
$D/b.png: clean
$D/sub/c.png: clean" ] || fail "--include-dir: $(cat "$W/out")"

# -f / --file-list: from a file and from stdin, with the arguments.
printf '%s\n\n%s\n' "$D/a.png" "$D/sub/c.png" >"$W/list"
run 0 scan -p "$W/none.yaml" --quiet -f "$W/list" "$D/b.png"
[ "$(cat "$W/out")" = "$D/b.png: clean
$D/a.png: clean
$D/sub/c.png: clean" ] || fail "--file-list: $(cat "$W/out")"
printf '%s\n' "$D/b.png" | scan -p "$W/none.yaml" --quiet --file-list - >"$W/out" ||
    fail "--file-list - failed"
[ "$(cat "$W/out")" = "$D/b.png: clean" ] || fail "--file-list -: $(cat "$W/out")"
run 2 scan -p "$W/none.yaml" --quiet -f "$W/no-such-list"
# A line is a path, at most 4096 bytes: a longer one (here line 2) fails the list and
# is named, instead of growing a buffer without end; the other inputs are scanned.
{ echo "$D/a.png"; head -c 5000 /dev/zero | tr '\0' x; echo; } >"$W/long-list"
run 2 scan -p "$W/none.yaml" --quiet -f "$W/long-list" "$D/b.png"
grep -qxF -- "clipmod: --file-list $W/long-list: line 2 is longer than 4096 bytes" "$W/err" ||
    fail "a too long --file-list line: $(cat "$W/err")"
[ "$(cat "$W/out")" = "$D/b.png: clean" ] || fail "--file-list with a long line: $(cat "$W/out")"
{ echo "$D/a.png"; head -c 4096 /dev/zero | tr '\0' x; echo; } >"$W/max-list"
run 2 scan -p "$W/none.yaml" --quiet -f "$W/max-list"
[ "$(sed 's/^xxxx*: unscanned (io-error: .*)$/LONG/' "$W/out")" = "$D/a.png: clean
LONG" ] || fail "a 4096-byte line is a path (of a missing file): $(cut -c1-200 "$W/out")"

# --log: appended, with the results and the summary block.
run 1 scan -p "$W/all.yaml" --quiet --log "$W/scan.log" "$D/a.png"
run 0 scan -p "$W/none.yaml" --log "$W/scan.log" "$D/b.png"
grep -q "^$D/a.png: FLAGGED" "$W/scan.log" || fail "--log lacks the first run"
grep -q "^$D/b.png: clean" "$W/scan.log" || fail "--log lacks the second run (not appended?)"
[ "$(grep -c '^----------- SCAN SUMMARY -----------$' "$W/scan.log")" -eq 2 ] ||
    fail "--log must hold one summary per run: $(cat "$W/scan.log")"
grep -Eq "^Policy fingerprint: [0-9a-f]{12}$" "$W/scan.log" ||
    fail "the summary must name the policy fingerprint"

# --copy: flagged files copied; a taken name gets .001, never overwritten.
Q="$W/quarantine"
mkdir -p "$Q"
echo "keep me" >"$Q/a.png"
run 1 scan -p "$W/all.yaml" --quiet --copy "$Q" "$D/a.png"
cmp -s "$D/a.png" "$Q/a.png.001" || fail "--copy: no a.png.001 copy"
[ "$(cat "$Q/a.png")" = "keep me" ] || fail "--copy overwrote an existing file"
[ -f "$D/a.png" ] || fail "--copy removed the original"
# Clean files are not copied.
run 0 scan -p "$W/none.yaml" --quiet --copy "$Q" "$D/b.png"
[ ! -e "$Q/b.png" ] || fail "--copy copied a clean file"

# --move: same filesystem (link + unlink) and across filesystems when /dev/shm is one.
cp "$D/a.png" "$W/m.png"
run 1 scan -p "$W/all.yaml" --quiet --move "$Q" "$W/m.png"
[ ! -e "$W/m.png" ] || fail "--move left the original"
cmp -s "$D/a.png" "$Q/m.png" || fail "--move: the moved file differs"
cp "$D/a.png" "$W/m.png"
run 1 scan -p "$W/all.yaml" --quiet --move "$Q" "$W/m.png"
cmp -s "$D/a.png" "$Q/m.png.001" || fail "--move must not overwrite: no m.png.001"
if [ -d /dev/shm ] && [ -w /dev/shm ] &&
    [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$W")" ]; then
    X=$(mktemp -d /dev/shm/clipmod-habits.XXXXXX)
    cp "$D/a.png" "$W/x.png"
    run 1 scan -p "$W/all.yaml" --quiet --move "$X" "$W/x.png"
    cmp -s "$D/a.png" "$X/x.png" || fail "--move across filesystems"
    [ ! -e "$W/x.png" ] || fail "--move across filesystems left the original"
    rm -rf "$X"
fi
# A failed move is an error and leaves the file where it was.
cp "$D/a.png" "$W/y.png"
run 1 scan -p "$W/all.yaml" --quiet --move "$W/no-such-dir" "$W/y.png"
[ -f "$W/y.png" ] || fail "a failed --move lost the file"
grep -q "cannot move" "$W/err" || fail "a failed --move must say so: $(cat "$W/err")"
# Byte limits take the runtime's size syntax (25M, binary multiples), as clipmodd's.
sz=$(stat -c %s "$D/a.png")
kib=$((sz / 1024))
run 2 scan -p "$W/none.yaml" --quiet --max-file-bytes "${kib}k" "$D/a.png"
grep -q "too-large" "$W/out" || fail "--max-file-bytes ${kib}k: $(cat "$W/out")"
run 0 scan -p "$W/none.yaml" --quiet --max-file-bytes "$((kib + 1))K" "$D/a.png"
run 0 scan -p "$W/none.yaml" --quiet --max-file-bytes 1M "$D/a.png"
run 2 scan -p "$W/none.yaml" --quiet --max-file-bytes 25Q "$D/a.png"
grep -q "max-file-bytes" "$W/err" || fail "a bad size must be named"
echo "PASS"

#!/bin/sh
# tests/timed.sh - the LOG_COMPILER of `make check` (Makefile.am): runs one test and
# ends its .log with the wall-clock time it took, "time: 12.3 s", which .ci/run adds
# up and ranks. The test's exit status (0, 77 skip, 99 hard error, ...) is passed on.
start=$(date +%s.%N)
"$@"
rc=$?
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "time: %.1f s\n", e - s }'
exit $rc

#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run-fuzz.sh SECONDS OBJTREE CORPUS FUZZER...
# Runs each libFuzzer target for SECONDS, starting from the kept corpus
# (read-only: new inputs go to OBJTREE/fuzz-corpus), and fails if it
# finds a crash; crashing inputs are left in OBJTREE/crashes/.
set -u
seconds=$1; objtree=$2; seeds=$3; shift 3

mkdir -p "$objtree/fuzz-corpus" "$objtree/crashes"
status=0
for fuzzer in "$@"; do
	name=$(basename "$fuzzer")
	log="$objtree/$name.log"
	echo "  FUZZ    $name for ${seconds}s"
	ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 ${ASAN_OPTIONS:-}" \
	"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
		-print_final_stats=1 -artifact_prefix="$objtree/crashes/" \
		"$objtree/fuzz-corpus" "$seeds" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	echo "  FUZZ    $name: ${runs:-?} executions, ${cov:-cov: ?}, exit $rc"
	if [ "$rc" -ne 0 ]; then
		tail -40 "$log"
		echo "  FUZZ    crash kept in $objtree/crashes/; copy it to tests/fuzz-corpus/ once fixed" >&2
		status=1
	fi
done
exit $status

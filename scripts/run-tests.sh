#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run-tests.sh RUNNER TSAN_SUPP TEST...
# Runs each cmocka binary under timeout (and valgrind when RUNNER says so),
# prints one line per binary and a summary, and fails if any failed.
set -u
runner=$1; tsan_supp=$2; shift 2
[ $# -gt 0 ] || { echo "run-tests.sh: no tests to run" >&2; exit 1; }

timeout=${EVENTBUF_TEST_TIMEOUT:-600}
if [ -n "$tsan_supp" ]; then
	export TSAN_OPTIONS="suppressions=$tsan_supp halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
fi
export ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}"
if [ "$runner" = valgrind ]; then
	command -v valgrind >/dev/null 2>&1 || "$(dirname "$0")/deps.sh" valgrind || exit 1
	set -- "$@"
	wrap="valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible --fair-sched=yes --suppressions=$(dirname "$0")/../tests/valgrind.supp"
	export EVENTBUF_TEST_SCALE=${EVENTBUF_TEST_SCALE:-20}
	export EVENTBUF_UNDER_VALGRIND=1
else
	wrap=""
fi

failed=""; passed=0
for t in "$@"; do
	name=$(basename "$t")
	echo "  TEST    $name"
	start=$(date +%s)
	# shellcheck disable=SC2086
	timeout -s INT -k 10 "$timeout" $wrap "$t"
	rc=$?
	secs=$(( $(date +%s) - start ))
	if [ $rc -eq 0 ]; then
		passed=$((passed + 1))
		echo "  PASS    $name (${secs}s)"
	else
		[ $rc -eq 124 ] && echo "  TIMEOUT $name after ${timeout}s"
		echo "  FAIL    $name (exit $rc)"
		failed="$failed $name"
	fi
done
if [ -n "$failed" ]; then
	echo "TESTS FAILED:$failed"
	exit 1
fi
echo "ALL TESTS PASSED ($passed binaries)"

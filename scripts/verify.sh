#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# verify.sh MODELDIR OUTDIR
# Exhaustive spin runs of every MODELDIR/*.pml: safety (assertions,
# invalid end states), then each ltl claim under weak fairness; each
# mutant named on the model's "verify-mutants:" line must fail. Then the
# code anchors of MODELDIR/README.md must still be in the C they name.
set -u
models=$1; out=$2
srctree=$(cd "$(dirname "$0")/.." && pwd)

command -v spin >/dev/null 2>&1 || "$srctree/scripts/deps.sh" spin || exit 1
command -v spin >/dev/null 2>&1 || { echo "verify: spin is not installed" >&2; exit 1; }
mkdir -p "$out"
status=0

# pan MODEL DEFINES MODE -> the pan output; MODE is safety or the ltl name.
# -O1: the state spaces are small, and compiling pan.c is most of the time.
pan() {
	rm -f "$out"/pan*
	(cd "$out" && spin $2 -a "$1" >/dev/null 2>&1) || { echo "spin -a failed"; return; }
	if [ "$3" = safety ]; then
		(cd "$out" && cc -O1 -w -DSAFETY -DNOCLAIM -o pan pan.c && ./pan -m1000000) 2>&1
	else
		(cd "$out" && cc -O1 -w -DNOREDUCE -DNFAIR=4 -o pan pan.c &&
			./pan -a -f -m1000000 -N "$3") 2>&1
	fi
}

errors_of() { sed -n 's/.*errors: \([0-9]*\).*/\1/p' | tail -1; }
states_of() { sed -n 's/^ *\([0-9]*\) states, stored.*/\1/p' | tail -1; }

for model in "$models"/*.pml; do
	name=$(basename "$model" .pml)
	claims=$(sed -n 's/^ltl \([a-z_0-9]*\).*/\1/p' "$model")
	for mode in safety $claims; do
		res=$(pan "$model" "" "$mode")
		errs=$(echo "$res" | errors_of)
		states=$(echo "$res" | states_of)
		if [ "$errs" = 0 ]; then
			echo "  VERIFY  $name ($mode): ${states} states, errors: 0"
		else
			echo "$res" | tail -20
			echo "  VERIFY  $name ($mode): FAILED (errors: ${errs:-?})"
			status=1
		fi
	done
	for mutant in $(sed -n 's|^/\* verify-mutants: \(.*\) \*/$|\1|p' "$model"); do
		found=0
		for mode in safety $claims; do
			errs=$(pan "$model" "-D$mutant" "$mode" | errors_of)
			[ "${errs:-0}" -gt 0 ] && found=$((found + 1))
		done
		if [ "$found" -gt 0 ]; then
			echo "  VERIFY  $name -D$mutant: caught ($found of $(echo safety $claims | wc -w) runs)"
		else
			echo "  VERIFY  $name -D$mutant: NOT caught - the model misses what it claims"
			status=1
		fi
	done
done

# The mapping tables: | step | model | file: `anchor` |
sed -n 's/^|[^|]*|[^|]*| *\(src\/[^:]*\): `\(.*\)` |$/\1\t\2/p' "$models/README.md" |
{
	n=0; bad=0
	while IFS="$(printf '\t')" read -r file anchor; do
		anchor=$(printf '%s' "$anchor" | sed 's/\\|/|/g')
		n=$((n + 1))
		if ! grep -qF -- "$anchor" "$srctree/$file"; then
			echo "  VERIFY  $models/README.md: '$anchor' is no longer in $file"
			bad=1
		fi
	done
	echo "  VERIFY  $n code anchors checked"
	exit $bad
} || status=1

[ $status -eq 0 ] && echo "  VERIFY  OK" || echo "  VERIFY  FAILED"
exit $status

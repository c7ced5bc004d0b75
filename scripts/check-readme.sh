#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-readme.sh README OUTDIR LINK...: every ```c block of README is a
# whole translation unit and compiles with -Wall -Wextra -Werror against
# the headers (the must-check results handled). A block with a main() is
# also linked, with LINK... (the library and what it needs), and run; one without
# is compiled with -c. Errors point at README's lines.
set -eu
readme=$1; out=$2; shift 2
srctree=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}

rm -rf "$out"
mkdir -p "$out"
awk -v out="$out" -v name="$(basename "$readme")" '
	/^```c$/ { n++; f = sprintf("%s/snippet-%d.c", out, n); inside = 1
		   printf "#line %d \"%s\"\n", NR + 1, name > f; next }
	/^```/ && inside { inside = 0; close(f); next }
	inside { print > f }
' "$readme"

total=0; linked=0
for f in "$out"/snippet-*.c; do
	[ -e "$f" ] || break
	total=$((total + 1))
	if grep -q '^int main(' "$f"; then
		$cc -std=c11 -Wall -Wextra -Werror -I"$srctree/include" -o "${f%.c}" "$f" "$@"
		"${f%.c}" > /dev/null || { echo "check-readme: the program of ${f##*/} failed" >&2; exit 1; }
		linked=$((linked + 1))
	else
		$cc -std=c11 -Wall -Wextra -Werror -I"$srctree/include" -c -o "${f%.c}.o" "$f"
	fi
done
[ "$total" -gt 0 ] || { echo "check-readme: no \`\`\`c block in $readme" >&2; exit 1; }
echo "  README  $total C snippets compile with -Wall -Wextra -Werror ($linked linked and run)"

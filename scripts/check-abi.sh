#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-abi.sh LIB MAP HEADER...: the version script MAP names each exported
# function (no wildcard), and those names, the EVENTBUF_API functions the
# HEADERs declare and what the shared library LIB exports are the same
# list, each versioned EVENTBUF_*. A function joins the ABI only by an edit
# of MAP and a header together.
set -eu
lib=$1; map=$2; shift 2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# differ NAME_A FILE_A NAME_B FILE_B: print what one list has and the other lacks.
differ() {
	comm -23 "$2" "$4" | sed "s/^/  in $1, not in $3: /" >&2
	comm -13 "$2" "$4" | sed "s/^/  in $3, not in $1: /" >&2
}

syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ { print $3 }')
printf '%s\n' "$syms" | sed 's/@.*//' | sort > "$tmp/exported"
sed -n 's/.*[ *]\(eventbuf_[a-z0-9_]*\)(.*/\1/p' "$@" | sort -u > "$tmp/declared"
sed -n 's/^[[:space:]]*\(eventbuf_[a-z0-9_]*\);[[:space:]]*$/\1/p' "$map" | sort > "$tmp/map"
printf '%s\n' "$syms" | sed -n 's/^\(eventbuf_[a-z0-9_]*\)@@\{0,1\}EVENTBUF_[0-9.]*$/\1/p' | sort > "$tmp/versioned"

status=0
if grep -n 'eventbuf[a-z0-9_]*\*' "$map" >&2; then
	echo "check-abi: $map exports by wildcard; list each function by name" >&2
	status=1
fi
dups=$(uniq -d "$tmp/map")
if [ -n "$dups" ]; then
	echo "check-abi: listed twice in $map: $dups" >&2
	status=1
fi
bad=$(grep -v '^eventbuf_' "$tmp/exported" | grep -v '^EVENTBUF_' || true)
if [ -n "$bad" ]; then
	echo "check-abi: exported symbols outside the eventbuf_ prefix:" >&2
	printf '  %s\n' $bad >&2
	status=1
fi
grep '^eventbuf_' "$tmp/exported" > "$tmp/fns" || true
if ! cmp -s "$tmp/map" "$tmp/declared"; then
	echo "check-abi: the version script and the headers differ (an ABI change is an edit of both):" >&2
	differ "$(basename "$map")" "$tmp/map" headers "$tmp/declared"
	status=1
fi
if ! cmp -s "$tmp/fns" "$tmp/declared"; then
	echo "check-abi: exported and declared functions differ:" >&2
	differ "$(basename "$lib")" "$tmp/fns" headers "$tmp/declared"
	status=1
fi
if ! cmp -s "$tmp/fns" "$tmp/versioned"; then
	echo "check-abi: some exports are not versioned EVENTBUF_*" >&2
	status=1
fi
[ $status -eq 0 ] || exit 1
echo "  ABI     $(wc -l < "$tmp/fns") functions, listed in $(basename "$map"), declared, exported, versioned"

#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-abi.sh LIB HEADER...: the shared library exports exactly the
# EVENTBUF_API functions of the HEADERs, each versioned EVENTBUF_*.
set -eu
lib=$1; shift

syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ { print $3 }')
exported=$(printf '%s\n' "$syms" | sed 's/@.*//' | sort)
declared=$(sed -n 's/.*[ *]\(eventbuf_[a-z_]*\)(.*/\1/p' "$@" | sort -u)
versioned=$(printf '%s\n' "$syms" | sed -n 's/^\(eventbuf_[a-z_]*\)@@\{0,1\}EVENTBUF_[0-9.]*$/\1/p' | sort)

bad=$(printf '%s\n' "$exported" | grep -v '^eventbuf_' | grep -v '^EVENTBUF_' || true)
if [ -n "$bad" ]; then
	echo "check-abi: exported symbols outside the eventbuf_ prefix:" >&2
	printf '  %s\n' $bad >&2
	exit 1
fi
fns=$(printf '%s\n' "$exported" | grep '^eventbuf_')
if [ "$fns" != "$declared" ]; then
	echo "check-abi: exported and declared functions differ:" >&2
	printf '%s\n' "$fns" > /tmp/check-abi.exported.$$
	printf '%s\n' "$declared" | diff /tmp/check-abi.exported.$$ - >&2 || true
	rm -f /tmp/check-abi.exported.$$
	exit 1
fi
if [ "$fns" != "$versioned" ]; then
	echo "check-abi: some exports are not versioned EVENTBUF_*" >&2
	exit 1
fi
echo "  ABI     $(printf '%s\n' "$fns" | wc -l) functions, all eventbuf_*, all versioned"

#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-install.sh MAKE OBJTREE: install as a user would and build against
# the installed copy with pkg-config alone:
# - from OBJTREE, already built by a plain make, into a non-default PREFIX:
#   eventbuf.pc must name that prefix; a program built with its flags runs
#   against the installed shared library, links statically (whole program,
#   and libeventbuf.a alone), and is clean under valgrind with the
#   installed suppressions;
# - from a fresh O= build, into another PREFIX;
# - staged with DESTDIR under the default PREFIX;
# each followed by make uninstall, which must leave nothing behind.
set -eu
make=$1; objtree=$2
srctree=$(cd "$(dirname "$0")/.." && pwd)
tmp=$objtree/install-test
cc=${CC:-cc}
cflags_std="-std=c11 -Wall -Wextra -Werror"
consumer=$srctree/tests/install/consumer.c

fail() { echo "check-install: $*" >&2; exit 1; }

# run PROG LIBDIR: the consumer's one line of output must be right.
run() {
	out=$(LD_LIBRARY_PATH=$2 "$1") || fail "$1 failed"
	[ "$out" = "eventbuf $version: 3 events, in order" ] || fail "$1 printed '$out'"
}

# nothing_left ROOT: no file of eventbuf's under ROOT.
nothing_left() {
	left=$(find "$1" \( -name 'libeventbuf*' -o -name 'eventbuf.pc' -o -path '*/include/eventbuf*' \
		-o -path '*/share/eventbuf*' \) | wc -l)
	[ "$left" -eq 0 ] || fail "uninstall left $left files under $1"
}

# check_prefix PREFIX [full]: what was installed under PREFIX works.
check_prefix() {
	prefix=$1
	export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
	[ "$(pkg-config --variable=prefix eventbuf)" = "$prefix" ] ||
		fail "eventbuf.pc says prefix=$(pkg-config --variable=prefix eventbuf), installed in $prefix"
	version=$(pkg-config --modversion eventbuf)
	# shellcheck disable=SC2046
	$cc $cflags_std -o "$tmp/consumer" "$consumer" $(pkg-config --cflags --libs eventbuf)
	run "$tmp/consumer" "$prefix/lib"
	LD_LIBRARY_PATH="$prefix/lib" ldd "$tmp/consumer" | grep -q "$prefix/lib/libeventbuf.so.0" ||
		fail "the consumer did not load $prefix/lib/libeventbuf.so.0"
	[ "${2:-}" = full ] || return 0

	# shellcheck disable=SC2046
	$cc -static $cflags_std -o "$tmp/consumer-static" "$consumer" \
		$(pkg-config --static --cflags --libs eventbuf)
	run "$tmp/consumer-static" ""
	# shellcheck disable=SC2046
	$cc $cflags_std -o "$tmp/consumer-static-lib" "$consumer" $(pkg-config --cflags eventbuf) \
		"$(pkg-config --variable=libdir eventbuf)/libeventbuf.a" -lurcu-bp -lurcu-common -lpthread
	run "$tmp/consumer-static-lib" ""
	if ldd "$tmp/consumer-static-lib" | grep -q libeventbuf; then
		fail "the consumer linked with libeventbuf.a still loads libeventbuf.so"
	fi

	supp=$(pkg-config --variable=valgrind_supp eventbuf)
	[ -f "$supp" ] || fail "valgrind.supp not installed at $supp"
	if command -v valgrind >/dev/null 2>&1; then
		LD_LIBRARY_PATH="$prefix/lib" valgrind --quiet --error-exitcode=99 --leak-check=full \
			--show-leak-kinds=definite,indirect,possible \
			--errors-for-leak-kinds=definite,indirect,possible \
			--suppressions="$supp" "$tmp/consumer" > /dev/null ||
			fail "valgrind with the installed $supp reported errors"
	else
		echo "  INSTALL valgrind is not installed: the suppressions were not tried"
	fi
}

rm -rf "$tmp"
mkdir -p "$tmp"

# A plain make has been run in OBJTREE (PREFIX=/usr/local): install elsewhere.
$make -s -C "$srctree" O="$objtree" install PREFIX="$tmp/prefix" >/dev/null
check_prefix "$tmp/prefix" full
$make -s -C "$srctree" O="$objtree" uninstall PREFIX="$tmp/prefix" >/dev/null
nothing_left "$tmp/prefix"

# An O= build, installed with make install alone.
$make -s -C "$srctree" O="$tmp/obj" install PREFIX="$tmp/prefix-o" >/dev/null
check_prefix "$tmp/prefix-o"
$make -s -C "$srctree" O="$tmp/obj" uninstall PREFIX="$tmp/prefix-o" >/dev/null
nothing_left "$tmp/prefix-o"

# A staged install: the default PREFIX under DESTDIR.
$make -s -C "$srctree" O="$objtree" install DESTDIR="$tmp/dest" >/dev/null
pc=$tmp/dest/usr/local/lib/pkgconfig/eventbuf.pc
grep -qx 'prefix=/usr/local' "$pc" || fail "staged eventbuf.pc: $(grep '^prefix' "$pc")"
[ -f "$tmp/dest/usr/local/share/eventbuf/valgrind.supp" ] || fail "staged valgrind.supp missing"
$make -s -C "$srctree" O="$objtree" uninstall DESTDIR="$tmp/dest" >/dev/null
nothing_left "$tmp/dest"

rm -rf "$tmp"
echo "  INSTALL PREFIX=, O= and DESTDIR installs: pkg-config, static, valgrind, uninstall: ok"

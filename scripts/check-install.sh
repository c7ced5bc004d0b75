#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-install.sh MAKE OBJTREE: install into a scratch DESTDIR, build a
# small program against the installed copy with pkg-config alone, run it
# against the installed shared library, then uninstall and check that
# nothing is left.
set -eu
make=$1; objtree=$2
srctree=$(cd "$(dirname "$0")/.." && pwd)
dest=$objtree/install-test
prefix=/usr/local

rm -rf "$dest"
$make -s -C "$srctree" O="$objtree" install DESTDIR="$dest" PREFIX=$prefix >/dev/null

export PKG_CONFIG_SYSROOT_DIR="$dest"
export PKG_CONFIG_PATH="$dest$prefix/lib/pkgconfig"
cflags=$(pkg-config --cflags eventbuf)
libs=$(pkg-config --libs eventbuf)
version=$(pkg-config --modversion eventbuf)

cc=${CC:-cc}
$cc -std=c11 -Wall -Wextra -Werror $cflags -o "$dest/consumer" \
	"$srctree/tests/install/consumer.c" $libs
out=$(LD_LIBRARY_PATH="$dest$prefix/lib" "$dest/consumer")
[ "$out" = "eventbuf $version: 3 events, in order" ] || {
	echo "check-install: consumer printed '$out'" >&2
	exit 1
}
# The program really used the installed shared library.
LD_LIBRARY_PATH="$dest$prefix/lib" ldd "$dest/consumer" | grep -q "$dest$prefix/lib/libeventbuf.so.0" || {
	echo "check-install: consumer did not load the installed libeventbuf.so.0" >&2
	exit 1
}

$make -s -C "$srctree" O="$objtree" uninstall DESTDIR="$dest" PREFIX=$prefix >/dev/null
left=$(find "$dest$prefix" \( -name 'libeventbuf*' -o -name 'eventbuf.pc' -o -path '*/include/eventbuf*' \) | wc -l)
[ "$left" -eq 0 ] || { echo "check-install: uninstall left $left files" >&2; exit 1; }
rm -rf "$dest"
echo "  INSTALL pkg-config build and run against the installed copy: ok"

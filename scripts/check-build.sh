#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-build.sh: what the build promises about itself, on a throwaway copy
# of the source tree (so that a failure destroys nothing of yours):
# - make clean and make with O= set to the source tree, a directory above
#   it, a symlink to it or a directory the build did not make refuse, and
#   delete nothing; make clean O= deletes what the build made;
# - make and make install never run apt-get (cmocka missing is fine for
#   them); a missing liburcu stops naming liburcu-dev and the command;
# - every target is rebuilt exactly when its command or a prerequisite
#   changes (PREFIX, a Kbuild file, CFLAGS), and make runs no find;
# - check-abi fails when a header declares a function the version script
#   does not list, or when the script exports by wildcard.
set -eu
srctree=$(cd "$(dirname "$0")/.." && pwd)
# A clean make: nothing from the make check that runs us (O=, CONFIG_*).
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
make="make -j2"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eventbuf-check-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src; home=$tmp/home; out=$tmp/out; fake=$tmp/bin
mkdir "$src" "$home" "$fake"
for f in Makefile README.md LICENSE scripts include src tests bench examples; do
	cp -a "$srctree/$f" "$src/"
done
mkdir "$src/.git" && echo 'ref: refs/heads/main' > "$src/.git/HEAD"
echo 'a file the build did not write' > "$home/notes.txt"
mkdir "$home/.config" && echo keep > "$home/.config/settings"
ln -s "$src" "$tmp/link"

fail() { echo "check-build: $*" >&2; exit 1; }

# Everything but build output, to check that nothing of it disappears.
listing() {
	find "$src" "$home" \( -path "$src/build" -o -path "$src/build-*" \) -prune -o -print | sort
}
listing > "$tmp/before"
nothing_lost() {
	listing > "$tmp/after"
	lost=$(comm -23 "$tmp/before" "$tmp/after")
	[ -z "$lost" ] || fail "$1 deleted: $(echo "$lost" | head -5)"
}

# refuse GOAL O: make GOAL O=... fails, says why, and deletes nothing.
refuse() {
	if (cd "$src" && $make -s $1 O="$2") > "$tmp/log" 2>&1; then
		fail "make $1 O=$2 did not refuse"
	fi
	grep -q "O=$2" "$tmp/log" || fail "make $1 O=$2 failed without naming O=: $(cat "$tmp/log")"
	nothing_lost "make $1 O=$2"
}
for o in . "$src" .. "$tmp" "$tmp/link" "$home" /; do
	refuse clean "$o"
done
refuse all "$home"
refuse all .
[ ! -e "$home/.eventbuf-objtree" ] || fail "make O=$home marked a directory it may not write"
echo "  BUILD   clean and make refuse O= of the tree, above it, a link to it, a foreign directory: ok"

# Installers and find record that they ran; pkg-config can lose a module.
realpc=$(command -v pkg-config)
for tool in apt-get apt sudo dpkg-query; do
	printf '#!/bin/sh\necho "%s $*" >> "%s"\nexit 1\n' "$tool" "$tmp/installer.log" > "$fake/$tool"
done
printf '#!/bin/sh\necho "find $*" >> "%s"\nexec %s "$@"\n' "$tmp/find.log" "$(command -v find)" > "$fake/find"
cat > "$fake/pkg-config" <<PC
#!/bin/sh
for a; do
	case " \$FAKE_MISSING " in *" \$a "*) exit 1 ;; esac
done
exec $realpc "\$@"
PC
chmod +x "$fake"/*
fmake() { (cd "$src" && PATH="$fake:$PATH" FAKE_MISSING="$1" && shift && export PATH FAKE_MISSING && $make "$@"); }
no_installer() {
	[ ! -e "$tmp/installer.log" ] || fail "$1 ran an installer: $(cat "$tmp/installer.log")"
}

fmake cmocka O="$out" > "$tmp/log" 2>&1 || fail "make without cmocka failed: $(tail -5 "$tmp/log")"
no_installer "make (cmocka missing)"
fmake cmocka -s O="$out" install PREFIX="$tmp/prefix" > "$tmp/log" 2>&1 ||
	fail "make install without cmocka failed: $(tail -5 "$tmp/log")"
no_installer "make install (cmocka missing)"
grep -qx "prefix=$tmp/prefix" "$tmp/prefix/lib/pkgconfig/eventbuf.pc" ||
	fail "installed eventbuf.pc: $(grep '^prefix' "$tmp/prefix/lib/pkgconfig/eventbuf.pc")"
if fmake cmocka -s O="$out" tests > "$tmp/log" 2>&1; then
	fail "make tests without cmocka succeeded"
fi
grep -q 'libcmocka-dev' "$tmp/log" && grep -q 'apt-get install' "$tmp/log" ||
	fail "make tests without cmocka did not name the package: $(cat "$tmp/log")"
if fmake liburcu-bp -s O="$tmp/out-nourcu" > "$tmp/log" 2>&1; then
	fail "make without liburcu succeeded"
fi
grep -q 'liburcu-dev' "$tmp/log" && grep -q 'apt-get install' "$tmp/log" ||
	fail "make without liburcu did not name the package: $(cat "$tmp/log")"
no_installer "make (liburcu missing)"
echo "  BUILD   make and make install install nothing; a missing package is named: ok"

# rebuilt WHAT: the quiet lines of a make run, sorted, without the prefix.
rebuilt() { fmake "" O="$out" "$@" 2>&1 | sed 's/^ *//' | sort; }
expect() {
	[ "$2" = "$3" ] || fail "$1 rebuilt:
$2
expected:
$3"
}
objs() { (cd "$out" && ls "$1"/*.o | sed 's/^/CC      /' | sort); }

expect "make after make install PREFIX=..." "$(rebuilt)" "GEN     eventbuf.pc"
grep -qx 'prefix=/usr/local' "$out/eventbuf.pc" || fail "eventbuf.pc kept the install's prefix"
expect "a second make" "$(rebuilt)" ""
expect "make PREFIX=/opt/probe" "$(rebuilt PREFIX=/opt/probe)" "GEN     eventbuf.pc"
grep -qx 'prefix=/opt/probe' "$out/eventbuf.pc" || fail "eventbuf.pc kept the old prefix"

echo 'ccflags-y += -DEVENTBUF_BUILD_PROBE' >> "$src/src/Kbuild"
expect "a ccflags-y edit in src/Kbuild" "$(rebuilt | grep '^CC')" "$(objs src)"
grep -q 'EVENTBUF_BUILD_PROBE' "$out/src/.buffer.o.cmd" || fail "src/buffer.o's saved command lacks the new flag"
echo 'ccflags-y += -DEVENTBUF_BUILD_PROBE' >> "$src/src/pubsub/Kbuild"
expect "a ccflags-y edit in src/pubsub/Kbuild" "$(rebuilt | grep '^CC')" "$(objs src/pubsub)"
touch "$src/examples/Kbuild"
expect "a touched examples/Kbuild" "$(rebuilt | grep '^CC')" "$(objs examples)"
expect "make CFLAGS=-DPROBE" "$(rebuilt CFLAGS=-DPROBE | grep '^CC')" "$(printf '%s\n' "$(objs examples)" "$(objs src)" "$(objs src/pubsub)" | sort)"
[ ! -e "$tmp/find.log" ] || fail "make ran find: $(head -3 "$tmp/find.log")"
echo "  BUILD   PREFIX, a Kbuild file and CFLAGS rebuild exactly what uses them; no find: ok"

# The programs make check does not build come from the same macro.
fmake "" -s O="$out" bench-build > "$tmp/log" 2>&1 || fail "make bench-build: $(tail -5 "$tmp/log")"

# check-abi can fail: a declaration the version script lacks, a wildcard.
lib=$(ls "$out"/libeventbuf.so.*.*.*)
"$src/scripts/check-abi.sh" "$lib" "$src/src/eventbuf.map" "$src"/include/eventbuf/*.h > /dev/null
printf 'EVENTBUF_API int eventbuf_build_probe(void);\n' > "$tmp/probe.h"
if "$src/scripts/check-abi.sh" "$lib" "$src/src/eventbuf.map" "$src"/include/eventbuf/*.h "$tmp/probe.h" > "$tmp/log" 2>&1; then
	fail "check-abi accepted a declared function that the version script does not list"
fi
grep -q 'eventbuf_build_probe' "$tmp/log" || fail "check-abi did not name the function: $(cat "$tmp/log")"
sed 's/^\([[:space:]]*\)eventbuf_append;/\1eventbuf_*;/' "$src/src/eventbuf.map" > "$tmp/glob.map"
if "$src/scripts/check-abi.sh" "$lib" "$tmp/glob.map" "$src"/include/eventbuf/*.h > "$tmp/log" 2>&1; then
	fail "check-abi accepted a version script with a wildcard"
fi
echo "  BUILD   check-abi rejects an unlisted function and a wildcard: ok"

(cd "$src" && $make -s clean O="$out") > /dev/null || fail "make clean O=$out failed"
[ ! -e "$out" ] || fail "make clean O=$out left it"
nothing_lost "make clean O=$out"
echo "  BUILD   make clean O= deletes the build it made and nothing else: ok"

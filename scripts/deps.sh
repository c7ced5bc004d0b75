#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Install what eventbuf builds against: liburcu, cmocka and pkg-config, plus
# the optional tools named on the command line (gnuplot, spin, valgrind, ...).
# Uses apt-get as root, sudo otherwise; when neither works it prints the
# exact command to run and fails.
#
# deps.sh --check PKG...: install nothing; check what the build uses of each
# named package (pkg-config's module, or the command) and, when one is
# missing, name it and the command that installs it, and fail. This is what
# make and make install run: only make check, make bench and the tools
# install packages.
set -eu

if [ "${1:-}" = --check ]; then
	shift
	pkgconfig=${PKG_CONFIG:-pkg-config}
	missing=""
	for pkg in "$@"; do
		case $pkg in
		pkg-config) command -v "$pkgconfig" >/dev/null 2>&1 ;;
		liburcu-dev) "$pkgconfig" --exists liburcu-bp 2>/dev/null ;;
		libcmocka-dev) "$pkgconfig" --exists cmocka 2>/dev/null ;;
		*) dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ;;
		esac || missing="$missing $pkg"
	done
	[ -z "$missing" ] && exit 0
	echo "eventbuf: missing build dependency:$missing" >&2
	echo "eventbuf: install it with: sudo apt-get install$missing" >&2
	echo "eventbuf: (make check installs it by itself; so does scripts/deps.sh$missing)" >&2
	exit 1
fi

need="liburcu-dev libcmocka-dev pkg-config"
extra="$*"

missing=""
for pkg in $need $extra; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $pkg"
	fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps.sh: no apt-get here; install these packages by hand:$missing" >&2
	exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo="sudo -n"
else
	echo "deps.sh: missing packages:$missing" >&2
	echo "deps.sh: run as root: apt-get update && apt-get install -y$missing" >&2
	exit 1
fi

echo "  DEPS   $missing"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null

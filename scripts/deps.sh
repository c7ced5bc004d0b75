#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Install what eventbuf builds against: liburcu, cmocka and pkg-config, plus
# the optional tools named on the command line (gnuplot, spin, valgrind, ...).
# Uses apt-get as root, sudo otherwise; when neither works it prints the
# exact command to run and fails.
set -eu

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

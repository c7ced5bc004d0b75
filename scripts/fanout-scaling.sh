#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Fan-out scaling on a machine with many cores: bench's fanout and
# fanout-epoll workloads at each reader count, every implementation side by
# side, one bench process per reader count. Each process runs under a time
# limit (LIMIT seconds, default 30 + 8 per reader), so that a reader count
# that runs long costs only its own row, not the whole run. bench prints
# its medians at the end; a process stopped at its limit leaves only the
# figure of each run it finished (--progress), in scaling.log.
# Ratios are only ever taken between implementations of one process, as
# bench-spec.md asks.
#
# The sizes suit a 16-vCPU VM, where every implementation's writer wakes
# its parked readers item by item: there, at N = 300,000, one repetition
# of both workloads took about 4 s at 1 reader and 12 s at 8 (the
# baselines take most of it), so the default run needs about 5 minutes.
#
# Writes, in OUTDIR:
#   scaling.log  every process's whole output (banner, tables, lines)
#   scaling.txt  the "bench workload=..." lines of all of them
#   scaling.csv  workload,readers,impl,mevents_per_s (medians)
#   scaling.png  throughput against readers, if gnuplot is there
# With PLOT_ONLY=1 it only redraws scaling.csv and scaling.png from
# scaling.txt (say, on another machine than the one that ran it).
#
# Usage: fanout-scaling.sh BENCH OUTDIR [READERS...]   (default 1 2 4 8 12 16)
# Environment: REPS (default 3), N (default 300000), LIMIT (seconds per
# reader count; default 30 + 8 * readers), SPIN_NS (bench --spin-ns:
# eventbuf's blocking readers spin that long before they park; default 0).
# To compare, run it twice into two OUTDIRs, SPIN_NS=0 and, say, 2000.
set -u

bench=$1
out=$2
shift 2
readers=${*:-1 2 4 8 12 16}
mkdir -p "$out"

run_all() {
	local tmp r rc

	tmp=$(mktemp -d)
	: >"$out/scaling.log"
	for r in $readers; do
		timeout "${LIMIT:-$((30 + 8 * r))}" "$bench" \
			--only fanout,fanout-epoll --readers "$r" --progress \
			--reps "${REPS:-3}" --n "${N:-300000}" \
			--spin-ns "${SPIN_NS:-0}" \
			--out "$tmp/r$r" >>"$out/scaling.log" 2>&1
		rc=$?
		[ $rc -eq 0 ] || echo "readers=$r: bench ended with status $rc" |
			tee -a "$out/scaling.log"
	done
	rm -rf "$tmp"
	grep -h '^bench workload=' "$out/scaling.log" >"$out/scaling.txt"
}

write_csv() {
	echo "workload,readers,impl,mevents_per_s" >"$out/scaling.csv"
	awk '/metric=mevents_per_s/ {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		print f["workload"] "," f["readers"] "," f["impl"] "," f["value"]
	}' "$out/scaling.txt" >>"$out/scaling.csv"
}

plot() {
	local w i impls tics

	command -v gnuplot >/dev/null || { echo "no gnuplot: no plot"; return; }
	[ "$(wc -l <"$out/scaling.csv")" -gt 1 ] ||
		{ echo "no reader count finished: no plot"; return; }
	impls=$(awk -F, 'NR > 1 && !seen[$3]++ { print $3 }' "$out/scaling.csv")
	tics=$(awk -F, 'NR > 1 && !seen[$2]++ { printf "%s%s", n++ ? ", " : "", $2 }' \
		"$out/scaling.csv")
	{
		echo "set terminal pngcairo size 1100,460 font ',10'"
		echo "set output '$out/scaling.png'"
		echo "set datafile separator ','"
		echo "set key top left; set grid; set logscale x 2"
		echo "set xtics ($tics); set xrange [0.8:20]; set yrange [0:*]"
		echo "set xlabel 'readers'; set ylabel 'delivered Mevents/s (median)'"
		echo "set multiplot layout 1,2 title 'eventbuf fan-out scaling'"
		for w in fanout fanout-epoll; do
			echo "set title '$w'"
			printf "plot "
			i=0
			for impl in $impls; do
				[ $i -gt 0 ] && printf ", "
				printf "'< grep \"^%s,.*,%s,\" %s' using 2:4 with linespoints lw 2 pt 7 title '%s'" \
					"$w" "$impl" "$out/scaling.csv" "$impl"
				i=$((i + 1))
			done
			echo
		done
		echo "unset multiplot"
	} | gnuplot && echo "wrote $out/scaling.png"
}

[ "${PLOT_ONLY:-0}" = 1 ] || run_all
write_csv
plot

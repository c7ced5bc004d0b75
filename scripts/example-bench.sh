#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# make example-bench: the same Redis-protocol pub/sub load (resp_load)
# against examples/resp_server and a throwaway redis-server, each started
# fresh on a free loopback port for each (subscribers, channels) pair and
# killed after it (and on any exit). Prints "bench workload=resp ..." lines,
# a table with the ratio, and writes a gnuplot PNG.
#
# Usage: example-bench.sh OBJTREE   (QUICK=1 in the environment: CI sizes)
set -eu

bin=$1/examples
out=$1/example-bench
quick=${QUICK:-0}
mkdir -p "$out"

srv_pid=""
stop_server() {
	if [ -n "$srv_pid" ]; then
		kill "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
		srv_pid=""
	fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Wait until $1 accepts connections (5 s at most).
wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	echo "example-bench: nothing listens on port $1" >&2
	return 1
}

# start_server IMPL SUBS: sets srv_pid and port.
start_server() {
	port=$("$bin/resp_load" -F)
	case $1 in
	eventbuf)
		# No lag limit: redis-server runs with its output limits off.
		"$bin/resp_server" -p "$port" -l 0 >>"$out/eventbuf.log" 2>&1 &
		;;
	redis)
		redis-server --port "$port" --bind 127.0.0.1 --save '' \
			--appendonly no --client-output-buffer-limit 'pubsub 0 0 0' \
			--maxclients $(($2 + 100)) --daemonize no \
			>"$out/redis.log" 2>&1 &
		;;
	esac
	srv_pid=$!
	wait_port "$port"
}

if [ "$quick" = 1 ]; then
	sizes="64 500"
	deliveries=200000
	max_messages=20000
else
	sizes="64 2000 10000"
	deliveries=4000000
	max_messages=1000000
fi
# PUBLISH replies the publisher may wait for: its pipeline depth.
window=1024
hard=$(ulimit -Hn)

results=$out/results.txt
: >"$results"
: >"$out/eventbuf.log"
for n in $sizes; do
	if [ "$quick" = 1 ]; then
		keys="1 $((n / 2))"
	else
		keys="1 100 $((n / 2))"
	fi
	for k in $keys; do
		if [ "$k" -gt "$n" ]; then
			echo "example-bench: subs=$n keys=$k skipped: more channels than subscribers"
			continue
		fi
		# Each side holds a descriptor per connection, and a few more.
		if [ "$hard" != unlimited ] && [ $((n + 128)) -gt "$hard" ]; then
			echo "example-bench: subs=$n keys=$k skipped: needs $((n + 128)) descriptors, RLIMIT_NOFILE hard limit is $hard"
			continue
		fi
		m=$((deliveries * k / n))
		[ "$m" -gt "$max_messages" ] && m=$max_messages
		[ "$m" -lt $((k * 4)) ] && m=$((k * 4))
		[ "$m" -lt 1000 ] && m=1000
		for impl in eventbuf redis; do
			start_server "$impl" "$n"
			if ! line=$("$bin/resp_load" -p "$port" -n "$n" -k "$k" -m "$m" \
					-w "$window" -r "$srv_pid"); then
				echo "$line" >&2
				echo "example-bench: FAILED against $impl (subs=$n keys=$k)" >&2
				exit 1
			fi
			stop_server
			rate=$(echo "$line" | sed -n 's/.* deliveries_per_s=\([0-9]*\).*/\1/p')
			rss=$(echo "$line" | sed -n 's/.* rss_per_sub_bytes=\(-\{0,1\}[0-9]*\).*/\1/p')
			echo "bench workload=resp impl=$impl subs=$n keys=$k n=$m window=$window metric=deliveries_per_s value=$rate"
			echo "bench workload=resp impl=$impl subs=$n keys=$k n=$m metric=rss_per_idle_sub_bytes value=$rss"
			echo "$n $k $m $impl $rate $rss" >>"$results"
		done
	done
done

# The table: one row per (subs, keys), eventbuf beside redis.
table=$out/table.md
awk '
	$4 == "eventbuf" { key = $1 " " $2; order[++rows] = key; m[key] = $3;
			   er[key] = $5; es[key] = $6 }
	$4 == "redis"    { key = $1 " " $2; rr[key] = $5; rs[key] = $6 }
	END {
		print "| subscribers | channels | messages | eventbuf deliveries/s | redis deliveries/s | ratio | eventbuf RSS/idle sub | redis RSS/idle sub |"
		print "|---|---|---|---|---|---|---|---|"
		for (i = 1; i <= rows; i++) {
			key = order[i]; split(key, f, " ")
			printf "| %d | %d | %d | %.2f M | %.2f M | %.2fx | %d B | %d B |\n",
				f[1], f[2], m[key], er[key] / 1e6, rr[key] / 1e6,
				rr[key] ? er[key] / rr[key] : 0, es[key], rs[key]
		}
	}' "$results" >"$table"
cat "$table"

awk '$4 == "eventbuf" { l = $1 "/" $2; e[l] = $5; o[++n] = l }
     $4 == "redis" { r[$1 "/" $2] = $5 }
     END { for (i = 1; i <= n; i++) print o[i], e[o[i]] / 1e6, r[o[i]] / 1e6 }' \
	"$results" >"$out/resp.dat"
if command -v gnuplot >/dev/null 2>&1; then
	gnuplot <<EOF
set terminal pngcairo size 1000,500 noenhanced
set output "$out/resp.png"
set logscale y
set title "Redis-protocol pub/sub fan-out, loopback (same load generator)"
set ylabel "deliveries per second (millions, log scale)"
set xlabel "subscribers / channels"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0.1:*]
set key top right
plot "$out/resp.dat" using 2:xtic(1) title "eventbuf resp_server", \
     "" using 3 title "redis-server"
EOF
	echo "example-bench: plot in $out/resp.png"
fi

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# make example-bench: the same Redis-protocol pub/sub load (resp_load)
# against the example service's server mode (service --resp, the code of
# examples/resp_server) and a throwaway redis-server, each started
# fresh on a free loopback port for each (subscribers, channels) pair and
# killed after it (and on any exit). Each pair runs REPS times (3; QUICK=1:
# 1), the two servers alternating, so that drift of the machine hits both
# alike; the figures are medians, the ratio the median of the per-repetition
# ratios [min-max]. Prints "bench workload=resp ..." lines, a table, and
# writes a gnuplot PNG.
#
# First, each server must close a subscriber that stops reading (its output
# limit: resp_server -o, Redis's client-output-buffer-limit pubsub) while
# the others get every message; the throughput runs then turn limits off.
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

# start_server IMPL SUBS [LIMIT]: sets srv_pid and port. Without LIMIT
# (bytes) neither server limits a client's output, nor eventbuf its lag.
start_server() {
	port=$("$bin/resp_load" -F)
	case $1 in
	eventbuf)
		# The example service's server mode (resp_server's code).
		"$bin/service" --resp -p "$port" -l 0 -o "${3:-0}" \
			>>"$out/eventbuf.log" 2>&1 &
		;;
	redis)
		redis-server --port "$port" --bind 127.0.0.1 --save '' \
			--appendonly no \
			--client-output-buffer-limit "pubsub ${3:-0} 0 0" \
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
	reps=1
else
	sizes="64 2000 10000"
	deliveries=4000000
	max_messages=1000000
	reps=${REPS:-3}
fi

# The output limit: 8 subscribers on 8 channels and one more on ch0 that
# never reads; 32 MB go to ch0, the limit is 4 MiB.
for impl in eventbuf redis; do
	start_server "$impl" 16 4194304
	if ! line=$("$bin/resp_load" -p "$port" -n 8 -k 8 -m 256000 -s 1000 -S); then
		echo "$line" >&2
		echo "example-bench: FAILED: $impl did not close the subscriber that stopped reading" >&2
		exit 1
	fi
	stop_server
	echo "example-bench: $impl closed the subscriber that stopped reading" \
		"after $(echo "$line" | sed -n 's/.* stalled_bytes=\([0-9]*\).*/\1/p') bytes; the 8 others got every message"
done
# A hot channel read as fast as it comes, with eventbuf's default limits
# (-o 32 MiB, -l 1,048,576 messages): nobody may be closed, and nothing
# may be left unsent (resp_load gives up after 20 s without a byte). A
# subscription that stalled on a full output used to be forgotten when
# the output drained right after: such a run stalled for good.
port=$("$bin/resp_load" -F)
"$bin/service" --resp -p "$port" >>"$out/eventbuf.log" 2>&1 &
srv_pid=$!
wait_port "$port"
if ! line=$("$bin/resp_load" -p "$port" -n 8 -k 1 -m 3000000 -s 64); then
	echo "$line" >&2
	echo "example-bench: FAILED: a hot channel's readers did not get every message" >&2
	exit 1
fi
stop_server
echo "example-bench: 8 readers of one hot channel got all 3,000,000 messages" \
	"($(echo "$line" | sed -n 's/.* deliveries_per_s=\([0-9]*\).*/\1/p') deliveries/s), nobody closed"
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
		for r in $(seq "$reps"); do
			order="eventbuf redis"
			[ $((r % 2)) = 0 ] && order="redis eventbuf"
			for impl in $order; do
				start_server "$impl" "$n"
				if ! line=$("$bin/resp_load" -p "$port" -n "$n" -k "$k" \
						-m "$m" -w "$window" -r "$srv_pid"); then
					echo "$line" >&2
					echo "example-bench: FAILED against $impl (subs=$n keys=$k)" >&2
					exit 1
				fi
				stop_server
				rate=$(echo "$line" | sed -n 's/.* deliveries_per_s=\([0-9]*\).*/\1/p')
				rss=$(echo "$line" | sed -n 's/.* rss_per_sub_bytes=\(-\{0,1\}[0-9]*\).*/\1/p')
				echo "$n $k $m $impl $rate $rss $r" >>"$results"
			done
		done
		# Medians over the repetitions, as "bench" lines.
		for impl in eventbuf redis; do
			awk -v n="$n" -v k="$k" -v impl="$impl" -v w="$window" '
				function median(a, c,   i, j, t) {
					for (i = 2; i <= c; i++)
						for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
							t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
						}
					return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
				}
				$1 == n && $2 == k && $4 == impl { m = $3; r[++c] = $5; s[c] = $6 }
				END {
					printf "bench workload=resp impl=%s subs=%d keys=%d n=%d window=%d reps=%d metric=deliveries_per_s value=%.0f\n", impl, n, k, m, w, c, median(r, c)
					printf "bench workload=resp impl=%s subs=%d keys=%d n=%d reps=%d metric=rss_per_idle_sub_bytes value=%.0f\n", impl, n, k, m, c, median(s, c)
				}' "$results"
		done
	done
done

# The table: one row per (subs, keys), eventbuf beside redis; medians,
# and the ratio as the median [min-max] of the repetitions' ratios.
table=$out/table.md
awk '
	function median(a, c,   i, j, t) {
		for (i = 2; i <= c; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
				t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
			}
		return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
	}
	{ key = $1 " " $2; if (!(key in seen)) { seen[key] = 1; order[++rows] = key }
	  m[key] = $3; run[key, $4, $7] = $5; rss[key, $4, $7] = $6
	  if ($7 > nrep[key]) nrep[key] = $7 }
	END {
		print "| subscribers | channels | messages | eventbuf deliveries/s | redis deliveries/s | ratio | eventbuf RSS/idle sub | redis RSS/idle sub |"
		print "|---|---|---|---|---|---|---|---|"
		for (i = 1; i <= rows; i++) {
			key = order[i]; split(key, f, " "); c = nrep[key]
			lo = hi = ""
			for (r = 1; r <= c; r++) {
				e[r] = run[key, "eventbuf", r]; d[r] = run[key, "redis", r]
				q[r] = d[r] ? e[r] / d[r] : 0
				es[r] = rss[key, "eventbuf", r]; rs[r] = rss[key, "redis", r]
				if (lo == "" || q[r] < lo) lo = q[r]
				if (hi == "" || q[r] > hi) hi = q[r]
			}
			em = median(e, c); dm = median(d, c)
			printf "| %d | %d | %d | %.2f M | %.2f M | %.2fx [%.2f-%.2f] | %d B | %d B |\n",
				f[1], f[2], m[key], em / 1e6, dm / 1e6, median(q, c), lo, hi,
				median(es, c), median(rs, c)
			printf "%s/%s %g %g\n", f[1], f[2], em / 1e6, dm / 1e6 > dat
		}
	}' dat="$out/resp.dat" "$results" >"$table"
cat "$table"

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

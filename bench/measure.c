// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Helpers of the harness (bench.h) shared by the benchmark's files and the
 * small tools beside it (keymem): the clock, memory, failure, and the
 * snapshot handler of a topic that starts empty.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <eventbuf/publisher.h>

#include "bench.h"

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_die(const char *what, int err)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

uint64_t bench_rss_kb(void)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%lu %lu", &size, &resident) != 2)
		bench_die("/proc/self/statm", errno);
	fclose(f);
	return resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

uint64_t bench_heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* An empty snapshot at index 0: subscribers see every event from 1 on. */
int bench_empty_snapshot(void *arg, const char *topic, const char *key,
			 struct eventbuf_snapshot *snap, uint64_t *index)
{
	(void)arg;
	(void)topic;
	(void)key;
	(void)snap;
	*index = 0;
	return 0;
}

uint64_t bench_rank(uint64_t n, uint64_t permille)
{
	uint64_t r = (n * permille + 999) / 1000;

	return r ? r - 1 : 0;
}

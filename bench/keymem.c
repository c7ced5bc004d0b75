// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * keymem KEYS EVENTS [TTL_MS]: the memory a publisher's keys hold once
 * events have flowed and stopped. One topic, KEYS keys with one
 * subscription each, all attached to one poller; EVENTS rounds each
 * publish one event to every key, then the poller reads everything.
 * Snapshots are cached for TTL_MS (default 0: not cached, so that nothing
 * but the keys' own buffers keeps items). Prints, per key, the growth of
 * the resident set and of malloc()'s bytes in use right after the rounds,
 * and once reclamation ran, the buffers' pin chains saw the writer idle
 * and the cache (if any) expired; checks that every event was read.
 *
 * Build: make bench-build; run: build/bench/keymem 2000 5000.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <eventbuf/eventbuf.h>
#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#define TOPIC "keymem"
#define KEY_LEN 32

static void die(const char *what, int err)
{
	fprintf(stderr, "keymem: %s: %s\n", what, strerror(err));
	exit(1);
}

static uint64_t rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kib = 0;

	if (!f)
		die("/proc/self/status", errno);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtoull(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

static uint64_t heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static int empty_snapshot(void *arg, const char *topic, const char *key,
			  struct eventbuf_snapshot *snap, uint64_t *index)
{
	(void)arg;
	(void)topic;
	(void)key;
	(void)snap;
	*index = 0;
	return 0;
}

/* Read every subscription the poller reports until none has news. */
static uint64_t drain(struct eventbuf_poller *p)
{
	struct eventbuf_poll_event evs[256];
	uint64_t got = 0;
	int n;

	while ((n = eventbuf_poller_wait(p, evs, 256, 0, -1)) > 0)
		for (int i = 0; i < n; i++) {
			const struct eventbuf_event *e;
			size_t m;

			while (eventbuf_sub_next_nonblock(evs[i].sub, &e, &m) == 0)
				for (size_t j = 0; j < m; j++)
					got += !eventbuf_event_is_end_of_snapshot(&e[j]);
		}
	if (n != -ETIMEDOUT)
		die("eventbuf_poller_wait", -n);
	return got;
}

/* @ttl_ms, then two pin-chain periods (liburcu runs callbacks about every
 * 10 ms). */
static void settle(struct eventbuf_poller *p, uint32_t ttl_ms)
{
	const struct timespec pause = { 0, 50 * 1000 * 1000 };
	const struct timespec ttl = { ttl_ms / 1000,
				      (long)(ttl_ms % 1000) * 1000000 };

	nanosleep(&ttl, NULL);
	for (int i = 0; i < 2; i++) {
		drain(p);
		eventbuf_barrier();
		nanosleep(&pause, NULL);
	}
	eventbuf_barrier();
}

/* KiB per key of a growth from @before to @after, in @unit bytes. */
static double per_key(uint64_t before, uint64_t after, double unit,
		      uint64_t nkeys)
{
	return ((double)after - (double)before) * unit / 1024.0 /
	       (double)nkeys;
}

int main(int argc, char **argv)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = 0 };
	struct eventbuf_subscription **subs;
	struct eventbuf_publisher *pub;
	struct eventbuf_poller *p;
	uint64_t nkeys, rounds, got = 0;
	uint64_t rss0, rss1, rss2, heap0, heap1, heap2;
	char (*keys)[KEY_LEN];
	int ret;

	if (argc < 3 || argc > 4 || !(nkeys = strtoull(argv[1], NULL, 0)) ||
	    !(rounds = strtoull(argv[2], NULL, 0))) {
		fprintf(stderr, "usage: keymem KEYS EVENTS [TTL_MS]\n");
		return 2;
	}
	if (argc == 4)
		cfg.snapshot_ttl_ms = (uint32_t)strtoul(argv[3], NULL, 0);
	keys = calloc(nkeys, sizeof(*keys));
	subs = calloc(nkeys, sizeof(*subs));
	if (!keys || !subs)
		die("allocation", ENOMEM);
	if ((ret = eventbuf_publisher_new(&cfg, &pub)) ||
	    (ret = eventbuf_publisher_register(pub, TOPIC, empty_snapshot,
						NULL, 0)) ||
	    (ret = eventbuf_poller_new(&p)))
		die("set-up", -ret);
	for (uint64_t k = 0; k < nkeys; k++) {
		const struct eventbuf_subscribe_req req = {
			.topic = TOPIC, .key = keys[k],
		};

		snprintf(keys[k], KEY_LEN, "key-%" PRIu64, k);
		if ((ret = eventbuf_subscribe(pub, &req, &subs[k])) ||
		    (ret = eventbuf_poller_add_sub(p, subs[k], NULL)))
			die("subscribe", -ret);
	}
	settle(p, 0);	/* the snapshots stay cached through the rounds */
	rss0 = rss_kib();
	heap0 = heap_bytes();
	for (uint64_t i = 1; i <= rounds; i++) {
		for (uint64_t k = 0; k < nkeys; k++) {
			const struct eventbuf_event ev = {
				.index = i, .topic = TOPIC, .key = keys[k],
			};

			if ((ret = eventbuf_publish(pub, &ev, 1, NULL, NULL)))
				die("publish", -ret);
		}
		got += drain(p);
	}
	rss1 = rss_kib();
	heap1 = heap_bytes();
	settle(p, cfg.snapshot_ttl_ms);
	rss2 = rss_kib();
	heap2 = heap_bytes();
	if (got != nkeys * rounds) {
		fprintf(stderr, "keymem: read %" PRIu64 " events of %" PRIu64 "\n",
			got, nkeys * rounds);
		return 1;
	}
	printf("keymem: %" PRIu64 " keys, %" PRIu64 " events each, snapshots "
	       "cached %" PRIu32 " ms, all read. Per key, after the rounds: "
	       "RSS +%.1f KiB, malloc +%.1f KiB; idle: RSS +%.1f KiB, malloc "
	       "+%.1f KiB\n", nkeys, rounds, cfg.snapshot_ttl_ms,
	       per_key(rss0, rss1, 1024, nkeys), per_key(heap0, heap1, 1, nkeys),
	       per_key(rss0, rss2, 1024, nkeys), per_key(heap0, heap2, 1, nkeys));
	for (uint64_t k = 0; k < nkeys; k++)
		eventbuf_unsubscribe(subs[k]);
	eventbuf_poller_free(p);
	eventbuf_publisher_free(pub);
	eventbuf_barrier();
	free(subs);
	free(keys);
	return 0;
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * keymem KEYS EVENTS [TTL_MS]: the memory a publisher's keys hold once
 * events have flowed and stopped. One topic, KEYS keys with one
 * subscription each, all attached to one poller; EVENTS rounds each
 * publish one event to every key (indexes 1, 2, ... per key), then the
 * poller reads everything, and each key's subscription checks that it saw
 * every index of its key once and in order. Snapshots are cached for
 * TTL_MS (default 0: not cached, so that nothing but the keys' own
 * buffers keeps items); the cache built when the keys were subscribed
 * lives through the rounds if they take less than that.
 *
 * Prints, per key, the growth of the resident set and of malloc()'s bytes
 * in use right after the rounds, and again once reclamation ran, the
 * buffers' pin chains saw the writer idle and the cache (if any) expired.
 *
 * Build: make bench-build; run: build/bench/keymem 2000 5000.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <eventbuf/eventbuf.h>
#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "bench.h"

#define TOPIC "keymem"
#define KEY_LEN 32
#define TTL_MAX_MS 600000

struct key {
	char name[KEY_LEN];
	struct eventbuf_subscription *sub;
	uint64_t next;		/* the index expected next */
	uint64_t bad;		/* events out of order */
};

/* Read @k's subscription until it parks again. */
static void read_key(struct key *k)
{
	const struct eventbuf_event *ev;
	size_t n;
	int ret;

	while ((ret = eventbuf_sub_next_nonblock(k->sub, &ev, &n)) == 0)
		for (size_t i = 0; i < n; i++) {
			if (eventbuf_event_is_end_of_snapshot(&ev[i]))
				continue;
			if (ev[i].index != k->next)
				k->bad++;
			k->next = ev[i].index + 1;
		}
	if (ret != -EAGAIN)
		bench_die("keymem: eventbuf_sub_next_nonblock", ret);
}

/* Read every subscription the poller reports until none has news. */
static void drain(struct eventbuf_poller *p)
{
	struct eventbuf_poll_event evs[256];
	int n;

	while ((n = eventbuf_poller_wait(p, evs, 256, 0, -1)) > 0)
		for (int i = 0; i < n; i++)
			read_key(evs[i].data);
	if (n != -ETIMEDOUT)
		bench_die("keymem: eventbuf_poller_wait", n ? n : -EPROTO);
}

/* @wait_ms, then two pin-chain periods (liburcu runs callbacks about every
 * 10 ms). */
static void settle(struct eventbuf_poller *p, uint32_t wait_ms)
{
	const struct timespec pause = { 0, 50 * 1000 * 1000 };
	const struct timespec wait = { wait_ms / 1000,
				       (long)(wait_ms % 1000) * 1000000 };

	nanosleep(&wait, NULL);
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

static void subscribe_all(struct eventbuf_publisher *pub,
			  struct eventbuf_poller *p, struct key *keys,
			  uint64_t nkeys)
{
	for (uint64_t k = 0; k < nkeys; k++) {
		const struct eventbuf_subscribe_req req = {
			.topic = TOPIC, .key = keys[k].name,
		};
		int ret;

		snprintf(keys[k].name, KEY_LEN, "key-%" PRIu64, k);
		keys[k].next = 1;
		if ((ret = eventbuf_subscribe(pub, &req, &keys[k].sub)) ||
		    (ret = eventbuf_poller_add_sub(p, keys[k].sub, &keys[k])))
			bench_die("keymem: subscribe", ret);
	}
}

/* Every key saw 1..@rounds, in order: exits with a message otherwise. */
static void check(const struct key *keys, uint64_t nkeys, uint64_t rounds)
{
	for (uint64_t k = 0; k < nkeys; k++)
		if (keys[k].bad || keys[k].next != rounds + 1) {
			fprintf(stderr, "keymem: %s read up to %" PRIu64
				" of %" PRIu64 ", %" PRIu64 " out of order\n",
				keys[k].name, keys[k].next - 1, rounds,
				keys[k].bad);
			exit(1);
		}
}

int main(int argc, char **argv)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = 0 };
	uint64_t nkeys, rounds, ttl = 0;
	uint64_t rss0, rss1, rss2, heap0, heap1, heap2;
	struct eventbuf_publisher *pub;
	struct eventbuf_poller *p;
	struct key *keys;
	int ret;

	if (argc < 3 || argc > 4 || !(nkeys = strtoull(argv[1], NULL, 0)) ||
	    !(rounds = strtoull(argv[2], NULL, 0)) ||
	    (argc == 4 && (ttl = strtoull(argv[3], NULL, 0)) > TTL_MAX_MS)) {
		fprintf(stderr, "usage: keymem KEYS EVENTS [TTL_MS (0-%d)]\n",
			TTL_MAX_MS);
		return 2;
	}
	cfg.snapshot_ttl_ms = (uint32_t)ttl;
	keys = calloc(nkeys, sizeof(*keys));
	if (!keys)
		bench_die("keymem", ENOMEM);
	if ((ret = eventbuf_publisher_new(&cfg, &pub)) ||
	    (ret = eventbuf_publisher_register(pub, TOPIC, bench_empty_snapshot,
						NULL, 0)) ||
	    (ret = eventbuf_poller_new(&p)))
		bench_die("keymem: set-up", ret);
	subscribe_all(pub, p, keys, nkeys);
	settle(p, 0);	/* the snapshots stay cached through the rounds */
	rss0 = bench_rss_kb();
	heap0 = bench_heap_bytes();
	for (uint64_t i = 1; i <= rounds; i++) {
		for (uint64_t k = 0; k < nkeys; k++) {
			const struct eventbuf_event ev = {
				.index = i, .topic = TOPIC, .key = keys[k].name,
			};

			if ((ret = eventbuf_publish(pub, &ev, 1, NULL, NULL)))
				bench_die("keymem: publish", ret);
		}
		drain(p);
	}
	rss1 = bench_rss_kb();
	heap1 = bench_heap_bytes();
	settle(p, cfg.snapshot_ttl_ms);
	rss2 = bench_rss_kb();
	heap2 = bench_heap_bytes();
	check(keys, nkeys, rounds);
	printf("keymem: %" PRIu64 " keys, %" PRIu64 " events each, snapshots "
	       "cached %" PRIu32 " ms, every event read in order. Per key, "
	       "after the rounds: RSS %+.1f KiB, malloc %+.1f KiB; idle: RSS "
	       "%+.1f KiB, malloc %+.1f KiB\n", nkeys, rounds,
	       cfg.snapshot_ttl_ms, per_key(rss0, rss1, 1024, nkeys),
	       per_key(heap0, heap1, 1, nkeys), per_key(rss0, rss2, 1024, nkeys),
	       per_key(heap0, heap2, 1, nkeys));
	for (uint64_t k = 0; k < nkeys; k++)
		eventbuf_unsubscribe(keys[k].sub);
	eventbuf_poller_free(p);
	eventbuf_publisher_free(pub);
	eventbuf_barrier();
	free(keys);
	return 0;
}

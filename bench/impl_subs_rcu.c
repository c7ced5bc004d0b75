// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The library for the subscribers workload: one publisher with one topic,
 * one subscription per subscriber, one poller per event loop. Subscribers
 * start from an empty snapshot (index 0), whose end-of-snapshot event is
 * framing, not data; the events published carry indexes from 1 on, so the
 * subscription continues with every one of them. The publish timestamp
 * rides in the event's payload.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "bench.h"
#include "subs.h"

#define TOPIC "bench"
#define KEY_LEN 32

struct state {
	struct eventbuf_publisher *pub;
	char (*keys)[KEY_LEN];
};

static uint64_t rcu_fds_needed(uint64_t nsubs, uint64_t nkeys, int nloops)
{
	/*
	 * An eventfd per parked link, and as many again or more in flight:
	 * a link's eventfd returns to the pool only a grace period after
	 * every subscriber moved on to the next link (measured: 2 per key
	 * at K = N, 3 at K = 100); the pollers' two each, the publisher's.
	 */
	return 3 * (nkeys < nsubs ? nkeys : nsubs) + 2 * (uint64_t)nloops + 1;
}

/* A service's setting: a herd of subscribers of one key shares one. */
#define SNAPSHOT_TTL_MS 1000

static void *rcu_create(uint64_t nkeys, int nloops)
{
	const struct eventbuf_publisher_config cfg = {
		.snapshot_ttl_ms = SNAPSHOT_TTL_MS,
	};
	struct state *s = malloc(sizeof(*s));

	(void)nloops;
	if (!s)
		return NULL;
	s->keys = malloc(nkeys * sizeof(*s->keys));
	if (!s->keys)
		goto fail;
	for (uint64_t k = 0; k < nkeys; k++)
		snprintf(s->keys[k], KEY_LEN, "key-%" PRIu64, k);
	if (eventbuf_publisher_new(&cfg, &s->pub))
		goto fail_keys;
	if (eventbuf_publisher_register(s->pub, TOPIC, bench_empty_snapshot,
					NULL, 0))
		goto fail_pub;
	return s;
fail_pub:
	eventbuf_publisher_free(s->pub);
fail_keys:
	free(s->keys);
fail:
	free(s);
	return NULL;
}

/*
 * Until the snapshots cached while subscribing expire (the publisher's
 * expiry thread drops them), then until reclamation has freed them: a
 * cached snapshot holds every event published after it, so a run timed
 * while it is cached would leave its reclamation until after the run.
 */
static int rcu_settle(void *ps)
{
	struct state *s = ps;
	struct eventbuf_publisher_stats st;
	const struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };
	uint64_t deadline = bench_now_ns() +
		(uint64_t)(SNAPSHOT_TTL_MS + 5000) * 1000 * 1000;
	int ret;

	while ((ret = eventbuf_publisher_stats(s->pub, &st)) == 0 &&
	       st.cache_entries) {
		if (bench_now_ns() > deadline)
			return -ETIMEDOUT;
		nanosleep(&tick, NULL);
	}
	if (ret)
		return ret;
	eventbuf_barrier();
	return 0;
}

static void rcu_destroy(void *ps)
{
	struct state *s = ps;

	eventbuf_publisher_free(s->pub);
	free(s->keys);
	free(s);
}

static void *rcu_subscribe(void *ps, uint64_t key, int loop)
{
	struct state *s = ps;
	const struct eventbuf_subscribe_req req = {
		.topic = TOPIC,
		.key = s->keys[key],
	};
	struct eventbuf_subscription *sub;

	(void)loop;
	return eventbuf_subscribe(s->pub, &req, &sub) ? NULL : sub;
}

static void rcu_unsubscribe(void *sub)
{
	eventbuf_unsubscribe(sub);
}

static int rcu_publish(void *ps, uint64_t key, uint64_t index, uint64_t stamp)
{
	struct state *s = ps;
	const struct eventbuf_event ev = {
		.index = index,
		.topic = TOPIC,
		.key = s->keys[key],
		.payload = (void *)(uintptr_t)stamp,
	};

	return eventbuf_publish(s->pub, &ev, 1, NULL, NULL);
}

static void *rcu_loop_new(void *ps, int loop)
{
	struct eventbuf_poller *p;

	(void)ps;
	(void)loop;
	if (eventbuf_poller_new(&p))
		return NULL;
	if (eventbuf_poller_enable_groups(p)) {
		eventbuf_poller_free(p);
		return NULL;
	}
	return p;
}

static int rcu_loop_add(void *loop, void *sub, void *sub_data)
{
	return eventbuf_poller_add_sub(loop, sub, sub_data);
}

/*
 * Read @sub until -EAGAIN, which parks it on its poller again; a
 * non-terminal failure to park leaves it reported again.
 */
static int drain(struct eventbuf_subscription *sub, void *sub_data,
		 bench_subs_fn fn, void *loop_ctx)
{
	const struct eventbuf_event *evs;
	size_t n;
	int ret;

	while ((ret = eventbuf_sub_next_nonblock(sub, &evs, &n)) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (eventbuf_event_is_end_of_snapshot(&evs[i]) ||
			    eventbuf_event_is_new_snapshot(&evs[i]))
				continue;
			fn(loop_ctx, sub_data, evs[i].index,
			   (uint64_t)(uintptr_t)evs[i].payload);
		}
	}
	switch (ret) {
	case -EAGAIN:
	/* No descriptor to park on yet: the poller reports @sub again. */
	case -EMFILE:
	case -ENFILE:
	case -ENOMEM:
	case -ENOSPC:
		return 0;
	default:
		return ret;
	}
}

/* Every group: each batch once, handed to each member. */
static long read_groups(struct eventbuf_poller *p, bench_subs_fn fn,
			void *loop_ctx)
{
	const struct eventbuf_event *evs;
	struct eventbuf_poll_group g;
	long served = 0;
	size_t n;

	while (eventbuf_poller_group(p, &g) > 0) {
		served += (long)g.count;
		while (eventbuf_poller_group_next(p, &evs, &n) == 0)
			for (size_t m = 0; m < g.count; m++)
				for (size_t i = 0; i < n && g.members[m].sub; i++)
					fn(loop_ctx, g.members[m].data,
					   evs[i].index,
					   (uint64_t)(uintptr_t)evs[i].payload);
	}
	return served;
}

static long rcu_loop_run(void *loop, bench_subs_fn fn, void *loop_ctx,
			 int timeout_ms)
{
	struct eventbuf_poll_event evs[256];
	long served;

	do {
		int n = eventbuf_poller_wait(loop, evs, 256, timeout_ms, -1);

		if (n == -ETIMEDOUT)
			return 0;
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			int ret = drain(evs[i].sub, evs[i].data, fn, loop_ctx);

			if (ret)
				return ret;
		}
		/* 0: the groups it saw waiting had all left; wait on. */
		served = n + read_groups(loop, fn, loop_ctx);
	} while (!served && timeout_ms != 0);
	return served;
}

static void rcu_loop_counts(void *loop, uint64_t *registrations,
			    uint64_t *wakeups, uint64_t *quiet)
{
	struct eventbuf_poller_stats st;

	if (eventbuf_poller_stats(loop, &st))
		bench_die("eventbuf_poller_stats", EINVAL);
	*registrations = st.epoll_adds;
	*wakeups = st.wakeups + st.stale;
	*quiet = st.quiet;
}

static void rcu_loop_free(void *loop)
{
	eventbuf_poller_free(loop);
}

const struct bench_subs_impl bench_subs_rcu = {
	.name = "rcu",
	.fds_needed = rcu_fds_needed,
	.create = rcu_create,
	.destroy = rcu_destroy,
	.subscribe = rcu_subscribe,
	.unsubscribe = rcu_unsubscribe,
	.publish = rcu_publish,
	.loop_new = rcu_loop_new,
	.loop_add = rcu_loop_add,
	.loop_run = rcu_loop_run,
	.loop_free = rcu_loop_free,
	.loop_counts = rcu_loop_counts,
	.quiesce = eventbuf_barrier,
	.settle = rcu_settle,
};

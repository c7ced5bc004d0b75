// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The publisher: Consul's publisher, subscription and snapshot tests
 * ported, plus what C adds - reclamation through caches and closes, the
 * lag limit, the pollable descriptor, and subscribers churning while the
 * publisher runs.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <eventbuf/publisher.h>

#include "helpers.h"

enum handler_mode { SNAP_ONE, SNAP_TWO, SNAP_ZERO, SNAP_FAIL, SNAP_EMPTY,
		   SNAP_ONE_FAIL, SNAP_REENTER };

struct fixture {
	struct eventbuf_publisher *pub;
	enum handler_mode mode;
	int fail_code;			/* SNAP_FAIL's, 0: -EPERM */
	uint64_t snap_index;
	_Atomic int calls;
	struct release_log log;		/* published and snapshot events */
	int reenter[6];			/* SNAP_REENTER's publisher calls */
};

static struct fixture fx;

/* Snapshot: "snapshot" at snap_index (and "next" at 3 for SNAP_TWO). */
static int handler(void *arg, const char *topic, const char *key,
		   struct eventbuf_snapshot *snap, uint64_t *index)
{
	struct fixture *f = arg;
	struct eventbuf_event ev[2] = {
		{ .index = f->snap_index, .topic = topic, .key = key,
		  .payload = "snapshot" },
		{ .index = 3, .topic = topic, .key = key, .payload = "next" },
	};

	atomic_fetch_add(&f->calls, 1);
	switch (f->mode) {
	case SNAP_FAIL:
		return f->fail_code ? f->fail_code : -EPERM;
	case SNAP_ZERO:
		*index = 0;
		return 0;
	case SNAP_EMPTY:
		*index = f->snap_index;
		return 0;
	case SNAP_REENTER: {
		struct eventbuf_subscribe_req req = { .topic = "test",
						      .key = "other" };
		struct eventbuf_publisher_stats st;
		struct eventbuf_subscription *sub = NULL;

		f->reenter[0] = eventbuf_publish(f->pub, ev, 1, NULL, NULL);
		f->reenter[1] = eventbuf_subscribe(f->pub, &req, &sub);
		f->reenter[2] = eventbuf_publisher_close_key(f->pub, "test",
							     "other");
		f->reenter[3] = eventbuf_publisher_close_tag(f->pub, 1);
		f->reenter[4] = eventbuf_publisher_stats(f->pub, &st);
		f->reenter[5] = eventbuf_publisher_register(f->pub, "new",
							    handler, f, 0);
		*index = 0;
		return 0;
	}
	case SNAP_ONE_FAIL:
		if (eventbuf_snapshot_append(snap, ev, 1, release_log_cb,
					     &f->log))
			return -ENOMEM;
		return -EPERM;
	case SNAP_TWO:
		*index = 3;
		return eventbuf_snapshot_append(snap, ev, 2, release_log_cb,
						&f->log);
	default:
		*index = f->snap_index;
		return eventbuf_snapshot_append(snap, ev, 1, release_log_cb,
						&f->log);
	}
}

static int setup_ttl(uint32_t ttl_ms)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = ttl_ms };

	memset(&fx, 0, sizeof(fx));
	fx.snap_index = 1;
	release_log_init(&fx.log, 1000);
	if (eventbuf_publisher_new(&cfg, &fx.pub) ||
	    eventbuf_publisher_register(fx.pub, "test", handler, &fx, 0) ||
	    eventbuf_publisher_register(fx.pub, "wild", handler, &fx,
					EVENTBUF_TOPIC_WILDCARD))
		return -1;
	return 0;
}

static int setup(void **state)
{
	*state = &fx;
	return setup_ttl(0);
}

static int setup_cache(void **state)
{
	*state = &fx;
	return setup_ttl(1000);
}

static int teardown(void **state)
{
	int ret;

	(void)state;
	eventbuf_publisher_free(fx.pub);
	ret = expect_nothing_left();
	if (atomic_load(&fx.log.bad))
		ret = -1;
	release_log_free(&fx.log);
	return ret;
}

static int publish(const char *topic, const char *key, uint64_t index)
{
	struct eventbuf_event ev = { .index = index, .topic = topic, .key = key,
				     .payload = "live" };

	return eventbuf_publish(fx.pub, &ev, 1, release_log_cb, &fx.log);
}

static struct eventbuf_subscription *subscribe(const char *key, uint64_t index)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .key = key,
					      .index = index };
	struct eventbuf_subscription *sub = NULL;

	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
	return sub;
}

/* The next batch's first event (the batch must have @n events). */
static const struct eventbuf_event *next(struct eventbuf_subscription *sub,
					 size_t want_n)
{
	const struct eventbuf_event *ev = NULL;
	size_t n = 0;

	assert_int_equal(eventbuf_sub_next(sub, 2000, -1, &ev, &n), 0);
	assert_int_equal(n, want_n);
	return ev;
}

static void expect_snapshot(struct eventbuf_subscription *sub, uint64_t index)
{
	const struct eventbuf_event *ev = next(sub, 1);

	assert_string_equal(ev->payload, "snapshot");
	assert_int_equal(ev->index, index);
	ev = next(sub, 1);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	assert_int_equal(ev->index, index);
}

static void expect_nothing(struct eventbuf_subscription *sub)
{
	const struct eventbuf_event *ev;
	size_t n;

	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EAGAIN);
}

static void expect_live(struct eventbuf_subscription *sub, uint64_t index)
{
	const struct eventbuf_event *ev = next(sub, 1);

	assert_int_equal(ev->index, index);
	assert_string_equal(ev->payload, "live");
}

/* Consul: TestEventPublisher_SubscribeWithIndex0 */
static void test_publisher_snapshot_then_live(void **state)
{
	struct eventbuf_subscription *sub;

	(void)state;
	sub = subscribe("sub-key", 0);
	expect_snapshot(sub, 1);
	expect_nothing(sub);
	assert_int_equal(publish("test", "sub-key", 2), 0);
	expect_live(sub, 2);
	/* Another key's events do not reach it. */
	assert_int_equal(publish("test", "other-key", 3), 0);
	expect_nothing(sub);
	eventbuf_unsubscribe(sub);
}

/* Consul: TestEventPublisher_ShutdownClosesSubscriptions */
static void test_publisher_shutdown_closes(void **state)
{
	struct eventbuf_subscription *s1, *s2;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	s1 = subscribe("a", 0);
	s2 = subscribe("b", 0);
	expect_snapshot(s1, 1);
	eventbuf_publisher_free(fx.pub);
	assert_int_equal(eventbuf_sub_next(s1, 2000, -1, &ev, &n), -ESHUTDOWN);
	assert_int_equal(eventbuf_sub_next(s2, 2000, -1, &ev, &n), -ESHUTDOWN);
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
	eventbuf_barrier();	/* release callbacks use fx.log */
	release_log_free(&fx.log);
	assert_int_equal(setup_ttl(0), 0);	/* for teardown */
}

/* Consul: TestEventPublisher_SubscribeWithIndex0_FromCache */
static void test_publisher_cache_skips_handler(void **state)
{
	struct eventbuf_subscription *s1, *s2;

	(void)state;
	s1 = subscribe("sub-key", 0);
	expect_snapshot(s1, 1);
	fx.mode = SNAP_FAIL;	/* "cache should have been used" */
	s2 = subscribe("sub-key", 0);
	expect_snapshot(s2, 1);
	assert_int_equal(atomic_load(&fx.calls), 1);
	expect_nothing(s2);
	assert_int_equal(publish("test", "sub-key", 3), 0);
	expect_live(s1, 3);
	expect_live(s2, 3);
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
}

/* Consul: TestEventPublisher_SubscribeWithIndexNotZero_CanResume */
static void test_publisher_resume_up_to_date(void **state)
{
	struct eventbuf_subscription *existing, *s1, *s2;

	(void)state;
	existing = subscribe("sub-key", 0);
	assert_int_equal(publish("test", "sub-key", 1), 0);
	s1 = subscribe("sub-key", 0);
	/* The topic copy of index 1 is not above the snapshot's 1. */
	expect_snapshot(s1, 1);
	expect_nothing(s1);
	s2 = subscribe("sub-key", 1);
	expect_nothing(s2);	/* no snapshot, no frame */
	assert_int_equal(publish("test", "sub-key", 3), 0);
	expect_live(s2, 3);
	expect_live(s1, 3);
	assert_int_equal(atomic_load(&fx.calls), 1);	/* the cache */
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
	eventbuf_unsubscribe(existing);
}

static void expect_new_snapshot(struct eventbuf_subscription *sub)
{
	const struct eventbuf_event *ev = next(sub, 1);

	assert_true(eventbuf_event_is_new_snapshot(ev));
	assert_false(eventbuf_event_is_end_of_snapshot(ev));
}

/* Consul: TestEventPublisher_SubscribeWithIndexNotZero_NewSnapshot */
static void test_publisher_stale_index_new_snapshot(void **state)
{
	struct eventbuf_subscription *sub;

	(void)state;
	assert_int_equal(publish("test", "sub-key", 1), 0);	/* dropped */
	sub = subscribe("sub-key", 0);
	expect_snapshot(sub, 1);
	eventbuf_unsubscribe(sub);
	assert_int_equal(publish("test", "sub-key", 3), 0);	/* dropped */
	sub = subscribe("sub-key", 1);
	expect_new_snapshot(sub);
	expect_snapshot(sub, 1);
	expect_nothing(sub);
	eventbuf_unsubscribe(sub);
	eventbuf_barrier();
	/* Nothing was kept for the unwatched key: both released already. */
	assert_int_equal(release_log_count(&fx.log, 3, 4, 1), 1);
}

/* Consul: TestEventPublisher_SubscribeWithIndexNotZero_NewSnapshotFromCache */
static void test_publisher_stale_index_from_cache(void **state)
{
	struct eventbuf_subscription *existing, *s1, *s2;

	(void)state;
	existing = subscribe("sub-key", 0);
	assert_int_equal(publish("test", "sub-key", 1), 0);
	s1 = subscribe("sub-key", 0);
	expect_snapshot(s1, 1);
	assert_int_equal(publish("test", "sub-key", 3), 0);
	fx.mode = SNAP_FAIL;
	s2 = subscribe("sub-key", 1);
	expect_new_snapshot(s2);
	expect_snapshot(s2, 1);
	expect_live(s2, 3);
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
	eventbuf_unsubscribe(existing);
}

/* Consul: ..._NewSnapshot_WithCache (#9772): no frame inside the cache. */
static void test_publisher_cache_has_no_frame(void **state)
{
	struct eventbuf_subscription *existing, *s1, *s2;
	const struct eventbuf_event *ev;

	(void)state;
	fx.mode = SNAP_TWO;
	existing = subscribe("sub-key", 0);
	assert_int_equal(publish("test", "sub-key", 1), 0);
	assert_int_equal(publish("test", "sub-key", 3), 0);
	s1 = subscribe("sub-key", 1);
	expect_new_snapshot(s1);
	ev = next(s1, 2);
	assert_string_equal(ev[0].payload, "snapshot");
	assert_string_equal(ev[1].payload, "next");
	ev = next(s1, 1);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	assert_int_equal(ev->index, 3);
	fx.mode = SNAP_FAIL;
	s2 = subscribe("sub-key", 0);
	ev = next(s2, 2);
	assert_string_equal(ev[0].payload, "snapshot");
	ev = next(s2, 1);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	expect_nothing(s2);
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
	eventbuf_unsubscribe(existing);
}

/* Consul: ..._Unsubscribe_FreesResourcesWhenThereAreNoSubscribers */
static void test_publisher_unsubscribe_frees(void **state)
{
	struct eventbuf_publisher_stats st;
	struct eventbuf_subscription *s1, *s2;

	(void)state;
	s1 = subscribe("sub-key", 0);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.key_buffers, 1);
	assert_int_equal(st.cache_entries, 1);
	s2 = subscribe("sub-key", 0);
	eventbuf_unsubscribe(s1);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.key_buffers, 1);
	assert_int_equal(st.cache_entries, 1);
	assert_int_equal(st.subscriptions, 1);
	eventbuf_unsubscribe(s2);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.key_buffers, 0);
	assert_int_equal(st.cache_entries, 0);
	assert_int_equal(st.subscriptions, 0);
	eventbuf_barrier();
	/* The snapshot's events were released with the cache. */
	assert_int_equal(release_log_count(&fx.log, 1, 2, 1), 1);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.lib.live_items, 0);
}

static void test_publisher_wildcard(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test",
					      .key = EVENTBUF_KEY_WILDCARD };
	struct eventbuf_event evs[3] = {
		{ .index = 2, .topic = "wild", .key = "a", .payload = "live" },
		{ .index = 2, .topic = "wild", .key = "b", .payload = "live" },
		{ .index = 2, .topic = "test", .key = "a", .payload = "live" },
	};
	struct eventbuf_subscription *sub, *sa;
	const struct eventbuf_event *ev;

	(void)state;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), -EINVAL);
	req.topic = "wild";
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
	expect_snapshot(sub, 1);
	req.key = "a";
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sa), 0);
	expect_snapshot(sa, 1);
	assert_int_equal(eventbuf_publish(fx.pub, evs, 3, release_log_cb,
					  &fx.log), 0);
	/* Every key of the topic, in one batch; the key sees its own. */
	ev = next(sub, 2);
	assert_string_equal(ev[0].key, "a");
	assert_string_equal(ev[1].key, "b");
	ev = next(sa, 1);
	assert_string_equal(ev->key, "a");
	assert_string_equal(ev->topic, "wild");
	expect_nothing(sub);
	expect_nothing(sa);
	/* A wildcard is for subscribing only. */
	evs[0].key = EVENTBUF_KEY_WILDCARD;
	assert_int_equal(eventbuf_publish(fx.pub, evs, 1, NULL, NULL), -EINVAL);
	eventbuf_unsubscribe(sub);
	eventbuf_unsubscribe(sa);
}

/*
 * One batch of many events over a few dozen keys of two topics, in a
 * scrambled order: a wildcard subscriber sees the topic's events sorted
 * by key (a NULL key as "") and, within a key, in the order given; a
 * key's subscriber sees exactly its own, in that order.
 */
static void test_publisher_batch_sorted_stable(void **state)
{
	enum { N = 600, KEYS = 37 };
	static char names[KEYS][16];
	static struct eventbuf_event evs[N];
	static int pos[N];
	struct eventbuf_subscribe_req req = { .topic = "wild",
					      .key = EVENTBUF_KEY_WILDCARD };
	struct eventbuf_subscription *all, *one;
	const struct eventbuf_event *ev;
	size_t n = 0, want_one = 0, seen = 0;
	uint32_t x = 12345;

	(void)state;
	for (int k = 0; k < KEYS; k++)	/* lengths 1 to 12: prefixes too */
		snprintf(names[k], sizeof(names[k]), "%.*s", 1 + k % 12,
			 k % 2 ? "kkkkkkkkkkkk" : "k7k7k7k7k7k7");
	for (int k = 0; k < KEYS; k++)
		names[k][0] = (char)('a' + k % 5);
	for (int i = 0; i < N; i++) {
		int k;

		x = x * 1103515245 + 12345;
		k = (int)(x >> 16) % (KEYS + 1);
		pos[i] = i;
		evs[i] = (struct eventbuf_event){ .index = 2, .payload = &pos[i],
			.topic = (x >> 8) % 3 ? "wild" : "test",
			.key = k == KEYS ? NULL : names[k] };
		if (k == 3 && !strcmp(evs[i].topic, "wild"))
			want_one++;
	}
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &all), 0);
	expect_snapshot(all, 1);
	req.key = names[3];
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &one), 0);
	expect_snapshot(one, 1);
	assert_int_equal(eventbuf_publish(fx.pub, evs, N, NULL, NULL), 0);

	assert_int_equal(eventbuf_sub_next(all, 2000, -1, &ev, &n), 0);
	for (size_t i = 0; i < n; i++) {
		const char *key = ev[i].key ? ev[i].key : "";
		int at = *(const int *)ev[i].payload;

		assert_string_equal(ev[i].topic, "wild");
		assert_true(evs[at].key == ev[i].key);
		if (i) {
			const char *prev = ev[i - 1].key ? ev[i - 1].key : "";
			int c = strcmp(prev, key);

			assert_true(c < 0 || (c == 0 &&
				    *(const int *)ev[i - 1].payload < at));
		}
		seen++;
	}
	for (int i = 0; i < N; i++)
		if (!strcmp(evs[i].topic, "wild"))
			seen--;
	assert_int_equal(seen, 0);	/* every "wild" event, once */

	assert_int_equal(eventbuf_sub_next(one, 2000, -1, &ev, &n), 0);
	assert_int_equal(n, want_one);
	for (size_t i = 1; i < n; i++)
		assert_true(*(const int *)ev[i - 1].payload <
			    *(const int *)ev[i].payload);
	expect_nothing(all);
	expect_nothing(one);
	eventbuf_unsubscribe(all);
	eventbuf_unsubscribe(one);
}

/* Consul: TestEventPublisher_SnapshotIndex0 */
static void test_publisher_snapshot_index_zero(void **state)
{
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;

	(void)state;
	fx.mode = SNAP_ZERO;
	sub = subscribe("sub-key", 0);
	ev = next(sub, 1);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	assert_int_equal(ev->index, 0);
	/* Nothing happened yet: the first change, index 1, is not covered. */
	assert_int_equal(publish("test", "sub-key", 1), 0);
	expect_live(sub, 1);
	eventbuf_unsubscribe(sub);
}

/* A successful empty snapshot at index 0 is cached like any other. */
static void test_publisher_cache_index_zero(void **state)
{
	struct eventbuf_subscription *s1, *s2;

	(void)state;
	fx.mode = SNAP_ZERO;
	s1 = subscribe("k", 0);
	assert_true(eventbuf_event_is_end_of_snapshot(next(s1, 1)));
	s2 = subscribe("k", 0);
	assert_true(eventbuf_event_is_end_of_snapshot(next(s2, 1)));
	assert_int_equal(atomic_load(&fx.calls), 1);
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
}

/*
 * Every key string a subscription hands out - in the handler's events, the
 * end-of-snapshot and new-snapshot frames - stays valid as long as the
 * batch does, even after a force-close or the publisher's free dropped
 * the key buffer whose key it was (the handler receives that copy).
 */
static void expect_keys(const struct eventbuf_event *const ev[3],
			const char *key)
{
	for (int i = 0; i < 3; i++)
		assert_string_equal(ev[i]->key, key);
}

static void test_publisher_key_outlives_key_buffer(void **state)
{
	struct eventbuf_subscription *s1, *s2, *s3;
	const struct eventbuf_event *ev1, *ev2, *ev3;
	char *key = strdup("transient-key");

	(void)state;
	assert_non_null(key);
	s1 = subscribe(key, 0);
	s2 = subscribe(key, 0);
	s3 = subscribe(key, 7);
	free(key);		/* the caller's copy: the library keeps its own */
	ev1 = next(s1, 1);	/* the handler's event, key = its argument */
	assert_string_equal(ev1->payload, "snapshot");
	(void)next(s2, 1);
	ev2 = next(s2, 1);	/* the end-of-snapshot frame */
	assert_true(eventbuf_event_is_end_of_snapshot(ev2));
	ev3 = next(s3, 1);	/* the new-snapshot frame */
	assert_true(eventbuf_event_is_new_snapshot(ev3));
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, "test",
						      "transient-key"), 3);
	expect_keys((const struct eventbuf_event *const[3]){ ev1, ev2, ev3 },
		    "transient-key");
	eventbuf_publisher_free(fx.pub);
	fx.pub = NULL;
	eventbuf_barrier();
	expect_keys((const struct eventbuf_event *const[3]){ ev1, ev2, ev3 },
		    "transient-key");
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
	eventbuf_unsubscribe(s3);
}

/*
 * A cached snapshot is as far behind as the batches published since it
 * was made: a subscriber with a lag limit must not start from one that
 * old, or the limit closes it while it reads as fast as it can.
 */
static void test_publisher_lag_limit_skips_old_cache(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .key = "k",
					      .lag_limit = 32 };
	struct eventbuf_subscription *first, *limited, *second;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	first = subscribe("k", 0);	/* builds and caches at index 1 */
	expect_snapshot(first, 1);
	for (uint64_t i = 2; i <= 101; i++)
		assert_int_equal(publish("test", "k", i), 0);
	fx.snap_index = 101;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &limited), 0);
	assert_int_equal(atomic_load(&fx.calls), 2);	/* not the cache */
	expect_snapshot(limited, 101);
	/* That fresh entry is within the limit: the next one uses it. */
	fx.mode = SNAP_FAIL;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &second), 0);
	expect_snapshot(second, 101);
	assert_int_equal(atomic_load(&fx.calls), 2);
	for (uint64_t i = 102; i <= 400; i++) {
		assert_int_equal(publish("test", "k", i), 0);
		assert_int_equal(eventbuf_sub_next(limited, 1000, -1, &ev, &n), 0);
		assert_int_equal(ev->index, i);
		assert_int_equal(eventbuf_sub_next(second, 1000, -1, &ev, &n), 0);
		assert_int_equal(ev->index, i);
	}
	eventbuf_unsubscribe(limited);
	eventbuf_unsubscribe(second);
	eventbuf_unsubscribe(first);
}

/*
 * The splice: it looks at the key buffer's head itself (upstream once
 * lost it), links the first batch above the snapshot's index, and never
 * delivers again what the snapshot covered.
 */
static void test_publisher_splice_no_gap_no_duplicate(void **state)
{
	struct eventbuf_subscription *existing, *s1, *s2;
	const struct eventbuf_event *ev;

	(void)state;
	existing = subscribe("k", 0);
	for (uint64_t i = 1; i <= 3; i++)
		assert_int_equal(publish("test", "k", i), 0);
	/* The head is 3; a snapshot at 2 continues with the head itself. */
	fx.snap_index = 2;
	s1 = subscribe("k", 0);
	expect_snapshot(s1, 2);
	expect_live(s1, 3);
	expect_nothing(s1);
	/* A snapshot ahead of the buffer (at 5) skips what it covered. */
	fx.mode = SNAP_EMPTY;
	fx.snap_index = 5;
	s2 = subscribe("k", 7);		/* stale: index 7 is not the head */
	expect_new_snapshot(s2);
	ev = next(s2, 1);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	assert_int_equal(ev->index, 5);
	assert_int_equal(publish("test", "k", 4), 0);	/* <= 5: covered */
	assert_int_equal(publish("test", "k", 6), 0);
	expect_live(s2, 6);
	expect_nothing(s2);
	expect_live(s1, 4);
	expect_live(s1, 6);
	eventbuf_unsubscribe(s1);
	eventbuf_unsubscribe(s2);
	eventbuf_unsubscribe(existing);
}

static bool no_cache(void *arg)
{
	struct eventbuf_publisher_stats st;

	(void)arg;
	return !eventbuf_publisher_stats(fx.pub, &st) && !st.cache_entries;
}

/*
 * The cache's TTL ends while the key still has a subscriber: the cache's
 * reference goes, and reclamation frees the snapshot (release counted).
 */
static void test_publisher_ttl_expiry_releases(void **state)
{
	struct eventbuf_subscription *s1, *s2;

	(void)state;
	eventbuf_publisher_free(fx.pub);
	eventbuf_barrier();	/* release callbacks use fx.log */
	release_log_free(&fx.log);
	assert_int_equal(setup_ttl(100), 0);
	fx.snap_index = 7;
	s1 = subscribe("k", 0);
	expect_snapshot(s1, 7);
	expect_nothing(s1);		/* parked past the snapshot */
	s2 = subscribe("k", 0);		/* from the cache */
	expect_snapshot(s2, 7);
	expect_nothing(s2);
	assert_int_equal(atomic_load(&fx.calls), 1);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&fx.log.count[7]), 0);	/* cached */
	assert_true(wait_until(no_cache, NULL, 5000));
	eventbuf_barrier();
	assert_int_equal(atomic_load(&fx.log.count[7]), 1);
	/* The key lives on; the next subscriber needs a new snapshot. */
	eventbuf_unsubscribe(s2);
	s2 = subscribe("k", 0);
	expect_snapshot(s2, 7);
	assert_int_equal(atomic_load(&fx.calls), 2);
	eventbuf_unsubscribe(s2);
	eventbuf_unsubscribe(s1);
}

/*
 * Many cached keys: entries leave the expiry queue from its middle (a
 * key's last subscriber goes), all the others still expire, and an entry
 * cached after the queue ran empty expires too (its thread is woken for
 * it).
 */
static void test_publisher_ttl_expiry_many_keys(void **state)
{
	enum { KEYS = 1000 };
	struct eventbuf_subscription **subs = calloc(KEYS, sizeof(*subs));
	struct eventbuf_publisher_stats st;
	struct eventbuf_subscription *again;
	char key[32];
	int calls;

	(void)state;
	assert_non_null(subs);
	eventbuf_publisher_free(fx.pub);
	eventbuf_barrier();	/* release callbacks use fx.log */
	release_log_free(&fx.log);
	assert_int_equal(setup_ttl(150), 0);
	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		subs[i] = subscribe(key, 0);
	}
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.cache_entries, KEYS);
	for (int i = 0; i < KEYS; i += 3) {	/* first, middle and last */
		eventbuf_unsubscribe(subs[i]);
		subs[i] = NULL;
	}
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.cache_entries, KEYS - (KEYS + 2) / 3);
	calls = atomic_load(&fx.calls);
	again = subscribe("key-1", 0);		/* still cached */
	assert_int_equal(atomic_load(&fx.calls), calls);
	eventbuf_unsubscribe(again);
	assert_true(wait_until(no_cache, NULL, 5000));
	again = subscribe("key-1", 0);		/* a new snapshot, cached */
	assert_int_equal(atomic_load(&fx.calls), calls + 1);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.cache_entries, 1);
	assert_true(wait_until(no_cache, NULL, 5000));
	eventbuf_unsubscribe(again);
	for (int i = 0; i < KEYS; i++)
		eventbuf_unsubscribe(subs[i]);
	free(subs);
}

static void test_publisher_force_close(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .tag = 7 };
	struct eventbuf_subscription *a, *b, *c;
	struct eventbuf_publisher_stats st;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	req.key = "a";
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &a), 0);
	req.key = "b";
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &b), 0);
	req.tag = 8;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &c), 0);
	assert_int_equal(eventbuf_publisher_close_tag(fx.pub, 7), 2);
	assert_int_equal(eventbuf_sub_next(a, 1000, -1, &ev, &n), -ECONNRESET);
	assert_int_equal(eventbuf_sub_next(b, 1000, -1, &ev, &n), -ECONNRESET);
	expect_snapshot(c, 1);
	/* Closed subscriptions hold nothing, before any unsubscribe. */
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.subscriptions, 1);
	assert_int_equal(st.key_buffers, 1);
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, "test", "b"), 1);
	assert_int_equal(eventbuf_sub_next_nonblock(c, &ev, &n), -ECONNRESET);
	assert_int_equal(eventbuf_sub_next_nonblock(c, &ev, &n), -ECONNRESET);
	eventbuf_barrier();
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.subscriptions, 0);
	assert_int_equal(st.key_buffers, 0);
	assert_int_equal(st.lib.live_items, 0);
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, "test", "b"), 0);
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, "nope", "b"), -EINVAL);
	eventbuf_unsubscribe(a);
	eventbuf_unsubscribe(b);
	eventbuf_unsubscribe(c);
}

/*
 * A stuck subscriber past its lag limit is closed and lets go of what it
 * held, at once; the batch it was handed last stays valid until its next
 * call, which says -ENOBUFS.
 */
static void test_publisher_lag_limit(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .key = "k",
					      .lag_limit = 32 };
	struct eventbuf_subscription *slow, *fast;
	const struct eventbuf_event *held, *ev;
	struct eventbuf_publisher_stats st;
	size_t n;

	(void)state;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &slow), 0);
	fast = subscribe("k", 0);
	expect_snapshot(slow, 1);
	expect_snapshot(fast, 1);
	assert_int_equal(publish("test", "k", 10), 0);
	held = next(slow, 1);
	for (uint64_t i = 11; i < 200; i++) {
		assert_int_equal(publish("test", "k", i), 0);
		assert_int_equal(eventbuf_sub_next(fast, 1000, -1, &ev, &n), 0);
		assert_int_equal(ev->index, i - 1);
	}
	eventbuf_barrier();
	/* Released up to what the fast reader holds (its anchor moves every
	 * 64 batches); 10 is held for the slow one's caller. */
	assert_int_equal(atomic_load(&fx.log.count[10]), 0);
	assert_int_equal(release_log_count(&fx.log, 11, 101, 1), 90);
	assert_int_equal(held->index, 10);
	assert_string_equal(held->payload, "live");
	assert_int_equal(eventbuf_sub_next(slow, 0, -1, &ev, &n), -ENOBUFS);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&fx.log.count[10]), 1);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.subscriptions, 1);
	eventbuf_unsubscribe(slow);
	eventbuf_unsubscribe(fast);
}

/*
 * The publisher reads a key's subscribers only when one may be over its
 * limit: a subscriber that joins with less slack than the others brings
 * the next check forward. It is still open at its limit and closed at
 * most EVENTBUF_LAG_CHECK_EVERY batches past it.
 */
static void test_publisher_lag_limit_late_joiner(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .key = "k",
					      .lag_limit = 1000 };
	struct eventbuf_subscription *roomy, *tight;
	struct eventbuf_publisher_stats st;
	const struct eventbuf_event *ev;
	uint64_t index = 10;
	size_t n;
	int ret;

	(void)state;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &roomy), 0);
	assert_int_equal(publish("test", "k", index++), 0);	/* a check */
	req.lag_limit = 32;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &tight), 0);
	for (int i = 0; i < 32; i++)
		assert_int_equal(publish("test", "k", index++), 0);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.subscriptions, 2);	/* at its limit, not past */
	for (unsigned int i = 0; i < EVENTBUF_LAG_CHECK_EVERY; i++)
		assert_int_equal(publish("test", "k", index++), 0);
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	assert_int_equal(st.subscriptions, 1);
	for (int i = 0; (ret = eventbuf_sub_next(tight, 0, -1, &ev, &n)) == 0; i++)
		assert_true(i < 100);	/* its snapshot, then the error */
	assert_int_equal(ret, -ENOBUFS);
	eventbuf_unsubscribe(tight);
	eventbuf_unsubscribe(roomy);
}

static void test_publisher_handler_error(void **state)
{
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	fx.mode = SNAP_FAIL;
	sub = subscribe("k", 0);
	assert_int_equal(eventbuf_sub_next(sub, 1000, -1, &ev, &n), -EPERM);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EPERM);
	eventbuf_unsubscribe(sub);
	/* A failed snapshot is never served from the cache. */
	fx.mode = SNAP_ONE;
	sub = subscribe("k", 0);
	expect_snapshot(sub, 1);
	eventbuf_unsubscribe(sub);
	/* A lag limit does not turn the handler's error into -ENOBUFS. */
	{
		struct eventbuf_subscribe_req req = { .topic = "test",
						      .key = "k3",
						      .lag_limit = 4 };

		fx.mode = SNAP_FAIL;
		assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
		for (uint64_t i = 1; i <= 64; i++)
			assert_int_equal(publish("test", "k3", i), 0);
		assert_int_equal(eventbuf_sub_next(sub, 1000, -1, &ev, &n),
				 -EPERM);
		eventbuf_unsubscribe(sub);
	}
	/* A code the library uses for "retry" becomes -EIO: it is final. */
	fx.mode = SNAP_FAIL;
	fx.fail_code = -ENOSPC;
	sub = subscribe("k2", 0);
	assert_int_equal(eventbuf_sub_next(sub, 1000, -1, &ev, &n), -EIO);
	eventbuf_unsubscribe(sub);
	/* So does one of the publisher's own closing codes: a handler's
	 * failure must not read as a force-close, lag or shutdown. */
	{
		static const int closing[] = { -ECONNRESET, -ENOBUFS,
					       -ESHUTDOWN };

		for (size_t i = 0; i < 3; i++) {
			fx.fail_code = closing[i];
			sub = subscribe("k2", 0);
			assert_int_equal(eventbuf_sub_next(sub, 1000, -1, &ev,
							   &n), -EIO);
			eventbuf_unsubscribe(sub);
		}
	}
}

/*
 * Commit-then-publish (as the churn test does): the snapshot already
 * holds the events published after it, which the subscription skips.
 * Skipping them is reading them: a subscription that keeps up is never
 * closed for lag, however many it skips.
 */
static void test_publisher_skipped_batches_are_read(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .key = "k",
					      .lag_limit = 32 };
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	fx.snap_index = 100;	/* state committed through 100 */
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
	expect_snapshot(sub, 100);
	for (uint64_t i = 51; i <= 100; i++) {	/* their publishes follow */
		assert_int_equal(publish("test", "k", i), 0);
		/* the subscriber keeps up: it has nothing to read */
		assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n),
				 -EAGAIN);
	}
	assert_int_equal(publish("test", "k", 101), 0);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), 0);
	assert_int_equal(ev->index, 101);
	eventbuf_unsubscribe(sub);
}

/* One batch: event i of @topic at (@keys[i], @index[i]). */
static int publish_batch(const char *topic, const char *const *keys,
			 const uint64_t *index, size_t n)
{
	struct eventbuf_event ev[8];

	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++)
		ev[i] = (struct eventbuf_event){ .index = index[i],
			.topic = topic, .key = keys[i], .payload = "live" };
	return eventbuf_publish(fx.pub, ev, n, release_log_cb, &fx.log);
}

/* The next batch has exactly the indexes @want, in order. */
static void expect_batch(struct eventbuf_subscription *sub,
			 const uint64_t *want, size_t n)
{
	const struct eventbuf_event *ev = next(sub, n);

	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ev[i].index, want[i]);
		assert_string_equal(ev[i].payload, "live");
	}
}

/*
 * A caller that publishes the changes of several commits in one batch:
 * a subscriber whose snapshot holds some of them gets the rest, not
 * nothing. Events at or below the snapshot's index are not repeated, a
 * batch wholly below it is skipped, and a batch that straddles it is the
 * events above it, in order.
 */
static void test_publisher_straddling_batch_after_snapshot(void **state)
{
	static const char *const k3[] = { "k", "k", "k" };
	static const uint64_t straddles[] = { 9, 10, 11 }, below[] = { 7, 8 };
	static const uint64_t above[] = { 11 };
	struct eventbuf_subscription *sub;

	(void)state;
	fx.snap_index = 10;	/* state committed through 10 */
	sub = subscribe("k", 0);
	expect_snapshot(sub, 10);
	assert_int_equal(publish_batch("test", k3, straddles, 3), 0);
	expect_batch(sub, above, 1);
	expect_nothing(sub);
	assert_int_equal(publish_batch("test", k3, below, 2), 0);
	expect_nothing(sub);
	assert_int_equal(publish("test", "k", 12), 0);
	expect_live(sub, 12);
	expect_nothing(sub);
	eventbuf_unsubscribe(sub);
}

/*
 * A wildcard batch is sorted by key, so the events its subscriber's
 * snapshot covered may sit between others: what is above the snapshot's
 * index is still one batch, in the batch's order (a copy), so that a
 * subscriber that resumes from the greatest index it was handed misses
 * nothing.
 */
static void test_publisher_straddling_wildcard_batch(void **state)
{
	static const char *const keys[] = { "d", "b", "a", "c", "e" };
	static const uint64_t index[] = { 13, 10, 12, 11, 9 };
	static const char *const want_keys[] = { "a", "c", "d" };
	static const uint64_t want[] = { 12, 11, 13 };
	struct eventbuf_subscribe_req req = { .topic = "wild",
					      .key = EVENTBUF_KEY_WILDCARD };
	struct eventbuf_subscription *sub, *keep, *resumed;
	const struct eventbuf_event *ev;

	(void)state;
	fx.snap_index = 10;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &keep), 0);
	expect_snapshot(keep, 10);
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
	expect_snapshot(sub, 10);
	/* Sorted: a@12 b@10 c@11 d@13 e@9. */
	assert_int_equal(publish_batch("wild", keys, index, 5), 0);
	ev = next(sub, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(ev[i].key, want_keys[i]);
		assert_int_equal(ev[i].index, want[i]);
	}
	expect_nothing(sub);
	eventbuf_unsubscribe(sub);
	/* 13, the greatest it was handed: up to date, no snapshot. */
	req.index = 13;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &resumed), 0);
	expect_nothing(resumed);
	assert_int_equal(atomic_load(&fx.calls), 2);	/* keep's and sub's */
	eventbuf_unsubscribe(resumed);
	eventbuf_unsubscribe(keep);
}

/*
 * A force-close after a straddling batch was handed out as a copy: the
 * copy and the record its events point into stay valid until the next
 * call, after a grace period too, and that call reports the close.
 */
static void test_publisher_straddling_batch_closed(void **state)
{
	static const char *const k4[] = { "k", "k", "k", "k" };
	static const uint64_t index[] = { 11, 9, 12, 10 };
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	fx.snap_index = 10;
	sub = subscribe("k", 0);
	expect_snapshot(sub, 10);
	assert_int_equal(publish_batch("test", k4, index, 4), 0);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, "test", "k"), 1);
	eventbuf_barrier();
	/* (10 is also the snapshot's, released already) */
	assert_int_equal(release_log_count(&fx.log, 11, 13, 0), 2);
	assert_int_equal(ev[0].index, 11);	/* still ours to read */
	assert_int_equal(ev[1].index, 12);
	assert_string_equal(ev[1].payload, "live");
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n),
			 -ECONNRESET);
	eventbuf_unsubscribe(sub);
	eventbuf_barrier();
	assert_int_equal(release_log_count(&fx.log, 11, 13, 1), 2);
}

/*
 * The splice links the first batch with any event above the snapshot's
 * index, even when its first event is below it; and a subscriber that
 * names the greatest index of the key's newest batch is up to date.
 */
static void test_publisher_straddling_batch_splice_and_resume(void **state)
{
	static const char *const k2[] = { "k", "k" };
	static const uint64_t straddles[] = { 9, 11 }, above[] = { 11 };
	struct eventbuf_subscription *existing, *spliced, *resumed, *stale;

	(void)state;
	existing = subscribe("k", 0);
	expect_snapshot(existing, 1);
	assert_int_equal(publish_batch("test", k2, straddles, 2), 0);
	fx.snap_index = 10;
	spliced = subscribe("k", 0);
	expect_snapshot(spliced, 10);
	expect_batch(spliced, above, 1);
	expect_nothing(spliced);
	assert_int_equal(atomic_load(&fx.calls), 2);
	resumed = subscribe("k", 11);
	expect_nothing(resumed);	/* no snapshot, no frame */
	assert_int_equal(atomic_load(&fx.calls), 2);
	stale = subscribe("k", 9);	/* 11 may be missing: a snapshot */
	expect_new_snapshot(stale);
	expect_snapshot(stale, 10);
	expect_batch(stale, above, 1);
	assert_int_equal(atomic_load(&fx.calls), 3);
	assert_int_equal(publish("test", "k", 12), 0);
	expect_live(resumed, 12);
	expect_live(spliced, 12);
	expect_live(stale, 12);
	eventbuf_unsubscribe(stale);
	eventbuf_unsubscribe(resumed);
	eventbuf_unsubscribe(spliced);
	eventbuf_unsubscribe(existing);
}

/* A handler's -EISCONN, a library code of eventbuf.h's table, is -EIO. */
static void test_publisher_handler_eisconn_is_eio(void **state)
{
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	fx.mode = SNAP_FAIL;
	fx.fail_code = -EISCONN;
	sub = subscribe("k", 0);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EIO);
	eventbuf_unsubscribe(sub);
}

static _Atomic int topic_seen_in_release;

static void topic_check_release(struct eventbuf_event *events, size_t n,
				void *arg)
{
	(void)arg;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(events[i].topic, "test"))
			atomic_fetch_add(&topic_seen_in_release, 1);
}

static int topic_handler(void *arg, const char *topic, const char *key,
			 struct eventbuf_snapshot *snap, uint64_t *index)
{
	struct eventbuf_event ev = { .index = 1, .topic = topic, .key = key };

	(void)arg;
	*index = 1;
	return eventbuf_snapshot_append(snap, &ev, 1, topic_check_release, NULL);
}

/*
 * The handler's events point at the topic it was given; their release
 * may run after eventbuf_publisher_free() (a cached snapshot, reclaimed
 * later): the topic name is still there.
 */
static void test_publisher_topic_outlives_publisher(void **state)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = 60000 };
	struct eventbuf_subscription *sub;
	struct eventbuf_subscribe_req req = { .topic = "test", .key = "k" };

	(void)state;
	eventbuf_publisher_free(fx.pub);
	assert_int_equal(eventbuf_publisher_new(&cfg, &fx.pub), 0);
	assert_int_equal(eventbuf_publisher_register(fx.pub, "test",
						     topic_handler, NULL, 0), 0);
	atomic_store(&topic_seen_in_release, 0);
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
	eventbuf_unsubscribe(sub);
	eventbuf_publisher_free(fx.pub);
	fx.pub = NULL;
	eventbuf_barrier();
	assert_int_equal(atomic_load(&topic_seen_in_release), 1);
}

/* The descriptor never changes and says when to read. */
static void test_publisher_pollable_fd(void **state)
{
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;
	size_t n;
	int fd;

	(void)state;
	sub = subscribe("k", 0);
	fd = eventbuf_sub_fd(sub);
	assert_true(fd >= 0);
	/* The snapshot is there before any read: so says the descriptor. */
	assert_true(fd_readable(fd));
	expect_snapshot(sub, 1);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EAGAIN);
	assert_false(fd_readable(fd));
	assert_int_equal(publish("test", "k", 2), 0);
	assert_true(fd_readable(fd));
	expect_live(sub, 2);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EAGAIN);
	assert_false(fd_readable(fd));
	assert_int_equal(eventbuf_sub_fd(sub), fd);
	/* A close wakes it too. */
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, "test", "k"), 1);
	assert_true(fd_readable(fd));
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -ECONNRESET);
	eventbuf_unsubscribe(sub);
}

/*
 * A snapshot handler runs under the publisher's mutex: a publisher call
 * from it would wait for itself. Each fails with -EDEADLK instead, and the
 * subscribe that ran the handler completes.
 */
static void test_publisher_handler_reentry_edeadlk(void **state)
{
	struct eventbuf_subscription *sub;

	(void)state;
	fx.mode = SNAP_REENTER;
	sub = subscribe("k", 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(fx.reenter[i], -EDEADLK);
	assert_true(eventbuf_event_is_end_of_snapshot(next(sub, 1)));
	eventbuf_unsubscribe(sub);
}

static _Atomic int release_publish_ret = 1;

static void publishing_release(struct eventbuf_event *events, size_t n,
			       void *arg)
{
	struct eventbuf_event ev = { .index = 1, .topic = "test", .key = "k" };

	(void)events;
	(void)n;
	atomic_store(&release_publish_ret,
		     eventbuf_publish(arg, &ev, 1, NULL, NULL));
}

/*
 * A release callback may run under a subscription's mutex (in a read or an
 * unsubscribe): it must not call the publisher, and gets -EDEADLK if it
 * does, wherever it happens to run (here: in the publish itself).
 */
static void test_publisher_release_reentry_edeadlk(void **state)
{
	struct eventbuf_event ev = { .index = 1, .topic = "test", .key = "k" };

	(void)state;
	assert_int_equal(eventbuf_publish(fx.pub, &ev, 1, publishing_release,
					  fx.pub), 0);
	assert_int_equal(atomic_load(&release_publish_ret), -EDEADLK);
}

/*
 * A subscription whose handler failed delivers what the handler appended,
 * then the error; once the error is read it is closed like any other: it
 * holds nothing, its descriptor stays readable, and later closes neither
 * replace its error nor count it.
 */
static void test_publisher_failed_subscription_closes(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .key = "k",
					      .tag = 9 };
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	fx.mode = SNAP_ONE_FAIL;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
	ev = next(sub, 1);
	assert_int_equal(ev->index, 1);
	assert_string_equal(ev->payload, "snapshot");
	assert_int_equal(eventbuf_sub_next(sub, 1000, -1, &ev, &n), -EPERM);
	/* Nothing held: the handler's event is released while the
	 * subscription lives on. */
	eventbuf_barrier();
	assert_int_equal(atomic_load(&fx.log.count[1]), 1);
	assert_true(fd_readable(eventbuf_sub_fd(sub)));
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, "test", "k"), 0);
	assert_int_equal(eventbuf_publisher_close_tag(fx.pub, 9), 0);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EPERM);
	assert_true(fd_readable(eventbuf_sub_fd(sub)));
	eventbuf_publisher_free(fx.pub);
	fx.pub = NULL;
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EPERM);
	eventbuf_unsubscribe(sub);
}

/*
 * An event loop registers the descriptor edge-triggered and waits before
 * its first read: it must wake, for a snapshot and for an up-to-date
 * resume alike, and again for each publish after it ran dry.
 */
static void test_publisher_fd_edge_triggered_loop(void **state)
{
	struct eventbuf_subscription *fresh, *resumed;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, out[2];
	const struct eventbuf_event *e;
	size_t n;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	(void)state;
	assert_true(ep >= 0);
	fresh = subscribe("k", 0);
	assert_int_equal(publish("test", "k", 2), 0);
	resumed = subscribe("k", 2);
	ev.data.ptr = fresh;
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, eventbuf_sub_fd(fresh), &ev), 0);
	ev.data.ptr = resumed;
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, eventbuf_sub_fd(resumed), &ev), 0);
	assert_int_equal(epoll_wait(ep, out, 2, 1000), 2);
	expect_snapshot(fresh, 1);
	expect_live(fresh, 2);
	assert_int_equal(eventbuf_sub_next_nonblock(fresh, &e, &n), -EAGAIN);
	assert_int_equal(eventbuf_sub_next_nonblock(resumed, &e, &n), -EAGAIN);
	assert_int_equal(epoll_wait(ep, out, 2, 0), 0);
	assert_int_equal(publish("test", "k", 3), 0);
	assert_int_equal(epoll_wait(ep, out, 2, 1000), 2);
	expect_live(fresh, 3);
	expect_live(resumed, 3);
	eventbuf_unsubscribe(fresh);
	eventbuf_unsubscribe(resumed);
	close(ep);
}

static void test_publisher_bad_input(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "test", .key = "k" };
	struct eventbuf_event ev = { .index = 1, .topic = "test" };
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *out;
	size_t n;

	(void)state;
	assert_int_equal(eventbuf_publisher_new(NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_publisher_register(fx.pub, "test", handler,
						     NULL, 0), -EEXIST);
	assert_int_equal(eventbuf_publisher_register(fx.pub, "", handler,
						     NULL, 0), -EINVAL);
	assert_int_equal(eventbuf_publisher_register(fx.pub, "x", NULL, NULL,
						     0), -EINVAL);
	assert_int_equal(eventbuf_publisher_register(fx.pub, "x", handler,
						     NULL, 0x100), -EINVAL);
	assert_int_equal(eventbuf_publish(NULL, &ev, 1, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_publish(fx.pub, NULL, 1, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_publish(fx.pub, &ev, 0, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_publish(fx.pub, &ev, EVENTBUF_PUBLISH_MAX + 1,
					  NULL, NULL), -EINVAL);
	ev.topic = "unknown";
	assert_int_equal(eventbuf_publish(fx.pub, &ev, 1, NULL, NULL), -EINVAL);
	ev.topic = NULL;
	assert_int_equal(eventbuf_publish(fx.pub, &ev, 1, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_subscribe(NULL, &req, &sub), -EINVAL);
	assert_int_equal(eventbuf_subscribe(fx.pub, NULL, &sub), -EINVAL);
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, NULL), -EINVAL);
	req.key = NULL;
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), -EINVAL);
	req.key = "k";
	req.topic = "unknown";
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), -EINVAL);
	assert_int_equal(eventbuf_sub_next_nonblock(NULL, &out, &n), -EINVAL);
	assert_int_equal(eventbuf_sub_next(NULL, 0, -1, &out, &n), -EINVAL);
	assert_int_equal(eventbuf_sub_fd(NULL), -EINVAL);
	assert_int_equal(eventbuf_publisher_close_tag(fx.pub, 0), -EINVAL);
	assert_int_equal(eventbuf_publisher_close_key(fx.pub, NULL, "k"), -EINVAL);
	assert_int_equal(eventbuf_publisher_stats(NULL, NULL), -EINVAL);
	assert_false(eventbuf_event_is_end_of_snapshot(NULL));
	assert_false(eventbuf_event_is_new_snapshot(NULL));
	eventbuf_unsubscribe(NULL);
	eventbuf_publisher_free(NULL);
	/* Keyless events go to the "" key. */
	req.topic = "test";
	req.key = "";
	assert_int_equal(eventbuf_subscribe(fx.pub, &req, &sub), 0);
	expect_snapshot(sub, 1);
	ev.topic = "test";
	ev.key = NULL;
	ev.payload = "live";
	ev.index = 2;
	assert_int_equal(eventbuf_publish(fx.pub, &ev, 1, NULL, NULL), 0);
	expect_live(sub, 2);
	/* A cancel_fd neither -1 nor open, with nothing to read. */
	assert_int_equal(eventbuf_sub_next(sub, 0, -2, &out, &n), -EINVAL);
	assert_int_equal(eventbuf_sub_next(sub, -1, -2, &out, &n), -EINVAL);
	eventbuf_unsubscribe(sub);
}

/* ------------------------------------------------------------------ */
/* Subscribers joining and leaving while the publisher runs            */
/* ------------------------------------------------------------------ */

#define CHURN_KEYS 8

struct churn {
	pthread_mutex_t lock;		/* the state handlers snapshot */
	uint64_t last_index[CHURN_KEYS], last_seq[CHURN_KEYS];
	_Atomic bool stop;
	_Atomic uint64_t next_index;
};

static struct churn churn;
static const char *const churn_keys[CHURN_KEYS] = {
	"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7",
};

static int key_no(const char *key)
{
	return key[1] - '0';
}

/* The key's last committed (index, sequence): payload carries the seq. */
static int churn_handler(void *arg, const char *topic, const char *key,
			 struct eventbuf_snapshot *snap, uint64_t *index)
{
	struct eventbuf_event ev = { .topic = topic, .key = key };
	int k = key_no(key);

	(void)arg;
	pthread_mutex_lock(&churn.lock);
	ev.index = churn.last_index[k];
	ev.payload = (void *)(uintptr_t)churn.last_seq[k];
	pthread_mutex_unlock(&churn.lock);
	*index = ev.index;
	return ev.index ? eventbuf_snapshot_append(snap, &ev, 1, NULL, NULL) : 0;
}

static void *churn_publisher(void *arg)
{
	struct eventbuf_publisher *pub = arg;
	uint64_t seq[CHURN_KEYS] = { 0 };
	unsigned int rnd = 1;

	while (!atomic_load(&churn.stop)) {
		int k = (int)(rand_r(&rnd) % CHURN_KEYS);
		uint64_t index = atomic_fetch_add(&churn.next_index, 1) + 1;
		struct eventbuf_event ev = {
			.index = index, .topic = "churn", .key = churn_keys[k],
			.payload = (void *)(uintptr_t)++seq[k],
		};

		/*
		 * The state first, then the event, as a database commits and
		 * then publishes: a snapshot may already hold an event that
		 * is published after it, which the subscription must skip.
		 */
		pthread_mutex_lock(&churn.lock);
		churn.last_index[k] = index;
		churn.last_seq[k] = seq[k];
		pthread_mutex_unlock(&churn.lock);
		if (eventbuf_publish(pub, &ev, 1, NULL, NULL))
			break;
	}
	return NULL;
}

struct churner {
	struct eventbuf_publisher *pub;
	unsigned int seed;
	uint64_t rounds, events, errors, gaps;
	int first_error;
};

/* One subscription: from its snapshot's sequence on, every seq once. */
static void churn_once(struct churner *c)
{
	struct eventbuf_subscribe_req req = { .topic = "churn" };
	struct eventbuf_subscription *sub;
	const struct eventbuf_event *ev;
	uint64_t want = 1, got = 0, limit = 50 + rand_r(&c->seed) % 200;
	bool live = false;
	size_t n;

	int ret;

	req.key = churn_keys[rand_r(&c->seed) % CHURN_KEYS];
	ret = eventbuf_subscribe(c->pub, &req, &sub);
	if (ret) {
		c->first_error = c->errors++ ? c->first_error : ret;
		return;
	}
	while (got < limit) {
		ret = eventbuf_sub_next(sub, 5000, -1, &ev, &n);
		if (ret) {
			c->first_error = c->errors++ ? c->first_error : ret;
			break;
		}
		if (eventbuf_event_is_end_of_snapshot(ev)) {
			live = true;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			uint64_t seq = (uint64_t)(uintptr_t)ev[i].payload;

			if (live && seq != want) {
				if (!c->gaps)
					printf("# %s: want seq %llu, got %llu (index %llu, batch of %zu)\n",
					       req.key, (unsigned long long)want,
					       (unsigned long long)seq,
					       (unsigned long long)ev[i].index, n);
				c->gaps++;
			}
			want = seq + 1;
			got += live;
		}
	}
	c->events += got;
	c->rounds++;
	eventbuf_unsubscribe(sub);
}

static void *churner_run(void *arg)
{
	struct churner *c = arg;
	int64_t end = now_ms() + 1500;

	while (now_ms() < end)
		churn_once(c);
	return NULL;
}

static void test_publisher_churn(void **state)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = 5 };
	struct churner c[6];
	pthread_t pt, tid[6];
	struct eventbuf_publisher_stats st;
	uint64_t rounds = 0, events = 0;

	(void)state;
	memset(&churn, 0, sizeof(churn));
	pthread_mutex_init(&churn.lock, NULL);
	/* Indexes from 1: an empty snapshot ends at 0. */
	eventbuf_publisher_free(fx.pub);
	assert_int_equal(eventbuf_publisher_new(&cfg, &fx.pub), 0);
	assert_int_equal(eventbuf_publisher_register(fx.pub, "churn",
						     churn_handler, NULL, 0), 0);
	assert_int_equal(pthread_create(&pt, NULL, churn_publisher, fx.pub), 0);
	for (int i = 0; i < 6; i++) {
		c[i] = (struct churner){ .pub = fx.pub, .seed = test_seed() + i };
		assert_int_equal(pthread_create(&tid[i], NULL, churner_run, &c[i]), 0);
	}
	for (int i = 0; i < 6; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	atomic_store(&churn.stop, true);
	assert_int_equal(pthread_join(pt, NULL), 0);
	for (int i = 0; i < 6; i++) {
		if (c[i].errors)
			printf("# churner %d: %llu errors, the first %d\n", i,
			       (unsigned long long)c[i].errors, c[i].first_error);
		assert_int_equal(c[i].errors, 0);
		assert_int_equal(c[i].gaps, 0);
		rounds += c[i].rounds;
		events += c[i].events;
	}
	assert_int_equal(eventbuf_publisher_stats(fx.pub, &st), 0);
	printf("# %llu subscriptions came and went, %llu live events checked, %llu snapshots built, %llu published\n",
	       (unsigned long long)rounds, (unsigned long long)events,
	       (unsigned long long)st.snapshots_built,
	       (unsigned long long)atomic_load(&churn.next_index));
	assert_true(rounds > 6);
	assert_int_equal(st.subscriptions, 0);
	assert_int_equal(st.key_buffers, 0);
	pthread_mutex_destroy(&churn.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_publisher_snapshot_then_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_shutdown_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_cache_skips_handler, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_resume_up_to_date, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_stale_index_new_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_stale_index_from_cache, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_cache_has_no_frame, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_unsubscribe_frees, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_wildcard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_batch_sorted_stable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_snapshot_index_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_cache_index_zero, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_key_outlives_key_buffer, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_lag_limit_skips_old_cache, setup_cache, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_fd_edge_triggered_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_splice_no_gap_no_duplicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_ttl_expiry_releases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_ttl_expiry_many_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_force_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_lag_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_lag_limit_late_joiner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_handler_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_topic_outlives_publisher, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_pollable_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_failed_subscription_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_handler_reentry_edeadlk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_release_reentry_edeadlk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_churn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_handler_eisconn_is_eio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_skipped_batches_are_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_straddling_batch_after_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_straddling_wildcard_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_straddling_batch_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_straddling_batch_splice_and_resume, setup, teardown),
	};

	return cmocka_run_group_tests_name("publisher", tests, NULL, NULL);
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Reclamation: every item released exactly once, none while held, all
 * after the last holder lets go; flat memory with no readers; a 10,000,000
 * item chain freed by one loop under a small stack; eventfds bounded by the
 * links being waited on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"

static void test_reclaim_released_exactly_once(void **state)
{
	const uint64_t n = scaled(20000, 2000);
	struct eventbuf_item *held[3], *head;
	struct release_log log;
	struct eventbuf *buf;

	(void)state;
	release_log_init(&log, n);
	assert_int_equal(eventbuf_new(&buf), 0);
	for (uint64_t i = 0; i < n; i++) {
		assert_int_equal(append_batch(buf, i, 1, &log), 0);
		/* Hold the items with indexes n/4, n/2 and 3n/4. */
		if (i == n / 4 || i == n / 2 || i == 3 * n / 4)
			assert_int_equal(eventbuf_head(buf, &held[i * 4 / n - 1]), 0);
	}
	assert_int_equal(eventbuf_head(buf, &head), 0);
	eventbuf_drop(buf);
	eventbuf_barrier();
	/* Before the oldest hold: released once; from it on: not at all. */
	assert_int_equal(release_log_count(&log, 0, n / 4, 1), n / 4);
	assert_int_equal(release_log_count(&log, n / 4, n, 0), n - n / 4);
	eventbuf_item_put(held[1]);	/* a hold in the middle frees nothing */
	eventbuf_barrier();
	assert_int_equal(release_log_count(&log, n / 4, n, 0), n - n / 4);
	eventbuf_item_put(held[0]);	/* the oldest: up to the next hold */
	eventbuf_barrier();
	assert_int_equal(release_log_count(&log, 0, 3 * n / 4, 1), 3 * n / 4);
	assert_int_equal(release_log_count(&log, 3 * n / 4, n, 0), n - 3 * n / 4);
	eventbuf_item_put(held[2]);
	eventbuf_item_put(head);
	eventbuf_barrier();
	assert_int_equal(release_log_count(&log, 0, n, 1), n);
	assert_int_equal(atomic_load(&log.total), n);
	assert_int_equal(atomic_load(&log.bad), 0);
	release_log_free(&log);
}

/*
 * With no reader, what the writer leaves behind is freed as it goes: the
 * writer runs for at least half a second (many callback periods) without
 * any barrier, and the live items sampled meanwhile stay a small fraction
 * of what it appended.
 */
static void test_reclaim_flat_without_readers(void **state)
{
	const uint64_t chunk = 100000;
	struct eventbuf_stats st;
	struct eventbuf *buf;
	uint64_t peak = 0, total = 0;
	int64_t t0 = now_ms();

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	while (total < scaled(4000000, 200000) || now_ms() - t0 < 500) {
		for (uint64_t i = 0; i < chunk; i++)
			assert_int_equal(append_batch(buf, i, 1, NULL), 0);
		total += chunk;
		eventbuf_stats(&st);
		if (st.live_items > peak)
			peak = st.live_items;
	}
	printf("# %llu appends in %lld ms, peak %llu live items\n",
	       (unsigned long long)total, (long long)(now_ms() - t0),
	       (unsigned long long)peak);
	assert_true(peak < total / 2);
	/* Once the writer stops, the chain catches up: only the head. */
	eventbuf_barrier();
	eventbuf_stats(&st);
	assert_int_equal(st.live_items, 1);
	eventbuf_drop(buf);
}

struct idle_case {
	long before_kb, limit_kb;
};

static bool rss_back_down(void *arg)
{
	const struct idle_case *c = arg;

	eventbuf_barrier();
	return rss_kb() - c->before_kb < c->limit_kb;
}

/*
 * A buffer that appended fast, then went idle, gives its slabs' memory
 * back but the writer's current slab (and a page per free slab): 20 such
 * buffers held 2 MiB each (their arenas' huge pages) before.
 */
static void test_reclaim_idle_buffers_give_memory_back(void **state)
{
	enum { NBUFS = 20, APPENDS = 20000 };
	struct idle_case c = { .before_kb = rss_kb(), .limit_kb = 12 * 1024 };
	struct eventbuf *bufs[NBUFS];
	bool ok;

	(void)state;
	skip_under(UNDER_TSAN, "TSan: the shadow of pages given back stays resident");
	skip_under(UNDER_VALGRIND, "valgrind: its own memory is in the RSS");
	for (int b = 0; b < NBUFS; b++) {
		assert_int_equal(eventbuf_new(&bufs[b]), 0);
		for (uint64_t i = 0; i < APPENDS; i++)
			assert_int_equal(append_batch(bufs[b], i, 1, NULL), 0);
	}
	ok = wait_until(rss_back_down, &c, 5000);
	printf("# %d idle buffers after %d appends each: RSS +%ld KiB\n",
	       NBUFS, APPENDS, rss_kb() - c.before_kb);
	for (int b = 0; b < NBUFS; b++)
		eventbuf_drop(bufs[b]);
	assert_true(ok);
}

static _Atomic uint64_t long_chain_released;

static void count_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)events;
	(void)n;
	(void)arg;
	atomic_fetch_add_explicit(&long_chain_released, 1, memory_order_relaxed);
}

/*
 * A reader holds the first of 10,000,000 items and lets go: everything is
 * freed by one loop in one callback. main() runs this binary with an
 * 256 KiB RLIMIT_STACK, which every thread (liburcu's call_rcu thread
 * included) gets as its stack: a recursive release would overflow it.
 */
static void test_reclaim_long_chain_small_stack(void **state)
{
	const uint64_t n = scaled(10000000, 200000);
	struct eventbuf_event ev = { 0 };
	struct eventbuf_item *first;
	struct eventbuf_stats st;
	struct eventbuf *buf;
	int64_t t0, t1;

	(void)state;
	atomic_store(&long_chain_released, 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &first), 0);
	for (ev.index = 1; ev.index <= n; ev.index++)
		assert_int_equal(eventbuf_append(buf, &ev, 1, count_release, NULL), 0);
	eventbuf_drop(buf);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&long_chain_released), 0);
	eventbuf_stats(&st);
	assert_int_equal(st.live_items, n + 1);
	t0 = now_ms();
	eventbuf_item_put(first);
	eventbuf_barrier();
	t1 = now_ms();
	assert_int_equal(atomic_load(&long_chain_released), n);
	eventbuf_stats(&st);
	assert_int_equal(st.live_items, 0);
	printf("# %llu-item chain reclaimed in %lld ms after let-go (stack limit %s)\n",
	       (unsigned long long)n, (long long)(t1 - t0),
	       getenv("EVENTBUF_SMALL_STACK") ? "256 KiB" : "default");
}

/* Park-publish-read cycles: eventfds never outnumber the parked readers. */
static void test_reclaim_eventfds_bounded(void **state)
{
	const int nreaders = 4;
	const uint64_t n = scaled(2000, 200);
	struct eventbuf_reader *r[4];
	const struct eventbuf_item *it;
	struct eventbuf_item *head;
	struct eventbuf_stats st;
	struct eventbuf *buf;
	uint64_t peak = 0;
	int fd;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	for (int i = 0; i < nreaders; i++)
		assert_int_equal(eventbuf_reader_new(head, &r[i]), 0);
	eventbuf_item_put(head);
	for (uint64_t i = 0; i < n; i++) {
		/* Reader i % 4 falls behind by one item each round. */
		for (int k = 0; k < nreaders; k++) {
			if ((uint64_t)k == i % nreaders)
				continue;
			while (eventbuf_reader_next_nonblock(r[k], &it) == 0)
				;
			assert_true(eventbuf_reader_wait_fd(r[k], &fd) >= 0);
		}
		assert_int_equal(append_batch(buf, i, 1, NULL), 0);
		eventbuf_stats(&st);
		if (st.open_eventfds > peak)
			peak = st.open_eventfds;
		assert_true(count_eventfds() <= nreaders + 1);
	}
	printf("# %llu publishes, peak %llu eventfds for %d readers\n",
	       (unsigned long long)n, (unsigned long long)peak, nreaders);
	assert_true(peak <= (uint64_t)nreaders + 1);
	for (int i = 0; i < nreaders; i++)
		eventbuf_reader_free(r[i]);
	eventbuf_drop(buf);
	eventbuf_barrier();
	eventbuf_stats(&st);
	assert_int_equal(st.open_eventfds, 0);
}

/* A snapshot chain spliced into a topic chain, a follower and a cache-like
 * hold: every item released exactly once when all let go, in any order. */
static void test_reclaim_spliced_chains(void **state)
{
	struct eventbuf_item *topic_head, *follow, *snap_first;
	struct eventbuf *topic, *snap;
	struct release_log log;

	(void)state;
	release_log_init(&log, 100);
	assert_int_equal(eventbuf_new(&topic), 0);
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(append_batch(topic, i, 1, &log), 0);
	assert_int_equal(eventbuf_new(&snap), 0);
	assert_int_equal(eventbuf_head(snap, &snap_first), 0);	/* the cache */
	for (uint64_t i = 50; i < 55; i++)
		assert_int_equal(append_batch(snap, i, 1, &log), 0);
	assert_int_equal(eventbuf_head(topic, &topic_head), 0);
	assert_int_equal(eventbuf_item_follow_after(topic_head, &follow), 0);
	assert_int_equal(eventbuf_append_item(snap, follow), 0);
	eventbuf_item_put(follow);
	eventbuf_drop(snap);
	for (uint64_t i = 10; i < 20; i++)
		assert_int_equal(append_batch(topic, i, 1, &log), 0);
	eventbuf_item_put(topic_head);
	eventbuf_drop(topic);
	eventbuf_barrier();
	/*
	 * The cache keeps the snapshot alive, and through the follower the
	 * topic item whose link it shares (9, the head at the splice) and
	 * every topic item after it.
	 */
	assert_int_equal(release_log_count(&log, 0, 9, 1), 9);
	assert_int_equal(release_log_count(&log, 9, 20, 0), 11);
	assert_int_equal(release_log_count(&log, 50, 55, 0), 5);
	eventbuf_item_put(snap_first);
	eventbuf_barrier();
	assert_int_equal(release_log_count(&log, 0, 20, 1), 20);
	assert_int_equal(release_log_count(&log, 50, 55, 1), 5);
	assert_int_equal(atomic_load(&log.total), 25);
	release_log_free(&log);
}

/*
 * A buffer joined to another buffer's head must not keep (or let go of)
 * that head on the other buffer's behalf: the head stays alive, unreleased,
 * until its own buffer moves past it, then is released once.
 */
static void test_reclaim_joined_head_stays_with_its_buffer(void **state)
{
	struct eventbuf_item *x, *start, *next;
	struct eventbuf *topic, *snap;
	struct release_log log;

	(void)state;
	release_log_init(&log, 100);
	assert_int_equal(eventbuf_new(&topic), 0);
	assert_int_equal(append_batch(topic, 1, 1, &log), 0);
	assert_int_equal(eventbuf_head(topic, &x), 0);
	assert_int_equal(eventbuf_new(&snap), 0);
	assert_int_equal(append_batch(snap, 50, 1, &log), 0);
	assert_int_equal(eventbuf_append_item(snap, x), 0);
	eventbuf_item_put(x);
	eventbuf_barrier();	/* both chains run with x as a head */
	eventbuf_drop(snap);
	eventbuf_barrier();
	/* The snapshot and its chain are gone; the topic head is not. */
	assert_int_equal(atomic_load(&log.count[50]), 1);
	assert_int_equal(atomic_load(&log.count[1]), 0);
	assert_int_equal(eventbuf_head(topic, &start), 0);
	assert_int_equal(eventbuf_item_events(start)[0].index, 1);
	assert_int_equal(append_batch(topic, 2, 1, &log), 0);
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
	assert_int_equal(eventbuf_item_events(next)[0].index, 2);
	eventbuf_item_put(next);
	eventbuf_item_put(start);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&log.count[1]), 1);
	assert_int_equal(atomic_load(&log.count[2]), 0);
	eventbuf_drop(topic);
	eventbuf_barrier();
	assert_int_equal(release_log_count(&log, 1, 3, 1), 2);
	assert_int_equal(atomic_load(&log.total), 3);
	release_log_free(&log);
}

static void test_reclaim_stats(void **state)
{
	struct eventbuf_stats st;
	struct eventbuf *buf;
	struct eventbuf_item *head;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	eventbuf_stats(&st);
	assert_int_equal(st.buffers, 1);
	assert_int_equal(st.live_items, 1);	/* the sentinel */
	assert_int_equal(eventbuf_head(buf, &head), 0);
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(append_batch(buf, i, 1, NULL), 0);
	eventbuf_stats(&st);
	assert_int_equal(st.live_items, 11);
	/* A one-event item is a 72-byte allocation (an 80-byte chunk). */
	assert_int_equal(st.live_bytes, 40 + 10 * 72);
	eventbuf_drop(buf);
	eventbuf_barrier();
	eventbuf_stats(&st);
	assert_int_equal(st.buffers, 0);
	assert_int_equal(st.live_items, 11);
	eventbuf_item_put(head);
	eventbuf_barrier();
	eventbuf_stats(&st);
	assert_int_equal(st.live_items, 0);
	assert_int_equal(st.live_bytes, 0);
	assert_true(st.reclaim_passes > 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_reclaim_released_exactly_once, teardown_nothing_left),
		cmocka_unit_test_teardown(test_reclaim_flat_without_readers, teardown_nothing_left),
		cmocka_unit_test_teardown(test_reclaim_idle_buffers_give_memory_back, teardown_nothing_left),
		cmocka_unit_test_teardown(test_reclaim_long_chain_small_stack, teardown_nothing_left),
		cmocka_unit_test_teardown(test_reclaim_eventfds_bounded, teardown_nothing_left),
		cmocka_unit_test_teardown(test_reclaim_spliced_chains, teardown_nothing_left),
		cmocka_unit_test_teardown(test_reclaim_joined_head_stays_with_its_buffer, teardown_nothing_left),
		cmocka_unit_test_teardown(test_reclaim_stats, teardown_nothing_left),
	};

	/*
	 * Re-run ourselves with a 256 KiB stack limit, which glibc gives every
	 * thread created afterwards. Valgrind runs keep their own stacks.
	 */
	(void)argc;
	if (!getenv("EVENTBUF_SMALL_STACK") && !under(UNDER_VALGRIND)) {
		struct rlimit rl = { 256 * 1024, 256 * 1024 };

		if (setrlimit(RLIMIT_STACK, &rl) == 0 &&
		    setenv("EVENTBUF_SMALL_STACK", "1", 1) == 0)
			execv(argv[0], argv);
		perror("re-exec with a small stack");
		return 1;
	}
	return cmocka_run_group_tests_name("reclaim", tests, NULL, NULL);
}

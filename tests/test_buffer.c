// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The buffer and the seed's rules: sentinel, order, empty items skipped,
 * error items terminal, splicing, refusals.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"

/* Read every batch currently published after @from into @idx. */
static size_t drain(struct eventbuf_item *from, uint64_t *idx, size_t max)
{
	struct eventbuf_item *it = from, *next;
	size_t n = 0;

	assert_int_equal(eventbuf_item_get(it), 0);
	while (eventbuf_item_next_nonblock(it, &next) == 0) {
		const struct eventbuf_event *ev = eventbuf_item_events(next);

		for (size_t i = 0; i < eventbuf_item_count(next) && n < max; i++)
			idx[n++] = ev[i].index;
		eventbuf_item_put(it);
		it = next;
	}
	eventbuf_item_put(it);
	return n;
}

static void test_buffer_new_has_sentinel(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *next = NULL;

	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_count(head), 0);
	assert_null(eventbuf_item_events(head));
	assert_int_equal(eventbuf_item_error(head, NULL), 0);
	assert_int_equal(eventbuf_item_next_nonblock(head, &next), -EAGAIN);
	assert_null(next);
	eventbuf_item_put(head);
}

static void test_buffer_append_in_order(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *start;
	uint64_t idx[16];

	assert_int_equal(eventbuf_head(f->buf, &start), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(append_batch(f->buf, 2, 3, &f->log), 0);
	assert_int_equal(append_batch(f->buf, 5, 1, &f->log), 0);
	assert_int_equal(drain(start, idx, 16), 5);
	for (uint64_t i = 0; i < 5; i++)
		assert_int_equal(idx[i], i + 1);
	eventbuf_item_put(start);
}

static void test_buffer_events_are_copied(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_event ev = { .index = 7, .topic = "t", .key = "k",
				     .payload = &ev };
	struct eventbuf_item *start, *next;

	assert_int_equal(eventbuf_head(f->buf, &start), 0);
	assert_int_equal(eventbuf_append(f->buf, &ev, 1, NULL, NULL), 0);
	ev.index = 99;
	ev.key = "changed";
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
	assert_int_equal(eventbuf_item_events(next)[0].index, 7);
	assert_string_equal(eventbuf_item_events(next)[0].key, "k");
	assert_ptr_equal(eventbuf_item_events(next)[0].payload, &ev);
	eventbuf_item_put(next);
	eventbuf_item_put(start);
}

static void test_buffer_empty_items_skipped(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *start, *next, *head;

	assert_int_equal(eventbuf_head(f->buf, &start), 0);
	assert_int_equal(eventbuf_append(f->buf, NULL, 0, NULL, NULL), 0);
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), -EAGAIN);
	/* The head may be an empty item. */
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_count(head), 0);
	assert_ptr_not_equal(head, start);
	assert_int_equal(eventbuf_append(f->buf, NULL, 0, NULL, NULL), 0);
	assert_int_equal(append_batch(f->buf, 3, 1, &f->log), 0);
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
	assert_int_equal(eventbuf_item_events(next)[0].index, 3);
	eventbuf_item_put(next);
	eventbuf_item_put(head);
	eventbuf_item_put(start);
}

static void test_buffer_error_is_terminal(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *start, *next, *head;
	const char *msg;

	assert_int_equal(eventbuf_head(f->buf, &start), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_append_error(f->buf, -EIO, "snapshot failed"), 0);
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
	assert_int_equal(eventbuf_item_events(next)[0].index, 1);
	eventbuf_item_put(start);
	start = next;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(eventbuf_item_next_nonblock(start, &next), -EIO);
		assert_int_equal(eventbuf_item_next(start, -1, -1, &next), -EIO);
	}
	assert_int_equal(eventbuf_item_error(start, &msg), -EIO);
	assert_string_equal(msg, "snapshot failed");
	/* The head is the error item itself. */
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_error(head, &msg), -EIO);
	assert_int_equal(eventbuf_item_next_nonblock(head, &next), -EIO);
	eventbuf_item_put(head);
	eventbuf_item_put(start);
}

static void test_buffer_append_after_error_refused(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *again;

	assert_int_equal(eventbuf_append_error(f->buf, -EIO, NULL), 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), -EPIPE);
	assert_int_equal(eventbuf_append_error(f->buf, -EIO, "x"), -EPIPE);
	assert_int_equal(eventbuf_append_item(f->buf, head), -EPIPE);
	assert_int_equal(eventbuf_head(f->buf, &again), 0);
	assert_ptr_equal(head, again);
	/* Nothing was retained from the refused batch. */
	assert_int_equal(atomic_load(&f->log.count[1]), 0);
	eventbuf_item_put(again);
	eventbuf_item_put(head);
}

static void test_buffer_bad_input(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *out = NULL;
	struct eventbuf_reader *r = NULL;
	const struct eventbuf_item *bi;
	int fd;

	assert_int_equal(eventbuf_new(NULL), -EINVAL);
	assert_int_equal(eventbuf_append(NULL, NULL, 0, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_append(f->buf, NULL, 1, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_append(f->buf, (void *)&fd,
					 EVENTBUF_MAX_EVENTS + 1, NULL, NULL),
			 -EINVAL);
	assert_int_equal(EVENTBUF_MAX_EVENTS + 1, 0x1000000);
	assert_int_equal(eventbuf_append_item(NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_append_item(f->buf, NULL), -EINVAL);
	assert_int_equal(eventbuf_append_error(NULL, -EIO, NULL), -EINVAL);
	assert_int_equal(eventbuf_append_error(f->buf, 0, NULL), -EINVAL);
	assert_int_equal(eventbuf_append_error(f->buf, 5, NULL), -EINVAL);
	assert_int_equal(eventbuf_append_error(f->buf, -EAGAIN, NULL), -EINVAL);
	assert_int_equal(eventbuf_append_error(f->buf, -ETIMEDOUT, NULL), -EINVAL);
	assert_int_equal(eventbuf_append_error(f->buf, -ECANCELED, NULL), -EINVAL);
	/* Every library code of eventbuf.h's table, not only the above. */
	{
		static const int library[] = {
			EINVAL, EOVERFLOW, ENOMEM, EMFILE, ENFILE, ENOSPC,
			EDEADLK, EISCONN,
		};

		for (size_t i = 0; i < sizeof(library) / sizeof(library[0]); i++)
			assert_int_equal(eventbuf_append_error(f->buf, -library[i],
							       NULL), -EINVAL);
	}
	assert_int_equal(eventbuf_head(NULL, &head), -EINVAL);
	assert_int_equal(eventbuf_head(f->buf, NULL), -EINVAL);
	assert_int_equal(eventbuf_item_get(NULL), -EINVAL);
	eventbuf_item_put(NULL);
	eventbuf_drop(NULL);
	assert_int_equal(eventbuf_item_next_nonblock(NULL, &out), -EINVAL);
	assert_int_equal(eventbuf_item_next(NULL, 0, -1, &out), -EINVAL);
	assert_int_equal(eventbuf_item_follow_after(NULL, &out), -EINVAL);
	assert_int_equal(eventbuf_item_wait_fd(NULL, &fd), -EINVAL);
	assert_int_equal(eventbuf_reader_new(NULL, &r), -EINVAL);
	assert_int_equal(eventbuf_reader_next_nonblock(NULL, &bi), -EINVAL);
	assert_int_equal(eventbuf_reader_next(NULL, 0, -1, &bi), -EINVAL);
	assert_int_equal(eventbuf_reader_wait_fd(NULL, &fd), -EINVAL);
	assert_int_equal(eventbuf_reader_error(NULL, NULL), 0);
	eventbuf_reader_free(NULL);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_next_nonblock(head, NULL), -EINVAL);
	assert_int_equal(eventbuf_item_follow_after(head, NULL), -EINVAL);
	assert_int_equal(eventbuf_item_wait_fd(head, NULL), -EINVAL);
	assert_int_equal(eventbuf_reader_new(head, NULL), -EINVAL);
	/* An invalid cancellation descriptor is reported, not waited on. */
	assert_int_equal(eventbuf_item_next(head, 1000, 1 << 29, &out), -EINVAL);
	assert_null(out);
	assert_int_equal(eventbuf_item_count(NULL), 0);
	assert_null(eventbuf_item_events(NULL));
	assert_int_equal(eventbuf_item_error(NULL, NULL), 0);
	/* The buffer still works after all of that. */
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_item_next_nonblock(head, &out), 0);
	eventbuf_item_put(out);
	eventbuf_item_put(head);
}

/*
 * The seed's splice: a snapshot buffer, once its events are in, joins the
 * live topic buffer right after the topic's current head; its readers see
 * the snapshot, then only the topic items published after the join.
 */
static void test_buffer_splice_mid_stream(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf *snap;
	struct eventbuf_item *snap_start, *topic_head, *follow;
	uint64_t idx[32];
	size_t n;

	assert_int_equal(append_batch(f->buf, 10, 1, &f->log), 0);
	assert_int_equal(append_batch(f->buf, 11, 1, &f->log), 0);
	assert_int_equal(eventbuf_new(&snap), 0);
	assert_int_equal(eventbuf_head(snap, &snap_start), 0);
	assert_int_equal(append_batch(snap, 1, 2, &f->log), 0);
	assert_int_equal(append_batch(snap, 3, 1, &f->log), 0);
	assert_int_equal(eventbuf_head(f->buf, &topic_head), 0);
	assert_int_equal(eventbuf_item_follow_after(topic_head, &follow), 0);
	assert_int_equal(eventbuf_append_item(snap, follow), 0);
	eventbuf_item_put(follow);
	eventbuf_drop(snap);
	assert_int_equal(append_batch(f->buf, 12, 1, &f->log), 0);
	assert_int_equal(append_batch(f->buf, 13, 2, &f->log), 0);

	n = drain(snap_start, idx, 32);
	assert_int_equal(n, 6);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 2);
	assert_int_equal(idx[2], 3);
	assert_int_equal(idx[3], 12);	/* never 10 or 11: they precede */
	assert_int_equal(idx[4], 13);
	assert_int_equal(idx[5], 14);
	eventbuf_item_put(topic_head);
	eventbuf_item_put(snap_start);
}

/* Joining at an item in the middle of another chain, as the publisher's
 * splice does with the first topic item newer than the snapshot. */
static void test_buffer_splice_at_middle_item(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf *snap;
	struct eventbuf_item *topic_start, *mid, *snap_start;
	uint64_t idx[32];

	assert_int_equal(eventbuf_head(f->buf, &topic_start), 0);
	for (uint64_t i = 1; i <= 4; i++)
		assert_int_equal(append_batch(f->buf, i, 1, &f->log), 0);
	assert_int_equal(eventbuf_item_next_nonblock(topic_start, &mid), 0);
	eventbuf_item_put(topic_start);
	assert_int_equal(eventbuf_new(&snap), 0);
	assert_int_equal(eventbuf_head(snap, &snap_start), 0);
	assert_int_equal(append_batch(snap, 100, 1, &f->log), 0);
	assert_int_equal(eventbuf_append_item(snap, mid), 0);
	eventbuf_item_put(mid);
	eventbuf_drop(snap);
	assert_int_equal(drain(snap_start, idx, 32), 5);
	assert_int_equal(idx[0], 100);
	for (uint64_t i = 1; i <= 4; i++)
		assert_int_equal(idx[i], i);
	eventbuf_item_put(snap_start);
}

static void test_buffer_splice_cycle_refused(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *start, *head, *follow;
	uint64_t idx[8];

	assert_int_equal(eventbuf_head(f->buf, &start), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_append_item(f->buf, head), -ELOOP);
	assert_int_equal(eventbuf_append_item(f->buf, start), -ELOOP);
	assert_int_equal(eventbuf_item_follow_after(head, &follow), 0);
	assert_int_equal(eventbuf_append_item(f->buf, follow), -ELOOP);
	/* The list is intact and still takes appends. */
	assert_int_equal(append_batch(f->buf, 2, 1, &f->log), 0);
	assert_int_equal(drain(start, idx, 8), 2);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 2);
	eventbuf_item_put(follow);
	eventbuf_item_put(head);
	eventbuf_item_put(start);
}

static void test_buffer_append_after_join_refused(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf *other;
	struct eventbuf_item *other_head;

	assert_int_equal(eventbuf_new(&other), 0);
	assert_int_equal(eventbuf_head(other, &other_head), 0);
	assert_int_equal(eventbuf_append_item(f->buf, other_head), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), -EISCONN);
	assert_int_equal(eventbuf_append_error(f->buf, -EIO, NULL), -EISCONN);
	assert_int_equal(eventbuf_append_item(f->buf, other_head), -EISCONN);
	/* The joined buffer's readers follow the other buffer. */
	assert_int_equal(append_batch(other, 5, 1, &f->log), 0);
	{
		struct eventbuf_item *head, *next;

		assert_int_equal(eventbuf_head(f->buf, &head), 0);
		assert_ptr_equal(head, other_head);
		assert_int_equal(eventbuf_item_next_nonblock(head, &next), 0);
		assert_int_equal(eventbuf_item_events(next)[0].index, 5);
		eventbuf_item_put(next);
		eventbuf_item_put(head);
	}
	eventbuf_item_put(other_head);
	eventbuf_drop(other);
}

static void test_buffer_head_holds_newest(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head;

	for (uint64_t i = 0; i < 200; i++)
		assert_int_equal(append_batch(f->buf, i, 1, &f->log), 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_events(head)[0].index, 199);
	eventbuf_drop(f->buf);
	eventbuf_barrier();
	/* Dropping the buffer freed everything but what we hold. */
	assert_int_equal(release_log_count(&f->log, 0, 199, 1), 199);
	assert_int_equal(atomic_load(&f->log.count[199]), 0);
	assert_int_equal(eventbuf_item_events(head)[0].index, 199);
	eventbuf_item_put(head);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&f->log.count[199]), 1);
	assert_int_equal(eventbuf_new(&f->buf), 0);
}

/*
 * A buffer that holds a few items costs a few hundred bytes, not an arena
 * (2 MiB once a huge page is touched): a publisher keeps one buffer per
 * watched key and per cached snapshot.
 */
static void test_buffer_small_buffers_stay_small(void **state)
{
	enum { NBUFS = 1000 };
	struct eventbuf **bufs = calloc(NBUFS, sizeof(*bufs));
	long before = rss_kb(), grew;

	(void)state;
	assert_non_null(bufs);
	for (int i = 0; i < NBUFS; i++) {
		assert_int_equal(eventbuf_new(&bufs[i]), 0);
		for (uint64_t k = 1; k <= 10; k++)
			assert_int_equal(append_batch(bufs[i], k, 1, NULL), 0);
	}
	grew = rss_kb() - before;
	printf("# %d buffers of 10 items: RSS +%ld KiB\n", NBUFS, grew);
	assert_true(grew < 64 * 1024);
	for (int i = 0; i < NBUFS; i++)
		eventbuf_drop(bufs[i]);
	free(bufs);
}

/* Append items @from..@to to @buf: whether each came from a slab. */
static void append_noting_slabs(struct eventbuf *buf, uint64_t from,
				uint64_t to, bool *in_slab)
{
	struct eventbuf_item *head;

	for (uint64_t k = from; k <= to; k++) {
		assert_int_equal(append_batch(buf, k, 1, NULL), 0);
		assert_int_equal(eventbuf_head(buf, &head), 0);
		in_slab[k - 1] = __eventbuf_item_in_slab(head);
		eventbuf_item_put(head);
	}
}

static uint32_t saved_warmup;
static int64_t saved_window;

/* The warm-up knobs are the library's globals: back to what they were
 * however the test ends. */
static int warmup_save(void **state)
{
	(void)state;
	saved_warmup = __eventbuf_slab_warmup;
	saved_window = __eventbuf_slab_warmup_ns;
	return 0;
}

static int warmup_restore(void **state)
{
	(void)state;
	__eventbuf_slab_warmup = saved_warmup;
	__eventbuf_slab_warmup_ns = saved_window;
	return 0;
}

/*
 * A buffer carves slabs only once it appended a warm-up's worth of items
 * within the warm-up window: a slow writer keeps taking malloc(), so that
 * a key that sees a few events a second never holds a slab's pages. Each
 * window is timed from its own first item: a buffer whose first window
 * was slow takes slabs right after a fast second one.
 */
static void test_buffer_slabs_only_for_fast_writers(void **state)
{
	const struct timespec pause = { 0, 100 * 1000 * 1000 };
	struct eventbuf *buf;
	bool in_slab[40];

	(void)state;
	__eventbuf_slab_warmup = 4;
	__eventbuf_slab_warmup_ns = INT64_MAX;	/* every writer is fast */
	assert_int_equal(eventbuf_new(&buf), 0);
	append_noting_slabs(buf, 1, 40, in_slab);
	for (int i = 0; i < 40; i++)
		assert_int_equal(in_slab[i], i >= 4);
	eventbuf_drop(buf);

	__eventbuf_slab_warmup_ns = -1;		/* every writer is slow */
	assert_int_equal(eventbuf_new(&buf), 0);
	append_noting_slabs(buf, 1, 40, in_slab);
	for (int i = 0; i < 40; i++)
		assert_false(in_slab[i]);
	eventbuf_drop(buf);

	/* 50 ms windows: the first takes over 100 ms, the second a moment. */
	__eventbuf_slab_warmup_ns = 50 * 1000 * 1000;
	assert_int_equal(eventbuf_new(&buf), 0);
	append_noting_slabs(buf, 1, 3, in_slab);
	nanosleep(&pause, NULL);
	append_noting_slabs(buf, 4, 12, in_slab);
	for (int i = 0; i < 12; i++)
		assert_int_equal(in_slab[i], i >= 8);
	eventbuf_drop(buf);
}

/* liburcu-bp's exported read-side calls (the library's flavor). */
void urcu_bp_read_lock(void);
void urcu_bp_read_unlock(void);

static int barrier_in_read_side(void)
{
	urcu_bp_read_lock();
	eventbuf_barrier();
	urcu_bp_read_unlock();
	return 3;
}

static void barrier_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)events;
	(void)n;
	(void)arg;
	eventbuf_barrier();
}

static int barrier_in_release(void)
{
	struct eventbuf_event ev = { .index = 1 };
	struct eventbuf *buf;

	if (eventbuf_new(&buf) ||
	    eventbuf_append(buf, &ev, 1, barrier_release, NULL))
		return 2;
	eventbuf_drop(buf);
	eventbuf_barrier();
	return 3;
}

/*
 * eventbuf_barrier() returns nothing: where it could never return it
 * aborts with a message naming the rule, in a read-side section and in a
 * release callback alike.
 */
static void test_buffer_barrier_misuse_aborts(void **state)
{
	(void)state;
	expect_child_abort("barrier_in_read_side", "eventbuf_barrier()",
			   "called inside an RCU read-side critical section");
	expect_child_abort("barrier_in_release", "eventbuf_barrier()",
			   "called from a release callback");
}

static const struct child_case child_cases[] = {
	{ "barrier_in_read_side", barrier_in_read_side },
	{ "barrier_in_release", barrier_in_release },
};

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		buf_fixture_test(test_buffer_new_has_sentinel),
		buf_fixture_test(test_buffer_append_in_order),
		buf_fixture_test(test_buffer_events_are_copied),
		buf_fixture_test(test_buffer_empty_items_skipped),
		buf_fixture_test(test_buffer_error_is_terminal),
		buf_fixture_test(test_buffer_append_after_error_refused),
		buf_fixture_test(test_buffer_bad_input),
		buf_fixture_test(test_buffer_splice_mid_stream),
		buf_fixture_test(test_buffer_splice_at_middle_item),
		buf_fixture_test(test_buffer_splice_cycle_refused),
		buf_fixture_test(test_buffer_append_after_join_refused),
		buf_fixture_test(test_buffer_head_holds_newest),
		buf_fixture_test(test_buffer_small_buffers_stay_small),
		cmocka_unit_test_setup_teardown(test_buffer_slabs_only_for_fast_writers,
						warmup_save, warmup_restore),
		buf_fixture_test(test_buffer_barrier_misuse_aborts),
	};

	(void)argc;
	child_case_run(argv[0], child_cases, 2);
	return cmocka_run_group_tests_name("buffer", tests, NULL, NULL);
}

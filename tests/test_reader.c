// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Readers: borrowed items in order, sticky errors, timeouts that are not
 * terminal, the one reference that moves only when the reader parks or
 * every 64 batches, and the spin before a park when it is turned on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "helpers.h"

/* The fixture lets go of its start item: the readers made from it hold it. */
static void let_go_of_start(struct buf_fixture *f)
{
	eventbuf_item_put(f->start);
	f->start = NULL;
}

static void test_reader_reads_in_order(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it = NULL;
	struct eventbuf_reader *r;
	struct reader_result res;

	assert_int_equal(eventbuf_reader_new(f->start, &r), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), -EAGAIN);
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(append_batch(f->buf, 2 * i, 2, &f->log), 0);
	assert_int_equal(eventbuf_append(f->buf, NULL, 0, NULL, NULL), 0);
	reader_result_init(&res, 0);
	while (eventbuf_reader_next_nonblock(r, &it) == 0)
		reader_result_see(&res, it);
	assert_int_equal(res.count, 20);
	assert_int_equal(res.out_of_order, 0);
	assert_int_equal(eventbuf_reader_error(r, NULL), 0);
	eventbuf_reader_free(r);
}

static void test_reader_error_is_sticky(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	const char *msg;
	int fd;

	assert_int_equal(eventbuf_reader_new(f->start, &r), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_append_error(f->buf, -ECONNRESET, "reset"), 0);
	assert_int_equal(eventbuf_reader_next(r, -1, -1, &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(eventbuf_reader_next(r, -1, -1, &it), -ECONNRESET);
		assert_int_equal(eventbuf_reader_next_nonblock(r, &it), -ECONNRESET);
	}
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), -EALREADY);
	assert_int_equal(eventbuf_reader_error(r, &msg), -ECONNRESET);
	assert_string_equal(msg, "reset");
	eventbuf_reader_free(r);
}

static void test_reader_timeout_not_terminal(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	int64_t t0 = now_ms();

	assert_int_equal(eventbuf_reader_new(f->start, &r), 0);
	assert_int_equal(eventbuf_reader_next(r, 0, -1, &it), -ETIMEDOUT);
	assert_int_equal(eventbuf_reader_next(r, 20, -1, &it), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 20);
	assert_int_equal(append_batch(f->buf, 5, 1, &f->log), 0);
	assert_int_equal(eventbuf_reader_next(r, 20, -1, &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 5);
	eventbuf_reader_free(r);
}

/*
 * A cancel_fd that is neither -1 nor open: -EINVAL, with a timeout or
 * without - forever included, where another negative number would
 * otherwise wait uncancellable.
 */
static void test_reader_bad_cancel_fd(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_item *next;
	struct eventbuf_reader *r;
	int p[2];

	/* A number nothing uses, and no eventfd the library opens will
	 * take (the lowest free numbers go first). */
	p[0] = 1000;
	assert_true(fcntl(p[0], F_GETFD) < 0);
	assert_int_equal(eventbuf_reader_new(f->start, &r), 0);
	assert_int_equal(eventbuf_reader_next(r, 0, p[0], &it), -EINVAL);
	assert_int_equal(eventbuf_reader_next(r, 20, p[0], &it), -EINVAL);
	assert_int_equal(eventbuf_item_next(f->start, 0, p[0], &next), -EINVAL);
	assert_int_equal(eventbuf_item_next(f->start, 20, p[0], &next), -EINVAL);
	for (int bad = -2; bad >= -3; bad--) {
		assert_int_equal(eventbuf_reader_next(r, 0, bad, &it), -EINVAL);
		assert_int_equal(eventbuf_reader_next(r, -1, bad, &it), -EINVAL);
		assert_int_equal(eventbuf_item_next(f->start, 0, bad, &next),
				 -EINVAL);
		assert_int_equal(eventbuf_item_next(f->start, -1, bad, &next),
				 -EINVAL);
	}
	/* Not terminal, and only checked when there is nothing to return. */
	assert_int_equal(append_batch(f->buf, 5, 1, &f->log), 0);
	assert_int_equal(eventbuf_reader_next(r, 0, p[0], &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 5);
	eventbuf_reader_free(r);
}

/* A child that closes its reader's wait descriptor, then waits on it. */
static int close_wait_fd(void)
{
	const struct eventbuf_item *it;
	struct eventbuf_item *start;
	struct eventbuf_reader *r;
	struct eventbuf *buf;
	int fd;

	if (eventbuf_new(&buf) || eventbuf_head(buf, &start) ||
	    eventbuf_reader_new(start, &r) ||
	    eventbuf_reader_wait_fd(r, &fd) != 1)
		return 2;
	close(fd);	/* forbidden: the library's descriptor */
	return eventbuf_reader_next(r, 1000, -1, &it) == -ETIMEDOUT ? 3 : 4;
}

/*
 * The library's own eventfd closed behind its back (POLLNVAL) is a broken
 * invariant, not an error code a caller could take for a terminal one:
 * the process aborts with a message.
 */
static void test_reader_closed_wait_fd_aborts(void **state)
{
	(void)state;
	expect_child_abort("close_wait_fd", "POLLNVAL",
			   "never read, write or close");
}

static const struct child_case child_cases[] = {
	{ "close_wait_fd", close_wait_fd },
};

static void test_reader_wait_fd_moves_with_reader(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	int fd1, fd2;

	assert_int_equal(eventbuf_reader_new(f->start, &r), 0);
	let_go_of_start(f);	/* the reader is the only holder */
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd1), 1);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd2), -EALREADY);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
	/* Nobody else had the old link's descriptor: the reader keeps it. */
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd2), 0);
	assert_int_equal(fd2, fd1);
	/* Parked on the new tip: the old link is signalled and let go. */
	eventbuf_barrier();
	{
		struct eventbuf_stats st;

		eventbuf_stats(&st);
		assert_int_equal(st.open_eventfds, 1);
		assert_int_equal(count_eventfds(), 1);
	}
	/* Same link: the same descriptor, already registered. */
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd1), 0);
	assert_int_equal(fd1, fd2);
	eventbuf_reader_free(r);
}

/*
 * A reader alone on its links keeps its descriptor from link to link:
 * registered once in an edge-triggered epoll set, it reports every append,
 * and no wake-up outlives the append it announced.
 */
static void test_reader_kept_fd_wakes_epoll(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, got;
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	struct eventbuf_stats st;
	int ep = epoll_create1(EPOLL_CLOEXEC), fd, first;

	assert_true(ep >= 0);
	assert_int_equal(eventbuf_reader_new(f->start, &r), 0);
	let_go_of_start(f);	/* the reader is the only holder */
	assert_int_equal(eventbuf_reader_wait_fd(r, &first), 1);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, first, &ev), 0);
	for (uint64_t i = 0; i < 100; i++) {
		assert_int_equal(epoll_wait(ep, &got, 1, 0), 0);
		assert_int_equal(append_batch(f->buf, i, 1, &f->log), 0);
		assert_int_equal(epoll_wait(ep, &got, 1, 10000), 1);
		assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
		assert_int_equal(eventbuf_item_events(it)[0].index, i);
		assert_int_equal(eventbuf_reader_next_nonblock(r, &it), -EAGAIN);
		assert_int_equal(eventbuf_reader_wait_fd(r, &fd), 0);
		assert_int_equal(fd, first);
	}
	eventbuf_barrier();
	eventbuf_stats(&st);
	assert_int_equal(st.open_eventfds, 1);
	assert_int_equal(count_eventfds(), 1);
	/* Its last link's descriptor goes with the link, once the buffer
	 * lets go of it. */
	eventbuf_reader_free(r);
	eventbuf_drop(f->buf);
	f->buf = NULL;
	eventbuf_barrier();
	assert_int_equal(count_eventfds(), 0);
	close(ep);
}

/*
 * A descriptor somebody else took from the link too - a second reader,
 * eventbuf_item_wait_fd() - may be watched elsewhere: it is closed when
 * the link is done, and each reader gets a new one (return 1).
 */
static void test_reader_shared_fd_not_kept(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *a, *b;
	struct eventbuf_item *tip;
	int fa, fb, fi;

	assert_int_equal(eventbuf_reader_new(f->start, &a), 0);
	assert_int_equal(eventbuf_reader_new(f->start, &b), 0);
	let_go_of_start(f);
	assert_int_equal(eventbuf_reader_wait_fd(a, &fa), 1);
	assert_int_equal(eventbuf_reader_wait_fd(b, &fb), 1);
	assert_int_equal(fa, fb);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(a, &it), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(b, &it), 0);
	assert_int_equal(eventbuf_reader_wait_fd(a, &fa), 1);
	assert_int_equal(eventbuf_reader_wait_fd(b, &fb), 1);
	assert_int_equal(fa, fb);
	eventbuf_barrier();
	assert_int_equal(count_eventfds(), 1);
	eventbuf_reader_free(b);
	/* A alone, but the item API took its link's descriptor as well. */
	assert_int_equal(eventbuf_head(f->buf, &tip), 0);
	assert_int_equal(eventbuf_item_wait_fd(tip, &fi), 0);
	assert_int_equal(fi, fa);
	assert_int_equal(append_batch(f->buf, 2, 1, &f->log), 0);
	eventbuf_item_put(tip);
	assert_int_equal(eventbuf_reader_next_nonblock(a, &it), 0);
	assert_int_equal(eventbuf_reader_wait_fd(a, &fa), 1);
	eventbuf_barrier();
	assert_int_equal(count_eventfds(), 1);
	eventbuf_reader_free(a);
}

/*
 * A reader with a kept descriptor that finds its next link armed by
 * another reader waits on that one (1) and closes its own, which its
 * caller's set would otherwise go on watching.
 */
static void test_reader_kept_fd_dropped_on_join(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *a, *b;
	struct eventbuf_item *head;
	int fa, fb, fd;

	assert_int_equal(eventbuf_reader_new(f->start, &a), 0);
	let_go_of_start(f);
	assert_int_equal(eventbuf_reader_wait_fd(a, &fa), 1);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(a, &it), 0);
	assert_int_equal(eventbuf_reader_wait_fd(a, &fd), 0);
	assert_int_equal(fd, fa);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &b), 0);
	eventbuf_item_put(head);
	assert_int_equal(append_batch(f->buf, 2, 1, &f->log), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(a, &it), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(b, &it), 0);
	assert_int_equal(eventbuf_reader_wait_fd(b, &fb), 1);
	assert_int_equal(eventbuf_reader_wait_fd(a, &fd), 1);
	assert_int_equal(fd, fb);
	assert_int_equal(count_eventfds(), 1);
	eventbuf_reader_free(a);
	eventbuf_reader_free(b);
}

/*
 * A reader that has read 1000 items holds only its anchor: everything
 * before the anchor is reclaimed, so it retains at most one stride.
 */
static void test_reader_releases_what_it_read(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	struct eventbuf_stats st;
	uint64_t seen = 0;

	assert_int_equal(eventbuf_reader_new(f->start, &r), 0);
	let_go_of_start(f);
	for (uint64_t i = 0; i < 1000; i++)
		assert_int_equal(append_batch(f->buf, i, 1, &f->log), 0);
	while (eventbuf_reader_next_nonblock(r, &it) == 0)
		seen++;
	assert_int_equal(seen, 1000);
	/* Let the writer's pin pass the items (one more grace period). */
	eventbuf_barrier();
	assert_int_equal(append_batch(f->buf, 1000, 1, &f->log), 0);
	eventbuf_barrier();
	eventbuf_stats(&st);
	/*
	 * The anchor moved with every 64th batch: it sits on index 959 (the
	 * 960th). Everything before it was released once, nothing after.
	 */
	assert_int_equal(release_log_count(&f->log, 0, 959, 1), 959);
	assert_int_equal(release_log_count(&f->log, 959, 1001, 0), 42);
	assert_int_equal(st.live_items, 42);
	eventbuf_reader_free(r);
}

static void test_reader_starts_after_its_item(void **state)
{
	struct buf_fixture *f = *state;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	struct eventbuf_item *head;

	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), -EAGAIN);
	assert_int_equal(append_batch(f->buf, 2, 1, &f->log), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 2);
	eventbuf_reader_free(r);
}

/*
 * A spin before the park (src/reader.c, __eventbuf_reader_spin_ns): the
 * fixture's setup turns it on, its teardown off again.
 */
#define LONG_SPIN_NS 4000000000u	/* 4 s: far longer than the test */

static int spin_setup(void **state)
{
	atomic_store(&__eventbuf_reader_spin_ns, LONG_SPIN_NS);
	return buf_fixture_setup_head(state);
}

static int spin_teardown(void **state)
{
	atomic_store(&__eventbuf_reader_spin_ns, 0);
	return buf_fixture_teardown(state);
}

struct blocked_next {
	struct eventbuf_reader *r;
	int timeout_ms;
	int ret;
	uint64_t index;		/* of the event read, when ret is 0 */
};

static void *blocked_next_run(void *arg)
{
	struct blocked_next *b = arg;
	const struct eventbuf_item *it;

	b->ret = eventbuf_reader_next(b->r, b->timeout_ms, -1, &it);
	if (!b->ret)
		b->index = eventbuf_item_events(it)[0].index;
	return NULL;
}

/*
 * An item published while the reader spins is read without a park: the
 * spin that began is the one that found it. The append waits until the
 * reader's counter shows the spin under way (bounded by a deadline).
 */
static void test_reader_spin_finds_item(void **state)
{
	struct buf_fixture *f = *state;
	struct blocked_next b = { .timeout_ms = 30000, .ret = 1 };
	int64_t deadline = now_ms() + 10000;
	bool spinning;
	uint32_t hits;
	pthread_t tid;

	assert_int_equal(eventbuf_reader_new(f->start, &b.r), 0);
	assert_int_equal(pthread_create(&tid, NULL, blocked_next_run, &b), 0);
	while (!(spinning = __eventbuf_reader_spins(b.r, &hits) > 0) &&
	       now_ms() < deadline)
		;
	/* Append and join before any assertion: the thread uses @b. */
	assert_int_equal(append_batch(f->buf, 7, 1, &f->log), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_true(spinning);
	assert_int_equal(b.ret, 0);
	assert_int_equal(b.index, 7);
	assert_int_equal(__eventbuf_reader_spins(b.r, &hits), 1);
	assert_int_equal(hits, 1);
	eventbuf_reader_free(b.r);
}

/* The spin ends at the caller's deadline: a 4 s spin does not make a
 * 50 ms wait last 4 s, and the timeout is still not terminal. */
static void test_reader_spin_keeps_deadline(void **state)
{
	struct buf_fixture *f = *state;
	struct blocked_next b = { .timeout_ms = 50, .ret = 1 };
	int64_t t0 = now_ms(), took;
	uint32_t hits;

	assert_int_equal(eventbuf_reader_new(f->start, &b.r), 0);
	blocked_next_run(&b);
	took = now_ms() - t0;
	assert_int_equal(b.ret, -ETIMEDOUT);
	assert_true(took >= 50);
	assert_true(took < 2000);
	assert_int_equal(__eventbuf_reader_spins(b.r, &hits), 1);
	assert_int_equal(hits, 0);
	assert_int_equal(append_batch(f->buf, 9, 1, &f->log), 0);
	b.timeout_ms = 0;
	blocked_next_run(&b);
	assert_int_equal(b.ret, 0);
	assert_int_equal(b.index, 9);
	eventbuf_reader_free(b.r);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		buf_fixture_head_test(test_reader_reads_in_order),
		buf_fixture_head_test(test_reader_error_is_sticky),
		buf_fixture_head_test(test_reader_timeout_not_terminal),
		buf_fixture_head_test(test_reader_bad_cancel_fd),
		buf_fixture_head_test(test_reader_closed_wait_fd_aborts),
		buf_fixture_head_test(test_reader_wait_fd_moves_with_reader),
		buf_fixture_head_test(test_reader_kept_fd_wakes_epoll),
		buf_fixture_head_test(test_reader_shared_fd_not_kept),
		buf_fixture_head_test(test_reader_kept_fd_dropped_on_join),
		buf_fixture_head_test(test_reader_releases_what_it_read),
		buf_fixture_head_test(test_reader_starts_after_its_item),
		cmocka_unit_test_setup_teardown(test_reader_spin_finds_item,
						spin_setup, spin_teardown),
		cmocka_unit_test_setup_teardown(test_reader_spin_keeps_deadline,
						spin_setup, spin_teardown),
	};

	(void)argc;
	child_case_run(argv[0], child_cases, 1);
	return cmocka_run_group_tests_name("reader", tests, NULL, NULL);
}

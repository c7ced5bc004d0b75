// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Item-level reads, the seed's API: follow-after before and after the next
 * publish, blocking next with timeout and cancellation, the wait fd.
 */
#include <errno.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "helpers.h"

static uint64_t first_index(const struct eventbuf_item *it)
{
	return eventbuf_item_events(it)[0].index;
}

static void test_item_follow_after_before_publish(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *follow, *next;

	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_follow_after(head, &follow), 0);
	assert_ptr_not_equal(follow, head);
	assert_int_equal(eventbuf_item_count(follow), 0);
	assert_int_equal(eventbuf_item_next_nonblock(follow, &next), -EAGAIN);
	assert_int_equal(append_batch(f->buf, 2, 1, &f->log), 0);
	/* The follower yields what came after the head, never the head. */
	assert_int_equal(eventbuf_item_next_nonblock(follow, &next), 0);
	assert_int_equal(first_index(next), 2);
	eventbuf_item_put(next);
	eventbuf_item_put(follow);
	eventbuf_item_put(head);
}

static void test_item_follow_after_after_publish(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *out;

	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_item_follow_after(head, &out), 0);
	assert_int_equal(eventbuf_item_count(out), 1);
	assert_int_equal(first_index(out), 1);
	eventbuf_item_put(out);
	eventbuf_item_put(head);
}

static void test_item_follow_after_empty_tip(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *out, *next;

	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_append(f->buf, NULL, 0, NULL, NULL), 0);
	assert_int_equal(eventbuf_item_follow_after(head, &out), 0);
	assert_int_equal(eventbuf_item_count(out), 0);
	assert_int_equal(append_batch(f->buf, 2, 1, &f->log), 0);
	assert_int_equal(eventbuf_item_next_nonblock(out, &next), 0);
	assert_int_equal(first_index(next), 2);
	eventbuf_item_put(next);
	eventbuf_item_put(out);
	eventbuf_item_put(head);
}

static void test_item_follow_after_error(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *out = NULL;

	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_append_error(f->buf, -ENOENT, "gone"), 0);
	assert_int_equal(eventbuf_item_follow_after(head, &out), -ENOENT);
	assert_null(out);
	eventbuf_item_put(head);
}

static void test_item_next_timeout(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *next = NULL;
	int64_t t0;

	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_next(head, 0, -1, &next), -ETIMEDOUT);
	t0 = now_ms();
	assert_int_equal(eventbuf_item_next(head, 30, -1, &next), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 30);
	assert_null(next);
	/* Not terminal: the item still reads what comes next. */
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_item_next(head, 0, -1, &next), 0);
	assert_int_equal(first_index(next), 1);
	eventbuf_item_put(next);
	eventbuf_item_put(head);
}

static void test_item_next_cancelled(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *next = NULL, *after = NULL;
	int cancel = eventfd(0, EFD_CLOEXEC);
	uint64_t one = 1;

	assert_true(cancel >= 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(write(cancel, &one, sizeof(one)), sizeof(one));
	assert_int_equal(eventbuf_item_next(head, -1, cancel, &next), -ECANCELED);
	assert_null(next);
	/* A published item wins over a pending cancellation... */
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(eventbuf_item_next(head, -1, cancel, &next), 0);
	assert_int_equal(first_index(next), 1);
	/* ...and the cancelled wait did not end anything. */
	assert_int_equal(eventbuf_item_next(next, -1, cancel, &after), -ECANCELED);
	assert_null(after);
	eventbuf_item_put(next);
	eventbuf_item_put(head);
	close(cancel);
}

struct waiter {
	struct eventbuf_item *from;
	int cancel_fd;
	int ret;
	uint64_t index;
};

static void *waiter_run(void *arg)
{
	struct waiter *w = arg;
	struct eventbuf_item *next;

	w->ret = eventbuf_item_next(w->from, 10000, w->cancel_fd, &next);
	if (w->ret == 0) {
		w->index = first_index(next);
		eventbuf_item_put(next);
	}
	return NULL;
}

static bool one_eventfd_open(void *arg)
{
	struct eventbuf_stats st;

	(void)arg;
	eventbuf_stats(&st);
	return st.open_eventfds == 1;
}

/* A thread blocked in next() is woken by the append, through the eventfd. */
static void test_item_next_wakes_blocked_waiter(void **state)
{
	struct buf_fixture *f = *state;
	struct waiter w = { .cancel_fd = -1 };
	pthread_t tid;

	assert_int_equal(eventbuf_head(f->buf, &w.from), 0);
	assert_int_equal(pthread_create(&tid, NULL, waiter_run, &w), 0);
	/* The waiter has armed the link: the writer must signal it. */
	assert_true(wait_until(one_eventfd_open, NULL, 10000));
	assert_int_equal(append_batch(f->buf, 42, 1, &f->log), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(w.ret, 0);
	assert_int_equal(w.index, 42);
	eventbuf_item_put(w.from);
	eventbuf_barrier();
	/* Signalled and let go by every holder: the eventfd is closed. */
	assert_false(one_eventfd_open(NULL));
}

static void test_item_next_cancel_from_another_thread(void **state)
{
	struct buf_fixture *f = *state;
	struct waiter w = { .cancel_fd = eventfd(0, EFD_CLOEXEC) };
	uint64_t one = 1;
	pthread_t tid;

	assert_true(w.cancel_fd >= 0);
	assert_int_equal(eventbuf_head(f->buf, &w.from), 0);
	assert_int_equal(pthread_create(&tid, NULL, waiter_run, &w), 0);
	assert_true(wait_until(one_eventfd_open, NULL, 10000));
	assert_int_equal(write(w.cancel_fd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(w.ret, -ECANCELED);
	eventbuf_item_put(w.from);
	close(w.cancel_fd);
}

static void test_item_wait_fd_in_epoll(void **state)
{
	struct buf_fixture *f = *state;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	struct eventbuf_item *head, *next;
	int ep = epoll_create1(EPOLL_CLOEXEC), fd, fd2;

	assert_true(ep >= 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_wait_fd(head, &fd), 0);
	assert_true(fd >= 0);
	/* Every waiter on a link gets the same descriptor. */
	assert_int_equal(eventbuf_item_wait_fd(head, &fd2), 0);
	assert_int_equal(fd, fd2);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	assert_int_equal(epoll_wait(ep, &ev, 1, 0), 0);
	assert_int_equal(append_batch(f->buf, 1, 1, &f->log), 0);
	assert_int_equal(epoll_wait(ep, &ev, 1, 1000), 1);
	/* It stays readable: it is never read. */
	{
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		assert_int_equal(poll(&pfd, 1, 0), 1);
		assert_int_equal(poll(&pfd, 1, 0), 1);
	}
	assert_int_equal(eventbuf_item_next_nonblock(head, &next), 0);
	assert_int_equal(first_index(next), 1);
	/* Once published, there is nothing to wait for. */
	assert_int_equal(eventbuf_item_wait_fd(head, &fd2), -EALREADY);
	assert_int_equal(fd2, -1);
	eventbuf_item_put(next);
	eventbuf_item_put(head);
	close(ep);
}

static void test_item_error_message(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head, *next;
	const char *msg = "unset";
	int fd;

	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_error(head, &msg), 0);
	assert_null(msg);
	assert_int_equal(eventbuf_append(f->buf, NULL, 0, NULL, NULL), 0);
	assert_int_equal(eventbuf_append_error(f->buf, -ESTALE, NULL), 0);
	/* Seen through the empty item, with an empty message. */
	assert_int_equal(eventbuf_item_next(head, -1, -1, &next), -ESTALE);
	assert_int_equal(eventbuf_item_error(head, &msg), -ESTALE);
	assert_string_equal(msg, "");
	assert_int_equal(eventbuf_item_wait_fd(head, &fd), -EALREADY);
	eventbuf_item_put(head);
}

static void test_item_references(void **state)
{
	struct buf_fixture *f = *state;
	struct eventbuf_item *head;

	assert_int_equal(append_batch(f->buf, 3, 1, &f->log), 0);
	assert_int_equal(eventbuf_head(f->buf, &head), 0);
	assert_int_equal(eventbuf_item_get(head), 0);
	assert_int_equal(eventbuf_item_get(head), 0);
	eventbuf_item_put(head);
	eventbuf_item_put(head);
	eventbuf_drop(f->buf);
	eventbuf_barrier();
	/* One reference left: not released. */
	assert_int_equal(atomic_load(&f->log.count[3]), 0);
	assert_int_equal(first_index(head), 3);
	eventbuf_item_put(head);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&f->log.count[3]), 1);
	assert_int_equal(eventbuf_new(&f->buf), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		buf_fixture_test(test_item_follow_after_before_publish),
		buf_fixture_test(test_item_follow_after_after_publish),
		buf_fixture_test(test_item_follow_after_empty_tip),
		buf_fixture_test(test_item_follow_after_error),
		buf_fixture_test(test_item_next_timeout),
		buf_fixture_test(test_item_next_cancelled),
		buf_fixture_test(test_item_next_wakes_blocked_waiter),
		buf_fixture_test(test_item_next_cancel_from_another_thread),
		buf_fixture_test(test_item_wait_fd_in_epoll),
		buf_fixture_test(test_item_error_message),
		buf_fixture_test(test_item_references),
	};

	return cmocka_run_group_tests_name("item", tests, NULL, NULL);
}

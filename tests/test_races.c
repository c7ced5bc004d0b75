// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Races found in review, each made certain rather than hoped for by
 * stretching its window: the binary wraps write() and the library's
 * internal __eventbuf_item_ref() (-Wl,--wrap), and the wrappers stall one
 * thread at the exact point where the other must overtake it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);
int __real___eventbuf_item_ref(struct eventbuf_item *item);
int __wrap___eventbuf_item_ref(struct eventbuf_item *item);

static _Atomic bool slow_next_write;

/* After the real write (the waiters are awake), hold the writer 300 ms:
 * dozens of pin-chain steps run meanwhile. */
ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	ssize_t ret = __real_write(fd, buf, len);

	if (atomic_exchange(&slow_next_write, false)) {
		const struct timespec pause = { 0, 300000000 };

		nanosleep(&pause, NULL);
	}
	return ret;
}

static _Atomic bool join_rendezvous;	/* gather joiners before linking */
static pthread_mutex_t gather_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gathered = PTHREAD_COND_INITIALIZER;
static int arrived;

/* Joins take their reference after the cycle check: gather two joining
 * threads there (for up to 200 ms), so that both checks come first. */
int __wrap___eventbuf_item_ref(struct eventbuf_item *item)
{
	if (atomic_load(&join_rendezvous)) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 200000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&gather_lock);
		if (++arrived >= 2)
			pthread_cond_broadcast(&gathered);
		while (arrived < 2 &&
		       pthread_cond_timedwait(&gathered, &gather_lock, &until) == 0)
			;
		pthread_mutex_unlock(&gather_lock);
	}
	return __real___eventbuf_item_ref(item);
}

struct parked_reader {
	struct eventbuf_item *start;
	int ret;
	uint64_t seen;
};

static void *read_two(void *arg)
{
	struct parked_reader *p = arg;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;

	p->ret = eventbuf_reader_new(p->start, &r);
	if (p->ret)
		return NULL;
	while (!p->ret && p->seen < 2) {
		p->ret = eventbuf_reader_next(r, 5000, -1, &it);
		p->seen += !p->ret;
	}
	eventbuf_reader_free(r);	/* lets go of the link just signalled */
	return NULL;
}

static bool one_eventfd(void *arg)
{
	struct eventbuf_stats st;

	(void)arg;
	eventbuf_stats(&st);
	return st.open_eventfds == 1;
}

/*
 * The writer signals its old head after publishing the new one; while it
 * is still inside that signal, the woken reader lets go of the old head
 * and the pin chain runs on. The old head must outlive the signal (ASan
 * reported a use-after-free in the signal's compare-and-swap before the
 * writer published inside a read-side section).
 */
static void test_races_writer_outlives_signal(void **state)
{
	struct parked_reader p = { 0 };
	struct eventbuf *buf;
	pthread_t tid;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &p.start), 0);
	/* Item 1 is there before the reader starts: it parks only after it. */
	assert_int_equal(append_batch(buf, 1, 1, NULL), 0);
	assert_int_equal(pthread_create(&tid, NULL, read_two, &p), 0);
	assert_true(wait_until(one_eventfd, NULL, 10000));	/* parked */
	/* The reader holds its own reference: ours would keep everything. */
	eventbuf_item_put(p.start);
	atomic_store(&slow_next_write, true);
	assert_int_equal(append_batch(buf, 2, 1, NULL), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(p.ret, 0);
	assert_int_equal(p.seen, 2);
	eventbuf_drop(buf);
}

struct joiner {
	struct eventbuf *buf;
	struct eventbuf_item *item;
	int ret;
};

static void *join(void *arg)
{
	struct joiner *j = arg;

	j->ret = eventbuf_append_item(j->buf, j->item);
	return NULL;
}

/* Two buffers joined into each other at once: one join, not a cycle. */
static void test_races_crossed_joins(void **state)
{
	struct eventbuf *b1, *b2;
	struct eventbuf_item *h1, *h2;
	struct joiner j1, j2;
	pthread_t t1, t2;

	(void)state;
	assert_int_equal(eventbuf_new(&b1), 0);
	assert_int_equal(eventbuf_new(&b2), 0);
	assert_int_equal(append_batch(b1, 1, 1, NULL), 0);
	assert_int_equal(append_batch(b2, 2, 1, NULL), 0);
	assert_int_equal(eventbuf_head(b1, &h1), 0);
	assert_int_equal(eventbuf_head(b2, &h2), 0);
	j1 = (struct joiner){ b1, h2, 0 };
	j2 = (struct joiner){ b2, h1, 0 };
	arrived = 0;
	atomic_store(&join_rendezvous, true);
	assert_int_equal(pthread_create(&t1, NULL, join, &j1), 0);
	assert_int_equal(pthread_create(&t2, NULL, join, &j2), 0);
	assert_int_equal(pthread_join(t1, NULL), 0);
	assert_int_equal(pthread_join(t2, NULL), 0);
	atomic_store(&join_rendezvous, false);
	/* Exactly one linked; the other saw the cycle it would close. */
	assert_true((j1.ret == 0 && j2.ret == -ELOOP) ||
		    (j1.ret == -ELOOP && j2.ret == 0));
	eventbuf_item_put(h1);
	eventbuf_item_put(h2);
	eventbuf_drop(b1);
	eventbuf_drop(b2);
}

/*
 * eventbuf_reader_wait_fd() says 0 ("the same descriptor, already in your
 * epoll set") only when it is. Park once, then read on without parking
 * until the slabs have been recycled and a new item lands at the address
 * of the link parked on: parking there must hand out a new descriptor,
 * which must fire on the next append.
 */
static void test_races_wait_fd_after_address_reuse(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, out;
	const struct eventbuf_item *it, *parked_on;
	struct eventbuf_reader *r;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	int ep = epoll_create1(EPOLL_CLOEXEC), fd, ret;
	uint64_t i;

	(void)state;
	assert_true(ep >= 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	assert_int_equal(append_batch(buf, 0, 1, NULL), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &parked_on), 0);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), 1);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	for (i = 1; i < 4000000; i++) {
		assert_int_equal(append_batch(buf, i, 1, NULL), 0);
		while (epoll_wait(ep, &out, 1, 0) > 0)
			;
		assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
		if (it == parked_on)
			break;
		if (i % 2000 == 0)
			eventbuf_barrier();	/* recycle the slabs */
	}
	printf("# item %llu reused the parked link's address\n",
	       (unsigned long long)i);
	assert_ptr_equal(it, parked_on);
	ret = eventbuf_reader_wait_fd(r, &fd);
	assert_int_equal(ret, 1);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	assert_int_equal(append_batch(buf, i + 1, 1, NULL), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 5000), 1);
	eventbuf_reader_free(r);
	eventbuf_drop(buf);
	close(ep);
}

int main(void)
{
	/* Slabs from the first item: address reuse is what is tested. */
	__eventbuf_slab_warmup = 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_races_writer_outlives_signal, teardown_nothing_left),
		cmocka_unit_test_teardown(test_races_crossed_joins, teardown_nothing_left),
		cmocka_unit_test_teardown(test_races_wait_fd_after_address_reuse, teardown_nothing_left),
	};

	return cmocka_run_group_tests_name("races", tests, NULL, NULL);
}

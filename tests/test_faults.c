// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Injected faults. The binary is linked with --wrap for malloc, calloc and
 * mmap: every allocation the library makes from the test thread goes
 * through should_fail(), which can make every allocation from the Nth one
 * on fail (so that a fallback - a slab, then malloc() - cannot hide the
 * fault). Each operation is run with N = 0, 1, 2, ... until it succeeds
 * without a fault firing, so every allocation site on its path is hit.
 * After each failure the objects must be as they were: nothing published,
 * nothing released, nothing leaked - and the operation must then work.
 * eventfd creation fails through a lowered RLIMIT_NOFILE.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);

static _Atomic int fail_countdown = -1;	/* -1: never */
static _Atomic int faults_fired;

/* Allocations before the armed one pass; it and all after it fail. */
static bool should_fail(void)
{
	int n = atomic_load(&fail_countdown);

	while (n > 0) {
		if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1))
			return false;
	}
	if (n == 0)
		atomic_fetch_add(&faults_fired, 1);
	return n == 0;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off)
{
	if (should_fail()) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	return __real_mmap(addr, len, prot, flags, fd, off);
}

void *__wrap_malloc(size_t size)
{
	if (should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	if (should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

/* Fail every allocation from the @n-th from now on (0: all). */
static void fail_from(int n)
{
	atomic_store(&faults_fired, 0);
	atomic_store(&fail_countdown, n);
}

static bool disarm(void)
{
	atomic_store(&fail_countdown, -1);
	return atomic_load(&faults_fired) > 0;
}

static uint64_t live_items(void)
{
	struct eventbuf_stats st;

	eventbuf_stats(&st);
	return st.live_items;
}

static int teardown(void **state)
{
	(void)state;
	disarm();
	return expect_nothing_left();
}

static void test_faults_new(void **state)
{
	struct eventbuf *buf = NULL;
	int sites = 0, ret;

	(void)state;
	for (;; sites++) {
		fail_from(sites);
		ret = eventbuf_new(&buf);
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(expect_nothing_left(), 0);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 3);	/* the buffer, its slab pool, sentinel */
	eventbuf_drop(buf);
}

/* Run @op with every allocation site on its path failing in turn. */
static int cover_sites(int (*op)(void *), void *arg,
		       void (*check)(void *, int), int *sitesp)
{
	int sites, ret;

	for (sites = 0;; sites++) {
		fail_from(sites);
		ret = op(arg);
		if (!disarm())
			break;
		check(arg, ret);
	}
	*sitesp = sites;
	return ret;
}

struct append_case {
	struct eventbuf *buf;
	struct release_log *log;
	size_t nevents;
	uint64_t first_index;
	struct eventbuf_item *head_before;
};

static int append_op(void *arg)
{
	struct append_case *c = arg;
	struct eventbuf_event ev[100];

	for (size_t i = 0; i < c->nevents; i++)
		ev[i] = (struct eventbuf_event){ .index = c->first_index + i };
	return eventbuf_append(c->buf, ev, c->nevents, release_log_cb, c->log);
}

/* After a failed append: -ENOMEM, the same head, nothing released. */
static void append_check(void *arg, int ret)
{
	struct append_case *c = arg;
	struct eventbuf_item *head;

	assert_int_equal(ret, -ENOMEM);
	assert_int_equal(eventbuf_head(c->buf, &head), 0);
	assert_ptr_equal(head, c->head_before);
	eventbuf_item_put(head);
	assert_int_equal(atomic_load(&c->log->total), 0);
}

static void test_faults_append(void **state)
{
	struct eventbuf_item *start, *next;
	struct release_log log;
	struct append_case c;
	int sites;

	(void)state;
	release_log_init(&log, 1000);
	c = (struct append_case){ .log = &log };
	assert_int_equal(eventbuf_new(&c.buf), 0);
	assert_int_equal(eventbuf_head(c.buf, &start), 0);
	/* The first append needs a slab: its arena's bookkeeping, the
	 * arena's mapping, then the malloc() fallback all fail in turn. */
	c.head_before = start;
	c.nevents = 1;
	c.first_index = 1;
	assert_int_equal(cover_sites(append_op, &c, append_check, &sites), 0);
	assert_int_equal(sites, 2);
	/* Carving from that slab allocates nothing: no site to fail. */
	assert_int_equal(eventbuf_head(c.buf, &c.head_before), 0);
	eventbuf_item_put(c.head_before);
	c.first_index = 2;
	assert_int_equal(cover_sites(append_op, &c, append_check, &sites), 0);
	assert_int_equal(sites, 0);
	/* A batch too big for a slab comes from malloc(). */
	assert_int_equal(eventbuf_head(c.buf, &c.head_before), 0);
	eventbuf_item_put(c.head_before);
	c.nevents = 100;
	c.first_index = 3;
	assert_int_equal(cover_sites(append_op, &c, append_check, &sites), 0);
	assert_int_equal(sites, 1);
	/* Every batch is there once, in order. */
	for (uint64_t want = 1; want <= 3; want++) {
		assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
		assert_int_equal(eventbuf_item_events(next)[0].index, want);
		eventbuf_item_put(start);
		start = next;
	}
	assert_int_equal(eventbuf_item_count(start), 100);
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), -EAGAIN);
	eventbuf_item_put(start);
	eventbuf_drop(c.buf);
	eventbuf_barrier();
	assert_int_equal(release_log_count(&log, 1, 103, 1), 102);
	assert_int_equal(atomic_load(&log.total), 3);
	release_log_free(&log);
}

static void test_faults_append_error(void **state)
{
	struct eventbuf_item *start, *next;
	struct eventbuf *buf;
	int sites = 0, ret;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &start), 0);
	for (;; sites++) {
		fail_from(sites);
		ret = eventbuf_append_error(buf, -EIO, "failed");
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(eventbuf_item_next_nonblock(start, &next), -EAGAIN);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 2);	/* the slab (as above), then malloc() */
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), -EIO);
	eventbuf_item_put(start);
	eventbuf_drop(buf);
}

static void test_faults_follow_after_and_reader(void **state)
{
	struct eventbuf_item *head, *out = NULL;
	struct eventbuf_reader *r = NULL;
	struct eventbuf *buf;
	int sites, ret;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(append_batch(buf, 1, 1, NULL), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	for (sites = 0;; sites++) {
		uint64_t before = live_items();

		fail_from(sites);
		ret = eventbuf_item_follow_after(head, &out);
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(live_items(), before);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 1);
	eventbuf_item_put(out);
	for (sites = 0;; sites++) {
		fail_from(sites);
		ret = eventbuf_reader_new(head, &r);
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 1);
	eventbuf_reader_free(r);
	eventbuf_item_put(head);
	eventbuf_drop(buf);
}

/* Use up every descriptor below a lowered limit; return how many. */
static int exhaust_fds(int *fds, int max, struct rlimit *saved)
{
	struct rlimit low;
	int n = 0;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, saved), 0);
	low = *saved;
	low.rlim_cur = 64;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n < max && (fds[n] = dup(0)) >= 0)
		n++;
	assert_int_equal(errno, EMFILE);
	return n;
}

static void restore_fds(int *fds, int n, const struct rlimit *saved)
{
	while (n--)
		close(fds[n]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, saved), 0);
}

static void test_faults_eventfd_emfile(void **state)
{
	const struct eventbuf_item *it;
	struct eventbuf_item *head, *next;
	struct eventbuf_reader *r;
	struct rlimit saved;
	struct eventbuf *buf;
	int fds[64], n, fd;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	n = exhaust_fds(fds, 64, &saved);
	assert_int_equal(eventbuf_item_wait_fd(head, &fd), -EMFILE);
	assert_int_equal(fd, -1);
	assert_int_equal(eventbuf_item_next(head, 1000, -1, &next), -EMFILE);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), -EMFILE);
	assert_int_equal(eventbuf_reader_next(r, 1000, -1, &it), -EMFILE);
	/* The buffer is intact: appends and non-blocking reads still work. */
	assert_int_equal(append_batch(buf, 1, 1, NULL), 0);
	assert_int_equal(eventbuf_reader_next(r, 1000, -1, &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 1);
	restore_fds(fds, n, &saved);
	/* And waiting works again once descriptors are available. */
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), 1);
	assert_true(fd >= 0);
	assert_int_equal(append_batch(buf, 2, 1, NULL), 0);
	assert_int_equal(eventbuf_reader_next(r, 1000, -1, &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 2);
	eventbuf_reader_free(r);
	eventbuf_item_put(head);
	eventbuf_drop(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_faults_new, teardown),
		cmocka_unit_test_teardown(test_faults_append, teardown),
		cmocka_unit_test_teardown(test_faults_append_error, teardown),
		cmocka_unit_test_teardown(test_faults_follow_after_and_reader, teardown),
		cmocka_unit_test_teardown(test_faults_eventfd_emfile, teardown),
	};

	return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}

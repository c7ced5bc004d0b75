// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Injected faults. The binary is linked with --wrap=malloc,calloc: every
 * allocation the library makes from the test thread goes through
 * fault_malloc(), which can fail the Nth one from now. Each operation is
 * run with its 1st, 2nd, ... allocation failing until it succeeds with the
 * fault armed, so every allocation site on its path is hit once. After
 * each failure the objects must be as they were: nothing published,
 * nothing released, nothing leaked - and the operation must then work.
 * eventfd creation fails through a lowered RLIMIT_NOFILE.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);

static _Atomic int fail_countdown = -1;	/* -1: never */
static _Atomic int faults_fired;

static bool should_fail(void)
{
	int n = atomic_load(&fail_countdown);

	while (n >= 0) {
		if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1)) {
			if (n > 0)
				return false;
			atomic_fetch_add(&faults_fired, 1);
			return true;
		}
	}
	return false;
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

/* Fail the allocation @n allocations from now (0: the next one). */
static void fail_nth(int n)
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
		fail_nth(sites);
		ret = eventbuf_new(&buf);
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(expect_nothing_left(), 0);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 2);	/* the buffer, its sentinel */
	eventbuf_drop(buf);
}

static void test_faults_append(void **state)
{
	struct eventbuf_item *start, *head, *next;
	struct release_log log;
	struct eventbuf *buf;
	int sites = 0, ret;

	(void)state;
	release_log_init(&log, 16);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &start), 0);
	assert_int_equal(append_batch(buf, 1, 1, &log), 0);
	for (;; sites++) {
		uint64_t before = live_items();

		fail_nth(sites);
		ret = append_batch(buf, 2, 3, &log);
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
		/* Nothing published, nothing allocated, nothing released. */
		assert_int_equal(live_items(), before);
		assert_int_equal(eventbuf_head(buf, &head), 0);
		assert_int_equal(eventbuf_item_events(head)[0].index, 1);
		eventbuf_item_put(head);
		assert_int_equal(atomic_load(&log.total), 0);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 1);
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
	eventbuf_item_put(start);
	start = next;
	assert_int_equal(eventbuf_item_events(start)[0].index, 1);
	assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
	assert_int_equal(eventbuf_item_count(next), 3);
	assert_int_equal(eventbuf_item_events(next)[0].index, 2);
	eventbuf_item_put(next);
	eventbuf_item_put(start);
	eventbuf_drop(buf);
	eventbuf_barrier();
	assert_int_equal(release_log_count(&log, 1, 5, 1), 4);
	assert_int_equal(atomic_load(&log.total), 2);
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
		fail_nth(sites);
		ret = eventbuf_append_error(buf, -EIO, "failed");
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(eventbuf_item_next_nonblock(start, &next), -EAGAIN);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 1);
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

		fail_nth(sites);
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
		fail_nth(sites);
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

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Injected faults. The binary is linked with --wrap for malloc, calloc,
 * realloc, mmap, epoll_create1, epoll_ctl and eventfd: every allocation
 * (and epoll call, and in the poller tests every eventfd) the library
 * makes from the test thread goes through should_fail(), which can make
 * every one from the Nth on fail (so that a fallback - a slab, then
 * malloc() - cannot hide the fault). A wrapped __eventbuf_item_ref()
 * makes one reference fail with -EOVERFLOW where a test asks for it. Each operation is run with N =
 * 0, 1, 2, ... until it succeeds without a fault firing, so every site on
 * its path is hit: append, splice, follow-after, readers, subscribe (fresh,
 * from the cache, up to date, stale: the snapshot handler's appends
 * included), publish, and a subscription parking on a new link. After
 * each failure the objects must be as they were: nothing published,
 * nothing released, nothing leaked - and the operation must then work.
 * eventfd and epoll descriptors run out through a lowered RLIMIT_NOFILE,
 * or fail through the eventfd() wrapper. Pollers: creation, and an
 * attached reader or subscription parking (its poller's registration
 * array grows with realloc(), the link's eventfd is made, the poller's
 * epoll_ctl()): the read says why, the object is reported again, and
 * its next read parks it. A cohort read and armed with each site failing
 * in turn: its members are reported one by one, and nothing is lost.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "helpers.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
int __real_epoll_create1(int flags);
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_create1(int flags);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __real_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags);
void *__real_realloc(void *ptr, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
int __real___eventbuf_item_ref(struct eventbuf_item *item);
int __wrap___eventbuf_item_ref(struct eventbuf_item *item);

static _Atomic int fail_countdown = -1;	/* -1: never */
static _Atomic int faults_fired;
static pthread_t armed_thread;	/* only its calls fail; set once, in main() */

/* Calls before the armed one pass; it and all after it fail. */
static bool should_fail(void)
{
	int n = atomic_load(&fail_countdown);

	/* liburcu's call_rcu thread and the publisher's expiry thread run
	 * reclamation: their calls are not the operation under test. */
	if (n < 0 || !pthread_equal(pthread_self(), armed_thread))
		return false;
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

int __wrap_epoll_create1(int flags)
{
	if (should_fail()) {
		errno = ENOMEM;
		return -1;
	}
	return __real_epoll_create1(flags);
}

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	if (should_fail()) {
		errno = ENOMEM;
		return -1;
	}
	return __real_epoll_ctl(epfd, op, fd, ev);
}

/* Only the poller tests count eventfd() among the sites: the older tests
 * expect the first failure on their path to be another one. */
static bool fail_eventfds;

int __wrap_eventfd(unsigned int initval, int flags)
{
	if (fail_eventfds && should_fail()) {
		errno = EMFILE;
		return -1;
	}
	return __real_eventfd(initval, flags);
}

void *__wrap_realloc(void *ptr, size_t size)
{
	if (should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(ptr, size);
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

/* The next reference the armed thread takes fails with -EOVERFLOW. */
static _Atomic bool fail_next_ref;

int __wrap___eventbuf_item_ref(struct eventbuf_item *item)
{
	if (pthread_equal(pthread_self(), armed_thread) &&
	    atomic_exchange(&fail_next_ref, false))
		return -EOVERFLOW;
	return __real___eventbuf_item_ref(item);
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
	fail_eventfds = false;
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

/* During its warm-up a buffer's items come from malloc(): one site. */
static void test_faults_append_warmup(void **state)
{
	struct append_case c = { .nevents = 1, .first_index = 1 };
	struct release_log log;
	int sites;

	(void)state;
	release_log_init(&log, 16);
	c.log = &log;
	__eventbuf_slab_warmup = 1024;
	assert_int_equal(eventbuf_new(&c.buf), 0);
	__eventbuf_slab_warmup = 0;
	assert_int_equal(eventbuf_head(c.buf, &c.head_before), 0);
	eventbuf_item_put(c.head_before);
	assert_int_equal(cover_sites(append_op, &c, append_check, &sites), 0);
	assert_int_equal(sites, 1);
	eventbuf_drop(c.buf);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&log.total), 1);
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


/* Splicing allocates nothing, and a refused splice changes nothing. */
static void test_faults_splice(void **state)
{
	struct eventbuf *live, *snap;
	struct eventbuf_item *start, *tip, *next;
	int sites = 0, ret;

	(void)state;
	assert_int_equal(eventbuf_new(&live), 0);
	assert_int_equal(eventbuf_new(&snap), 0);
	assert_int_equal(eventbuf_head(snap, &start), 0);
	assert_int_equal(append_batch(snap, 1, 1, NULL), 0);
	assert_int_equal(eventbuf_head(live, &tip), 0);
	for (;; sites++) {
		fail_from(sites);
		ret = eventbuf_append_item(snap, tip);
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(sites, 0);
	assert_int_equal(append_batch(live, 2, 1, NULL), 0);
	for (uint64_t want = 1; want <= 2; want++) {
		assert_int_equal(eventbuf_item_next_nonblock(start, &next), 0);
		assert_int_equal(eventbuf_item_events(next)[0].index, want);
		eventbuf_item_put(start);
		start = next;
	}
	eventbuf_item_put(start);
	eventbuf_item_put(tip);
	eventbuf_drop(snap);
	eventbuf_drop(live);
}

/* ------------------------------------------------------------------ */
/* The publisher                                                       */
/* ------------------------------------------------------------------ */

static struct release_log pub_log;
static _Atomic uint64_t snap_appended;	/* snapshot batches that took */

/* The key's snapshot: one event at index 5. */
static int snap_handler(void *arg, const char *topic, const char *key,
			struct eventbuf_snapshot *snap, uint64_t *index)
{
	struct eventbuf_event ev = { .index = 5, .topic = topic, .key = key };
	int ret;

	(void)arg;
	*index = 5;
	ret = eventbuf_snapshot_append(snap, &ev, 1, release_log_cb, &pub_log);
	if (!ret)
		atomic_fetch_add(&snap_appended, 1);
	return ret;
}

static struct eventbuf_publisher *pub_new(uint32_t ttl_ms)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = ttl_ms };
	struct eventbuf_publisher *pub;

	release_log_init(&pub_log, 64);
	atomic_store(&snap_appended, 0);
	assert_int_equal(eventbuf_publisher_new(&cfg, &pub), 0);
	assert_int_equal(eventbuf_publisher_register(pub, "t", snap_handler,
						     NULL, 0), 0);
	return pub;
}

/* Free @pub; every snapshot batch that took has been released once. */
static void pub_free(struct eventbuf_publisher *pub, uint64_t live)
{
	eventbuf_publisher_free(pub);
	eventbuf_barrier();
	assert_int_equal(atomic_load(&pub_log.bad), 0);
	assert_int_equal(atomic_load(&pub_log.total),
			 atomic_load(&snap_appended) + live);
	release_log_free(&pub_log);
}

static void expect_stats(struct eventbuf_publisher *pub, uint64_t subs,
			 uint64_t key_buffers, uint64_t cached)
{
	struct eventbuf_publisher_stats st;

	assert_int_equal(eventbuf_publisher_stats(pub, &st), 0);
	assert_int_equal(st.subscriptions, subs);
	assert_int_equal(st.key_buffers, key_buffers);
	assert_int_equal(st.cache_entries, cached);
}

static const struct eventbuf_event *sub_read(struct eventbuf_subscription *sub)
{
	const struct eventbuf_event *ev = NULL;
	size_t n = 0;

	assert_int_equal(eventbuf_sub_next(sub, 1000, -1, &ev, &n), 0);
	assert_int_equal(n, 1);
	return ev;
}

/*
 * Subscribe with every site failing in turn; a failure leaves the
 * publisher as it was (@subs, @kbs, @cached); then it works. Returns the
 * subscription and the number of sites.
 */
static uint64_t live_published;

static struct eventbuf_subscription *
subscribe_faulty(struct eventbuf_publisher *pub, uint64_t index,
		 uint64_t subs, uint64_t kbs, uint64_t cached, int *sitesp)
{
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k",
					      .index = index };
	struct eventbuf_subscription *sub = NULL;
	uint64_t alive;
	int sites, ret;

	eventbuf_barrier();
	alive = atomic_load(&snap_appended) + live_published -
		atomic_load(&pub_log.total);
	for (sites = 0;; sites++) {
		fail_from(sites);
		ret = eventbuf_subscribe(pub, &req, &sub);
		if (!disarm())
			break;
		assert_int_equal(ret, -ENOMEM);
		expect_stats(pub, subs, kbs, cached);
		/* A snapshot built in vain is released, once, by now. */
		eventbuf_barrier();
		assert_int_equal(atomic_load(&snap_appended) + live_published -
				 atomic_load(&pub_log.total), alive);
	}
	assert_int_equal(ret, 0);
	printf("# subscribe (index %llu, %s): %d sites failed in turn\n",
	       (unsigned long long)index,
	       !kbs ? "fresh" : cached ? "key cached" : "key buffer", sites);
	*sitesp = sites;
	return sub;
}

static void test_faults_subscribe(void **state)
{
	struct eventbuf_publisher *pub = pub_new(60000);
	struct eventbuf_subscription *fresh, *cached, *resumed, *stale;
	const struct eventbuf_event *ev;
	int sites;

	(void)state;
	live_published = 0;
	/* Fresh: subscription, epoll set, key buffer, snapshot buffer,
	 * records, items - each fails in turn. */
	fresh = subscribe_faulty(pub, 0, 0, 0, 0, &sites);
	assert_true(sites >= 5);
	expect_stats(pub, 1, 1, 1);
	assert_int_equal(sub_read(fresh)->index, 5);
	assert_true(eventbuf_event_is_end_of_snapshot(sub_read(fresh)));
	/* From the cache: only the subscription's own. */
	cached = subscribe_faulty(pub, 0, 1, 1, 1, &sites);
	assert_true(sites >= 2);
	assert_int_equal(sub_read(cached)->index, 5);
	/* A live batch, then an up-to-date resume and a stale one. */
	{
		struct eventbuf_event live = { .index = 6, .topic = "t",
					       .key = "k" };

		assert_int_equal(eventbuf_publish(pub, &live, 1, release_log_cb,
						  &pub_log), 0);
		live_published++;
	}
	resumed = subscribe_faulty(pub, 6, 2, 1, 1, &sites);
	stale = subscribe_faulty(pub, 4, 3, 1, 1, &sites);
	assert_true(eventbuf_event_is_new_snapshot(sub_read(stale)));
	assert_int_equal(sub_read(stale)->index, 5);
	assert_true(eventbuf_event_is_end_of_snapshot(sub_read(stale)));
	ev = sub_read(stale);
	assert_int_equal(ev->index, 6);
	{
		struct eventbuf_event live = { .index = 7, .topic = "t",
					       .key = "k" };

		assert_int_equal(eventbuf_publish(pub, &live, 1, release_log_cb,
						  &pub_log), 0);
	}
	assert_int_equal(sub_read(resumed)->index, 7);
	eventbuf_unsubscribe(fresh);
	eventbuf_unsubscribe(cached);
	eventbuf_unsubscribe(resumed);
	eventbuf_unsubscribe(stale);
	expect_stats(pub, 0, 0, 0);
	eventbuf_barrier();
	/* Each batch released once: the live ones (6, 7) and every snapshot
	 * built, the cached one included once the publisher is gone. */
	assert_int_equal(release_log_count(&pub_log, 6, 8, 1), 2);
	pub_free(pub, 2);
}

/*
 * Publish: a failure before anything is appended returns -ENOMEM and
 * publishes nothing. A key buffer that cannot take its batch has its
 * subscribers closed (-ECONNRESET) rather than left with a hole; either
 * way no subscriber that stays open misses a batch, and the batch is
 * released exactly once.
 */
static void test_faults_publish(void **state)
{
	struct eventbuf_publisher *pub = pub_new(0);
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k" };
	struct eventbuf_event live = { .topic = "t", .key = "k" };
	const struct eventbuf_event *ev;
	struct eventbuf_subscription *sub;
	int sites, ret, closed = 0, published = 1;
	size_t n;

	(void)state;
	for (sites = 0;; sites++) {
		assert_int_equal(eventbuf_subscribe(pub, &req, &sub), 0);
		assert_int_equal(sub_read(sub)->index, 5);
		assert_true(eventbuf_event_is_end_of_snapshot(sub_read(sub)));
		live.index = 10 + (uint64_t)sites;
		fail_from(sites);
		ret = eventbuf_publish(pub, &live, 1, release_log_cb, &pub_log);
		if (!disarm())
			break;
		/* -ENOMEM: not published, @release not called. */
		published += !ret;
		ret = ret ? ret : eventbuf_sub_next_nonblock(sub, &ev, &n);
		if (ret == -ECONNRESET)
			closed++;
		else
			assert_int_equal(ret, -ENOMEM);
		assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n),
				 closed ? -ECONNRESET : -EAGAIN);
		eventbuf_unsubscribe(sub);
		closed = 0;
	}
	assert_int_equal(ret, 0);
	printf("# publish: %d sites failed in turn\n", sites);
	assert_true(sites >= 3);
	assert_int_equal(sub_read(sub)->index, live.index);
	eventbuf_unsubscribe(sub);
	eventbuf_barrier();
	/* Every batch published (if only to be dropped) released once. */
	assert_int_equal(release_log_count(&pub_log, 10, 11 + (size_t)sites, 1),
			 (size_t)published);
	assert_int_equal(release_log_count(&pub_log, 10, 11 + (size_t)sites, 0),
			 (size_t)(sites + 1 - published));
	pub_free(pub, (uint64_t)published);
}

/*
 * A subscription that cannot register its new link's descriptor says so
 * (-ENOMEM, not terminal) instead of waiting on a descriptor nothing will
 * wake; the next read registers it, and the publish then wakes it.
 */
static void test_faults_subscription_park(void **state)
{
	struct eventbuf_publisher *pub = pub_new(0);
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k" };
	struct eventbuf_event live = { .index = 9, .topic = "t", .key = "k" };
	struct pollfd pfd = { .events = POLLIN };
	const struct eventbuf_event *ev;
	struct eventbuf_subscription *sub;
	size_t n;
	int ret;

	(void)state;
	assert_int_equal(eventbuf_subscribe(pub, &req, &sub), 0);
	pfd.fd = eventbuf_sub_fd(sub);
	assert_int_equal(sub_read(sub)->index, 5);
	assert_true(eventbuf_event_is_end_of_snapshot(sub_read(sub)));
	fail_from(0);
	ret = eventbuf_sub_next_nonblock(sub, &ev, &n);
	assert_true(disarm());
	assert_int_equal(ret, -ENOMEM);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EAGAIN);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(eventbuf_publish(pub, &live, 1, NULL, NULL), 0);
	assert_int_equal(poll(&pfd, 1, 1000), 1);
	assert_int_equal(sub_read(sub)->index, 9);
	eventbuf_unsubscribe(sub);
	pub_free(pub, 0);
}

/*
 * A subscription takes no descriptor until its own is asked for; then no
 * descriptor is -EMFILE, nothing changed, and a later call succeeds.
 */
static void test_faults_subscribe_emfile(void **state)
{
	struct eventbuf_publisher *pub = pub_new(0);
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k" };
	struct eventbuf_subscription *sub = NULL;
	struct rlimit saved;
	int fds[64], n;

	(void)state;
	n = exhaust_fds(fds, 64, &saved);
	assert_int_equal(eventbuf_subscribe(pub, &req, &sub), 0);
	assert_int_equal(eventbuf_sub_fd(sub), -EMFILE);
	assert_int_equal(eventbuf_sub_fd(sub), -EMFILE);
	restore_fds(fds, n, &saved);
	assert_true(eventbuf_sub_fd(sub) >= 0);
	assert_true(fd_readable(eventbuf_sub_fd(sub)));
	assert_int_equal(sub_read(sub)->index, 5);
	eventbuf_unsubscribe(sub);
	pub_free(pub, 0);
}

/* A poller is made whole or not at all: no descriptor left behind. */
static void test_faults_poller_new(void **state)
{
	struct eventbuf_poller *p = NULL;
	int fds = count_fds(), sites, ret;

	(void)state;
	fail_eventfds = true;
	for (sites = 0;; sites++) {
		fail_from(sites);
		ret = eventbuf_poller_new(&p);
		if (!disarm())
			break;
		assert_true(ret == -ENOMEM || ret == -EMFILE);
		assert_int_equal(count_fds(), fds);
	}
	assert_int_equal(ret, 0);
	/* calloc(), epoll_create1(), eventfd(), epoll_ctl(), the ring's calloc() */
	assert_true(sites >= 5);
	assert_int_equal(count_fds(), fds + 2);
	eventbuf_poller_free(p);
	/* Its own eventfd is closed a grace period later (poller.h). */
	eventbuf_barrier();
	assert_int_equal(count_fds(), fds);
	fail_eventfds = false;
}

/* One attached object: a reader of a fresh buffer, or a subscription of
 * a fresh key read up to its parking spot (fresh links: no eventfd yet). */
struct park_case {
	struct eventbuf_publisher *pub;	/* NULL: a reader */
	struct eventbuf *buf;
	struct eventbuf_reader *r;
	struct eventbuf_subscription *sub;
	char key[16];
};

static void case_new(struct park_case *c, int i)
{
	struct eventbuf_subscribe_req req = { .topic = "t", .key = c->key };
	const struct eventbuf_event *ev;
	struct eventbuf_item *head;
	size_t n;

	if (!c->pub) {
		assert_int_equal(eventbuf_new(&c->buf), 0);
		assert_int_equal(eventbuf_head(c->buf, &head), 0);
		assert_int_equal(eventbuf_reader_new(head, &c->r), 0);
		eventbuf_item_put(head);
		return;
	}
	snprintf(c->key, sizeof(c->key), "k%d", i);
	assert_int_equal(eventbuf_subscribe(c->pub, &req, &c->sub), 0);
	assert_int_equal(eventbuf_sub_next_nonblock(c->sub, &ev, &n), 0);
	assert_int_equal(ev->index, 5);
	assert_int_equal(eventbuf_sub_next_nonblock(c->sub, &ev, &n), 0);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
}

static void case_free(struct park_case *c)
{
	eventbuf_reader_free(c->r);
	eventbuf_unsubscribe(c->sub);
	eventbuf_drop(c->buf);
	c->r = NULL;
	c->sub = NULL;
	c->buf = NULL;
}

static int case_read(struct park_case *c, uint64_t *index)
{
	const struct eventbuf_item *it;
	const struct eventbuf_event *ev;
	size_t n;
	int ret;

	if (c->r) {
		ret = eventbuf_reader_next_nonblock(c->r, &it);
		if (!ret)
			*index = eventbuf_item_events(it)[0].index;
	} else {
		ret = eventbuf_sub_next_nonblock(c->sub, &ev, &n);
		if (!ret)
			*index = ev->index;
	}
	return ret;
}

static int case_publish(struct park_case *c)
{
	struct eventbuf_event ev = { .index = 6, .topic = "t", .key = c->key };

	if (c->buf)
		return append_batch(c->buf, 6, 1, NULL);
	return eventbuf_publish(c->pub, &ev, 1, NULL, NULL);
}

static bool case_is(const struct park_case *c, const struct eventbuf_poll_event *pe)
{
	return pe->reader == c->r && pe->sub == c->sub;
}

/*
 * Park a freshly attached object with every site on the way failing in
 * turn, each time on a fresh poller (its registration array grows) with
 * the eventfd pool emptied (the link needs a new eventfd). The read
 * returns the error and nothing is lost: the object is reported again,
 * its next read parks it, and the next event is reported and read.
 * Returns the number of sites.
 */
static int park_faults(struct eventbuf_publisher *pub)
{
	struct park_case c = { .pub = pub };
	struct eventbuf_poller_stats st;
	struct eventbuf_poll_event pe;
	struct eventbuf_poller *p;
	uint64_t got = 0;
	int sites, ret;

	for (sites = 0;; sites++) {
		case_new(&c, sites);
		assert_int_equal(eventbuf_poller_new(&p), 0);
		if (c.r)
			assert_int_equal(eventbuf_poller_add_reader(p, c.r, NULL), 0);
		else
			assert_int_equal(eventbuf_poller_add_sub(p, c.sub, NULL), 0);
		assert_int_equal(eventbuf_poller_ready(p, &pe, 1), 1);
		eventbuf_barrier();	/* the link needs a new eventfd */
		fail_from(sites);
		ret = case_read(&c, &got);
		if (!disarm()) {
			assert_int_equal(ret, -EAGAIN);
			assert_int_equal(eventbuf_poller_ready(p, &pe, 1), 0);
		} else {
			assert_true(ret == -ENOMEM || ret == -EMFILE);
			assert_int_equal(eventbuf_poller_ready(p, &pe, 1), 1);
			assert_true(case_is(&c, &pe));
			assert_int_equal(case_read(&c, &got), -EAGAIN);
		}
		assert_int_equal(eventbuf_poller_stats(p, &st), 0);
		assert_int_equal(st.parked, 1);
		assert_int_equal(st.links, 1);
		assert_int_equal(case_publish(&c), 0);
		assert_int_equal(eventbuf_poller_wait(p, &pe, 1, 1000, -1), 1);
		assert_true(case_is(&c, &pe));
		assert_int_equal(case_read(&c, &got), 0);
		assert_int_equal(got, 6);
		eventbuf_poller_free(p);
		case_free(&c);
		if (ret == -EAGAIN)
			return sites;
	}
}

static void test_faults_poller_park(void **state)
{
	struct eventbuf_publisher *pub = pub_new(0);
	int sites;

	(void)state;
	fail_eventfds = true;
	sites = park_faults(NULL);
	printf("# reader park: %d sites failed in turn\n", sites);
	/* eventfd(), realloc(), epoll_ctl() */
	assert_true(sites >= 3);
	sites = park_faults(pub);
	printf("# subscription park: %d sites failed in turn\n", sites);
	assert_true(sites >= 3);
	pub_free(pub, 0);
	fail_eventfds = false;
}

/* ---------------------------------------------------------------------- */

#define GROUP_SUBS 4
#define FIRST_LIVE 6	/* snap_handler's snapshot is index 5 */

/* A subscription of the group tests and the live events it read. */
struct gsub {
	struct eventbuf_subscription *sub;
	uint64_t next;		/* next live index expected */
	uint64_t bad;
};

static void gsub_see(struct gsub *g, const struct eventbuf_event *ev,
		     size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (eventbuf_event_is_end_of_snapshot(&ev[i]) ||
		    eventbuf_event_is_new_snapshot(&ev[i]) ||
		    ev[i].index < FIRST_LIVE)
			continue;
		if (ev[i].index != g->next)
			g->bad++;
		g->next = ev[i].index + 1;
	}
}

/* Read a reported one until -EAGAIN; a retryable code reports it again. */
static void gsub_drain(struct gsub *g)
{
	const struct eventbuf_event *ev;
	size_t n;
	int ret;

	while ((ret = eventbuf_sub_next_nonblock(g->sub, &ev, &n)) == 0)
		gsub_see(g, ev, n);
	assert_true(ret == -EAGAIN || ret == -ENOMEM || ret == -EMFILE ||
		    ret == -EOVERFLOW);
}

/* The reports @n of @evs, then every group, as a loop does. */
static void group_round(struct eventbuf_poller *p,
			const struct eventbuf_poll_event *evs, int n)
{
	const struct eventbuf_event *ev;
	struct eventbuf_poll_group g;
	size_t nev;

	for (int i = 0; i < n; i++)
		gsub_drain(evs[i].data);
	while (eventbuf_poller_group(p, &g) > 0)
		while (!eventbuf_poller_group_next(p, &ev, &nev))
			for (size_t m = 0; m < g.count; m++)
				if (g.members[m].sub)
					gsub_see(g.members[m].data, ev, nev);
}

static bool gsubs_at(const struct gsub *gs, uint64_t next)
{
	for (int i = 0; i < GROUP_SUBS; i++)
		if (gs[i].next != next)
			return false;
	return true;
}

/* Wait and read until every subscription read up to @next (2 s at most). */
static void group_catch_up(struct eventbuf_poller *p, struct gsub *gs,
			   uint64_t next)
{
	struct eventbuf_poll_event evs[8];
	int64_t deadline = now_ms() + 2000;

	while (!gsubs_at(gs, next) && now_ms() < deadline) {
		int n = eventbuf_poller_wait(p, evs, 8, 20, -1);

		if (n == -ETIMEDOUT)
			continue;
		assert_true(n >= 0);
		group_round(p, evs, n);
	}
	for (int i = 0; i < GROUP_SUBS; i++) {
		assert_int_equal(gs[i].bad, 0);
		assert_int_equal(gs[i].next, next);
	}
}

static void gpublish(struct eventbuf_publisher *pub, uint64_t index)
{
	struct eventbuf_event ev = { .index = index, .topic = "t", .key = "g" };

	assert_int_equal(eventbuf_publish(pub, &ev, 1, NULL, NULL), 0);
}

/*
 * A batch that straddles the snapshot, its events above it not side by
 * side (6, 4, 7 after a snapshot at 5): handing them out copies them,
 * and the copy's malloc() fails. The read returns -ENOMEM, not terminal;
 * the poller reports the subscription again at once, without a publish;
 * the next read hands out 6 and 7 as one batch, then nothing.
 */
static void test_faults_straddling_copy(void **state)
{
	struct eventbuf_publisher *pub = pub_new(0);
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k" };
	struct eventbuf_event live[3] = {
		{ .index = 6, .topic = "t", .key = "k" },
		{ .index = 4, .topic = "t", .key = "k" },
		{ .index = 7, .topic = "t", .key = "k" },
	};
	struct eventbuf_poll_event evs[2];
	const struct eventbuf_event *ev;
	struct eventbuf_subscription *sub;
	struct eventbuf_poller *p;
	size_t n;
	int ret;

	(void)state;
	assert_int_equal(eventbuf_poller_new(&p), 0);
	assert_int_equal(eventbuf_subscribe(pub, &req, &sub), 0);
	assert_int_equal(eventbuf_poller_add_sub(p, sub, sub), 0);
	assert_int_equal(eventbuf_poller_ready(p, evs, 2), 1);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), 0);
	assert_int_equal(ev->index, 5);		/* the snapshot */
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), 0);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EAGAIN);
	assert_int_equal(eventbuf_publish(pub, live, 3, NULL, NULL), 0);
	assert_int_equal(eventbuf_poller_ready(p, evs, 2), 1);
	fail_from(0);
	ret = eventbuf_sub_next_nonblock(sub, &ev, &n);
	assert_true(disarm());
	assert_int_equal(ret, -ENOMEM);
	assert_int_equal(eventbuf_poller_ready(p, evs, 2), 1);
	assert_ptr_equal(evs[0].sub, sub);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].index, 6);
	assert_int_equal(ev[1].index, 7);
	assert_int_equal(eventbuf_sub_next_nonblock(sub, &ev, &n), -EAGAIN);
	eventbuf_unsubscribe(sub);
	eventbuf_poller_free(p);
	pub_free(pub, 0);
}

/*
 * A cohort of four subscriptions whose link fires with every site on the
 * way failing in turn, the eventfd pool emptied so that arming its next
 * link needs a new eventfd: the queue of fired entries (realloc), the
 * reference the cohort moves to its new link, the eventfd, the poller's
 * registration array and epoll_ctl(). Whatever fails, the members are
 * reported one by one and read on: every event is read once, in order,
 * and the next one wakes them. Returns the number of sites.
 */
static int group_faults(struct eventbuf_publisher *pub)
{
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "g" };
	struct eventbuf_poll_event evs[8];
	struct gsub gs[GROUP_SUBS];
	uint64_t index = FIRST_LIVE;
	int sites;

	for (sites = 0;; sites++) {
		struct eventbuf_poller *p;
		bool fired;
		int n;

		assert_int_equal(eventbuf_poller_new(&p), 0);
		assert_int_equal(eventbuf_poller_enable_groups(p), 0);
		for (int i = 0; i < GROUP_SUBS; i++) {
			assert_int_equal(eventbuf_subscribe(pub, &req, &gs[i].sub), 0);
			gs[i].next = index;
			gs[i].bad = 0;
			assert_int_equal(eventbuf_poller_add_sub(p, gs[i].sub,
								 &gs[i]), 0);
		}
		/* Parked one by one, then read once as a cohort. */
		group_catch_up(p, gs, index);
		gpublish(pub, index++);
		group_catch_up(p, gs, index);
		gpublish(pub, index++);
		eventbuf_barrier();	/* the next link needs a new eventfd */
		fail_from(sites);
		n = eventbuf_poller_ready(p, evs, 8);
		assert_true(n >= 0);
		group_round(p, evs, n);
		fired = disarm();
		group_catch_up(p, gs, index);
		gpublish(pub, index++);
		group_catch_up(p, gs, index);
		for (int i = 0; i < GROUP_SUBS; i++)
			eventbuf_unsubscribe(gs[i].sub);
		eventbuf_poller_free(p);
		if (!fired)
			return sites;
	}
}

static void test_faults_poller_group(void **state)
{
	struct eventbuf_publisher *pub = pub_new(0);
	int sites;

	(void)state;
	fail_eventfds = true;
	sites = group_faults(pub);
	printf("# cohort read and armed: %d sites failed in turn\n", sites);
	/* realloc() of the fired queue, the reference, eventfd(), epoll_ctl() */
	assert_true(sites >= 4);
	pub_free(pub, 0);
	fail_eventfds = false;
}

/*
 * The splice's first step takes a reference on the key buffer's head. A
 * handler that appends nothing and arms the fault makes exactly that
 * reference fail: the subscribe fails with it, and puts nothing it never
 * held (an uninitialised item pointer, before the fix).
 */
static int arm_ref_fault(void *arg, const char *topic, const char *key,
			 struct eventbuf_snapshot *snap, uint64_t *index)
{
	(void)topic;
	(void)key;
	(void)snap;
	*index = 3;
	if (atomic_load((_Atomic bool *)arg))
		atomic_store(&fail_next_ref, true);
	return 0;
}

static void test_faults_splice_head_overflow(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k" };
	struct eventbuf_event live = { .index = 4, .topic = "t", .key = "k" };
	struct eventbuf_subscription *keep, *sub = NULL;
	const struct eventbuf_event *ev;
	struct eventbuf_publisher *pub;
	_Atomic bool arm = false;
	size_t n;

	(void)state;
	assert_int_equal(eventbuf_publisher_new(NULL, &pub), 0);
	assert_int_equal(eventbuf_publisher_register(pub, "t", arm_ref_fault,
						     &arm, 0), 0);
	/* A subscriber that keeps the key buffer, and one batch in it. */
	assert_int_equal(eventbuf_subscribe(pub, &req, &keep), 0);
	assert_int_equal(eventbuf_publish(pub, &live, 1, NULL, NULL), 0);
	atomic_store(&arm, true);
	assert_int_equal(eventbuf_subscribe(pub, &req, &sub), -EOVERFLOW);
	assert_null(sub);
	assert_false(atomic_load(&fail_next_ref));
	/* The key buffer and the first subscriber are intact. */
	expect_stats(pub, 1, 1, 0);
	assert_int_equal(eventbuf_sub_next(keep, 1000, -1, &ev, &n), 0);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	assert_int_equal(eventbuf_sub_next(keep, 1000, -1, &ev, &n), 0);
	assert_int_equal(ev->index, 4);
	eventbuf_unsubscribe(keep);
	eventbuf_publisher_free(pub);
}

int main(void)
{
	/* Slabs from the first item, so that their sites are covered; the
	 * warm-up's malloc() path has its own test. */
	__eventbuf_slab_warmup = 0;
	armed_thread = pthread_self();	/* before any other thread runs */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_faults_new, teardown),
		cmocka_unit_test_teardown(test_faults_append, teardown),
		cmocka_unit_test_teardown(test_faults_append_warmup, teardown),
		cmocka_unit_test_teardown(test_faults_append_error, teardown),
		cmocka_unit_test_teardown(test_faults_follow_after_and_reader, teardown),
		cmocka_unit_test_teardown(test_faults_eventfd_emfile, teardown),
		cmocka_unit_test_teardown(test_faults_splice, teardown),
		cmocka_unit_test_teardown(test_faults_splice_head_overflow, teardown),
		cmocka_unit_test_teardown(test_faults_subscribe, teardown),
		cmocka_unit_test_teardown(test_faults_publish, teardown),
		cmocka_unit_test_teardown(test_faults_subscription_park, teardown),
		cmocka_unit_test_teardown(test_faults_subscribe_emfile, teardown),
		cmocka_unit_test_teardown(test_faults_poller_new, teardown),
		cmocka_unit_test_teardown(test_faults_poller_park, teardown),
		cmocka_unit_test_teardown(test_faults_straddling_copy, teardown),
		cmocka_unit_test_teardown(test_faults_poller_group, teardown),
	};

	/* A thread's first small block also allocates its block lists,
	 * once: warm_up_library() makes them before the sweeps, whose site
	 * counts are of the operations. Each step's expect_nothing_left()
	 * empties the lists (eventbuf_barrier()): every block an operation
	 * takes is a malloc(). */
	return cmocka_run_group_tests_name("faults", tests, warm_up_library,
					   NULL);
}

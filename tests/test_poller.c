// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Pollers: many readers and subscriptions behind one descriptor per event
 * loop. The loops here are the test's own: each poller's descriptor sits in
 * an epoll set of the test (edge- or level-triggered), or a worker thread
 * waits with eventbuf_poller_wait() alone. Every object records what it
 * read (order, count, terminal code, reports that found nothing), and the
 * test asserts on those records; descriptor counts come from
 * /proc/self/fd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "helpers.h"

#define SNAP_INDEX	1	/* the empty snapshot's: live events start above */
#define EVS_MAX		256

/* One attached reader or subscription and what was read from it. */
struct obj {
	struct eventbuf_reader *r;
	struct eventbuf_subscription *s;
	uint64_t next;		/* next index expected */
	uint64_t want;		/* next index once caught up */
	uint64_t count;		/* events read */
	uint64_t bad;		/* events out of order */
	uint64_t reports;
	uint64_t empty;		/* reports after which nothing was read */
	int term;		/* terminal code read, 0 if none */
	int error;		/* unexpected return, 0 if none */
};

static struct eventbuf_publisher *pub;

/*
 * The group runs: every poller the tests make hands its subscriptions out
 * in groups, and every loop reads the groups (read_groups()) after the
 * reports, so the same assertions hold for both ways of reading.
 */
static bool groups_on;
static uint64_t grouped;	/* (member, event) pairs read in groups */

static int poller_new(struct eventbuf_poller **pp)
{
	int ret = eventbuf_poller_new(pp);

	if (!ret && groups_on)
		ret = eventbuf_poller_enable_groups(*pp);
	return ret;
}

static int setup_ttl(uint32_t ttl_ms)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = ttl_ms };

	if (eventbuf_publisher_new(&cfg, &pub) ||
	    eventbuf_publisher_register(pub, "t", empty_snapshot,
					(void *)(uintptr_t)SNAP_INDEX, 0))
		return -1;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	return setup_ttl(1000);
}

static int setup_groups(void **state)
{
	groups_on = true;
	return setup(state);
}

/* No snapshot cache: a cached snapshot keeps the link it led to, and that
 * link its eventfd, for the cache's lifetime. */
static int setup_nocache(void **state)
{
	(void)state;
	return setup_ttl(0);
}

static int setup_groups_nocache(void **state)
{
	groups_on = true;
	return setup_nocache(state);
}

static int teardown(void **state)
{
	(void)state;
	groups_on = false;
	eventbuf_publisher_free(pub);
	pub = NULL;
	return expect_nothing_left();
}

static uint64_t open_eventfds(void)
{
	struct eventbuf_stats st;

	eventbuf_stats(&st);
	return st.open_eventfds;
}

static struct eventbuf_poller_stats pstats(struct eventbuf_poller *p)
{
	struct eventbuf_poller_stats st;

	assert_int_equal(eventbuf_poller_stats(p, &st), 0);
	return st;
}

static struct eventbuf_subscription *sub_new(const char *key, uint64_t tag,
					     uint64_t lag_limit)
{
	struct eventbuf_subscribe_req req = { .topic = "t", .key = key,
					      .tag = tag,
					      .lag_limit = lag_limit };
	struct eventbuf_subscription *sub = NULL;

	assert_int_equal(eventbuf_subscribe(pub, &req, &sub), 0);
	return sub;
}

static int publish(const char *key, uint64_t index)
{
	struct eventbuf_event ev = { .index = index, .topic = "t", .key = key };

	return eventbuf_publish(pub, &ev, 1, NULL, NULL);
}

static void see(struct obj *o, const struct eventbuf_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ev[i].index != o->next)
			o->bad++;
		o->next = ev[i].index + 1;
		o->count++;
	}
}

/*
 * Read @o until -EAGAIN (parked again) or a terminal code. Returns how
 * many reads returned something (a batch, a frame or a terminal code).
 */
static uint64_t drain(struct obj *o)
{
	const struct eventbuf_event *ev;
	const struct eventbuf_item *it;
	uint64_t got = 0;
	size_t n;
	int ret;

	for (;;) {
		if (o->r) {
			ret = eventbuf_reader_next_nonblock(o->r, &it);
			if (!ret)
				see(o, eventbuf_item_events(it),
				    eventbuf_item_count(it));
		} else {
			ret = eventbuf_sub_next_nonblock(o->s, &ev, &n);
			if (!ret && !eventbuf_event_is_end_of_snapshot(ev))
				see(o, ev, n);
		}
		if (ret == -EAGAIN)
			return got;
		got++;
		if (ret) {
			if (ret != -ECONNRESET && ret != -ENOBUFS &&
			    ret != -ESHUTDOWN && !o->error)
				o->error = ret;
			o->term = ret;
			return got;
		}
	}
}

/* Handle one report: drain its object, count reports that found nothing. */
static void handle(const struct eventbuf_poll_event *pe)
{
	struct obj *o = pe->data;

	o->reports++;
	if (!drain(o) && o->reports > 1)
		o->empty++;
}

/*
 * Every group @p hands out, each batch seen by each member, as a caller's
 * loop does; a member with a terminal code seen is skipped (it cannot be
 * in a group). Returns how many members were handed out.
 */
static int read_groups(struct eventbuf_poller *p)
{
	const struct eventbuf_event *ev;
	struct eventbuf_poll_group g;
	size_t n, batches;
	int members = 0, ret;

	while ((ret = eventbuf_poller_group(p, &g)) > 0) {
		assert_true(g.count > 0);
		members += (int)g.count;
		for (size_t m = 0; m < g.count; m++) {
			struct obj *o = g.members[m].data;

			assert_null(g.members[m].reader);
			assert_ptr_equal(g.members[m].sub, o->s);
			o->reports++;
		}
		for (batches = 0; !eventbuf_poller_group_next(p, &ev, &n);
		     batches++) {
			assert_true(n > 0);
			for (size_t m = 0; m < g.count; m++) {
				if (!g.members[m].sub)	/* left */
					continue;
				see(g.members[m].data, ev, n);
				grouped += n;
			}
		}
		assert_null(ev);
		if (!batches)
			for (size_t m = 0; m < g.count; m++)
				((struct obj *)g.members[m].data)->empty++;
	}
	assert_int_equal(ret, 0);
	return members;
}

/*
 * eventbuf_poller_ready() once, everything handled, then the groups;
 * returns the count of both.
 */
static int ready_once(struct eventbuf_poller *p, size_t max)
{
	struct eventbuf_poll_event evs[EVS_MAX];
	int n = eventbuf_poller_ready(p, evs, max);

	for (int i = 0; i < n; i++)
		handle(&evs[i]);
	return n < 0 ? n : n + read_groups(p);
}

/* Collect and handle until the poller has nothing more to report. */
static void ready_all(struct eventbuf_poller *p)
{
	int n;

	while ((n = ready_once(p, EVS_MAX)) > 0)
		;
	assert_int_equal(n, 0);
}

static bool caught_up(const struct obj *o, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (o[i].next != o[i].want || o[i].term || o[i].error)
			return false;
	return true;
}

static void set_want(struct obj *o, size_t n, uint64_t want)
{
	for (size_t i = 0; i < n; i++)
		o[i].want = want;
}

/*
 * The caller's loop: wait on the outer epoll set @ep for @p's descriptor,
 * take one array of reports each time it fires, until every object in
 * @objs has read up to its ->want (or the deadline passes; the caller's
 * assertions on the objects then fail). Returns how many times @ep fired.
 */
static int loop_until(int ep, struct eventbuf_poller *p, struct obj *objs,
		      size_t n, size_t max)
{
	int64_t deadline = now_ms() + 10000;
	struct epoll_event ev;
	int fired = 0;

	while (!caught_up(objs, n)) {
		int left = (int)(deadline - now_ms());

		if (left <= 0 || epoll_wait(ep, &ev, 1, left) != 1)
			break;
		fired++;
		assert_ptr_equal(ev.data.ptr, p);
		ready_once(p, max);
	}
	return fired;
}

static int outer_epoll(struct eventbuf_poller *p, bool edge)
{
	struct epoll_event ev = { .events = EPOLLIN | (edge ? EPOLLET : 0),
				  .data.ptr = p };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	assert_true(ep >= 0);
	assert_true(eventbuf_poller_fd(p) >= 0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, eventbuf_poller_fd(p),
				   &ev), 0);
	return ep;
}

static void assert_objs(const struct obj *o, size_t n, uint64_t want,
			uint64_t count)
{
	for (size_t i = 0; i < n; i++) {
		if (o[i].next != want || o[i].count != count || o[i].bad ||
		    o[i].error || o[i].term || o[i].empty)
			printf("# obj %zu: next %llu count %llu bad %llu error %d term %d empty %llu\n",
			       i, (unsigned long long)o[i].next,
			       (unsigned long long)o[i].count,
			       (unsigned long long)o[i].bad, o[i].error,
			       o[i].term, (unsigned long long)o[i].empty);
		assert_int_equal(o[i].error, 0);
		assert_int_equal(o[i].term, 0);
		assert_int_equal(o[i].bad, 0);
		assert_int_equal(o[i].next, want);
		assert_int_equal(o[i].count, count);
		assert_int_equal(o[i].empty, 0);
	}
}

/* ---------------------------------------------------------------------- */

#define FAN_PER_POLLER	2000	/* 1,000 subscriptions, 1,000 readers */
#define FAN_EVENTS	50

/*
 * 2,000 subscriptions of one key and 2,000 readers of one buffer, half on
 * each of two pollers, one poller in an edge-triggered set and the other
 * in a level-triggered one: every event reaches every object, in order;
 * descriptors stay at two per poller plus the parked links; and once warm,
 * a delivery registers nothing new.
 */
static void test_poller_fan_out(void **state)
{
	struct eventbuf_poller *p[2];
	struct obj *objs[2];
	struct eventbuf_item *head;
	struct eventbuf *buf;
	uint64_t adds_warm[2] = { 0, 0 };
	uint64_t published = 0;
	unsigned int seed = test_seed();
	int ep[2], base_fds, base_efds, round;

	(void)state;
	grouped = 0;
	base_fds = count_fds();
	base_efds = count_eventfds();
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	/* Poller 0 in an edge-triggered set, poller 1 in a level-triggered
	 * one; each with 1,000 subscriptions (objs[i][0, 1000)) and 1,000
	 * readers (objs[i][1000, 2000)). */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(poller_new(&p[i]), 0);
		ep[i] = outer_epoll(p[i], i == 0);
		objs[i] = calloc(FAN_PER_POLLER, sizeof(*objs[i]));
		assert_non_null(objs[i]);
		for (int j = 0; j < FAN_PER_POLLER; j++) {
			struct obj *o = &objs[i][j];

			if (j < FAN_PER_POLLER / 2) {
				o->s = sub_new("k", 0, 0);
				o->next = SNAP_INDEX + 1;
				assert_int_equal(eventbuf_poller_add_sub(p[i], o->s, o), 0);
			} else {
				assert_int_equal(eventbuf_reader_new(head, &o->r), 0);
				assert_int_equal(eventbuf_poller_add_reader(p[i], o->r, o), 0);
			}
			o->want = o->next;
		}
	}
	eventbuf_item_put(head);
	/* Attached objects are reported at once: their first reads park them
	 * all at one link of the key's buffer or of @buf. */
	for (int i = 0; i < 2; i++) {
		struct eventbuf_poller_stats st;

		ready_all(p[i]);
		st = pstats(p[i]);
		assert_int_equal(st.attached, FAN_PER_POLLER);
		assert_int_equal(st.parked, FAN_PER_POLLER);
		assert_int_equal(st.links, 2);
		assert_int_equal(st.reports, FAN_PER_POLLER);
		for (int j = 0; j < FAN_PER_POLLER; j++)
			assert_int_equal(objs[i][j].reports, 1);
	}

	for (round = 0; published < FAN_EVENTS; round++) {
		uint64_t burst = 1 + rand_r(&seed) % 4;
		int fds, efds;

		if (burst > FAN_EVENTS - published)
			burst = FAN_EVENTS - published;
		for (uint64_t b = 0; b < burst; b++) {
			assert_int_equal(publish("k", SNAP_INDEX + 1 + published), 0);
			assert_int_equal(append_batch(buf, published, 1, NULL), 0);
			published++;
		}
		for (int i = 0; i < 2; i++) {
			set_want(objs[i], FAN_PER_POLLER / 2,
				 SNAP_INDEX + 1 + published);
			set_want(objs[i] + FAN_PER_POLLER / 2,
				 FAN_PER_POLLER / 2, published);
			assert_true(loop_until(ep[i], p[i], objs[i],
					       FAN_PER_POLLER, EVS_MAX) > 0);
			assert_true(caught_up(objs[i], FAN_PER_POLLER));
		}
		/* Two per poller (its epoll instance and eventfd), two outer
		 * sets, two parked links, the idle pool (8). */
		fds = count_fds() - base_fds;
		efds = count_eventfds() - base_efds;
		if (fds > 2 * 2 + 2 + 2 + 8 || efds > 2 + 2 + 8)
			printf("# round %d: %d descriptors, %d eventfds\n",
			       round, fds, efds);
		assert_true(fds <= 2 * 2 + 2 + 2 + 8);
		assert_true(efds <= 2 + 2 + 8);
		/*
		 * The link each subscription's snapshot led to keeps its
		 * eventfd until the snapshot's items are reclaimed (a grace
		 * period later); closing it makes every poller register its
		 * recycled descriptors once more. Past that, nothing new.
		 */
		if (round == 1)
			eventbuf_barrier();
		for (int i = 0; i < 2; i++) {
			struct eventbuf_poller_stats st = pstats(p[i]);

			assert_int_equal(st.parked, FAN_PER_POLLER);
			assert_int_equal(st.links, 2);
			/* Warm two rounds after the barrier: the links'
			 * eventfds are recycled ones this poller watches. */
			if (round == 3)
				adds_warm[i] = st.epoll_adds;
			else if (round > 3)
				assert_int_equal(st.epoll_adds, adds_warm[i]);
		}
	}
	assert_true(round > 10);
	/* Once parked, subscriptions read every event in groups. */
	assert_int_equal(grouped, groups_on ? 2 * FAN_PER_POLLER / 2 *
					      FAN_EVENTS : 0);
	for (int i = 0; i < 2; i++) {
		struct eventbuf_poller_stats st = pstats(p[i]);

		printf("# poller %d: %d rounds, %llu epoll adds, %llu wake-ups, %llu stale, %llu reports\n",
		       i, round, (unsigned long long)st.epoll_adds,
		       (unsigned long long)st.wakeups,
		       (unsigned long long)st.stale,
		       (unsigned long long)st.reports);
		assert_objs(objs[i], FAN_PER_POLLER / 2,
			    SNAP_INDEX + 1 + FAN_EVENTS, FAN_EVENTS);
		assert_objs(objs[i] + FAN_PER_POLLER / 2, FAN_PER_POLLER / 2,
			    FAN_EVENTS, FAN_EVENTS);
		for (int j = 0; j < FAN_PER_POLLER; j++) {
			eventbuf_unsubscribe(objs[i][j].s);
			eventbuf_reader_free(objs[i][j].r);
		}
		assert_int_equal(pstats(p[i]).attached, 0);
		assert_int_equal(pstats(p[i]).links, 0);
		close(ep[i]);
		eventbuf_poller_free(p[i]);
		free(objs[i]);
	}
	eventbuf_drop(buf);
}

/* ---------------------------------------------------------------------- */

#define WAIT_KEYS	8
#define WAIT_SUBS	64
#define WAIT_EVENTS	400

struct waiter {
	struct eventbuf_poller *p;
	struct obj objs[WAIT_SUBS + 1];	/* the last one is a raw reader */
	int cancel_fd;
	_Atomic uint64_t seen;		/* events read, for the test thread */
	int exit_code;			/* what ended the loop */
	uint64_t waits;
};

/*
 * An event-loop thread's loop: eventbuf_poller_wait() for at most @max
 * events until it fails (cancelled: -ECANCELED) or 20 s pass, handling
 * each and adding what its objects read to @seen. Returns the wait's code.
 */
/* read_groups(), counting the events its members read. */
static uint64_t group_events(struct eventbuf_poller *p)
{
	const struct eventbuf_event *ev;
	struct eventbuf_poll_group g;
	uint64_t seen = 0;
	size_t n;

	while (eventbuf_poller_group(p, &g) > 0) {
		for (size_t m = 0; m < g.count; m++)
			((struct obj *)g.members[m].data)->reports++;
		while (!eventbuf_poller_group_next(p, &ev, &n)) {
			for (size_t m = 0; m < g.count; m++) {
				if (!g.members[m].sub)	/* left */
					continue;
				see(g.members[m].data, ev, n);
				seen += n;
			}
		}
	}
	return seen;
}

static int poll_loop(struct eventbuf_poller *p, int cancel_fd, int max,
		     _Atomic uint64_t *seen, uint64_t *waits)
{
	struct eventbuf_poll_event evs[64];
	int64_t deadline = now_ms() + 20000;

	for (;;) {
		int left = (int)(deadline - now_ms());
		int n = eventbuf_poller_wait(p, evs, max, left > 0 ? left : 0,
					     cancel_fd);

		if (n < 0)
			return n;
		(*waits)++;
		for (int i = 0; i < n; i++) {
			struct obj *o = evs[i].data;
			uint64_t before = o->count;

			handle(&evs[i]);
			atomic_fetch_add(seen, o->count - before);
		}
		if (groups_on)
			atomic_fetch_add(seen, group_events(p));
	}
}

static void *waiter_run(void *arg)
{
	struct waiter *w = arg;

	w->exit_code = poll_loop(w->p, w->cancel_fd, 16, &w->seen, &w->waits);
	return NULL;
}

static bool all_seen(void *arg)
{
	struct waiter *w = arg;

	return atomic_load(&w->seen) >= (uint64_t)WAIT_EVENTS / WAIT_KEYS *
					   (WAIT_SUBS / WAIT_KEYS) * WAIT_KEYS +
					   WAIT_EVENTS;
}

/*
 * A thread whose only loop is eventbuf_poller_wait(): it hears of every
 * event of its subscriptions and of its reader, and stops when cancelled.
 */
static void test_poller_wait_thread(void **state)
{
	static struct waiter w;
	static const char *const keys[WAIT_KEYS] = {
		"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7" };
	uint64_t per_key[WAIT_KEYS] = { 0 };
	struct eventbuf_item *head;
	struct eventbuf *buf;
	unsigned int seed = test_seed();
	pthread_t tid;
	bool done;

	(void)state;
	memset(&w, 0, sizeof(w));
	assert_int_equal(poller_new(&w.p), 0);
	w.cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(w.cancel_fd >= 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	for (int i = 0; i < WAIT_SUBS; i++) {
		w.objs[i].s = sub_new(keys[i % WAIT_KEYS], 0, 0);
		w.objs[i].next = SNAP_INDEX + 1;
		assert_int_equal(eventbuf_poller_add_sub(w.p, w.objs[i].s,
							 &w.objs[i]), 0);
	}
	assert_int_equal(eventbuf_reader_new(head, &w.objs[WAIT_SUBS].r), 0);
	assert_int_equal(eventbuf_poller_add_reader(w.p, w.objs[WAIT_SUBS].r,
						    &w.objs[WAIT_SUBS]), 0);
	eventbuf_item_put(head);
	/* From here on the poller and its objects are the worker's. */
	assert_int_equal(pthread_create(&tid, NULL, waiter_run, &w), 0);
	for (uint64_t e = 0; e < WAIT_EVENTS; e++) {
		int k = (int)(e % WAIT_KEYS);

		assert_int_equal(publish(keys[k], SNAP_INDEX + 1 + per_key[k]), 0);
		per_key[k]++;
		assert_int_equal(append_batch(buf, e, 1, NULL), 0);
		if (rand_r(&seed) % 32 == 0) {
			struct timespec ts = { 0, (rand_r(&seed) % 300) * 1000 };

			nanosleep(&ts, NULL);	/* let the worker park */
		}
	}
	done = wait_until(all_seen, &w, 10000);
	assert_int_equal(eventfd_write(w.cancel_fd, 1), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	printf("# waiter: %llu waits, %llu events\n",
	       (unsigned long long)w.waits,
	       (unsigned long long)atomic_load(&w.seen));
	assert_true(done);
	assert_int_equal(w.exit_code, -ECANCELED);
	assert_objs(w.objs, WAIT_SUBS, SNAP_INDEX + 1 + WAIT_EVENTS / WAIT_KEYS,
		    WAIT_EVENTS / WAIT_KEYS);
	assert_objs(&w.objs[WAIT_SUBS], 1, WAIT_EVENTS, WAIT_EVENTS);
	/* Nothing left to report, and the wait says so in time. */
	{
		struct eventbuf_poll_event ev;

		assert_int_equal(eventbuf_poller_wait(w.p, &ev, 1, 10, -1),
				 -ETIMEDOUT);
		assert_int_equal(eventbuf_poller_wait(w.p, &ev, 1, 0, -1),
				 -ETIMEDOUT);
	}
	for (int i = 0; i <= WAIT_SUBS; i++) {
		eventbuf_unsubscribe(w.objs[i].s);
		eventbuf_reader_free(w.objs[i].r);
	}
	eventbuf_poller_free(w.p);
	close(w.cancel_fd);
	eventbuf_drop(buf);
}

/* ---------------------------------------------------------------------- */

#define RACE_LOOPS	2
#define RACE_SUBS	200	/* per loop, over the keys */
#define RACE_READERS	8	/* per loop, on one buffer */
#define RACE_EVENTS	6000

/* One event-loop thread of the race test: a poller and its objects. */
struct race_loop {
	struct eventbuf_poller *p;
	struct obj objs[RACE_SUBS + RACE_READERS];
	int cancel_fd;
	_Atomic uint64_t seen;
	int exit_code;
};

static void *race_run(void *arg)
{
	struct race_loop *l = arg;
	uint64_t waits = 0;

	l->exit_code = poll_loop(l->p, l->cancel_fd, 64, &l->seen, &waits);
	return NULL;
}

struct race_goal {
	struct race_loop *loops;
	uint64_t total;
};

static bool race_done(void *arg)
{
	struct race_goal *g = arg;
	uint64_t seen = 0;

	for (int i = 0; i < RACE_LOOPS; i++)
		seen += atomic_load(&g->loops[i].seen);
	return seen >= g->total;
}

/*
 * Two event-loop threads, each with a poller of subscriptions over @nkeys
 * keys and raw readers of one buffer, while the test thread publishes and
 * appends back to back: links are armed, joined, fired and left while
 * the writer runs, in every order the scheduler finds. Every object must
 * read every event of its key or buffer, in order.
 */
static void race(int nkeys)
{
	static struct race_loop loops[RACE_LOOPS];
	uint64_t per_key[RACE_SUBS] = { 0 };
	struct race_goal goal = { .loops = loops };
	char keys[RACE_SUBS][16];
	pthread_t tids[RACE_LOOPS];
	struct eventbuf_item *head;
	struct eventbuf *buf;
	bool done;

	memset(loops, 0, sizeof(loops));
	for (int k = 0; k < nkeys; k++)
		snprintf(keys[k], sizeof(keys[k]), "k%d", k);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	for (int i = 0; i < RACE_LOOPS; i++) {
		struct race_loop *l = &loops[i];

		assert_int_equal(poller_new(&l->p), 0);
		l->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		assert_true(l->cancel_fd >= 0);
		for (int j = 0; j < RACE_SUBS; j++) {
			l->objs[j].s = sub_new(keys[j % nkeys], 0, 0);
			l->objs[j].next = SNAP_INDEX + 1;
			assert_int_equal(eventbuf_poller_add_sub(l->p,
					l->objs[j].s, &l->objs[j]), 0);
		}
		for (int j = RACE_SUBS; j < RACE_SUBS + RACE_READERS; j++) {
			assert_int_equal(eventbuf_reader_new(head,
					&l->objs[j].r), 0);
			assert_int_equal(eventbuf_poller_add_reader(l->p,
					l->objs[j].r, &l->objs[j]), 0);
		}
		goal.total += (uint64_t)RACE_SUBS * (RACE_EVENTS / nkeys) +
			      (uint64_t)RACE_READERS * RACE_EVENTS;
	}
	eventbuf_item_put(head);
	for (int i = 0; i < RACE_LOOPS; i++)
		assert_int_equal(pthread_create(&tids[i], NULL, race_run,
						&loops[i]), 0);
	for (uint64_t e = 0; e < RACE_EVENTS; e++) {
		int k = (int)(e % (uint64_t)nkeys);

		assert_int_equal(publish(keys[k], SNAP_INDEX + 1 + per_key[k]), 0);
		per_key[k]++;
		assert_int_equal(append_batch(buf, e, 1, NULL), 0);
	}
	done = wait_until(race_done, &goal, 20000);
	for (int i = 0; i < RACE_LOOPS; i++) {
		assert_int_equal(eventfd_write(loops[i].cancel_fd, 1), 0);
		assert_int_equal(pthread_join(tids[i], NULL), 0);
	}
	assert_true(done);
	for (int i = 0; i < RACE_LOOPS; i++) {
		struct race_loop *l = &loops[i];

		assert_int_equal(l->exit_code, -ECANCELED);
		/* Each key gets RACE_EVENTS / nkeys events (nkeys divides). */
		assert_objs(l->objs, RACE_SUBS,
			    SNAP_INDEX + 1 + RACE_EVENTS / nkeys,
			    RACE_EVENTS / nkeys);
		assert_objs(&l->objs[RACE_SUBS], RACE_READERS, RACE_EVENTS,
			    RACE_EVENTS);
		for (int j = 0; j < RACE_SUBS + RACE_READERS; j++) {
			eventbuf_unsubscribe(l->objs[j].s);
			eventbuf_reader_free(l->objs[j].r);
		}
		eventbuf_poller_free(l->p);
		close(l->cancel_fd);
	}
	eventbuf_drop(buf);
}

static void test_poller_race_one_key(void **state)
{
	(void)state;
	race(1);
}

static void test_poller_race_many_keys(void **state)
{
	(void)state;
	race(100);
}

/* ---------------------------------------------------------------------- */

/*
 * Reports that do not fit in the array: an edge-triggered set hears of
 * them again, one array at a time, until all are out; then it stays quiet.
 */
static void overflow(size_t max)
{
	enum { N = 20 };
	struct obj objs[N];
	struct eventbuf_poller *p;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	struct epoll_event ev;
	int ep, fired = 0, got, total = 0;

	memset(objs, 0, sizeof(objs));
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(poller_new(&p), 0);
	ep = outer_epoll(p, true);
	for (int i = 0; i < N; i++) {
		assert_int_equal(eventbuf_reader_new(head, &objs[i].r), 0);
		assert_int_equal(eventbuf_poller_add_reader(p, objs[i].r,
							    &objs[i]), 0);
	}
	eventbuf_item_put(head);
	for (int round = 0; round < 3; round++) {
		if (round)
			assert_int_equal(append_batch(buf, round - 1, 1, NULL), 0);
		fired = 0;
		total = 0;
		while (total < N) {
			if (epoll_wait(ep, &ev, 1, 2000) != 1)
				break;
			fired++;
			got = ready_once(p, max);
			assert_true(got >= 0 && (size_t)got <= max);
			total += got;
		}
		assert_int_equal(total, N);
		assert_true(fired >= (N + (int)max - 1) / (int)max);
		/* Everything reported and parked: the set stays quiet. */
		while (epoll_wait(ep, &ev, 1, 0) == 1)
			assert_int_equal(ready_once(p, max), 0);
		assert_int_equal(pstats(p).parked, N);
	}
	assert_objs(objs, N, 2, 2);
	for (int i = 0; i < N; i++)
		eventbuf_reader_free(objs[i].r);
	close(ep);
	eventbuf_poller_free(p);
	eventbuf_drop(buf);
}

static void test_poller_overflow_max1(void **state)
{
	(void)state;
	overflow(1);
}

static void test_poller_overflow_max7(void **state)
{
	(void)state;
	overflow(7);
}

/* ---------------------------------------------------------------------- */

#define CLOSE_SUBS 2000

enum closer_kind { CLOSE_KEY, CLOSE_TAG, CLOSE_SHUTDOWN };

struct closer {
	enum closer_kind kind;
	int ret;
};

static void *closer_run(void *arg)
{
	struct closer *c = arg;

	switch (c->kind) {
	case CLOSE_KEY:
		c->ret = eventbuf_publisher_close_key(pub, "t", "k");
		break;
	case CLOSE_TAG:
		c->ret = eventbuf_publisher_close_tag(pub, 7);
		break;
	case CLOSE_SHUTDOWN:
		eventbuf_publisher_free(pub);
		c->ret = 0;
		break;
	}
	return NULL;
}

/* 2,000 subscriptions of "k" on two pollers, read to their parking spot;
 * those with odd numbers have tag 7. */
static struct obj *parked_subs(struct eventbuf_poller *p[2], uint64_t lag_limit)
{
	struct obj *objs = calloc(CLOSE_SUBS, sizeof(*objs));

	assert_non_null(objs);
	for (int i = 0; i < CLOSE_SUBS; i++) {
		objs[i].s = sub_new("k", (i & 1) ? 7 : 0, lag_limit);
		objs[i].next = SNAP_INDEX + 1;
		assert_int_equal(eventbuf_poller_add_sub(p[i % 2], objs[i].s,
							 &objs[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		ready_all(p[i]);
		assert_int_equal(pstats(p[i]).parked, CLOSE_SUBS / 2);
	}
	return objs;
}

/* The poller's loop after a close: every @closed object is reported and
 * reads @code, twice; the others are not reported. */
static void expect_closed(int ep[2], struct eventbuf_poller *p[2],
			  struct obj *objs, bool (*closed)(int i), int code)
{
	const struct eventbuf_event *ev;
	size_t n;

	for (int i = 0; i < 2; i++) {
		int64_t deadline = now_ms() + 10000;
		struct epoll_event e;
		int want = 0, got = 0;

		for (int j = i; j < CLOSE_SUBS; j += 2)
			want += closed(j);
		while (got < want && now_ms() < deadline &&
		       epoll_wait(ep[i], &e, 1, 2000) == 1) {
			int k;

			while ((k = ready_once(p[i], EVS_MAX)) > 0)
				got += k;
		}
		assert_int_equal(got, want);
	}
	for (int i = 0; i < CLOSE_SUBS; i++) {
		if (closed(i)) {
			assert_int_equal(objs[i].reports, 2);
			assert_int_equal(objs[i].term, code);
			assert_int_equal(eventbuf_sub_next_nonblock(objs[i].s,
								    &ev, &n),
					 code);
		} else {
			assert_int_equal(objs[i].reports, 1);
			assert_int_equal(objs[i].term, 0);
		}
		assert_int_equal(objs[i].error, 0);
	}
}

static void free_subs(struct obj *objs, struct eventbuf_poller *p[2])
{
	for (int i = 0; i < CLOSE_SUBS; i++)
		eventbuf_unsubscribe(objs[i].s);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pstats(p[i]).attached, 0);
		assert_int_equal(pstats(p[i]).parked, 0);
		assert_int_equal(pstats(p[i]).links, 0);
	}
	free(objs);
}

static bool every(int i)
{
	(void)i;
	return true;
}

static bool odd(int i)
{
	return i & 1;
}

static void close_from_thread(enum closer_kind kind, int want_ret,
			      bool (*closed)(int i), int code)
{
	struct eventbuf_poller *p[2];
	struct closer c = { .kind = kind };
	struct obj *objs;
	pthread_t tid;
	int ep[2];

	for (int i = 0; i < 2; i++) {
		assert_int_equal(poller_new(&p[i]), 0);
		ep[i] = outer_epoll(p[i], i == 0);
	}
	objs = parked_subs(p, 0);
	assert_int_equal(pthread_create(&tid, NULL, closer_run, &c), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(c.ret, want_ret);
	expect_closed(ep, p, objs, closed, code);
	free_subs(objs, p);
	for (int i = 0; i < 2; i++) {
		close(ep[i]);
		eventbuf_poller_free(p[i]);
	}
	if (kind == CLOSE_SHUTDOWN)
		assert_int_equal(setup(NULL), 0);	/* for teardown */
}

static void test_poller_close_key(void **state)
{
	(void)state;
	close_from_thread(CLOSE_KEY, CLOSE_SUBS, every, -ECONNRESET);
}

static void test_poller_close_tag(void **state)
{
	(void)state;
	close_from_thread(CLOSE_TAG, CLOSE_SUBS / 2, odd, -ECONNRESET);
}

static void test_poller_shutdown(void **state)
{
	(void)state;
	close_from_thread(CLOSE_SHUTDOWN, 0, every, -ESHUTDOWN);
}

/*
 * 2,000 parked subscriptions that read nothing while 100 events go by,
 * with a lag limit of 32: each is reported and reads -ENOBUFS.
 */
static void test_poller_lag_limit(void **state)
{
	struct eventbuf_poller *p[2];
	struct obj *objs;
	int ep[2];

	(void)state;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(poller_new(&p[i]), 0);
		ep[i] = outer_epoll(p[i], i == 1);
	}
	objs = parked_subs(p, 32);
	for (uint64_t e = 0; e < 100; e++)
		assert_int_equal(publish("k", SNAP_INDEX + 1 + e), 0);
	expect_closed(ep, p, objs, every, -ENOBUFS);
	for (int i = 0; i < CLOSE_SUBS; i++)
		assert_int_equal(objs[i].count, 0);
	free_subs(objs, p);
	for (int i = 0; i < 2; i++) {
		close(ep[i]);
		eventbuf_poller_free(p[i]);
	}
}

/* ---------------------------------------------------------------------- */

/* Detaching: nothing is reported afterwards; -ENOENT for another poller. */
static void test_poller_detach(void **state)
{
	struct eventbuf_poller *p, *q;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	struct obj r = { 0 }, s = { .next = SNAP_INDEX + 1 };
	struct eventbuf_poller_stats st;

	(void)state;
	assert_int_equal(poller_new(&p), 0);
	assert_int_equal(poller_new(&q), 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r.r), 0);
	eventbuf_item_put(head);
	s.s = sub_new("k", 0, 0);
	assert_int_equal(eventbuf_poller_add_reader(p, r.r, &r), 0);
	assert_int_equal(eventbuf_poller_add_sub(p, s.s, &s), 0);
	ready_all(p);
	st = pstats(p);
	assert_int_equal(st.attached, 2);
	assert_int_equal(st.parked, 2);
	assert_int_equal(st.links, 2);

	assert_int_equal(eventbuf_poller_del_reader(q, r.r), -ENOENT);
	assert_int_equal(eventbuf_poller_del_sub(q, s.s), -ENOENT);
	assert_int_equal(eventbuf_poller_del_reader(p, r.r), 0);
	assert_int_equal(eventbuf_poller_del_sub(p, s.s), 0);
	assert_int_equal(eventbuf_poller_del_reader(p, r.r), -ENOENT);
	assert_int_equal(eventbuf_poller_del_sub(p, s.s), -ENOENT);
	st = pstats(p);
	assert_int_equal(st.attached, 0);
	assert_int_equal(st.parked, 0);
	assert_int_equal(st.links, 0);

	assert_int_equal(append_batch(buf, 0, 1, NULL), 0);
	assert_int_equal(publish("k", SNAP_INDEX + 1), 0);
	assert_int_equal(eventbuf_poller_ready(p, &(struct eventbuf_poll_event){ 0 }, 1), 0);
	assert_int_equal(r.reports, 1);
	assert_int_equal(s.reports, 1);
	/* The pollers' own eventfds and the links' (in use or pooled). */
	assert_int_equal(count_eventfds(), 2 + (int)open_eventfds());

	/* Detached, they work on their own, and attach again elsewhere. */
	{
		const struct eventbuf_item *it;
		const struct eventbuf_event *ev;
		size_t n;

		assert_int_equal(eventbuf_reader_next(r.r, 1000, -1, &it), 0);
		assert_int_equal(eventbuf_item_events(it)[0].index, 0);
		assert_int_equal(eventbuf_sub_next(s.s, 1000, -1, &ev, &n), 0);
		assert_int_equal(ev->index, SNAP_INDEX + 1);
		r.next = 1;
	}
	assert_int_equal(eventbuf_poller_add_reader(q, r.r, &r), 0);
	assert_int_equal(eventbuf_poller_add_sub(q, s.s, &s), -EBUSY);	/* own fd */
	assert_int_equal(ready_once(q, 4), 1);
	eventbuf_reader_free(r.r);
	eventbuf_unsubscribe(s.s);
	eventbuf_poller_free(p);
	eventbuf_poller_free(q);
	eventbuf_drop(buf);
}

/*
 * Freeing a poller detaches what is attached: the objects are left as
 * they were, and wait on their own or with another poller.
 */
static void test_poller_free_detaches(void **state)
{
	struct eventbuf_poller *p, *q;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	struct obj r = { 0 }, s = { .next = SNAP_INDEX + 1 };
	const struct eventbuf_item *it;
	const struct eventbuf_event *ev;
	size_t n;

	(void)state;
	assert_int_equal(poller_new(&p), 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r.r), 0);
	eventbuf_item_put(head);
	s.s = sub_new("k", 0, 0);
	assert_int_equal(eventbuf_poller_add_reader(p, r.r, &r), 0);
	assert_int_equal(eventbuf_poller_add_sub(p, s.s, &s), 0);
	ready_all(p);
	assert_int_equal(pstats(p).parked, 2);
	eventbuf_poller_free(p);

	assert_int_equal(append_batch(buf, 0, 1, NULL), 0);
	assert_int_equal(publish("k", SNAP_INDEX + 1), 0);
	assert_int_equal(eventbuf_reader_next(r.r, 1000, -1, &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 0);
	assert_int_equal(eventbuf_reader_next_nonblock(r.r, &it), -EAGAIN);
	/* A sub that never had its own descriptor may join another poller. */
	assert_int_equal(eventbuf_sub_next_nonblock(s.s, &ev, &n), 0);
	assert_int_equal(ev->index, SNAP_INDEX + 1);
	r.next = 1;
	s.next = SNAP_INDEX + 2;
	assert_int_equal(poller_new(&q), 0);
	r.reports = s.reports = 0;	/* the attach report may find nothing */
	assert_int_equal(eventbuf_poller_add_reader(q, r.r, &r), 0);
	assert_int_equal(eventbuf_poller_add_sub(q, s.s, &s), 0);
	assert_int_equal(ready_once(q, 4), 2);
	assert_int_equal(append_batch(buf, 1, 1, NULL), 0);
	assert_int_equal(publish("k", SNAP_INDEX + 2), 0);
	assert_int_equal(ready_once(q, 4), 2);
	assert_int_equal(r.next, 2);
	assert_int_equal(s.next, SNAP_INDEX + 3);
	assert_int_equal(r.bad + s.bad + r.empty + s.empty, 0);
	eventbuf_poller_free(q);
	/* And with their own blocking calls once more. */
	assert_int_equal(eventbuf_sub_next(s.s, 0, -1, &ev, &n), -ETIMEDOUT);
	assert_int_equal(eventbuf_sub_next(s.s, 10, -1, &ev, &n), -ETIMEDOUT);
	eventbuf_reader_free(r.r);
	eventbuf_unsubscribe(s.s);
	eventbuf_drop(buf);
}

/* What an attached object refuses, and the errors the header documents. */
static void test_poller_refusals(void **state)
{
	struct eventbuf_poller *p, *q;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	struct eventbuf_reader *r;
	struct eventbuf_subscription *s, *own;
	const struct eventbuf_item *it;
	const struct eventbuf_event *ev;
	struct obj o = { 0 };
	size_t n;
	int fd;

	(void)state;
	assert_int_equal(poller_new(&p), 0);
	assert_int_equal(poller_new(&q), 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	s = sub_new("k", 0, 0);
	assert_int_equal(eventbuf_poller_add_reader(p, r, &o), 0);
	assert_int_equal(eventbuf_poller_add_sub(p, s, &o), 0);
	/* One poller at a time. */
	assert_int_equal(eventbuf_poller_add_reader(q, r, &o), -EBUSY);
	assert_int_equal(eventbuf_poller_add_reader(p, r, &o), -EBUSY);
	assert_int_equal(eventbuf_poller_add_sub(q, s, &o), -EBUSY);
	assert_int_equal(eventbuf_poller_add_sub(p, s, &o), -EBUSY);
	assert_int_equal(pstats(q).attached, 0);
	/* Waited on through the poller only. */
	assert_int_equal(eventbuf_sub_fd(s), -EISCONN);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), -EISCONN);
	assert_int_equal(fd, -1);
	assert_int_equal(eventbuf_reader_next(r, 100, -1, &it), -EISCONN);
	assert_int_equal(eventbuf_reader_next(r, -1, -1, &it), -EISCONN);
	assert_int_equal(eventbuf_sub_next(s, 100, -1, &ev, &n), -EISCONN);
	assert_int_equal(eventbuf_sub_next(s, -1, -1, &ev, &n), -EISCONN);
	/* Not waiting is fine. */
	assert_int_equal(eventbuf_reader_next(r, 0, -1, &it), -ETIMEDOUT);
	assert_int_equal(eventbuf_sub_next(s, 0, -1, &ev, &n), 0);
	assert_true(eventbuf_event_is_end_of_snapshot(ev));
	assert_int_equal(eventbuf_sub_next(s, 0, -1, &ev, &n), -ETIMEDOUT);
	assert_int_equal(pstats(p).parked, 2);
	/* A subscription with its own descriptor stays out of pollers. */
	own = sub_new("k", 0, 0);
	assert_true(eventbuf_sub_fd(own) >= 0);
	assert_int_equal(eventbuf_poller_add_sub(p, own, &o), -EBUSY);
	eventbuf_unsubscribe(own);
	own = sub_new("k", 0, 0);
	assert_int_equal(eventbuf_sub_next(own, 10, -1, &ev, &n), 0);
	assert_int_equal(eventbuf_poller_add_sub(p, own, &o), -EBUSY);
	eventbuf_unsubscribe(own);
	assert_int_equal(pstats(p).attached, 2);

	/* Freeing attached objects detaches them: never reported again. */
	eventbuf_reader_free(r);
	assert_int_equal(pstats(p).attached, 1);
	assert_int_equal(pstats(p).parked, 1);
	eventbuf_unsubscribe(s);
	assert_int_equal(pstats(p).attached, 0);
	assert_int_equal(pstats(p).parked, 0);
	assert_int_equal(pstats(p).links, 0);
	assert_int_equal(append_batch(buf, 0, 1, NULL), 0);
	assert_int_equal(publish("k", SNAP_INDEX + 1), 0);
	{
		struct eventbuf_poll_event pe;
		uint64_t reports = pstats(p).reports;

		assert_int_equal(eventbuf_poller_ready(p, &pe, 1), 0);
		assert_int_equal(eventbuf_poller_wait(p, &pe, 1, 10, -1),
				 -ETIMEDOUT);
		assert_int_equal(pstats(p).reports, reports);
	}
	eventbuf_poller_free(p);
	eventbuf_poller_free(q);
	eventbuf_drop(buf);
}

/* An object freed while reported (on the ready list) is not handed out. */
static void test_poller_free_while_ready(void **state)
{
	struct eventbuf_poller *p;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	struct eventbuf_reader *r[3];
	struct eventbuf_subscription *s;
	struct eventbuf_poll_event evs[8];
	int n;

	(void)state;
	assert_int_equal(poller_new(&p), 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(eventbuf_reader_new(head, &r[i]), 0);
		assert_int_equal(eventbuf_poller_add_reader(p, r[i], NULL), 0);
	}
	eventbuf_item_put(head);
	s = sub_new("k", 0, 0);
	assert_int_equal(eventbuf_poller_add_sub(p, s, NULL), 0);
	/* All four are reported at attach; free two before collecting. */
	eventbuf_reader_free(r[1]);
	eventbuf_unsubscribe(s);
	n = eventbuf_poller_ready(p, evs, 8);
	assert_int_equal(n, 2);
	for (int i = 0; i < n; i++) {
		assert_null(evs[i].sub);
		assert_true(evs[i].reader == r[0] || evs[i].reader == r[2]);
	}
	eventbuf_reader_free(r[0]);
	eventbuf_reader_free(r[2]);
	assert_int_equal(pstats(p).attached, 0);
	eventbuf_poller_free(p);
	eventbuf_drop(buf);
}

/* ---------------------------------------------------------------------- */

#define RECYCLE_KEYS	64

/*
 * A key per subscriber: every delivery parks its subscriber on a fresh
 * link. Once warm, that costs no new registration (the link's eventfd is
 * a recycled one the poller already watches), the eventfds in use stay
 * about one per key, and no report ever finds nothing to read.
 */
static void test_poller_recycling(void **state)
{
	struct obj objs[RECYCLE_KEYS];
	char keys[RECYCLE_KEYS][16];
	struct eventbuf_poller *p;
	struct eventbuf_poller_stats st;
	uint64_t rounds = scaled(300, 30), warm_adds = 0;
	uint64_t max_efds = 0;
	int ep;

	(void)state;
	memset(objs, 0, sizeof(objs));
	assert_int_equal(poller_new(&p), 0);
	ep = outer_epoll(p, true);
	for (int i = 0; i < RECYCLE_KEYS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		objs[i].s = sub_new(keys[i], 0, 0);
		objs[i].next = SNAP_INDEX + 1;
		assert_int_equal(eventbuf_poller_add_sub(p, objs[i].s, &objs[i]), 0);
	}
	ready_all(p);
	for (uint64_t round = 0; round < rounds; round++) {
		for (int i = 0; i < RECYCLE_KEYS; i++)
			assert_int_equal(publish(keys[i], SNAP_INDEX + 1 + round), 0);
		set_want(objs, RECYCLE_KEYS, SNAP_INDEX + 2 + round);
		loop_until(ep, p, objs, RECYCLE_KEYS, EVS_MAX);
		/* The links the snapshots led to keep their eventfds until
		 * the snapshots are reclaimed (a grace period later). */
		if (round == 1)
			eventbuf_barrier();
		if (round == 3)
			warm_adds = pstats(p).epoll_adds;
		if (round >= 2 && open_eventfds() > max_efds)
			max_efds = open_eventfds();
	}
	st = pstats(p);
	printf("# %llu deliveries: %llu epoll adds (%llu warm), %llu wake-ups, %llu stale, %llu eventfds at most\n",
	       (unsigned long long)(rounds * RECYCLE_KEYS),
	       (unsigned long long)st.epoll_adds,
	       (unsigned long long)warm_adds,
	       (unsigned long long)st.wakeups, (unsigned long long)st.stale,
	       (unsigned long long)max_efds);
	assert_objs(objs, RECYCLE_KEYS, SNAP_INDEX + 1 + rounds, rounds);
	/* Far fewer registrations than deliveries once warm. */
	assert_true(st.epoll_adds - warm_adds <= rounds * RECYCLE_KEYS / 20);
	/* One eventfd per parked link, plus the idle pool (8). */
	assert_true(max_efds <= RECYCLE_KEYS + 8);
	assert_int_equal(st.links, RECYCLE_KEYS);
	for (int i = 0; i < RECYCLE_KEYS; i++)
		eventbuf_unsubscribe(objs[i].s);
	close(ep);
	eventbuf_poller_free(p);
}

#define HOME_KEYS	128	/* more than the shared pool holds */

/* One of the two loops of test_poller_descriptors_go_home(). */
struct home_loop {
	struct eventbuf_poller *p;
	struct obj objs[HOME_KEYS];
	int turn;			/* its phase of each round: 1 or 2 */
	pthread_barrier_t *step;
	uint64_t rounds;
	bool late;			/* a round it did not catch up in */
	uint64_t warm_adds, adds;
};

/*
 * Wait on @p and read until every object has read up to its ->want. On a
 * loop's thread: no cmocka assertion here (group_events(), not
 * read_groups()); the test thread checks the objects after the join.
 */
static bool catch_up(struct eventbuf_poller *p, struct obj *objs, size_t n)
{
	struct eventbuf_poll_event evs[EVS_MAX];
	int64_t deadline = now_ms() + 10000;

	while (!caught_up(objs, n)) {
		int left = (int)(deadline - now_ms());
		int got;

		if (left <= 0)
			return false;
		got = eventbuf_poller_wait(p, evs, EVS_MAX, left, -1);
		if (got < 0 && got != -ETIMEDOUT)
			return false;
		for (int i = 0; i < got; i++)
			handle(&evs[i]);
		group_events(p);
	}
	return true;
}

static uint64_t epoll_adds(struct eventbuf_poller *p)
{
	struct eventbuf_poller_stats st;

	return eventbuf_poller_stats(p, &st) ? UINT64_MAX : st.epoll_adds;
}

/* Each round: the test thread publishes, then loop 1 reads, then loop 2. */
static void *home_run(void *arg)
{
	struct home_loop *l = arg;

	for (uint64_t round = 0; round < l->rounds; round++) {
		for (int phase = 0; phase < 3; phase++) {
			if (phase == l->turn &&
			    !catch_up(l->p, l->objs, HOME_KEYS))
				l->late = true;
			pthread_barrier_wait(l->step);
		}
		if (round == 3)
			l->warm_adds = epoll_adds(l->p);
	}
	l->adds = epoll_adds(l->p);
	return NULL;
}

/*
 * Two event loops on threads of their own serve the same keys, and the
 * first always arms each key's next link, so the second always lets go
 * of the last one: the descriptors it lets go of must come back to the
 * loops that watch them (fdpool.c, "Descriptors go home"), not be closed
 * for a shared pool that is full while the first makes new ones. Once
 * warm, neither loop registers descriptors, and the eventfds open stay
 * within the two links per key in flight.
 */
static void test_poller_descriptors_go_home(void **state)
{
	static struct home_loop loops[2];
	char keys[HOME_KEYS][16];
	pthread_barrier_t step;
	pthread_t tids[2];
	uint64_t rounds = scaled(60, 12), max_efds = 0;

	(void)state;
	memset(loops, 0, sizeof(loops));
	assert_int_equal(pthread_barrier_init(&step, NULL, 3), 0);
	for (int k = 0; k < HOME_KEYS; k++)
		snprintf(keys[k], sizeof(keys[k]), "k%d", k);
	for (int i = 0; i < 2; i++) {
		struct home_loop *l = &loops[i];

		assert_int_equal(poller_new(&l->p), 0);
		l->turn = i + 1;
		l->step = &step;
		l->rounds = rounds;
		for (int k = 0; k < HOME_KEYS; k++) {
			l->objs[k].s = sub_new(keys[k], 0, 0);
			l->objs[k].next = SNAP_INDEX + 1;
			assert_int_equal(eventbuf_poller_add_sub(l->p,
					l->objs[k].s, &l->objs[k]), 0);
		}
		ready_all(l->p);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&tids[i], NULL, home_run,
						&loops[i]), 0);
	for (uint64_t round = 0; round < rounds; round++) {
		/* The links the snapshots led to: as in the test above. */
		if (round == 1)
			eventbuf_barrier();
		for (int k = 0; k < HOME_KEYS; k++)
			assert_int_equal(publish(keys[k], SNAP_INDEX + 1 + round), 0);
		for (int i = 0; i < 2; i++)
			set_want(loops[i].objs, HOME_KEYS, SNAP_INDEX + 2 + round);
		for (int phase = 0; phase < 3; phase++)
			pthread_barrier_wait(&step);
		if (round >= 2 && open_eventfds() > max_efds)
			max_efds = open_eventfds();
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(tids[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		struct home_loop *l = &loops[i];

		printf("# loop %d: %llu epoll adds, %llu once warm; %llu eventfds at most\n",
		       i, (unsigned long long)l->adds,
		       (unsigned long long)(l->adds - l->warm_adds),
		       (unsigned long long)max_efds);
		assert_false(l->late);
		assert_true(l->warm_adds != UINT64_MAX && l->adds != UINT64_MAX);
		assert_objs(l->objs, HOME_KEYS, SNAP_INDEX + 1 + rounds, rounds);
		assert_true(l->adds - l->warm_adds <= rounds * HOME_KEYS / 100);
		for (int k = 0; k < HOME_KEYS; k++)
			eventbuf_unsubscribe(l->objs[k].s);
		eventbuf_poller_free(l->p);
	}
	/* Two links per key; the test thread's and loops' caches. */
	assert_true(max_efds <= 2 * HOME_KEYS + 3 * 4);
	pthread_barrier_destroy(&step);
}

/*
 * A descriptor handed to the caller (eventbuf_reader_wait_fd(),
 * eventbuf_item_wait_fd()) may sit in the caller's epoll set for ever: it
 * is closed when its link is done (or kept for the next link of the one
 * reader it was handed to, and closed when that reader is freed), never
 * pooled, so that set never fires again while pollers churn through
 * recycled descriptors.
 */
static void test_poller_exported_not_recycled(void **state)
{
	struct eventbuf_item *head, *ihead;
	struct eventbuf_poller *p;
	struct eventbuf_reader *r;
	struct eventbuf *buf, *ibuf;
	const struct eventbuf_item *it;
	struct epoll_event ev = { .events = EPOLLIN };
	struct obj objs[RECYCLE_KEYS];
	char keys[RECYCLE_KEYS][16];
	int user_ep, fd, ifd, pep;

	(void)state;
	user_ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(user_ep >= 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), 1);
	assert_int_equal(epoll_ctl(user_ep, EPOLL_CTL_ADD, fd, &ev), 0);
	assert_int_equal(eventbuf_new(&ibuf), 0);
	assert_int_equal(eventbuf_head(ibuf, &ihead), 0);
	assert_int_equal(eventbuf_item_wait_fd(ihead, &ifd), 0);
	assert_int_equal(epoll_ctl(user_ep, EPOLL_CTL_ADD, ifd, &ev), 0);
	/* Both links are written and done with. */
	assert_int_equal(append_batch(buf, 0, 1, NULL), 0);
	assert_int_equal(append_batch(ibuf, 0, 1, NULL), 0);
	assert_int_equal(epoll_wait(user_ep, &ev, 1, 1000), 1);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
	eventbuf_reader_free(r);
	eventbuf_item_put(ihead);
	eventbuf_drop(buf);
	eventbuf_drop(ibuf);
	/* Closed at once (no barrier, which would empty the pool): the
	 * kernel dropped them from the caller's set. */
	assert_int_equal(epoll_wait(user_ep, &ev, 1, 0), 0);

	/* Churn: many links, recycled descriptors, some with those numbers. */
	memset(objs, 0, sizeof(objs));
	assert_int_equal(poller_new(&p), 0);
	pep = outer_epoll(p, false);
	for (int i = 0; i < RECYCLE_KEYS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		objs[i].s = sub_new(keys[i], 0, 0);
		objs[i].next = SNAP_INDEX + 1;
		assert_int_equal(eventbuf_poller_add_sub(p, objs[i].s, &objs[i]), 0);
	}
	ready_all(p);
	for (uint64_t round = 0; round < 20; round++) {
		for (int i = 0; i < RECYCLE_KEYS; i++)
			assert_int_equal(publish(keys[i], SNAP_INDEX + 1 + round), 0);
		set_want(objs, RECYCLE_KEYS, SNAP_INDEX + 2 + round);
		loop_until(pep, p, objs, RECYCLE_KEYS, EVS_MAX);
		assert_int_equal(epoll_wait(user_ep, &ev, 1, 0), 0);
	}
	assert_objs(objs, RECYCLE_KEYS, SNAP_INDEX + 21, 20);
	for (int i = 0; i < RECYCLE_KEYS; i++)
		eventbuf_unsubscribe(objs[i].s);
	close(pep);
	eventbuf_poller_free(p);
	close(user_ep);
}

/* ---------------------------------------------------------------------- */

/*
 * Two links in a row on one poller's descriptors: r1 reads @a, was watched
 * and parked; r2, added later by the test, reads @b.
 */
struct relink {
	struct eventbuf_poller *p;
	struct eventbuf *a, *b;
	struct eventbuf_reader *r1, *r2;
};

/* A reader of @buf from its head, added to @p. */
static void poller_add_head_reader(struct eventbuf_poller *p,
				   struct eventbuf *buf,
				   struct eventbuf_reader **r)
{
	struct eventbuf_item *head;

	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, r), 0);
	eventbuf_item_put(head);
	assert_int_equal(eventbuf_poller_add_reader(p, *r, NULL), 0);
}

static void relink_start(struct relink *t)
{
	struct eventbuf_poll_event pe;
	const struct eventbuf_item *it;

	memset(t, 0, sizeof(*t));
	assert_int_equal(poller_new(&t->p), 0);
	assert_int_equal(eventbuf_new(&t->a), 0);
	assert_int_equal(eventbuf_new(&t->b), 0);
	poller_add_head_reader(t->p, t->a, &t->r1);
	assert_int_equal(eventbuf_poller_ready(t->p, &pe, 1), 1);
	assert_int_equal(eventbuf_reader_next_nonblock(t->r1, &it), -EAGAIN);
}

/* r1 was freed by the test. */
static void relink_end(struct relink *t)
{
	eventbuf_reader_free(t->r2);
	eventbuf_poller_free(t->p);
	eventbuf_drop(t->a);
	eventbuf_drop(t->b);
}

/*
 * A wake-up left queued for a descriptor that has moved on to another
 * link (its old link was written, its waiter left, and it was recycled)
 * reports nobody; the new link's own write then does.
 */
static void test_poller_no_stale_report(void **state)
{
	struct relink t;
	struct eventbuf_poll_event pe;
	const struct eventbuf_item *it;
	uint64_t adds;

	(void)state;
	relink_start(&t);
	adds = pstats(t.p).epoll_adds;
	/* Written, then left before the poller looked: the descriptor goes
	 * back to the pool with its wake-up still queued in the poller. */
	assert_int_equal(append_batch(t.a, 0, 1, NULL), 0);
	eventbuf_reader_free(t.r1);
	poller_add_head_reader(t.p, t.b, &t.r2);
	assert_int_equal(eventbuf_reader_next_nonblock(t.r2, &it), -EAGAIN);
	/* r2 parked on the recycled descriptor, already watched. */
	assert_int_equal(pstats(t.p).epoll_adds, adds);
	assert_int_equal(pstats(t.p).parked, 1);
	assert_int_equal(eventbuf_poller_ready(t.p, &pe, 1), 0);
	assert_true(pstats(t.p).stale <= 1);	/* the reset may have unqueued it */
	assert_int_equal(pstats(t.p).parked, 1);
	assert_int_equal(append_batch(t.b, 0, 1, NULL), 0);
	assert_int_equal(eventbuf_poller_wait(t.p, &pe, 1, 2000, -1), 1);
	assert_ptr_equal(pe.reader, t.r2);
	assert_int_equal(eventbuf_reader_next_nonblock(t.r2, &it), 0);
	relink_end(&t);
}

/*
 * A descriptor the poller watched is closed, and its number comes back
 * as a new eventfd for another link: the poller registers that one (it
 * is a new file), so its write is heard.
 */
static void test_poller_reused_number(void **state)
{
	struct relink t;
	struct eventbuf_poll_event pe;
	const struct eventbuf_item *it;
	uint64_t adds;

	(void)state;
	relink_start(&t);
	assert_int_equal(append_batch(t.a, 0, 1, NULL), 0);
	eventbuf_reader_free(t.r1);	/* the link is done: pooled */
	eventbuf_barrier();		/* closes the pooled descriptor */
	assert_int_equal(open_eventfds(), 0);
	adds = pstats(t.p).epoll_adds;
	poller_add_head_reader(t.p, t.b, &t.r2);
	assert_int_equal(eventbuf_poller_ready(t.p, &pe, 1), 1);
	assert_int_equal(eventbuf_reader_next_nonblock(t.r2, &it), -EAGAIN);
	assert_int_equal(pstats(t.p).epoll_adds, adds + 1);
	assert_int_equal(append_batch(t.b, 0, 1, NULL), 0);
	assert_int_equal(eventbuf_poller_wait(t.p, &pe, 1, 2000, -1), 1);
	assert_ptr_equal(pe.reader, t.r2);
	relink_end(&t);
}

/* malloc()'s bytes in use (0 where a tool replaces malloc()). */
static long heap_kb(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (long)((mi.uordblks + mi.hblkhd) / 1024);
}

/*
 * A service's eventfds take numbers above its sockets'. With 16,000
 * descriptors open below them, a poller works as before, and what it keeps
 * per descriptor number is a chunk around the ones it watches, not 48
 * bytes for every number below them (1.5 MiB here). Measured in malloc()'s
 * bytes in use: the resident set of a test binary that already freed more
 * than that would not grow.
 */
static void test_poller_high_descriptor_numbers(void **state)
{
	enum { FILL = 16000 };
	struct obj o = { .next = SNAP_INDEX + 1 };
	struct eventbuf_poll_event pe;
	struct eventbuf_poller *p;
	struct rlimit rl, was;
	int *fill;
	long heap0, grew;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
	if (was.rlim_max < FILL + 1000) {
		printf("# skipped: the descriptor limit %llu is too low\n",
		       (unsigned long long)was.rlim_max);
		skip();
	}
	rl = was;
	rl.rlim_cur = rl.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	fill = calloc(FILL, sizeof(*fill));
	assert_non_null(fill);
	for (int i = 0; i < FILL; i++)
		assert_true((fill[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
	o.s = sub_new("k", 0, 0);
	assert_int_equal(poller_new(&p), 0);
	heap0 = heap_kb();
	assert_int_equal(eventbuf_poller_add_sub(p, o.s, &o), 0);
	assert_int_equal(eventbuf_poller_ready(p, &pe, 1), 1);
	handle(&pe);			/* the snapshot, then it parks */
	assert_int_equal(pstats(p).parked, 1);
	grew = heap_kb() - heap0;
	printf("# a poller parked on an eventfd above %d descriptors: "
	       "malloc() +%ld KiB\n", FILL, grew);
	for (uint64_t i = SNAP_INDEX + 1; i <= SNAP_INDEX + 10; i++)
		assert_int_equal(publish("k", i), 0);
	assert_int_equal(eventbuf_poller_wait(p, &pe, 1, 2000, -1), 1);
	handle(&pe);
	assert_int_equal(o.count, 10);
	assert_int_equal(o.bad, 0);
	assert_int_equal(o.error, 0);
	eventbuf_unsubscribe(o.s);
	eventbuf_poller_free(p);
	for (int i = 0; i < FILL; i++)
		close(fill[i]);
	free(fill);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
	assert_true(grew < 512);
}

/*
 * Subscriptions closed by the publisher wait in the poller's inbox until
 * it runs; unsubscribing some of them first (the first, last and every
 * third one pushed) takes each out of the inbox wherever it sits, and the
 * poller then reports exactly the others, each with the close code.
 */
static void test_poller_unsubscribe_while_kicked(void **state)
{
	enum { N = 30 };
	struct eventbuf_subscription *subs[N];
	struct eventbuf_poll_event evs[N + 1];
	const struct eventbuf_event *ev;
	struct eventbuf_poller *p;
	bool gone[N] = { false }, seen[N] = { false };
	size_t n;
	int got, left = 0;

	(void)state;
	assert_int_equal(poller_new(&p), 0);
	for (int i = 0; i < N; i++) {
		subs[i] = sub_new("k", 0, 0);
		assert_int_equal(eventbuf_poller_add_sub(p, subs[i],
							 (void *)(intptr_t)i), 0);
	}
	/* The attach reports; each reads its snapshot's end, then parks. */
	assert_int_equal(eventbuf_poller_ready(p, evs, N + 1), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(eventbuf_sub_next_nonblock(subs[i], &ev, &n), 0);
		assert_true(eventbuf_event_is_end_of_snapshot(ev));
		assert_int_equal(eventbuf_sub_next_nonblock(subs[i], &ev, &n),
				 -EAGAIN);
	}
	assert_int_equal(pstats(p).parked, N);
	assert_int_equal(eventbuf_publisher_close_key(pub, "t", "k"), N);
	for (int i = 0; i < N; i++) {
		gone[i] = i == 0 || i == N - 1 || i % 3 == 1;
		if (gone[i])
			eventbuf_unsubscribe(subs[i]);
		else
			left++;
	}
	assert_int_equal(pstats(p).attached, left);
	got = eventbuf_poller_ready(p, evs, N + 1);
	assert_int_equal(got, left);
	for (int j = 0; j < got; j++) {
		int i = (int)(intptr_t)evs[j].data;

		assert_true(i >= 0 && i < N);
		assert_false(gone[i]);
		assert_false(seen[i]);
		seen[i] = true;
		assert_ptr_equal(evs[j].sub, subs[i]);
		assert_int_equal(eventbuf_sub_next_nonblock(subs[i], &ev, &n),
				 -ECONNRESET);
	}
	assert_int_equal(eventbuf_poller_ready(p, evs, N + 1), 0);
	for (int i = 0; i < N; i++)
		if (!gone[i])
			eventbuf_unsubscribe(subs[i]);
	eventbuf_poller_free(p);
}

/* ---------------------------------------------------------------------- */

#define GROUP_SUBS 10

static void group_setup(struct eventbuf_poller **p, struct obj *objs, int n,
			uint64_t lag_limit)
{
	assert_int_equal(eventbuf_poller_new(p), 0);
	assert_int_equal(eventbuf_poller_enable_groups(*p), 0);
	memset(objs, 0, (size_t)n * sizeof(*objs));
	for (int i = 0; i < n; i++) {
		objs[i].s = sub_new("k", 0, lag_limit);
		objs[i].next = SNAP_INDEX + 1;
		assert_int_equal(eventbuf_poller_add_sub(*p, objs[i].s,
							 &objs[i]), 0);
	}
	assert_int_equal(ready_once(*p, EVS_MAX), n);	/* park them */
	assert_int_equal(pstats(*p).parked, (uint64_t)n);
}

/* Open the group of @p: @count members, all of @objs[0, @n). */
static void open_group(struct eventbuf_poller *p, struct obj *objs, int n,
		       int count)
{
	struct eventbuf_poll_event evs[4];
	struct eventbuf_poll_group g;

	assert_int_equal(eventbuf_poller_ready(p, evs, 4), 0);
	assert_int_equal(eventbuf_poller_group(p, &g), 1);
	assert_int_equal(g.count, (size_t)count);
	for (size_t m = 0; m < g.count; m++)
		assert_true((struct obj *)g.members[m].data >= objs &&
			    (struct obj *)g.members[m].data < objs + n);
}

/* The next batch of the open group is @index alone; @objs see it. */
static void group_batch(struct eventbuf_poller *p, struct obj *objs, int n,
			uint64_t index, const bool *skip)
{
	const struct eventbuf_event *ev;
	size_t nev;

	assert_int_equal(eventbuf_poller_group_next(p, &ev, &nev), 0);
	assert_int_equal(nev, 1);
	assert_int_equal(ev[0].index, index);
	for (int i = 0; i < n; i++)
		if (!skip || !skip[i])
			see(&objs[i], ev, nev);
}

/*
 * What a careless loop does with an open group: a member read on its own,
 * a member unsubscribed, eventbuf_poller_ready() called, the poller freed.
 * Each member reads every event once, in order: nothing twice, nothing
 * lost.
 */
static void test_poller_group_misuse(void **state)
{
	struct obj objs[GROUP_SUBS];
	bool skip[GROUP_SUBS] = { true, true };	/* read alone; gone */
	bool gone[GROUP_SUBS] = { false, true };
	struct eventbuf_poll_group g;
	struct eventbuf_poll_event evs[EVS_MAX];
	const struct eventbuf_event *ev;
	struct eventbuf_poller *p;
	size_t nev;

	(void)state;
	group_setup(&p, objs, GROUP_SUBS, 0);
	for (uint64_t e = 2; e <= 4; e++)
		assert_int_equal(publish("k", e), 0);
	open_group(p, objs, GROUP_SUBS, GROUP_SUBS);
	group_batch(p, objs, GROUP_SUBS, 2, NULL);
	/* Member 0 reads on its own: from where the group got to. */
	assert_int_equal(eventbuf_sub_next_nonblock(objs[0].s, &ev, &nev), 0);
	assert_int_equal(ev[0].index, 3);
	see(&objs[0], ev, nev);
	/* Member 1 goes; the array still names it, the loop skips it. */
	eventbuf_unsubscribe(objs[1].s);
	objs[1].s = NULL;
	group_batch(p, objs, GROUP_SUBS, 3, skip);
	/* ready() closes the group: the rest are reported one by one and
	 * read on from 4; so is member 0, which left by reading. */
	assert_int_equal(eventbuf_poller_ready(p, evs, EVS_MAX),
			 GROUP_SUBS - 1);
	for (int i = 0; i < GROUP_SUBS - 1; i++)
		handle(&evs[i]);
	assert_int_equal(eventbuf_poller_group_next(p, &ev, &nev), -EAGAIN);
	assert_null(ev);
	assert_int_equal(nev, 0);
	for (int i = 0; i < GROUP_SUBS; i++)
		if (i != 1)
			assert_int_equal(objs[i].next, 5);
	/* All parked on their own again: the next event is a group of 9. */
	assert_int_equal(publish("k", 5), 0);
	open_group(p, objs, GROUP_SUBS, GROUP_SUBS - 1);
	assert_int_equal(pstats(p).reports, GROUP_SUBS + GROUP_SUBS +
			 (GROUP_SUBS - 1) + (GROUP_SUBS - 1));
	group_batch(p, objs, GROUP_SUBS, 5, gone);
	assert_int_equal(eventbuf_poller_group_next(p, &ev, &nev), -EAGAIN);
	assert_int_equal(pstats(p).parked, GROUP_SUBS - 1);
	/* Read to the tip, not yet armed: no entry until the pass ends. */
	assert_int_equal(pstats(p).links, 0);
	assert_int_equal(eventbuf_poller_group(p, &g), 0);
	assert_int_equal(pstats(p).links, 1);
	/* Freed with a group open: the members read on alone from there. */
	assert_int_equal(publish("k", 6), 0);
	open_group(p, objs, GROUP_SUBS, GROUP_SUBS - 1);
	group_batch(p, objs, GROUP_SUBS, 6, gone);
	eventbuf_poller_free(p);
	assert_int_equal(publish("k", 7), 0);
	for (int i = 0; i < GROUP_SUBS; i++) {
		if (i == 1)
			continue;
		assert_int_equal(eventbuf_sub_next_nonblock(objs[i].s, &ev,
							    &nev), 0);
		assert_int_equal(ev[0].index, 7);
		see(&objs[i], ev, nev);
		assert_int_equal(eventbuf_sub_next_nonblock(objs[i].s, &ev,
							    &nev), -EAGAIN);
		assert_int_equal(objs[i].next, 8);
		assert_int_equal(objs[i].bad, 0);
		eventbuf_unsubscribe(objs[i].s);
	}
}

/*
 * Members closed by the publisher while their group is open read the
 * group's batches to its end, then are reported with the code.
 */
static void test_poller_group_close(void **state)
{
	struct obj objs[GROUP_SUBS];
	const struct eventbuf_event *ev;
	struct eventbuf_poller *p;
	size_t nev;

	(void)state;
	group_setup(&p, objs, GROUP_SUBS, 0);
	for (uint64_t e = 2; e <= 3; e++)
		assert_int_equal(publish("k", e), 0);
	open_group(p, objs, GROUP_SUBS, GROUP_SUBS);
	group_batch(p, objs, GROUP_SUBS, 2, NULL);
	assert_int_equal(eventbuf_publisher_close_key(pub, "t", "k"),
			 GROUP_SUBS);
	group_batch(p, objs, GROUP_SUBS, 3, NULL);
	assert_int_equal(eventbuf_poller_group_next(p, &ev, &nev), -EAGAIN);
	assert_int_equal(ready_once(p, EVS_MAX), GROUP_SUBS);
	for (int i = 0; i < GROUP_SUBS; i++) {
		assert_int_equal(objs[i].term, -ECONNRESET);
		assert_int_equal(objs[i].next, 4);
		assert_int_equal(objs[i].bad, 0);
		eventbuf_unsubscribe(objs[i].s);
	}
	assert_int_equal(pstats(p).links, 0);
	eventbuf_poller_free(p);
}

/*
 * Two cohorts that read up to the same link become one: ten subscriptions
 * parked together, an eleventh read ahead on its own; after both read on
 * through groups, the next event comes as one group of eleven. With a lag
 * limit, the merged members go on telling the lag check how far they are.
 */
static void test_poller_group_merge(void **state)
{
	struct obj objs[GROUP_SUBS + 1];
	const struct eventbuf_event *ev;
	struct eventbuf_poller *p;
	struct obj *s = &objs[GROUP_SUBS];
	uint64_t e = 2;
	size_t nev;

	(void)state;
	grouped = 0;
	group_setup(&p, objs, GROUP_SUBS + 1, 8);
	assert_int_equal(publish("k", e++), 0);
	assert_int_equal(ready_once(p, EVS_MAX), GROUP_SUBS + 1);
	/* All eleven parked as one. The last reads 3 on its own: it leaves
	 * and parks alone one link further. */
	assert_int_equal(publish("k", e++), 0);
	assert_int_equal(eventbuf_sub_next_nonblock(s->s, &ev, &nev), 0);
	see(s, ev, nev);
	assert_int_equal(eventbuf_sub_next_nonblock(s->s, &ev, &nev), -EAGAIN);
	assert_int_equal(publish("k", e++), 0);
	/* Both fire: two groups, which park at the same link. */
	assert_int_equal(ready_once(p, EVS_MAX), GROUP_SUBS + 1);
	assert_int_equal(pstats(p).links, 1);
	assert_int_equal(pstats(p).parked, GROUP_SUBS + 1);
	/* One group of eleven. */
	assert_int_equal(publish("k", e), 0);
	open_group(p, objs, GROUP_SUBS + 1, GROUP_SUBS + 1);
	group_batch(p, objs, GROUP_SUBS + 1, e++, NULL);
	assert_int_equal(eventbuf_poller_group_next(p, &ev, &nev), -EAGAIN);
	for (int i = 0; i <= GROUP_SUBS; i++)
		objs[i].reports++;
	for (int round = 0; round < 20; round++) {
		assert_int_equal(publish("k", e++), 0);
		assert_int_equal(publish("k", e++), 0);
		assert_int_equal(ready_once(p, EVS_MAX), GROUP_SUBS + 1);
	}
	assert_objs(objs, GROUP_SUBS + 1, e, e - 2);
	for (int i = 0; i <= GROUP_SUBS; i++)
		assert_int_equal(objs[i].reports, 3 + 1 + 20);
	for (int i = 0; i <= GROUP_SUBS; i++)
		eventbuf_unsubscribe(objs[i].s);
	assert_int_equal(pstats(p).links, 0);
	eventbuf_poller_free(p);
}

/*
 * A batch that straddles the members' snapshot index is not the group's:
 * each member reads it on its own, without the event its snapshot
 * covered; the next batch, wholly above, is the group's again.
 */
static void test_poller_group_straddling_batch(void **state)
{
	struct eventbuf_event ev[2] = {
		{ .index = SNAP_INDEX, .topic = "t", .key = "k" },
		{ .index = SNAP_INDEX + 1, .topic = "t", .key = "k" },
	};
	struct obj objs[GROUP_SUBS];
	struct eventbuf_poller *p;

	(void)state;
	grouped = 0;
	group_setup(&p, objs, GROUP_SUBS, 0);
	assert_int_equal(eventbuf_publish(pub, ev, 2, NULL, NULL), 0);
	ready_all(p);
	assert_int_equal(grouped, 0);
	assert_objs(objs, GROUP_SUBS, SNAP_INDEX + 2, 1);
	assert_int_equal(publish("k", SNAP_INDEX + 2), 0);
	ready_all(p);
	assert_int_equal(grouped, GROUP_SUBS);
	assert_objs(objs, GROUP_SUBS, SNAP_INDEX + 3, 2);
	for (int i = 0; i < GROUP_SUBS; i++)
		eventbuf_unsubscribe(objs[i].s);
	eventbuf_poller_free(p);
}

#define LAG_SUBS	200
#define LAG_LIMIT	16
#define LAG_EVENTS	1000

/*
 * Subscriptions with a lag limit that keep up through groups are never
 * closed: the group tells the lag check how far each member has read.
 */
static void test_poller_group_lag_limit(void **state)
{
	struct obj *objs = calloc(LAG_SUBS, sizeof(*objs));
	struct eventbuf_poller *p;
	uint64_t e = 0;

	(void)state;
	assert_non_null(objs);
	grouped = 0;
	group_setup(&p, objs, LAG_SUBS, LAG_LIMIT);
	while (e < LAG_EVENTS) {
		for (int b = 0; b < LAG_LIMIT / 2; b++, e++)
			assert_int_equal(publish("k", SNAP_INDEX + 1 + e), 0);
		while (ready_once(p, EVS_MAX) > 0)
			;
	}
	assert_int_equal(grouped, (uint64_t)LAG_SUBS * LAG_EVENTS);
	assert_objs(objs, LAG_SUBS, SNAP_INDEX + 1 + LAG_EVENTS, LAG_EVENTS);
	for (int i = 0; i < LAG_SUBS; i++)
		eventbuf_unsubscribe(objs[i].s);
	eventbuf_poller_free(p);
	free(objs);
}

/*
 * A caller that takes no group from a ready() call gets the descriptor
 * fired again by its next ready() (poller.h), even though that call reads
 * the poller's own eventfd back to zero while it collects.
 */
static void test_poller_group_untaken_fires_again(void **state)
{
	struct eventbuf_poll_event evs[4];
	struct pollfd pfd;
	struct eventbuf_poller *p;
	struct obj objs[2];

	(void)state;
	group_setup(&p, objs, 2, 0);
	assert_int_equal(publish("k", SNAP_INDEX + 1), 0);
	assert_int_equal(eventbuf_poller_ready(p, evs, 4), 0);	/* untaken */
	assert_int_equal(eventbuf_poller_ready(p, evs, 4), 0);
	pfd = (struct pollfd){ .fd = eventbuf_poller_fd(p), .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 0), 1);
	while (ready_once(p, EVS_MAX) > 0)
		;
	assert_objs(objs, 2, SNAP_INDEX + 2, 1);
	for (int i = 0; i < 2; i++)
		eventbuf_unsubscribe(objs[i].s);
	eventbuf_poller_free(p);
}

#define OPEN_BATCHES	(8 * EVENTBUF_READER_ANCHOR_STRIDE)

/*
 * Read one group batch by batch while the writer stays one batch ahead,
 * so that the group never reaches the tip and stays open: the @n
 * members of "k" that group_setup() parked. Every member sees every batch.
 */
static void read_open_group(struct eventbuf_poller *p, struct obj *objs,
			    int n, uint64_t batches)
{
	const struct eventbuf_event *ev;
	size_t nev;

	assert_int_equal(publish("k", SNAP_INDEX + 1), 0);
	open_group(p, objs, n, n);
	for (uint64_t b = 1; b <= batches; b++) {
		assert_int_equal(eventbuf_poller_group_next(p, &ev, &nev), 0);
		assert_int_equal(nev, 1);
		assert_int_equal(ev[0].index, SNAP_INDEX + b);
		for (int i = 0; i < n; i++)
			see(&objs[i], ev, nev);
		assert_int_equal(publish("k", SNAP_INDEX + b + 1), 0);
	}
}

/*
 * Members with a lag limit that read every batch of a group that stays
 * open are one batch behind the writer, never closed for lag: the group
 * tells the lag check how far they read with every batch, not only when
 * it goes idle.
 */
static void lag_limit_while_open(uint64_t limit, uint64_t batches)
{
	struct eventbuf_poller *p;
	struct obj objs[2];

	group_setup(&p, objs, 2, limit);
	read_open_group(p, objs, 2, batches);
	while (ready_once(p, EVS_MAX) > 0)
		;
	for (int i = 0; i < 2; i++)
		assert_int_equal(objs[i].term, 0);
	assert_objs(objs, 2, SNAP_INDEX + batches + 2, batches + 1);
	for (int i = 0; i < 2; i++)
		eventbuf_unsubscribe(objs[i].s);
	eventbuf_poller_free(p);
}

static void test_poller_group_lag_limit_while_open(void **state)
{
	(void)state;
	/* Told every batch (a limit below 64)... */
	lag_limit_while_open(4, 64);
	/* ... or every 1/64 of the limit: 10 here, over 3 limits' worth. */
	lag_limit_while_open(640, 2000);
}

/*
 * A group that stays open lets go of what it read, as a lone reader
 * does: after OPEN_BATCHES batches the items still alive are about one
 * anchor stride's worth, not every batch since the group opened.
 */
static void test_poller_group_open_pins_bounded(void **state)
{
	struct eventbuf_poller *p;
	struct eventbuf_stats st;
	struct obj objs[2];

	(void)state;
	group_setup(&p, objs, 2, 0);
	read_open_group(p, objs, 2, OPEN_BATCHES);
	eventbuf_barrier();
	eventbuf_stats(&st);
	print_message("live items after %u open batches: %llu\n",
		      (unsigned int)OPEN_BATCHES,
		      (unsigned long long)st.live_items);
	assert_true(st.live_items <= 3 * EVENTBUF_READER_ANCHOR_STRIDE);
	while (ready_once(p, EVS_MAX) > 0)
		;
	assert_objs(objs, 2, SNAP_INDEX + OPEN_BATCHES + 2, OPEN_BATCHES + 1);
	for (int i = 0; i < 2; i++)
		eventbuf_unsubscribe(objs[i].s);
	eventbuf_poller_free(p);
}

/*
 * A reader polled through its own descriptor, then through a poller, then
 * on its own again: eventbuf_reader_wait_fd() gives the same descriptor,
 * with 0, or with 1 and EPOLL_CTL_ADD answers EEXIST (eventbuf.h); either
 * way the set it is in reports the next append.
 */
static void test_poller_reader_wait_fd_after_detach(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	struct eventbuf_poller *p;
	struct eventbuf_item *head;
	struct eventbuf_reader *r;
	struct eventbuf *buf;
	struct obj o = { 0 };
	int ep, fd1, fd2, ret;

	(void)state;
	ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(ep >= 0);
	assert_int_equal(eventbuf_poller_new(&p), 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd1), 1);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd1, &ev), 0);
	o.r = r;
	assert_int_equal(eventbuf_poller_add_reader(p, r, &o), 0);
	assert_int_equal(ready_once(p, EVS_MAX), 1);	/* parks it */
	assert_int_equal(eventbuf_poller_del_reader(p, r), 0);
	ret = eventbuf_reader_wait_fd(r, &fd2);
	assert_true(ret == 0 || ret == 1);
	assert_int_equal(fd2, fd1);
	if (ret == 1) {
		assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd2, &ev), -1);
		assert_int_equal(errno, EEXIST);
	}
	assert_int_equal(append_batch(buf, 1, 1, NULL), 0);
	assert_int_equal(epoll_wait(ep, &ev, 1, 5000), 1);
	eventbuf_reader_free(r);
	eventbuf_poller_free(p);
	eventbuf_drop(buf);
	close(ep);
}

/* ---- quiet signals ---------------------------------------------------- */

#define QUIET_RING_CELLS	1024	/* src/quiet.h, QUIET_RING */
#define QUIET_POLLERS		15	/* pollers with a ring at a time */

/* A reader of @buf from its head, added to @p with @o as its data. */
static void add_obj_reader(struct eventbuf_poller *p, struct eventbuf *buf,
			   struct obj *o)
{
	poller_add_head_reader(p, buf, &o->r);
	assert_int_equal(eventbuf_poller_del_reader(p, o->r), 0);
	assert_int_equal(eventbuf_poller_add_reader(p, o->r, o), 0);
}

/*
 * A reader at @buf's head that waits on its own descriptor (*fdp), which
 * nothing has made readable yet: it joins the link's waiters loudly.
 */
static struct eventbuf_reader *head_fd_waiter(struct eventbuf *buf, int *fdp)
{
	struct eventbuf_item *head;
	struct eventbuf_reader *r;
	int ret;

	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	ret = eventbuf_reader_wait_fd(r, fdp);
	assert_true(ret == 0 || ret == 1);
	assert_false(fd_readable(*fdp));
	return r;
}

/*
 * @p's descriptor fired for a publish: everything reported is read, and
 * its counts of wake-ups, and of those that came quietly, are now these.
 */
static void expect_woken(struct eventbuf_poller *p, uint64_t quiet,
			 uint64_t wakeups)
{
	assert_true(fd_readable(eventbuf_poller_fd(p)));
	ready_all(p);
	assert_int_equal(pstats(p).quiet, quiet);
	assert_int_equal(pstats(p).wakeups, wakeups);
}

/* @n readers of fresh buffers on @p, each parked on a link of its own. */
static void quiet_readers(struct eventbuf_poller *p, struct eventbuf **bufs,
			  struct obj *objs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(eventbuf_new(&bufs[i]), 0);
		add_obj_reader(p, bufs[i], &objs[i]);
	}
	ready_all(p);
	assert_int_equal(pstats(p).parked, n);
}

static void quiet_readers_free(struct eventbuf **bufs, struct obj *objs,
			       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		eventbuf_reader_free(objs[i].r);
		eventbuf_drop(bufs[i]);
	}
}

/* One event appended to each of @n buffers, the @round-th (from 0). */
static void quiet_round(struct eventbuf **bufs, struct obj *objs, size_t n,
			uint64_t round)
{
	for (size_t i = 0; i < n; i++)
		assert_int_equal(append_batch(bufs[i], round, 1, NULL), 0);
	set_want(objs, n, round + 1);
}

/*
 * Links only one poller waits on are signalled through its ring: its
 * descriptor fires once the writer publishes, every reader is reported
 * and reads its event, and nothing was written to the links' eventfds
 * (a written one would fire as well, for a link already reported: a stale
 * event). Twice, the second time on recycled descriptors.
 */
static void test_poller_quiet_signal(void **state)
{
	struct eventbuf *bufs[3];
	struct obj objs[3] = { 0 };
	struct eventbuf_poller *p;

	(void)state;
	assert_int_equal(poller_new(&p), 0);
	quiet_readers(p, bufs, objs, 3);
	assert_false(fd_readable(eventbuf_poller_fd(p)));
	for (uint64_t round = 0; round < 2; round++) {
		quiet_round(bufs, objs, 3, round);
		expect_woken(p, 3 * (round + 1), 3 * (round + 1));
		assert_objs(objs, 3, round + 1, round + 1);
		assert_int_equal(pstats(p).stale, 0);
		assert_false(fd_readable(eventbuf_poller_fd(p)));
	}
	quiet_readers_free(bufs, objs, 3);
	eventbuf_poller_free(p);
}

/*
 * A blocking reader's descriptor joins a link a poller armed quietly: the
 * writer must write it (it is readable as soon as the append returns),
 * and the poller hears of the link through that write.
 */
static void test_poller_quiet_joined_by_wait_fd(void **state)
{
	struct eventbuf *buf;
	struct obj o = { 0 };
	struct eventbuf_poller *p;
	struct eventbuf_reader *r2;
	const struct eventbuf_item *it;
	int fd;

	(void)state;
	assert_int_equal(poller_new(&p), 0);
	quiet_readers(p, &buf, &o, 1);
	r2 = head_fd_waiter(buf, &fd);
	quiet_round(&buf, &o, 1, 0);
	assert_true(fd_readable(fd));
	ready_all(p);
	assert_objs(&o, 1, 1, 1);
	assert_int_equal(pstats(p).quiet, 0);
	assert_int_equal(pstats(p).wakeups, 1);
	assert_int_equal(eventbuf_reader_next_nonblock(r2, &it), 0);
	eventbuf_reader_free(r2);
	quiet_readers_free(&buf, &o, 1);
	eventbuf_poller_free(p);
}

/*
 * A second poller at a link another armed quietly joins the quiet signal:
 * both are woken through their rings, and the link's eventfd is not
 * written (it would fire as a stale event once the ring reported).
 */
static void test_poller_quiet_joined_by_poller(void **state)
{
	struct eventbuf_poller *p[2];
	struct eventbuf *buf;
	struct obj o[2] = { 0 };

	(void)state;
	assert_int_equal(poller_new(&p[0]), 0);
	assert_int_equal(poller_new(&p[1]), 0);
	quiet_readers(p[0], &buf, &o[0], 1);
	add_obj_reader(p[1], buf, &o[1]);
	ready_all(p[1]);
	assert_int_equal(pstats(p[1]).parked, 1);
	quiet_round(&buf, &o[0], 1, 0);
	set_want(o, 2, 1);
	for (int i = 0; i < 2; i++) {
		expect_woken(p[i], 1, 1);
		assert_int_equal(pstats(p[i]).stale, 0);
	}
	assert_objs(o, 2, 1, 1);
	eventbuf_reader_free(o[1].r);
	quiet_readers_free(&buf, &o[0], 1);
	eventbuf_poller_free(p[0]);
	eventbuf_poller_free(p[1]);
}

/*
 * Three pollers at one link: the second joins the first's quiet signal,
 * the third makes the link loud (the writer writes its eventfd) for all.
 * Then two pollers, and a blocking reader's descriptor joins: loud too,
 * and readable as soon as the append returns.
 */
static void test_poller_quiet_third_waiter(void **state)
{
	struct eventbuf_poller *p[3];
	struct eventbuf *buf;
	struct eventbuf_reader *r;
	const struct eventbuf_item *it;
	struct obj o[3] = { 0 };
	int fd;

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_int_equal(poller_new(&p[i]), 0);
	quiet_readers(p[0], &buf, &o[0], 1);
	for (int i = 1; i < 3; i++) {
		add_obj_reader(p[i], buf, &o[i]);
		ready_all(p[i]);
	}
	quiet_round(&buf, &o[0], 1, 0);
	set_want(o, 3, 1);
	for (int i = 0; i < 3; i++)
		expect_woken(p[i], 0, 1);
	assert_objs(o, 3, 1, 1);
	/* The next link: two pollers, then a blocking reader. */
	eventbuf_reader_free(o[2].r);
	eventbuf_poller_free(p[2]);
	r = head_fd_waiter(buf, &fd);
	quiet_round(&buf, &o[0], 1, 1);
	set_want(o, 2, 2);
	assert_true(fd_readable(fd));
	for (int i = 0; i < 2; i++)
		expect_woken(p[i], 0, 2);
	assert_objs(o, 2, 2, 2);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
	eventbuf_reader_free(r);
	eventbuf_reader_free(o[1].r);
	quiet_readers_free(&buf, &o[0], 1);
	eventbuf_poller_free(p[0]);
	eventbuf_poller_free(p[1]);
}

#define QUIET_FULL	1500	/* links signalled before the poller looks */

/*
 * More links signalled than the ring holds before the poller takes any:
 * the ring's worth come through it, the rest through their eventfds, and
 * every reader reads its event, twice.
 */
static void test_poller_quiet_ring_full(void **state)
{
	struct eventbuf **bufs = calloc(QUIET_FULL, sizeof(*bufs));
	struct obj *objs = calloc(QUIET_FULL, sizeof(*objs));
	struct eventbuf_poller *p;

	(void)state;
	assert_non_null(bufs);
	assert_non_null(objs);
	assert_int_equal(poller_new(&p), 0);
	quiet_readers(p, bufs, objs, QUIET_FULL);
	for (uint64_t round = 0; round < 2; round++) {
		quiet_round(bufs, objs, QUIET_FULL, round);
		ready_all(p);
		assert_objs(objs, QUIET_FULL, round + 1, round + 1);
		assert_int_equal(pstats(p).quiet,
				 QUIET_RING_CELLS * (round + 1));
		assert_int_equal(pstats(p).wakeups, QUIET_FULL * (round + 1));
		assert_int_equal(pstats(p).stale, 0);
	}
	quiet_readers_free(bufs, objs, QUIET_FULL);
	eventbuf_poller_free(p);
	free(bufs);
	free(objs);
}

#define QUIET_MANY	20

/*
 * Pollers past the first 15 alive have no ring and wait on eventfds; a
 * freed poller's ring goes to the next poller made.
 */
static void test_poller_quiet_slots(void **state)
{
	struct eventbuf_poller *p[QUIET_MANY];
	struct eventbuf *bufs[QUIET_MANY];
	struct obj objs[QUIET_MANY] = { 0 };
	int quiet = 0;

	(void)state;
	for (int i = 0; i < QUIET_MANY; i++) {
		assert_int_equal(poller_new(&p[i]), 0);
		quiet_readers(p[i], &bufs[i], &objs[i], 1);
	}
	quiet_round(bufs, objs, QUIET_MANY, 0);
	for (int i = 0; i < QUIET_MANY; i++) {
		ready_all(p[i]);
		quiet += (int)pstats(p[i]).quiet;
		assert_int_equal(pstats(p[i]).wakeups, 1);
	}
	assert_objs(objs, QUIET_MANY, 1, 1);
	assert_int_equal(quiet, QUIET_POLLERS);
	/* The first five go; five new ones get their rings. */
	for (int i = 0; i < 5; i++) {
		eventbuf_reader_free(objs[i].r);
		eventbuf_drop(bufs[i]);
		eventbuf_poller_free(p[i]);
		memset(&objs[i], 0, sizeof(objs[i]));
		assert_int_equal(poller_new(&p[i]), 0);
		quiet_readers(p[i], &bufs[i], &objs[i], 1);
	}
	quiet_round(bufs, objs, 5, 0);
	quiet_round(bufs + 5, objs + 5, QUIET_MANY - 5, 1);
	quiet = 0;
	for (int i = 0; i < QUIET_MANY; i++) {
		ready_all(p[i]);
		if (i < 5)
			quiet += (int)pstats(p[i]).quiet;
	}
	assert_int_equal(quiet, 5);
	assert_objs(objs, 5, 1, 1);
	assert_objs(objs + 5, QUIET_MANY - 5, 2, 2);
	for (int i = 0; i < QUIET_MANY; i++) {
		quiet_readers_free(&bufs[i], &objs[i], 1);
		eventbuf_poller_free(p[i]);
	}
}

/*
 * A poller freed with a quiet signal still queued for it: its reader,
 * detached, reads the event on its own; the poller's descriptors are
 * closed once a grace period passed.
 */
static void test_poller_quiet_free_pending(void **state)
{
	struct eventbuf_poller *p;
	struct eventbuf *buf;
	struct obj o = { 0 };
	const struct eventbuf_item *it;
	int fds;

	(void)state;
	eventbuf_barrier();
	fds = count_fds();
	assert_int_equal(poller_new(&p), 0);
	quiet_readers(p, &buf, &o, 1);
	quiet_round(&buf, &o, 1, 0);
	eventbuf_poller_free(p);
	assert_int_equal(eventbuf_reader_next_nonblock(o.r, &it), 0);
	assert_int_equal(eventbuf_item_events(it)[0].index, 0);
	assert_int_equal(eventbuf_reader_next_nonblock(o.r, &it), -EAGAIN);
	quiet_readers_free(&buf, &o, 1);
	eventbuf_barrier();
	assert_int_equal(count_fds(), fds);
}

static void test_poller_group_bad_input(void **state)
{
	struct eventbuf_poll_group g;
	const struct eventbuf_event *ev = (void *)1;
	struct eventbuf_poller *p;
	size_t n = 1;

	(void)state;
	assert_int_equal(eventbuf_poller_new(&p), 0);
	assert_int_equal(eventbuf_poller_enable_groups(NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_group(NULL, &g), -EINVAL);
	assert_int_equal(eventbuf_poller_group(p, NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_group_next(NULL, &ev, &n), -EINVAL);
	assert_int_equal(eventbuf_poller_group_next(p, NULL, &n), -EINVAL);
	assert_int_equal(eventbuf_poller_group_next(p, &ev, NULL), -EINVAL);
	/* Not enabled, or nothing fired: no group, nothing open. */
	assert_int_equal(eventbuf_poller_group(p, &g), 0);
	assert_null(g.members);
	assert_int_equal(g.count, 0);
	assert_int_equal(eventbuf_poller_group_next(p, &ev, &n), -EAGAIN);
	assert_null(ev);
	assert_int_equal(n, 0);
	eventbuf_poller_free(p);
}

static void test_poller_bad_input(void **state)
{
	struct eventbuf_poll_event evs[2];
	struct eventbuf_poller_stats st;
	struct eventbuf_poller *p;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	struct eventbuf_reader *r;
	struct eventbuf_subscription *s;
	int closed_fd;

	(void)state;
	assert_int_equal(eventbuf_poller_new(NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_fd(NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_stats(NULL, &st), -EINVAL);
	eventbuf_poller_free(NULL);
	assert_int_equal(poller_new(&p), 0);
	assert_int_equal(eventbuf_poller_stats(p, NULL), -EINVAL);
	assert_true(eventbuf_poller_fd(p) >= 0);
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	s = sub_new("k", 0, 0);
	assert_int_equal(eventbuf_poller_add_reader(NULL, r, NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_add_reader(p, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_add_sub(NULL, s, NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_add_sub(p, NULL, NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_del_reader(NULL, r), -EINVAL);
	assert_int_equal(eventbuf_poller_del_reader(p, NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_del_sub(NULL, s), -EINVAL);
	assert_int_equal(eventbuf_poller_del_sub(p, NULL), -EINVAL);
	assert_int_equal(eventbuf_poller_del_reader(p, r), -ENOENT);
	assert_int_equal(eventbuf_poller_del_sub(p, s), -ENOENT);
	assert_int_equal(eventbuf_poller_ready(NULL, evs, 2), -EINVAL);
	assert_int_equal(eventbuf_poller_ready(p, NULL, 2), -EINVAL);
	assert_int_equal(eventbuf_poller_ready(p, evs, 0), -EINVAL);
	assert_int_equal(eventbuf_poller_wait(NULL, evs, 2, 0, -1), -EINVAL);
	assert_int_equal(eventbuf_poller_wait(p, NULL, 2, 0, -1), -EINVAL);
	assert_int_equal(eventbuf_poller_wait(p, evs, 0, 0, -1), -EINVAL);
	assert_int_equal(eventbuf_poller_ready(p, evs, 2), 0);
	assert_int_equal(eventbuf_poller_wait(p, evs, 2, 0, -1), -ETIMEDOUT);
	/* An invalid cancel descriptor. */
	closed_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(closed_fd >= 0);
	close(closed_fd);
	assert_int_equal(eventbuf_poller_wait(p, evs, 2, 100, closed_fd), -EINVAL);
	assert_int_equal(eventbuf_poller_wait(p, evs, 2, 0, closed_fd), -EINVAL);
	assert_int_equal(eventbuf_poller_wait(p, evs, 2, 0, -2), -EINVAL);
	assert_int_equal(eventbuf_poller_wait(p, evs, 2, -1, -2), -EINVAL);
	/* A readable one cancels; a report wins over it. */
	{
		int cfd = eventfd(1, EFD_CLOEXEC);

		assert_true(cfd >= 0);
		assert_int_equal(eventbuf_poller_wait(p, evs, 2, -1, cfd),
				 -ECANCELED);
		assert_int_equal(eventbuf_poller_add_reader(p, r, &r), 0);
		assert_int_equal(eventbuf_poller_wait(p, evs, 2, -1, cfd), 1);
		assert_ptr_equal(evs[0].reader, r);
		assert_ptr_equal(evs[0].data, &r);
		assert_null(evs[0].sub);
		close(cfd);
	}
	assert_int_equal(eventbuf_poller_add_sub(p, s, &s), 0);
	assert_int_equal(eventbuf_poller_ready(p, evs, 2), 1);
	assert_ptr_equal(evs[0].sub, s);
	assert_ptr_equal(evs[0].data, &s);
	assert_null(evs[0].reader);
	eventbuf_poller_free(p);
	eventbuf_reader_free(r);
	eventbuf_unsubscribe(s);
	eventbuf_drop(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_poller_fan_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_wait_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_race_one_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_race_many_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_overflow_max1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_overflow_max7, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_close_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_close_tag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_lag_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_free_detaches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_free_while_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_recycling, setup_nocache, teardown),
		cmocka_unit_test_setup_teardown(test_poller_descriptors_go_home, setup_nocache, teardown),
		cmocka_unit_test_setup_teardown(test_poller_descriptors_go_home, setup_groups_nocache, teardown),
		cmocka_unit_test_setup_teardown(test_poller_exported_not_recycled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_no_stale_report, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_reused_number, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_high_descriptor_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_unsubscribe_while_kicked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_quiet_signal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_quiet_joined_by_wait_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_quiet_joined_by_poller, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_quiet_third_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_quiet_ring_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_quiet_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_quiet_free_pending, setup, teardown),
		/* The same loops, reading subscriptions in groups. */
		cmocka_unit_test_setup_teardown(test_poller_fan_out, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_wait_thread, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_race_one_key, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_race_many_keys, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_close_key, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_close_tag, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_shutdown, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_lag_limit, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_detach, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_free_detaches, setup_groups, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_misuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_straddling_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_lag_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_untaken_fires_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_lag_limit_while_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_open_pins_bounded, setup_nocache, teardown),
		cmocka_unit_test_setup_teardown(test_poller_reader_wait_fd_after_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poller_group_bad_input, setup, teardown),
	};

	return cmocka_run_group_tests_name("poller", tests, NULL, NULL);
}

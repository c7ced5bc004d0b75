/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_BENCH_SUBS_H
#define _EVENTBUF_BENCH_SUBS_H

/*
 * The subscribers workload (subscribers.c) against one implementation of
 * "many subscriptions of one topic, polled from a few event loops": a
 * publisher thread publishes one event per call to one key; every
 * subscription of that key, attached to one of the loops, reads it.
 *
 * Threads: create(), subscribe() and publish() on the harness's thread;
 * loop_new(), loop_add() and loop_run() on the loop's own thread; the
 * teardown (unsubscribe(), loop_free(), destroy()) on the harness's thread
 * once every loop thread is joined.
 */
#include <stdbool.h>
#include <stdint.h>

/*
 * One event read by one subscription: @loop_ctx as given to loop_run(),
 * @sub_data as given to loop_add().
 */
typedef void (*bench_subs_fn)(void *loop_ctx, void *sub_data, uint64_t index,
			      uint64_t stamp);

struct bench_subs_impl {
	const char *name;
	/* Descriptors it holds for @nsubs subscriptions over @nkeys keys. */
	uint64_t (*fds_needed)(uint64_t nsubs, uint64_t nkeys, int nloops);
	void *(*create)(uint64_t nkeys, int nloops);
	void (*destroy)(void *ps);
	/* A subscription of @key that @loop will attach; NULL on failure. */
	void *(*subscribe)(void *ps, uint64_t key, int loop);
	void (*unsubscribe)(void *sub);
	/* One event of @key; 0 or -errno. */
	int (*publish)(void *ps, uint64_t key, uint64_t index, uint64_t stamp);
	void *(*loop_new)(void *ps, int loop);
	int (*loop_add)(void *loop, void *sub, void *sub_data);
	/*
	 * Wait up to @timeout_ms for subscriptions with something to read,
	 * and read each of them dry, calling @fn per event. Return how many
	 * subscriptions (or queues) were served, 0 when none within the
	 * timeout, or -errno.
	 */
	long (*loop_run)(void *loop, bench_subs_fn fn, void *loop_ctx,
			 int timeout_ms);
	void (*loop_free)(void *loop);
	/* Wait until deferred reclamation has run; may be NULL. */
	void (*quiesce)(void);
	/*
	 * Wait until what subscribing left behind for a while (a snapshot
	 * cache) is gone, so that the runs measure long-lived subscriptions;
	 * 0 or -errno. May be NULL.
	 */
	int (*settle)(void *ps);
	/*
	 * What @loop did with descriptors so far: epoll registrations made,
	 * wake-ups taken, and of those, how many came without a write of a
	 * link's eventfd (eventbuf's quiet signals); may be NULL.
	 */
	void (*loop_counts)(void *loop, uint64_t *registrations,
			    uint64_t *wakeups, uint64_t *quiet);
};

extern const struct bench_subs_impl bench_subs_rcu;
extern const struct bench_subs_impl bench_subs_mutex_fd;
extern const struct bench_subs_impl bench_subs_mutex_loop;

/* subscribers.c, called by bench.c's main() */
void bench_subscribers_setup(void);
void bench_subscribers_run(int rep, bool quick);
void bench_subscribers_report(const char *outdir, int reps);

#endif /* _EVENTBUF_BENCH_SUBS_H */

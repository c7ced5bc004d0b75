/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_BENCH_H
#define _EVENTBUF_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * One implementation of the same list semantics: a single writer appends
 * items of one event; readers positioned before the writer starts consume
 * every item in order; an item is freed (its release accounted) once no
 * reader needs it. Every workload in bench.c is written once against this.
 */
typedef void (*bench_consume_fn)(void *ctx, uint64_t index, uint64_t stamp);

struct bench_impl {
	const char *name;
	void *(*create)(void);
	void (*destroy)(void *list);	/* after every reader is freed */
	int (*append)(void *list, uint64_t index, uint64_t stamp);
	/* A reader positioned after the newest item. */
	void *(*reader_new)(void *list);
	void (*reader_free)(void *reader);
	/*
	 * Deliver the items available, in order; with @block, wait for at
	 * least one. Return how many, or -errno.
	 */
	long (*consume)(void *reader, bench_consume_fn fn, void *ctx, bool block);
	/*
	 * Park for epoll: 1 with a descriptor to add (EPOLLIN | EPOLLET),
	 * 0 with the same descriptor as last time, -EALREADY when an item is
	 * already there, -errno.
	 */
	int (*wait_fd)(void *reader, int *fd);
	/* Epoll reported the descriptor readable. */
	void (*woken)(void *reader);
	/* Wait until deferred reclamation has run (rcu); may be NULL. */
	void (*quiesce)(void);
};

extern const struct bench_impl bench_impl_rcu;
extern const struct bench_impl bench_impl_mutex;
extern const struct bench_impl bench_impl_mutex_batch;
extern const struct bench_impl bench_impl_rwlock;

/*
 * Release accounting shared by every implementation: each freed item
 * calls bench_released(), which counts it and stamps the time.
 */
extern _Atomic uint64_t bench_release_count;
extern _Atomic uint64_t bench_release_last_ns;
void bench_released(uint64_t n);
uint64_t bench_now_ns(void);

/* Helpers of the harness (bench.c, measure.c) shared with the workload
 * files and the tools. */
#define MAX_REPS 16
void bench_die(const char *what, int err) __attribute__((noreturn));
uint64_t bench_rss_kb(void);
uint64_t bench_heap_bytes(void);
double bench_median(const double *v, int n, double *lo, double *hi);
/* The nearest-rank index of the @permille-th percentile of @n sorted
 * samples: ceil(n * permille / 1000) - 1 (p99 of 2,000: 1,979). */
uint64_t bench_rank(uint64_t n, uint64_t permille);
struct eventbuf_snapshot;
int bench_empty_snapshot(void *arg, const char *topic, const char *key,
			 struct eventbuf_snapshot *snap, uint64_t *index);

#endif /* _EVENTBUF_BENCH_H */

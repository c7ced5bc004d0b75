// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * One pthread mutex; a reader takes every available item under one lock
 * acquisition, reading them in place, and frees what it released after
 * unlocking: the strongest lock-based reader.
 */
#include <errno.h>
#include <stdint.h>

#include "bench.h"
#include "mutex_list.h"

static long batch_consume(void *reader, bench_consume_fn fn, void *ctx,
			  bool block)
{
	struct mreader *r = reader;
	struct mlist *l = r->list;
	struct mnode *dead = NULL, *next;
	long n = 0;

	pthread_mutex_lock(&l->lock);
	if (!mlist_wait_locked(r, block)) {
		pthread_mutex_unlock(&l->lock);
		return 0;
	}
	while (r->pos->next) {
		struct mnode *old = mlist_advance_locked(r);

		fn(ctx, r->pos->ev.index, (uint64_t)(uintptr_t)r->pos->ev.payload);
		n++;
		if (old) {
			old->next = dead;
			dead = old;
		}
	}
	pthread_mutex_unlock(&l->lock);
	for (; dead; dead = next) {
		next = dead->next;
		mlist_free_node(dead);
	}
	return n;
}

const struct bench_impl bench_impl_mutex_batch = {
	.name = "mutex-batch",
	.create = mlist_create,
	.destroy = mlist_destroy,
	.append = mlist_append,
	.reader_new = mlist_reader_new,
	.reader_free = mlist_reader_free,
	.consume = batch_consume,
	.wait_fd = mlist_wait_fd,
	.woken = mlist_woken,
};

// SPDX-License-Identifier: LGPL-2.1-or-later
/* One pthread mutex; a reader takes it once per item. */
#include <errno.h>
#include <stdint.h>

#include "bench.h"
#include "mutex_list.h"

static long mutex_consume(void *reader, bench_consume_fn fn, void *ctx,
			  bool block)
{
	struct mreader *r = reader;
	struct mlist *l = r->list;
	long n = 0;

	for (;;) {
		struct mnode *dead;
		uint64_t index, stamp;

		pthread_mutex_lock(&l->lock);
		if (!mlist_wait_locked(r, block && n == 0)) {
			pthread_mutex_unlock(&l->lock);
			return n;
		}
		dead = mlist_advance_locked(r);
		index = r->pos->ev.index;
		stamp = (uint64_t)(uintptr_t)r->pos->ev.payload;
		pthread_mutex_unlock(&l->lock);
		if (dead)
			mlist_free_node(dead);
		fn(ctx, index, stamp);
		n++;
	}
}

const struct bench_impl bench_impl_mutex = {
	.name = "mutex",
	.create = mlist_create,
	.destroy = mlist_destroy,
	.append = mlist_append,
	.reader_new = mlist_reader_new,
	.reader_free = mlist_reader_free,
	.consume = mutex_consume,
	.wait_fd = mlist_wait_fd,
	.woken = mlist_woken,
};

// SPDX-License-Identifier: LGPL-2.1-or-later
/* The library itself, through its reader API and default wait strategy. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <eventbuf/eventbuf.h>

#include "bench.h"

static void release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)events;
	(void)arg;
	bench_released(n);
}

static void *rcu_create(void)
{
	struct eventbuf *buf;

	return eventbuf_new(&buf) ? NULL : buf;
}

static void rcu_destroy(void *list)
{
	eventbuf_drop(list);
}

static int rcu_append(void *list, uint64_t index, uint64_t stamp)
{
	struct eventbuf_event ev = {
		.index = index,
		.payload = (void *)(uintptr_t)stamp,
	};

	return eventbuf_append(list, &ev, 1, release, NULL);
}

static void *rcu_reader_new(void *list)
{
	struct eventbuf_reader *r = NULL;
	struct eventbuf_item *head;

	if (eventbuf_head(list, &head))
		return NULL;
	if (eventbuf_reader_new(head, &r))
		r = NULL;
	eventbuf_item_put(head);
	return r;
}

static void rcu_reader_free(void *reader)
{
	eventbuf_reader_free(reader);
}

static void deliver(const struct eventbuf_item *it, bench_consume_fn fn,
		    void *ctx)
{
	const struct eventbuf_event *ev = eventbuf_item_events(it);

	fn(ctx, ev->index, (uint64_t)(uintptr_t)ev->payload);
}

static long rcu_consume(void *reader, bench_consume_fn fn, void *ctx,
			bool block)
{
	const struct eventbuf_item *it;
	long n = 0;
	int ret;

	while ((ret = eventbuf_reader_next_nonblock(reader, &it)) == 0) {
		deliver(it, fn, ctx);
		n++;
	}
	if (ret != -EAGAIN)
		return ret;
	if (n || !block)
		return n;
	ret = eventbuf_reader_next(reader, -1, -1, &it);
	if (ret)
		return ret;
	deliver(it, fn, ctx);
	return 1;
}

static int rcu_wait_fd(void *reader, int *fd)
{
	return eventbuf_reader_wait_fd(reader, fd);
}

static void rcu_woken(void *reader)
{
	(void)reader;	/* the eventfd is never read */
}

const struct bench_impl bench_impl_rcu = {
	.name = "rcu",
	.create = rcu_create,
	.destroy = rcu_destroy,
	.append = rcu_append,
	.reader_new = rcu_reader_new,
	.reader_free = rcu_reader_free,
	.consume = rcu_consume,
	.wait_fd = rcu_wait_fd,
	.woken = rcu_woken,
	.quiesce = eventbuf_barrier,
};

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mutex-fd: the classic design for many subscribers. Each key has a
 * mutex-protected array of its subscribers; each subscriber has its own
 * queue, under its own mutex, and its own eventfd, registered in its
 * loop's epoll set. publish() locks the key, appends the event to the
 * queue of each of its subscribers, and writes the eventfd of each whose
 * queue was empty: the loop reads a queue dry every time it is woken, so
 * a non-empty queue already has a wake-up on its way (the empty test and
 * the drain are under the queue's mutex, so no wake-up is lost).
 *
 * The eventfd is registered edge-triggered and never read: each write
 * fires the edge again, so a wake-up costs the loop no read(). The loop
 * delivers a queue's entries under its mutex, which only the publisher
 * also takes, and only for that subscriber.
 * The ring's capacity is a power of two.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"
#include "subs.h"

struct entry {
	uint64_t index, stamp;
};

struct key;

struct sub {
	pthread_mutex_t lock;
	struct entry *ring;
	uint32_t head, len, cap;
	int efd;
	void *data;
	struct key *key;
	size_t pos;			/* in key->subs */
};

struct key {
	pthread_mutex_t lock;
	struct sub **subs;
	size_t n, cap;
};

struct state {
	struct key *keys;
	uint64_t nkeys;
};

struct loop {
	int ep;
};

static uint64_t mfd_fds_needed(uint64_t nsubs, uint64_t nkeys, int nloops)
{
	(void)nkeys;
	return nsubs + (uint64_t)nloops;
}

static void *mfd_create(uint64_t nkeys, int nloops)
{
	struct state *s = malloc(sizeof(*s));

	(void)nloops;
	if (!s)
		return NULL;
	s->nkeys = nkeys;
	s->keys = calloc(nkeys, sizeof(*s->keys));
	if (!s->keys) {
		free(s);
		return NULL;
	}
	for (uint64_t k = 0; k < nkeys; k++)
		pthread_mutex_init(&s->keys[k].lock, NULL);
	return s;
}

static void mfd_destroy(void *ps)
{
	struct state *s = ps;

	for (uint64_t k = 0; k < s->nkeys; k++) {
		pthread_mutex_destroy(&s->keys[k].lock);
		free(s->keys[k].subs);
	}
	free(s->keys);
	free(s);
}

static void *mfd_subscribe(void *ps, uint64_t key, int loop)
{
	struct state *s = ps;
	struct key *k = &s->keys[key];
	struct sub *sub = calloc(1, sizeof(*sub));

	(void)loop;
	if (!sub)
		return NULL;
	sub->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sub->efd < 0) {
		free(sub);
		return NULL;
	}
	pthread_mutex_init(&sub->lock, NULL);
	sub->key = k;
	pthread_mutex_lock(&k->lock);
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 4;
		struct sub **v = realloc(k->subs, cap * sizeof(*v));

		if (!v) {
			pthread_mutex_unlock(&k->lock);
			close(sub->efd);
			free(sub);
			return NULL;
		}
		k->subs = v;
		k->cap = cap;
	}
	sub->pos = k->n;
	k->subs[k->n++] = sub;
	pthread_mutex_unlock(&k->lock);
	return sub;
}

static void mfd_unsubscribe(void *p)
{
	struct sub *sub = p;
	struct key *k = sub->key;

	pthread_mutex_lock(&k->lock);
	k->subs[sub->pos] = k->subs[--k->n];
	k->subs[sub->pos]->pos = sub->pos;
	pthread_mutex_unlock(&k->lock);
	close(sub->efd);
	pthread_mutex_destroy(&sub->lock);
	free(sub->ring);
	free(sub);
}

/* Under sub->lock. */
static int push(struct sub *sub, uint64_t index, uint64_t stamp)
{
	if (sub->len == sub->cap) {
		uint32_t cap = sub->cap ? 2 * sub->cap : 4;
		struct entry *r = malloc(cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		for (uint32_t i = 0; i < sub->len; i++)
			r[i] = sub->ring[(sub->head + i) & (sub->cap - 1)];
		free(sub->ring);
		sub->ring = r;
		sub->head = 0;
		sub->cap = cap;
	}
	sub->ring[(sub->head + sub->len) & (sub->cap - 1)] =
		(struct entry){ .index = index, .stamp = stamp };
	sub->len++;
	return 0;
}

static int mfd_publish(void *ps, uint64_t key, uint64_t index, uint64_t stamp)
{
	static const uint64_t one = 1;
	struct state *s = ps;
	struct key *k = &s->keys[key];
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	for (size_t i = 0; i < k->n; i++) {
		struct sub *sub = k->subs[i];
		bool was_empty;

		pthread_mutex_lock(&sub->lock);
		was_empty = sub->len == 0;
		ret = push(sub, index, stamp);
		pthread_mutex_unlock(&sub->lock);
		if (ret)
			break;
		if (was_empty && write(sub->efd, &one, sizeof(one)) < 0) {
			ret = -errno;
			break;
		}
	}
	pthread_mutex_unlock(&k->lock);
	return ret;
}

static void *mfd_loop_new(void *ps, int loop)
{
	struct loop *l = malloc(sizeof(*l));

	(void)ps;
	(void)loop;
	if (!l)
		return NULL;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	if (l->ep < 0) {
		free(l);
		return NULL;
	}
	return l;
}

static int mfd_loop_add(void *loop, void *p, void *sub_data)
{
	struct loop *l = loop;
	struct sub *sub = p;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = sub };

	sub->data = sub_data;
	return epoll_ctl(l->ep, EPOLL_CTL_ADD, sub->efd, &ev) ? -errno : 0;
}

static long mfd_loop_run(void *loop, bench_subs_fn fn, void *loop_ctx,
			 int timeout_ms)
{
	struct loop *l = loop;
	struct epoll_event evs[256];
	int n;

	do
		n = epoll_wait(l->ep, evs, 256, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		struct sub *sub = evs[i].data.ptr;

		pthread_mutex_lock(&sub->lock);
		for (uint32_t k = 0; k < sub->len; k++) {
			const struct entry *e =
				&sub->ring[(sub->head + k) & (sub->cap - 1)];

			fn(loop_ctx, sub->data, e->index, e->stamp);
		}
		sub->head = 0;
		sub->len = 0;
		pthread_mutex_unlock(&sub->lock);
	}
	return n;
}

static void mfd_loop_free(void *loop)
{
	struct loop *l = loop;

	close(l->ep);
	free(l);
}

const struct bench_subs_impl bench_subs_mutex_fd = {
	.name = "mutex-fd",
	.fds_needed = mfd_fds_needed,
	.create = mfd_create,
	.destroy = mfd_destroy,
	.subscribe = mfd_subscribe,
	.unsubscribe = mfd_unsubscribe,
	.publish = mfd_publish,
	.loop_new = mfd_loop_new,
	.loop_add = mfd_loop_add,
	.loop_run = mfd_loop_run,
	.loop_free = mfd_loop_free,
};

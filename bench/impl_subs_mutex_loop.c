// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mutex-loop: one queue and one eventfd per event loop, libuv's uv_async
 * pattern. Each key has a mutex-protected list of its subscribers, split
 * by loop. publish() locks the key and, for each loop with subscribers of
 * it, appends one entry per such subscriber to the loop's queue under the
 * queue's mutex, then writes the loop's eventfd if the queue was empty:
 * the loop takes the whole queue every time it is woken, so a non-empty
 * queue already has a wake-up on its way (the empty test and the take are
 * under the queue's mutex, so no wake-up is lost).
 *
 * The loop takes the queue by swapping it with its spare under the mutex
 * and delivers outside it, so the publisher never waits for the
 * deliveries. The eventfd is registered edge-triggered and never read:
 * each write fires the edge again, so a wake-up costs the loop no read().
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"
#include "subs.h"

#define MAX_LOOPS 8

struct entry {
	struct sub *sub;
	uint64_t index, stamp;
};

struct queue {
	struct entry *v;
	size_t len, cap;
};

struct key;

struct sub {
	void *data;
	struct key *key;
	int loop;
	size_t pos;			/* in key->subs[loop] */
};

struct key {
	pthread_mutex_t lock;
	struct sub **subs[MAX_LOOPS];
	size_t n[MAX_LOOPS], cap[MAX_LOOPS];
};

struct loop_q {
	pthread_mutex_t lock;
	struct queue q;			/* under lock */
	int efd;
};

struct state {
	struct key *keys;
	uint64_t nkeys;
	int nloops;
	struct loop_q loops[MAX_LOOPS];
};

struct loop {
	struct loop_q *lq;
	struct queue spare;		/* the loop's own */
	int ep;
};

static uint64_t mlp_fds_needed(uint64_t nsubs, uint64_t nkeys, int nloops)
{
	(void)nsubs;
	(void)nkeys;
	return 2 * (uint64_t)nloops;
}

static void mlp_destroy(void *ps)
{
	struct state *s = ps;

	for (uint64_t k = 0; k < s->nkeys; k++) {
		pthread_mutex_destroy(&s->keys[k].lock);
		for (int l = 0; l < s->nloops; l++)
			free(s->keys[k].subs[l]);
	}
	for (int l = 0; l < s->nloops; l++) {
		if (s->loops[l].efd >= 0)
			close(s->loops[l].efd);
		pthread_mutex_destroy(&s->loops[l].lock);
		free(s->loops[l].q.v);
	}
	free(s->keys);
	free(s);
}

static void *mlp_create(uint64_t nkeys, int nloops)
{
	struct state *s = calloc(1, sizeof(*s));

	if (!s || nloops > MAX_LOOPS)
		goto fail_state;
	s->nkeys = nkeys;
	s->nloops = nloops;
	s->keys = calloc(nkeys, sizeof(*s->keys));
	if (!s->keys)
		goto fail_state;
	for (uint64_t k = 0; k < nkeys; k++)
		pthread_mutex_init(&s->keys[k].lock, NULL);
	for (int l = 0; l < nloops; l++) {
		pthread_mutex_init(&s->loops[l].lock, NULL);
		s->loops[l].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	for (int l = 0; l < nloops; l++)
		if (s->loops[l].efd < 0)
			goto fail;
	return s;
fail:
	mlp_destroy(s);
	return NULL;
fail_state:
	free(s);
	return NULL;
}

static void *mlp_subscribe(void *ps, uint64_t key, int loop)
{
	struct state *s = ps;
	struct key *k = &s->keys[key];
	struct sub *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return NULL;
	sub->key = k;
	sub->loop = loop;
	pthread_mutex_lock(&k->lock);
	if (k->n[loop] == k->cap[loop]) {
		size_t cap = k->cap[loop] ? 2 * k->cap[loop] : 4;
		struct sub **v = realloc(k->subs[loop], cap * sizeof(*v));

		if (!v) {
			pthread_mutex_unlock(&k->lock);
			free(sub);
			return NULL;
		}
		k->subs[loop] = v;
		k->cap[loop] = cap;
	}
	sub->pos = k->n[loop];
	k->subs[loop][k->n[loop]++] = sub;
	pthread_mutex_unlock(&k->lock);
	return sub;
}

static void mlp_unsubscribe(void *p)
{
	struct sub *sub = p;
	struct key *k = sub->key;
	struct sub **v;

	pthread_mutex_lock(&k->lock);
	v = k->subs[sub->loop];
	v[sub->pos] = v[--k->n[sub->loop]];
	v[sub->pos]->pos = sub->pos;
	pthread_mutex_unlock(&k->lock);
	free(sub);
}

static int reserve(struct queue *q, size_t more)
{
	size_t cap = q->cap ? q->cap : 64;
	struct entry *v;

	if (q->len + more <= q->cap)
		return 0;
	while (cap < q->len + more)
		cap *= 2;
	v = realloc(q->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	q->v = v;
	q->cap = cap;
	return 0;
}

static int mlp_publish(void *ps, uint64_t key, uint64_t index, uint64_t stamp)
{
	static const uint64_t one = 1;
	struct state *s = ps;
	struct key *k = &s->keys[key];
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	for (int l = 0; l < s->nloops && !ret; l++) {
		struct loop_q *lq = &s->loops[l];
		bool was_empty;

		if (!k->n[l])
			continue;
		pthread_mutex_lock(&lq->lock);
		was_empty = lq->q.len == 0;
		ret = reserve(&lq->q, k->n[l]);
		for (size_t i = 0; !ret && i < k->n[l]; i++)
			lq->q.v[lq->q.len++] = (struct entry){
				.sub = k->subs[l][i], .index = index,
				.stamp = stamp,
			};
		pthread_mutex_unlock(&lq->lock);
		if (!ret && was_empty && write(lq->efd, &one, sizeof(one)) < 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&k->lock);
	return ret;
}

static void *mlp_loop_new(void *ps, int loop)
{
	struct state *s = ps;
	struct loop *l = calloc(1, sizeof(*l));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };

	if (!l)
		return NULL;
	l->lq = &s->loops[loop];
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	if (l->ep < 0)
		goto fail;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->lq->efd, &ev))
		goto fail_ep;
	return l;
fail_ep:
	close(l->ep);
fail:
	free(l);
	return NULL;
}

static int mlp_loop_add(void *loop, void *p, void *sub_data)
{
	struct sub *sub = p;

	(void)loop;
	sub->data = sub_data;
	return 0;
}

static long mlp_loop_run(void *loop, bench_subs_fn fn, void *loop_ctx,
			 int timeout_ms)
{
	struct loop *l = loop;
	struct epoll_event ev;
	struct queue q;
	int n;

	do
		n = epoll_wait(l->ep, &ev, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n < 0 ? -errno : 0;
	pthread_mutex_lock(&l->lq->lock);
	q = l->lq->q;
	l->lq->q = l->spare;
	pthread_mutex_unlock(&l->lq->lock);
	for (size_t i = 0; i < q.len; i++)
		fn(loop_ctx, q.v[i].sub->data, q.v[i].index, q.v[i].stamp);
	q.len = 0;
	l->spare = q;
	return 1;
}

static void mlp_loop_free(void *loop)
{
	struct loop *l = loop;

	close(l->ep);
	free(l->spare.v);
	free(l);
}

const struct bench_subs_impl bench_subs_mutex_loop = {
	.name = "mutex-loop",
	.fds_needed = mlp_fds_needed,
	.create = mlp_create,
	.destroy = mlp_destroy,
	.subscribe = mlp_subscribe,
	.unsubscribe = mlp_unsubscribe,
	.publish = mlp_publish,
	.loop_new = mlp_loop_new,
	.loop_add = mlp_loop_add,
	.loop_run = mlp_loop_run,
	.loop_free = mlp_loop_free,
};

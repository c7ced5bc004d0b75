// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A pthread rwlock around the list: the writer appends under the write
 * lock, readers traverse under the read lock, any number at once, and
 * drain everything available per acquisition. Readers never write shared
 * nodes: each publishes the sequence number it has reached in its own
 * cache line, and the writer frees, under the write lock, the nodes every
 * reader has passed (checked every RECLAIM_EVERY appends). Waiting uses a
 * mutex and condition variable (or the reader's eventfd for epoll), and
 * the writer takes that mutex only when a reader waits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <eventbuf/eventbuf.h>

#include "bench.h"

#define MAX_READERS 64
#define RECLAIM_EVERY 64

struct rnode {
	_Atomic(struct rnode *) next;
	uint64_t seq;
	struct eventbuf_event ev;
};

struct rreader {
	_Atomic uint64_t pos_seq;	/* published for the writer */
	char pad[56];
	struct rlist *list;
	struct rnode *pos;
	int efd;
	bool parked, fd_returned;
};

struct rlist {
	pthread_rwlock_t rw;
	struct rnode *head, *tail;	/* oldest kept, newest */
	uint64_t seq, since_reclaim;
	int nreaders;
	struct rreader *readers[MAX_READERS];

	pthread_mutex_t wait_lock;
	pthread_cond_t cond;
	_Atomic int waiters;		/* blocked + parked */
	int nparked;
	struct rreader *parked[MAX_READERS];
};

static struct rnode *node_new(uint64_t seq, uint64_t index, uint64_t stamp)
{
	struct rnode *n = malloc(sizeof(*n));

	if (!n)
		return NULL;
	atomic_init(&n->next, NULL);
	n->seq = seq;
	n->ev.index = index;
	n->ev.topic = NULL;
	n->ev.key = NULL;
	n->ev.payload = (void *)(uintptr_t)stamp;
	return n;
}

static void free_nodes(struct rnode *n, struct rnode *stop)
{
	while (n != stop) {
		struct rnode *next = atomic_load_explicit(&n->next,
							  memory_order_relaxed);

		free(n);
		bench_released(1);
		n = next;
	}
}

static void *rw_create(void)
{
	struct rlist *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->head = l->tail = node_new(0, 0, 0);
	if (!l->head) {
		free(l);
		return NULL;
	}
	pthread_rwlock_init(&l->rw, NULL);
	pthread_mutex_init(&l->wait_lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	return l;
}

static void rw_destroy(void *list)
{
	struct rlist *l = list;

	free_nodes(l->head, NULL);
	pthread_rwlock_destroy(&l->rw);
	pthread_mutex_destroy(&l->wait_lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}

/* Under the write lock: detach the nodes every reader has passed. */
static struct rnode *reclaim_locked(struct rlist *l, struct rnode **stop)
{
	uint64_t min = l->tail->seq;
	struct rnode *first = l->head;

	for (int i = 0; i < l->nreaders; i++) {
		uint64_t s = atomic_load_explicit(&l->readers[i]->pos_seq,
						  memory_order_relaxed);

		min = s < min ? s : min;
	}
	while (l->head->seq < min)
		l->head = atomic_load_explicit(&l->head->next,
					       memory_order_relaxed);
	*stop = l->head;
	return first;
}

static void wake_waiters(struct rlist *l)
{
	int wake[MAX_READERS], nwake;

	pthread_mutex_lock(&l->wait_lock);
	pthread_cond_broadcast(&l->cond);
	nwake = l->nparked;
	for (int i = 0; i < nwake; i++) {
		wake[i] = l->parked[i]->efd;
		l->parked[i]->parked = false;
	}
	l->nparked = 0;
	atomic_fetch_sub(&l->waiters, nwake);
	pthread_mutex_unlock(&l->wait_lock);
	for (int i = 0; i < nwake; i++) {
		static const uint64_t one = 1;

		while (write(wake[i], &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
}

static int rw_append(void *list, uint64_t index, uint64_t stamp)
{
	struct rlist *l = list;
	struct rnode *n, *dead = NULL, *stop = NULL;

	n = node_new(0, index, stamp);
	if (!n)
		return -ENOMEM;
	pthread_rwlock_wrlock(&l->rw);
	n->seq = ++l->seq;
	/* seq_cst: pairs with the waiter's increment of ->waiters. */
	atomic_store(&l->tail->next, n);
	l->tail = n;
	if (++l->since_reclaim >= RECLAIM_EVERY) {
		l->since_reclaim = 0;
		dead = reclaim_locked(l, &stop);
	}
	pthread_rwlock_unlock(&l->rw);
	if (dead)
		free_nodes(dead, stop);
	if (atomic_load(&l->waiters))
		wake_waiters(l);
	return 0;
}

static void *rw_reader_new(void *list)
{
	struct rlist *l = list;
	struct rreader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0 || l->nreaders == MAX_READERS) {
		if (r->efd >= 0)
			close(r->efd);
		free(r);
		return NULL;
	}
	r->list = l;
	pthread_rwlock_wrlock(&l->rw);
	r->pos = l->tail;
	atomic_init(&r->pos_seq, r->pos->seq);
	l->readers[l->nreaders++] = r;
	pthread_rwlock_unlock(&l->rw);
	return r;
}

static void rw_reader_free(void *reader)
{
	struct rreader *r = reader;
	struct rlist *l = r->list;
	struct rnode *dead, *stop;

	pthread_rwlock_wrlock(&l->rw);
	for (int i = 0; i < l->nreaders; i++)
		if (l->readers[i] == r)
			l->readers[i] = l->readers[--l->nreaders];
	dead = reclaim_locked(l, &stop);
	pthread_rwlock_unlock(&l->rw);
	free_nodes(dead, stop);
	close(r->efd);
	free(r);
}

static long drain(struct rreader *r, bench_consume_fn fn, void *ctx)
{
	struct rlist *l = r->list;
	struct rnode *next;
	long n = 0;

	pthread_rwlock_rdlock(&l->rw);
	while ((next = atomic_load_explicit(&r->pos->next,
					    memory_order_acquire))) {
		r->pos = next;
		fn(ctx, next->ev.index, (uint64_t)(uintptr_t)next->ev.payload);
		n++;
	}
	atomic_store_explicit(&r->pos_seq, r->pos->seq, memory_order_relaxed);
	pthread_rwlock_unlock(&l->rw);
	return n;
}

static void wait_next(struct rreader *r)
{
	struct rlist *l = r->list;

	pthread_mutex_lock(&l->wait_lock);
	atomic_fetch_add(&l->waiters, 1);
	while (!atomic_load(&r->pos->next))	/* seq_cst: see rw_append() */
		pthread_cond_wait(&l->cond, &l->wait_lock);
	atomic_fetch_sub(&l->waiters, 1);
	pthread_mutex_unlock(&l->wait_lock);
}

static long rw_consume(void *reader, bench_consume_fn fn, void *ctx, bool block)
{
	long n;

	while ((n = drain(reader, fn, ctx)) == 0 && block)
		wait_next(reader);
	return n;
}

static int rw_wait_fd(void *reader, int *fd)
{
	struct rreader *r = reader;
	struct rlist *l = r->list;
	int ret;

	pthread_mutex_lock(&l->wait_lock);
	if (!r->parked) {
		atomic_fetch_add(&l->waiters, 1);
		l->parked[l->nparked++] = r;
		r->parked = true;
	}
	if (atomic_load(&r->pos->next)) {
		ret = -EALREADY;	/* stays parked: the writer unparks it */
	} else {
		*fd = r->efd;
		ret = r->fd_returned ? 0 : 1;
		r->fd_returned = true;
	}
	pthread_mutex_unlock(&l->wait_lock);
	return ret;
}

static void rw_woken(void *reader)
{
	struct rreader *r = reader;
	uint64_t v;

	while (read(r->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

const struct bench_impl bench_impl_rwlock = {
	.name = "rwlock",
	.create = rw_create,
	.destroy = rw_destroy,
	.append = rw_append,
	.reader_new = rw_reader_new,
	.reader_free = rw_reader_free,
	.consume = rw_consume,
	.wait_fd = rw_wait_fd,
	.woken = rw_woken,
};

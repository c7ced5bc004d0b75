// SPDX-License-Identifier: LGPL-2.1-or-later
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"
#include "mutex_list.h"

static struct mnode *node_new(uint64_t index, uint64_t stamp)
{
	struct mnode *n = malloc(sizeof(*n));

	if (!n)
		return NULL;
	n->next = NULL;
	n->remaining = 0;
	n->ev.index = index;
	n->ev.topic = NULL;
	n->ev.key = NULL;
	n->ev.payload = (void *)(uintptr_t)stamp;
	return n;
}

void mlist_free_node(struct mnode *node)
{
	free(node);
	bench_released(1);
}

void *mlist_create(void)
{
	struct mlist *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->tail = node_new(0, 0);	/* the sentinel */
	if (!l->tail) {
		free(l);
		return NULL;
	}
	l->tail->remaining = 1;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	return l;
}

void mlist_destroy(void *list)
{
	struct mlist *l = list;

	if (--l->tail->remaining == 0)
		mlist_free_node(l->tail);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}

int mlist_append(void *list, uint64_t index, uint64_t stamp)
{
	struct mlist *l = list;
	struct mnode *n = node_new(index, stamp), *old;
	int wake[MLIST_MAX_READERS], nwake;

	if (!n)
		return -ENOMEM;
	pthread_mutex_lock(&l->lock);
	n->remaining = l->nreaders + 1;
	old = l->tail;
	old->next = n;
	l->tail = n;
	old = --old->remaining == 0 ? old : NULL;
	if (l->blocked)
		pthread_cond_broadcast(&l->cond);
	nwake = l->nparked;
	for (int i = 0; i < nwake; i++) {
		wake[i] = l->parked[i]->efd;
		l->parked[i]->parked = false;
	}
	l->nparked = 0;
	pthread_mutex_unlock(&l->lock);
	for (int i = 0; i < nwake; i++) {
		static const uint64_t one = 1;

		while (write(wake[i], &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
	if (old)
		mlist_free_node(old);
	return 0;
}

void *mlist_reader_new(void *list)
{
	struct mlist *l = list;
	struct mreader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0) {
		free(r);
		return NULL;
	}
	r->list = l;
	pthread_mutex_lock(&l->lock);
	r->pos = l->tail;
	r->pos->remaining++;
	l->nreaders++;
	pthread_mutex_unlock(&l->lock);
	return r;
}

/* Let go: every node from our position on no longer waits for us. */
void mlist_reader_free(void *reader)
{
	struct mreader *r = reader;
	struct mlist *l = r->list;
	struct mnode *n, *next, *dead = NULL;

	pthread_mutex_lock(&l->lock);
	l->nreaders--;
	for (n = r->pos; n; n = next) {
		next = n->next;
		if (--n->remaining == 0) {
			n->next = dead;
			dead = n;
		}
	}
	pthread_mutex_unlock(&l->lock);
	for (; dead; dead = next) {
		next = dead->next;
		mlist_free_node(dead);
	}
	close(r->efd);
	free(r);
}

struct mnode *mlist_advance_locked(struct mreader *r)
{
	struct mnode *old = r->pos;

	r->pos = old->next;
	return --old->remaining == 0 ? old : NULL;
}

bool mlist_wait_locked(struct mreader *r, bool block)
{
	struct mlist *l = r->list;

	while (!r->pos->next) {
		if (!block)
			return false;
		l->blocked++;
		pthread_cond_wait(&l->cond, &l->lock);
		l->blocked--;
	}
	return true;
}

int mlist_wait_fd(void *reader, int *fd)
{
	struct mreader *r = reader;
	struct mlist *l = r->list;
	int ret;

	pthread_mutex_lock(&l->lock);
	if (r->pos->next) {
		ret = -EALREADY;
	} else {
		if (!r->parked && l->nparked < MLIST_MAX_READERS) {
			l->parked[l->nparked++] = r;
			r->parked = true;
		}
		*fd = r->efd;
		ret = r->fd_returned ? 0 : 1;
		r->fd_returned = true;
	}
	pthread_mutex_unlock(&l->lock);
	return ret;
}

/* Reset our eventfd so that it fires again on the next write. */
void mlist_woken(void *reader)
{
	struct mreader *r = reader;
	uint64_t v;

	while (read(r->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

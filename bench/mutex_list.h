/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_BENCH_MUTEX_LIST_H
#define _EVENTBUF_BENCH_MUTEX_LIST_H

/*
 * The list behind the "mutex" and "mutex-batch" implementations: the same
 * semantics as eventbuf with one pthread mutex around it.
 *
 * Each node counts who still needs it (@remaining): every registered reader
 * (each will move onto it and later off it) plus the list itself while the
 * node is the tail. Readers hold the node they last read; moving off it
 * drops its count; the node is freed at zero, outside the lock. Blocking
 * readers wait on one condition variable, broadcast only when some reader
 * waits; epoll readers each own an eventfd, registered once, which the
 * writer writes for each reader parked at that moment (the natural
 * pollable design for a lock-based list).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <eventbuf/eventbuf.h>

#define MLIST_MAX_READERS 64

struct mnode {
	struct mnode *next;
	long remaining;
	struct eventbuf_event ev;
};

struct mreader;

struct mlist {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct mnode *tail;
	long nreaders;
	int blocked;			/* readers in pthread_cond_wait() */
	int nparked;			/* readers parked on their eventfd */
	struct mreader *parked[MLIST_MAX_READERS];
};

struct mreader {
	struct mlist *list;
	struct mnode *pos;		/* the node read last */
	int efd;
	bool parked;
	bool fd_returned;
};

void *mlist_create(void);
void mlist_destroy(void *list);
int mlist_append(void *list, uint64_t index, uint64_t stamp);
void *mlist_reader_new(void *list);
void mlist_reader_free(void *reader);
int mlist_wait_fd(void *reader, int *fd);
void mlist_woken(void *reader);

/* Under the lock: move the reader onto pos->next; return a node to free. */
struct mnode *mlist_advance_locked(struct mreader *r);
void mlist_free_node(struct mnode *node);
/* Under the lock: wait for pos->next (false when !block and none). */
bool mlist_wait_locked(struct mreader *r, bool block);

#endif /* _EVENTBUF_BENCH_MUTEX_LIST_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_WAKE_H
#define _EVENTBUF_WAKE_H

/*
 * The wake-up protocol, both halves (wait.c has its theory of operation): the
 * writer's __eventbuf_signal(), after it published a link's next item
 * (buffer.c), and the reader's __eventbuf_prepare_wait(), before it waits on
 * a link (item.c, reader.c). Only those files and wait.c include this header.
 */
#include "internal.h"

/* The caller hands the descriptor out (ST_EXPORTED). */
#define WAIT_EXPORTED	0x1
/* The caller is the reader that armed this link last time (ST_PRIVATE). */
#define WAIT_AGAIN	0x2

/*
 * The reader's half, R1 to R3: 0 and *fdp to wait on, -EALREADY when the
 * next item is published already, or -errno. @keptp: NULL, or a reader's
 * kept descriptor (-1: none), which it may install and then gives up (see
 * "Kept descriptors" in fdpool.c); 1 instead of 0 says *fdp is that one.
 */
__hidden int __eventbuf_prepare_wait(struct eventbuf_item *link, int *fdp,
				     unsigned int flags, int *keptp);

/* The writer's W4, out of line: write the eventfd of @link's state @old. */
__hidden void __eventbuf_signal_waiters(struct eventbuf_item *link,
					 uint64_t old);

/*
 * The writer's side of the wake-up protocol (wait.c), after it published
 * @link's next item: W2 fence, W3 look for an eventfd, W4 write it if there
 * is one (out of line), W5 mark the link done. With nobody waiting: a
 * barrier, a load and a store.
 */
static inline void __eventbuf_signal(struct eventbuf_item *link)
{
	uint64_t w;

	/* W2, between the caller's stores and the loads after it; one
	 * barrier serves two protocols. The wake-up: W1 (->next) before W3,
	 * pairs with R2's smp_mb() in __eventbuf_prepare_wait() (wait.c). The
	 * pin chain: ->last_own before publish()'s load of pin_busy, pairs
	 * with the smp_mb() in pin_stop() (buffer.c). */
	smp_mb();
	/* W3. Acquire: pairs with the installer's CAS (R1, wait.c), so the
	 * eventfd's creation happens before our write to it. */
	w = smp_load_acquire(&link->state);
	if (st_fd(w) >= 0)
		__eventbuf_signal_waiters(link, w);
	/* W5: a store to a line W1 just wrote; pairs with the acquire load
	 * in drop_orphan() and unref(). */
	smp_store_release(&link->signal_done, 1);
}

#endif /* _EVENTBUF_WAKE_H */

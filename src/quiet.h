/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_QUIET_H
#define _EVENTBUF_QUIET_H

/*
 * Quiet signals (quiet.c has the theory of operation): a link whose eventfd
 * only one or two pollers wait on is signalled through their rings and
 * their own eventfds, written at most once per pass of each loop, instead
 * of a write of the link's eventfd per publish.
 */
#include "internal.h"

/* Slots 1..QUIET_SLOTS-1 name pollers in ST_QUIET; 0 is "none". */
#define QUIET_SLOTS	16
#define QUIET_RING	1024	/* descriptor numbers, a power of two */

struct quiet_cell {
	_Atomic uint32_t seq;	/* the position it holds + 1 once filled */
	int32_t fd;		/* -1: a reservation given up */
};

struct __eventbuf_quiet {
	/* The writers' side: reserved with a compare-and-swap. */
	_Atomic uint32_t enq;
	char enq_line[64];		/* ->deq on another cache line */
	/* The poller's side. */
	uint32_t deq;
	_Atomic uint32_t armed;		/* the poller may sleep: kick it */
	int kick_fd;			/* the poller's; closed after a grace period */
	unsigned int slot;
	struct rcu_head rcu;
	struct quiet_cell cells[QUIET_RING];
};

/*
 * A ring for a poller whose eventfd is @kick_fd, in a free slot if there is
 * one (->slot, else 0: the poller waits on eventfds alone); NULL without
 * memory. It takes @kick_fd over: __eventbuf_quiet_free() closes it.
 */
__hidden struct __eventbuf_quiet *__eventbuf_quiet_new(int kick_fd);
extern struct __eventbuf_quiet *__eventbuf_quiet_boxes[QUIET_SLOTS]
	__attribute__((visibility("hidden")));

/* Free the slot now; the ring and its eventfd after a grace period. */
__hidden void __eventbuf_quiet_free(struct __eventbuf_quiet *q);

/*
 * The writer, inside its read-side section, found @old in @link's state
 * with ST_QUIET: signal those pollers instead of writing the eventfd. True
 * when it did (the state has ST_SIGNALED, the slots still set); false when
 * the caller must write the eventfd (*@oldp reloaded).
 */
__hidden bool __eventbuf_quiet_signal(struct eventbuf_item *link,
				      uint64_t *oldp);

/*
 * The poller's side: the next descriptor signalled quietly (>= 0), or -1
 * when the ring is empty for now. __eventbuf_quiet_idle() then marks the
 * poller as about to sleep and says whether something came in meanwhile
 * (true: take again).
 */
__hidden int __eventbuf_quiet_take(struct __eventbuf_quiet *q);
__hidden bool __eventbuf_quiet_idle(struct __eventbuf_quiet *q);

/* Set ST_QUIET for @slot in the compare-and-swap that installs a link's
 * eventfd (wait.c); a flag of __eventbuf_prepare_wait(). */
#define WAIT_QUIET(slot)	((unsigned int)(slot) << 8)
#define WAIT_QUIET_SLOT(flags)	(((flags) >> 8) & 0xf)

#endif /* _EVENTBUF_QUIET_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_POLLER_INTERNAL_H
#define _EVENTBUF_POLLER_INTERNAL_H

/*
 * What poller.c (registrations, reports, the descriptor) and cohort.c
 * (groups) share. Everything here belongs to the poller's thread, except
 * the inbox (under ->inbox_lock).
 */
#include <eventbuf/poller.h>

#include "internal.h"

/* reg_find(p, fd): what this poller knows of the eventfd numbered fd. */
struct reg {
	struct eventbuf_item *link;	/* a counted reference, or NULL */
	struct __eventbuf_pollnode *waiters;
	uint32_t borrowers;		/* readers whose anchor it holds */
	uint64_t epoch;			/* fd epoch and generation of */
	uint32_t gen;			/* the registration (fdpool.c) */
	bool watched;
	bool fired;			/* queued for a group */
	struct __eventbuf_cohort *cohort;	/* armed here, or NULL */
};

/*
 * Entries live in chunks of REG_CHUNK descriptor numbers, made when an
 * entry in them is first claimed: eventfds take the lowest free numbers,
 * which in a service with 100,000 sockets are above 100,000, and one
 * array indexed by number cost every poller 48 bytes per number below
 * its highest eventfd (6 MiB at 100,000), touched by the realloc() that
 * grew it. A chunk is 3 KiB.
 */
#define REG_CHUNK_SHIFT 6
#define REG_CHUNK (1u << REG_CHUNK_SHIFT)

enum cohort_state {
	COHORT_OPEN,	/* being read: p->open */
	COHORT_IDLE,	/* read to its link, not armed: on p->idle */
	COHORT_ARMED,	/* its link armed: reg_find(p, fd)->cohort */
};

/*
 * A cohort (cohort.c): subscriptions that read as one. @ref is a counted
 * reference on @pos, the last item the cohort read (its link, once it has
 * read everything), which covers every member's position. @members is
 * what the caller is handed, @nodes the same members' nodes.
 */
struct __eventbuf_cohort {
	enum cohort_state state;
	int fd;				/* COHORT_ARMED: its entry */
	struct eventbuf_item *ref;
	struct eventbuf_item *pos;
	uint64_t seq;			/* the batch at @pos, 0: none read */
	uint64_t skip;			/* the members' highest skip_through */
	unsigned int since_move;	/* batches since ->ref moved */
	const struct __eventbuf_group_ops *ops;
	struct eventbuf_poll_event *members;
	struct __eventbuf_pollnode **nodes;
	size_t count, cap;
	size_t holes;			/* members that left while open */
	struct __eventbuf_pollnode *lagged;	/* lag-limited members */
	uint64_t lag_min;		/* their smallest limit (or less) */
	uint64_t told;			/* the @seq they were last told */
	struct __eventbuf_cohort *inext, *iprev;	/* on p->idle */
};

struct eventbuf_poller {
	int epfd;
	int kick_fd;			/* ->quiet's: closed with it */
	struct __eventbuf_quiet *quiet;	/* quiet.c */
	struct reg **regs;		/* chunks, NULL where none claimed */
	size_t nchunks;
	struct __eventbuf_pollnode *ready_first, *ready_last;
	struct __eventbuf_pollnode *attached;
	pthread_mutex_t inbox_lock;
	struct __eventbuf_pollnode *inbox;
	struct eventbuf_poller_stats st;
	/* groups (cohort.c) */
	bool grouping;
	int *fired;			/* fds of entries queued for a group */
	size_t fired_head, fired_len, fired_cap;
	struct __eventbuf_cohort *open;	/* the group being read, or NULL */
	struct __eventbuf_cohort *idle;	/* read to their links, not armed */
	struct __eventbuf_cohort *scan;	/* the next idle one to look at */
	bool pass_open;			/* groups handed out, not yet 0 */
	bool yielded;			/* this pass gave the CPU away */
	EVENTBUF_HANDLE_MAGIC		/* debug.c */
};

static inline void poller_check(const struct eventbuf_poller *p,
				const char *fn)
{
	handle_check(p, EVENTBUF_POLLER_LIVE, "poller",
		     "eventbuf_poller_free", fn);
}

/*
 * The entry of @fd, or NULL where this poller never claimed one in its
 * chunk. Callers that hold an entry (a parked node's, an armed cohort's,
 * a fired one's) know it is there.
 */
static inline struct reg *reg_find(const struct eventbuf_poller *p, int fd)
{
	size_t chunk = (size_t)fd >> REG_CHUNK_SHIFT;

	if (fd < 0 || chunk >= p->nchunks || !p->regs[chunk])
		return NULL;
	return &p->regs[chunk][(size_t)fd & (REG_CHUNK - 1)];
}

/*
 * Lists of nodes that know their first node only (an entry's waiters, a
 * cohort's lag-limited members), linked through ->prev and ->next.
 */
static inline void node_push(struct __eventbuf_pollnode **headp,
			     struct __eventbuf_pollnode *n)
{
	n->prev = NULL;
	n->next = *headp;
	if (*headp)
		(*headp)->prev = n;
	*headp = n;
}

static inline void node_unlink(struct __eventbuf_pollnode **headp,
			       struct __eventbuf_pollnode *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		*headp = n->next;
	if (n->next)
		n->next->prev = n->prev;
}

static inline bool has_successor(const struct eventbuf_item *link)
{
	/* Acquire: pairs with the writer's rcu_assign_pointer() (W1). */
	return smp_load_acquire(&link->next) != NULL;
}

/* poller.c */
__hidden void __eventbuf_pl_kick(struct eventbuf_poller *p);
__hidden void __eventbuf_pl_ready_push(struct eventbuf_poller *p,
				       struct __eventbuf_pollnode *n);
__hidden void __eventbuf_pl_reg_release(struct eventbuf_poller *p,
					struct reg *r);
__hidden int __eventbuf_pl_reg_claim(struct eventbuf_poller *p,
				     struct eventbuf_item *link, int fd);

/* cohort.c */
__hidden void __eventbuf_cohort_fired(struct eventbuf_poller *p,
				      struct reg *r, int fd);
__hidden void __eventbuf_cohort_leave(struct eventbuf_poller *p,
				      struct __eventbuf_pollnode *n,
				      bool locked);
__hidden void __eventbuf_group_end(struct eventbuf_poller *p);
__hidden bool __eventbuf_groups_pending(const struct eventbuf_poller *p);
__hidden bool __eventbuf_groups_untaken(const struct eventbuf_poller *p);
__hidden void __eventbuf_groups_new_pass(struct eventbuf_poller *p);
__hidden void __eventbuf_groups_free(struct eventbuf_poller *p);

#endif /* _EVENTBUF_POLLER_INTERNAL_H */

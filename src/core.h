/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_CORE_H
#define _EVENTBUF_CORE_H

/*
 * What the core lends the layers built on it (src/pubsub/): the few
 * internals they need beside the public API - the callback context, the
 * reserved codes, the blocking wait and the poller's node. No item or
 * buffer layout, no state bits: those stay in internal.h, which includes
 * this header for the core's own files.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <eventbuf/eventbuf.h>

#define __hidden __attribute__((visibility("hidden")))

/* Reserved result codes a terminal error may not use (see eventbuf.h). */
static inline bool code_is_reserved(int code)
{
	switch (-code) {
	case EAGAIN: case ETIMEDOUT: case ECANCELED: case ENOMEM:
	case EMFILE: case ENFILE: case EINVAL: case EOVERFLOW: case EDEADLK:
	case ENOSPC:	/* a subscription's epoll_ctl(): retry, not the end */
	case EISCONN:	/* attached to a poller: wait through it */
		return true;
	default:
		return false;
	}
}

/* context.c: what the calling thread is inside of (a caller's callback) */
#define EVENTBUF_IN_RELEASE	0x1	/* a release callback */
#define EVENTBUF_IN_SNAPSHOT	0x2	/* a snapshot handler */
__hidden extern __thread unsigned int __eventbuf_callback;
__hidden void __eventbuf_misuse(const char *fn, const char *rule)
	__attribute__((noreturn));
/* Run a release callback with the thread marked. */
__hidden void __eventbuf_release_call(eventbuf_release_fn release,
				      struct eventbuf_event *events, size_t n,
				      void *arg);

/*
 * debug.c, CONFIG_EVENTBUF_DEBUG=y: handles (subscriptions, pollers,
 * readers) used or freed after their free call. A handle carries
 * EVENTBUF_HANDLE_MAGIC, its type's live value until its free call
 * marks it freed and gives it to handle_free(), which keeps it a while
 * (debug.c) so that the mark stays readable; handle_check() aborts with
 * a message when the mark is not the live one. Without the option the
 * mark does not exist, the check is nothing and handle_free() is free().
 */
#define EVENTBUF_SUB_LIVE	0x53554231u	/* "SUB1" */
#define EVENTBUF_POLLER_LIVE	0x504f4c31u	/* "POL1" */
#define EVENTBUF_READER_LIVE	0x52454431u	/* "RED1" */
#ifdef CONFIG_EVENTBUF_DEBUG
#define EVENTBUF_HANDLE_MAGIC	uint32_t magic;
#define handle_live(h, live)	((h)->magic = (live))
#define handle_check(h, live, what, freer, fn) \
	__eventbuf_handle_check((h)->magic == (live), (h), (what), (fn), \
				(freer))
#define handle_free(h) \
	do { (h)->magic = 0; __eventbuf_handle_free(h); } while (0)
__hidden void __eventbuf_handle_check(bool live, const void *h,
				      const char *what, const char *fn,
				      const char *freer);
__hidden void __eventbuf_handle_free(void *h);
/* poller.c: the poller's mark, for the calls in subscription.c. */
struct eventbuf_poller;
__hidden void __eventbuf_poller_check(const struct eventbuf_poller *p,
				      const char *fn);
#else
#define __eventbuf_poller_check(p, fn)	((void)0)
#define EVENTBUF_HANDLE_MAGIC
#define handle_live(h, live)	((void)0)
#define handle_check(h, live, what, freer, fn)	((void)(h), (void)(fn))
#define handle_free(h)		free(h)
#endif

/*
 * blocks.c: small blocks that may be freed on another thread than the one
 * that made them (records, items outside slabs). Free takes the size the
 * block was asked for, and NULL.
 */
__hidden void *__eventbuf_block_alloc(size_t size);
__hidden void __eventbuf_block_free(void *p, size_t size);

/* wait.c: a blocking wait on @fd, the caller's deadline and cancel_fd */
__hidden int __eventbuf_wait(int fd, int cancel_fd, int64_t deadline_ns);
__hidden int64_t __eventbuf_deadline(int timeout_ms);
/* CLOCK_MONOTONIC in nanoseconds, the clock of every deadline. */
__hidden int64_t __eventbuf_now_ns(void);
__hidden int __eventbuf_no_wait(int cancel_fd);
/*
 * reader.c: nanoseconds a blocking reader spins before it yields and
 * parks; 0 (the default): it does not. Set by the benchmark and the tests.
 */
__hidden extern _Atomic uint32_t __eventbuf_reader_spin_ns;
#ifdef CONFIG_EVENTBUF_TESTING
/* The spins @reader began, and in *@hits those that found an item. */
__hidden uint32_t __eventbuf_reader_spins(const struct eventbuf_reader *reader,
					  uint32_t *hits);
#endif

/*
 * poller.c: what an attached reader or subscription embeds. All fields
 * but @poller, @kick_next, @kick_prev and @kicked belong to the poller's
 * thread; @poller changes only under *@lock (the subscription's, NULL for
 * a reader), which a closer on another thread holds to reach the poller;
 * @kick_next, @kick_prev and @kicked are under the poller's inbox lock.
 */
struct eventbuf_poller;
struct __eventbuf_pollnode;
struct eventbuf_item;

/*
 * What a poller needs to know of an attached subscription to read it with
 * others of its link (a cohort, poller.c); NULL in a raw reader's node.
 * Called on the poller's thread.
 * @may_join:   may @node read @first, the first item after its link, with
 *              a cohort (open, nothing of its own to hand out first)?
 * @skip_through: batches at or below this index are not @node's to read.
 * @lag_limit:  how far behind the publisher lets @node fall (0: no limit).
 * @batch:      the events of @item, if it is a plain batch above @skip
 *              that every member reads as it is (false: each member reads
 *              it on its own); @seqp gets its sequence for the lag check.
 * @moved:      @node's member has read through the batch of sequence @seq.
 */
struct __eventbuf_group_ops {
	bool (*may_join)(struct __eventbuf_pollnode *node,
			 const struct eventbuf_item *first);
	uint64_t (*skip_through)(const struct __eventbuf_pollnode *node);
	uint64_t (*lag_limit)(const struct __eventbuf_pollnode *node);
	bool (*batch)(const struct eventbuf_item *item, uint64_t skip,
		      const struct eventbuf_event **events, size_t *n,
		      uint64_t *seqp);
	void (*moved)(struct __eventbuf_pollnode *node, uint64_t seq);
};

struct __eventbuf_cohort;

struct __eventbuf_pollnode {
	struct eventbuf_poller *poller;		/* NULL: not attached */
	struct __eventbuf_pollnode *prev, *next;	/* waiters or ready */
	struct __eventbuf_pollnode *aprev, *anext;	/* attached */
	struct __eventbuf_pollnode *kick_next, *kick_prev;	/* the inbox */
	void *owner;				/* the reader or subscription */
	void *data;
	pthread_mutex_t *lock;
	int fd;					/* parked under, or -1 */
	struct eventbuf_reader *lending;	/* lends its anchor here */
	const struct __eventbuf_group_ops *group_ops;
	struct __eventbuf_cohort *cohort;	/* NODE_GROUP: its cohort */
	size_t cidx;				/* ... and place in it */
	uint8_t where;				/* NODE_* */
	bool is_sub;
	bool kicked;
	bool lagged;				/* on its cohort's lag list */
};

/* Where a node is: NODE_GROUP, in a cohort of its poller (poller.c). */
enum { NODE_IDLE, NODE_PARKED, NODE_READY, NODE_GROUP };

__hidden void __eventbuf_poller_unpark(struct __eventbuf_pollnode *node);
__hidden int __eventbuf_poller_attach(struct eventbuf_poller *poller,
				      struct __eventbuf_pollnode *node);
__hidden void __eventbuf_poller_detach(struct __eventbuf_pollnode *node);
__hidden void __eventbuf_poller_retry(struct __eventbuf_pollnode *node);
__hidden void __eventbuf_poller_kick(struct __eventbuf_pollnode *node);

/* reader.c, for subscriptions */
__hidden unsigned int
__eventbuf_poller_quiet_flags(const struct eventbuf_poller *poller);
__hidden int __eventbuf_reader_park_polled(struct eventbuf_reader *reader,
					   struct __eventbuf_pollnode *node);
__hidden bool __eventbuf_reader_lending(const struct eventbuf_reader *reader);

#endif /* _EVENTBUF_CORE_H */

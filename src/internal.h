/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_INTERNAL_H
#define _EVENTBUF_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <eventbuf/eventbuf.h>

#include "barrier.h"
#include "core.h"
#include "rcu.h"

/*
 * struct eventbuf_item - one batch, and the link to the next one
 *
 * 40 bytes of header; with one event the allocation is 72 bytes, which
 * glibc serves from an 80-byte chunk.
 *
 * @next:  the next item, published once by the writer with
 *         rcu_assign_pointer() and read with rcu_dereference().
 * @state: reference count and wait-fd state, see the ST_* bits below. Once
 *         the item is unreferenced and queued for reclamation, the word
 *         becomes @reclaim_next (nothing else can reach the item then).
 * @nevents, @kind: set before publication, immutable after.
 * @flags: set before publication, but for ITEM_NEXT_COUNTED, which
 *         eventbuf_append_item() sets on the head before it publishes the
 *         head's ->next: that release store orders it before reclaim.c,
 *         the only reader, which loads ->next first.
 * @signal_done: set by the writer once it has finished signalling this
 *         link (wait.c); lets a late waiter close an eventfd the writer
 *         never saw.
 * @u:     BATCH: release callback; FOLLOWER: the item whose link it shares
 *         (a counted reference); ERROR: code and message.
 */
struct eventbuf_item {
	struct eventbuf_item *next;
	union {
		_Atomic uint64_t state;
		struct eventbuf_item *reclaim_next;
	};
	uint32_t nevents;
	uint8_t kind;
	uint8_t flags;
	uint8_t signal_done;
	uint8_t reserved;
	union {
		struct {
			eventbuf_release_fn release;
			void *arg;
		} batch;
		struct eventbuf_item *target;
		struct {
			int code;
			const char *msg;
		} err;
	} u;
	struct eventbuf_event events[];
};

enum {
	KIND_BATCH = 0,		/* events (none for sentinels and empty items) */
	KIND_FOLLOWER = 1,	/* no events; shares u.target's link */
	KIND_ERROR = 2,		/* terminal; no link */
};

/* @next was linked by eventbuf_append_item(): the edge holds a reference. */
#define ITEM_NEXT_COUNTED 0x01
/* Allocated with malloc(), not carved from a slab (slab.c). */
#define ITEM_MALLOCED 0x02
/* ... and as a block (blocks.c): __eventbuf_item_free() knows how. */
#define ITEM_BLOCK 0x04


/*
 * The state word.
 *
 *  bit  0      ST_ROOT: nothing before this item in its owner chain is
 *              alive (it is a chain start: a sentinel, a follower, or the
 *              item a reclamation walk stopped at).
 *  bit  1      ST_PINNED: a buffer's pin (reclaim.c). Keeps the item, not
 *              its eventfd: the pin never waits.
 *  bits 2..27  reference count, in units of ST_REF.
 *  bits 28..31 ST_QUIET_B: the slot of a second poller that waits on the
 *              link with the first (0: none; set only with ST_QUIET).
 *  bits 32..55 the link's eventfd + 1 (0: none yet).
 *  bits 56..59 ST_QUIET: the slot of the poller that installed the
 *              eventfd (0: none, or somebody else waits on it too). With
 *              ST_QUIET_B: every waiter on the link is one of those
 *              pollers', and the writer may signal them instead of
 *              writing the eventfd (quiet.c).
 *  bit 60      ST_PRIVATE: the eventfd was installed for a reader that
 *              hands it to its caller (eventbuf_reader_wait_fd()) and
 *              nobody else has taken it from the link since: that reader
 *              may keep it for its next link (wait.c).
 *  bit 61      ST_EXPORTED: the eventfd was handed to the caller
 *              (eventbuf_item_wait_fd(), eventbuf_reader_wait_fd(), a
 *              subscription's own epoll set), who may keep it registered
 *              anywhere: it is closed when the link is done, never
 *              recycled (wait.c).
 *  bit 62      ST_SIGNALED: the writer has signalled the link: written
 *              the eventfd, or, with ST_QUIET still set, told the
 *              poller through its ring (quiet.c).
 *  bit 63      ST_CLOSED: the eventfd has been closed.
 *
 * Whoever makes "no references, ROOT, not PINNED" true owns the item and
 * reclaims it (st_owned()).
 */
#define ST_ROOT		(1ull << 0)
#define ST_PINNED	(1ull << 1)
#define ST_REF		(1ull << 2)
#define ST_REF_MASK	0x0ffffffcull
#define ST_REF_LIMIT	(1ull << 25)
#define ST_QUIET_B_SHIFT	28
#define ST_QUIET_B	(0xfull << ST_QUIET_B_SHIFT)
#define ST_FD_SHIFT	32
#define ST_FD_MASK	(0x00ffffffull << ST_FD_SHIFT)
#define ST_QUIET_SHIFT	56
#define ST_QUIET	(0xfull << ST_QUIET_SHIFT)
#define ST_PRIVATE	(1ull << 60)
#define ST_EXPORTED	(1ull << 61)
#define ST_SIGNALED	(1ull << 62)
#define ST_CLOSED	(1ull << 63)

static inline uint64_t st_refs(uint64_t w)
{
	return (w & ST_REF_MASK) >> 2;
}

static inline bool st_owned(uint64_t w)
{
	return st_refs(w) == 0 && (w & (ST_ROOT | ST_PINNED)) == ST_ROOT;
}

/* The quiet poller slot recorded in @w (ST_QUIET), or 0. */
static inline unsigned int st_quiet(uint64_t w)
{
	return (unsigned int)((w & ST_QUIET) >> ST_QUIET_SHIFT);
}

static inline unsigned int st_quiet_b(uint64_t w)
{
	return (unsigned int)((w & ST_QUIET_B) >> ST_QUIET_B_SHIFT);
}

/* The eventfd recorded in @w, or -1. */
static inline int st_fd(uint64_t w)
{
	return (int)((w & ST_FD_MASK) >> ST_FD_SHIFT) - 1;
}

static inline uint64_t st_with_fd(uint64_t w, int fd)
{
	return w | ((uint64_t)(fd + 1) << ST_FD_SHIFT);
}

/* The item whose link (next pointer and eventfd) @item uses. */
static inline struct eventbuf_item *link_of(const struct eventbuf_item *item)
{
	if (item->kind == KIND_FOLLOWER)
		return item->u.target;
	return (struct eventbuf_item *)item;
}

static inline bool item_is_error(const struct eventbuf_item *item)
{
	return item->kind == KIND_ERROR;
}

/* The allocation size of @item (error items carry their message). */
static inline size_t __eventbuf_item_size(const struct eventbuf_item *item)
{
	size_t size = sizeof(*item) + item->nevents * sizeof(item->events[0]);

	if (item->kind == KIND_ERROR)
		size += __builtin_strlen(item->u.err.msg) + 1;
	return size;
}

/*
 * struct eventbuf - the writer's handle
 *
 * @head:     the newest item; written by the writer with
 *            rcu_assign_pointer(), read by eventbuf_head() with
 *            rcu_dereference() under rcu_read_lock().
 * @last_own: the newest item this buffer allocated itself: @head, unless
 *            eventbuf_append_item() joined a foreign item after it. The pin
 *            chain pins only these (an item belongs to one buffer, so one
 *            chain); a joined foreign head is kept by the counted edge from
 *            @last_own. Written and read like @head.
 * @ended:    0, -EPIPE after an error item, -EISCONN after a join; writer.
 * @pool:     the slabs this buffer's items are carved from (slab.c).
 * @pin, @pin_prev: the items the buffer keeps alive with ST_PINNED, at or
 *            before @head; owned by the pin chain (buffer.c, reclaim.c).
 * @pin_final: the chain's last step after eventbuf_drop() is queued.
 * @pin_busy: a pin-chain callback is queued or running.
 * @dropped:  eventbuf_drop() was called.
 * @users:    the owner plus a running pin chain; the last frees the struct.
 * @appended_items, @appended_bytes: what this writer allocated (stats.c).
 * @writer:   CONFIG_EVENTBUF_DEBUG's appender-in-progress flag.
 */
struct eventbuf_pool;

struct eventbuf {
	/*
	 * What an append touches, first and together: 45 bytes, one cache
	 * line at half of malloc()'s 16-byte offsets. Aligning the struct
	 * cost more memory per key buffer than it saved in a benchmark
	 * (docs/measurements.md).
	 */
	struct eventbuf_item *head;
	struct eventbuf_item *last_own;
	struct eventbuf_pool *pool;
	_Atomic uint64_t appended_items;
	_Atomic uint64_t appended_bytes;
	int ended;
	_Atomic bool pin_busy;
	/* The pin chain's and the owner's. */
	bool pin_final;
	_Atomic bool dropped;
	_Atomic uint32_t users;
	struct eventbuf_item *pin;
	struct eventbuf_item *pin_prev;
	struct rcu_head pin_rcu;
	struct eventbuf *stats_prev, *stats_next;
	_Atomic int writer;
};

/*
 * CONFIG_EVENTBUF_DEBUG's item life marks, in ->reserved (0 while alive):
 * queued for reclamation by its last put, then freed (poisoned).
 */
#define ITEM_DEBUG_QUEUED	0xa5
#define ITEM_DEBUG_FREED	0xdd

#ifdef CONFIG_EVENTBUF_DEBUG
__hidden void __eventbuf_writer_enter(struct eventbuf *buf, const char *fn);
__hidden void __eventbuf_writer_exit(struct eventbuf *buf);
__hidden void __eventbuf_item_check(const struct eventbuf_item *item,
				    const char *fn, bool put);
static inline void __eventbuf_item_mark(struct eventbuf_item *item,
					uint8_t mark)
{
	item->reserved = mark;
}
#else
static inline void __eventbuf_item_check(const struct eventbuf_item *item,
					 const char *fn, bool put)
{
	(void)item;
	(void)fn;
	(void)put;
}

static inline void __eventbuf_item_mark(struct eventbuf_item *item,
					uint8_t mark)
{
	(void)item;
	(void)mark;
}

static inline void __eventbuf_writer_enter(struct eventbuf *buf,
					   const char *fn)
{
	(void)buf;
	(void)fn;
}

static inline void __eventbuf_writer_exit(struct eventbuf *buf)
{
	(void)buf;
}
#endif

/* item.c */
/*
 * Take a reference. Relaxed, because it publishes nothing and needs to see
 * nothing: @item is already kept alive by the caller - its own reference,
 * a buffer's pin on a head it loaded, or rcu_read_lock() over a head, whose
 * grace period the pin chain waits for before it unpins (buffer.c) - so the
 * count cannot reach zero under us, and the item's contents were ordered
 * before us by whatever gave us the pointer (rcu_dereference() or the
 * holder's own acquire). Only the puts order: unref()'s acq_rel CAS
 * (reclaim.c) makes every holder's reads happen before the reclaiming one.
 */
static inline int item_ref(struct eventbuf_item *item)
{
	uint64_t old;

	old = atomic_fetch_add_explicit(&item->state, ST_REF,
					memory_order_relaxed);
	if (st_refs(old) >= ST_REF_LIMIT) {
		atomic_fetch_sub_explicit(&item->state, ST_REF,
					  memory_order_relaxed);
		return -EOVERFLOW;
	}
	return 0;
}

#ifdef CONFIG_EVENTBUF_TESTING
__hidden int __eventbuf_item_ref(struct eventbuf_item *item);
#else
#define __eventbuf_item_ref(item) item_ref(item)
#endif
__hidden struct eventbuf_item *__eventbuf_item_alloc(uint8_t kind, size_t n,
						     size_t extra);
__hidden void __eventbuf_item_free(struct eventbuf_item *item);
__hidden struct eventbuf_item *
__eventbuf_item_carve_slow(struct eventbuf_pool *pool, uint8_t kind, size_t n,
			   size_t extra);

static inline size_t __eventbuf_item_bytes(size_t n, size_t extra)
{
	return sizeof(struct eventbuf_item) +
	       n * sizeof(struct eventbuf_event) + extra;
}

static inline struct eventbuf_item *
__eventbuf_item_init(struct eventbuf_item *item, uint8_t kind, size_t n,
		     uint8_t flags)
{
	item->next = NULL;
	atomic_init(&item->state, 0);
	item->nevents = (uint32_t)n;
	item->kind = kind;
	item->flags = flags;
	item->signal_done = 0;
	item->reserved = 0;
	__builtin_memset(&item->u, 0, sizeof(item->u));
	return item;
}

/* slab.c: items are carved from SLAB_SIZE-aligned slabs of this size. */
#define SLAB_SIZE (64 * 1024)
/* Bigger items come from malloc(): one would waste much of a slab. */
#define SLAB_MAX_ITEM 2048

/*
 * struct eventbuf_pool - a buffer's slabs (slab.c has the theory)
 *
 * Here rather than in slab.c so that the append path can carve inline:
 * with the carving, the item's initialisation and the publication in one
 * function, an append runs about a third fewer instructions than through
 * three calls, and the writer is bound by its instructions, not by its
 * stores (docs/measurements.md).
 *
 * @cur, @bump, @end, @used: the writer's current slab, its next free byte,
 *          its end, and the items carved from it; the writer's only.
 * @warmup: items left to take from malloc() in the current warm-up
 *          window; 0 once the writer carves slabs (slab.c).
 * @warm_start: when the current window began (ns, monotonic).
 * @refs, @lock, @free, @free_tail, @arenas: shared, see slab.c.
 */
struct eventbuf_slab;
struct eventbuf_arena;

struct eventbuf_pool {
	/* the writer's */
	struct eventbuf_slab *cur;
	char *bump, *end;
	uint32_t used;
	uint32_t warmup;
	int64_t warm_start;
	/* shared, under @lock */
	_Atomic uint32_t refs;
	pthread_mutex_t lock;
	struct eventbuf_slab *free, *free_tail;	/* FIFO */
	struct eventbuf_arena *arenas;
};

/* @size bytes (a multiple of 8) from the current slab, which has room. */
static inline void *__eventbuf_slab_bump(struct eventbuf_pool *pool,
					 size_t size)
{
	void *p = pool->bump;

	pool->bump += size;
	pool->used++;
	/*
	 * Ask for the lines a few items ahead now, so that their
	 * read-for-ownership misses overlap with this append instead of
	 * stalling the wake-up fence, which waits for pending stores.
	 */
	__builtin_prefetch((void *)((uintptr_t)pool->bump + 512), 1, 3);
	return p;
}

/*
 * An item carved from the writer's slabs, or from malloc() if it must.
 * Inline for the common case, an item that fits the current slab; with no
 * slab yet, @bump and @end are both NULL and the room is zero.
 */
static inline struct eventbuf_item *
__eventbuf_item_carve(struct eventbuf_pool *pool, uint8_t kind, size_t n,
		      size_t extra)
{
	size_t size = (__eventbuf_item_bytes(n, extra) + 7) & ~(size_t)7;
	size_t room = (uintptr_t)pool->end - (uintptr_t)pool->bump;

	if (__builtin_expect(size > room || size > SLAB_MAX_ITEM, 0))
		return __eventbuf_item_carve_slow(pool, kind, n, extra);
	return __eventbuf_item_init(__eventbuf_slab_bump(pool, size), kind, n,
				    0);
}
/*
 * How many items a buffer takes from malloc() before it carves slabs, all
 * within SLAB_WARMUP_NS (a writer of at least 100,000 appends a second);
 * the tests' build (CONFIG_EVENTBUF_TESTING) lets them change the count.
 */
#define SLAB_WARMUP 1024
#define SLAB_WARMUP_NS 10000000
#ifdef CONFIG_EVENTBUF_TESTING
__hidden extern uint32_t __eventbuf_slab_warmup;
__hidden extern int64_t __eventbuf_slab_warmup_ns;
__hidden bool __eventbuf_item_in_slab(const struct eventbuf_item *item);
#else
#define __eventbuf_slab_warmup SLAB_WARMUP
#define __eventbuf_slab_warmup_ns SLAB_WARMUP_NS
#endif
__hidden struct eventbuf_pool *__eventbuf_pool_new(void);
__hidden void __eventbuf_pool_drop(struct eventbuf_pool *pool);
__hidden void __eventbuf_pool_trim(struct eventbuf_pool *pool);
__hidden void *__eventbuf_slab_alloc(struct eventbuf_pool *pool, size_t size);
__hidden void __eventbuf_slab_put(void *item, uint32_t n);
__hidden struct eventbuf_item *
__eventbuf_find_next(const struct eventbuf_item *from, struct eventbuf_item **tipp);

/* reclaim.c */
__hidden void __eventbuf_put_deferred(struct eventbuf_item *item);
__hidden void __eventbuf_put_keep_fd(struct eventbuf_item *item, int *keptp);
__hidden void __eventbuf_pin(struct eventbuf_item *item);
__hidden void __eventbuf_unpin(struct eventbuf_item *item);

/* fdpool.c */
__hidden void __eventbuf_fd_release(uint64_t w);
__hidden int __eventbuf_fd_keep(uint64_t w);
__hidden bool __eventbuf_fd_consume(int fd);
__hidden void __eventbuf_fd_restore(int fd);
__hidden int __eventbuf_fd_reuse_kept(int fd);
__hidden void __eventbuf_fd_drop_kept(int fd);
__hidden int __eventbuf_fd_pool_get(void);
__hidden void __eventbuf_fd_pool_put(int fd);
__hidden void __eventbuf_fd_pool_drain(void);
__hidden void __eventbuf_fd_cache_enable(void);
__hidden void __eventbuf_fd_watched(int fd);
__hidden int __eventbuf_fd_new(void);
__hidden _Atomic uint32_t *__eventbuf_fd_gen(int fd);
__hidden extern _Atomic uint64_t __eventbuf_fd_epoch;

/* fork.c, and the process-wide locks its handlers take */
__hidden int __eventbuf_fork_init(void);
__hidden void __eventbuf_join_fork_lock(bool lock);
__hidden void __eventbuf_stats_fork_lock(bool lock);
__hidden void __eventbuf_drain_fork_lock(bool lock);
__hidden void __eventbuf_fdpool_fork_lock(bool lock);
__hidden void __eventbuf_blocks_fork_lock(bool lock);
__hidden void __eventbuf_blocks_trim(void);
__hidden void __eventbuf_blocks_fork_child(void);
#ifdef CONFIG_EVENTBUF_TESTING
__hidden uint32_t __eventbuf_blocks_idle(size_t size);
#endif
__hidden void __eventbuf_fd_fork(void);
__hidden void __eventbuf_fd_fork_child(void);
__hidden void __eventbuf_quiet_fork_child(void);

/* poller.c: the rest of the node's life (core.h has the struct) */
__hidden int __eventbuf_poller_park(struct __eventbuf_pollnode *node,
				    struct eventbuf_item *link, int fd);
__hidden int __eventbuf_poller_joinable(struct __eventbuf_pollnode *node,
					struct eventbuf_item *link);
__hidden void __eventbuf_poller_borrow(struct __eventbuf_pollnode *node,
				       int fd, struct eventbuf_reader *reader);
__hidden void __eventbuf_poller_unborrow(struct __eventbuf_pollnode *node,
					 int fd);

/* reader.c, for pollers (core.h has what subscriptions use) */
__hidden struct __eventbuf_pollnode *
__eventbuf_reader_node(struct eventbuf_reader *reader, const char *fn);
__hidden int __eventbuf_reader_park(struct eventbuf_reader *reader,
				    struct eventbuf_item **linkp, int *fdp,
				    bool exported);
__hidden void __eventbuf_reader_take_back(struct eventbuf_reader *reader);
__hidden bool __eventbuf_reader_at_lent(const struct eventbuf_reader *reader,
					struct __eventbuf_pollnode *node,
					int fd, const struct eventbuf_item *link);
__hidden void __eventbuf_reader_group_join(struct eventbuf_reader *reader);
__hidden void __eventbuf_reader_group_own(struct eventbuf_reader *reader,
					  struct eventbuf_item *pos);

/* stats.c: counters kept off the append path (see stats.c). */
struct eventbuf_counters {
	_Atomic uint64_t items;		/* allocated outside any buffer's writer */
	_Atomic uint64_t bytes;
	_Atomic uint64_t freed_items;
	_Atomic uint64_t freed_bytes;
	_Atomic uint64_t eventfds;
	_Atomic uint64_t readers;
	_Atomic uint64_t reclaim_passes;
	_Atomic uint64_t dropping;	/* dropped buffers whose chain runs */
};
__hidden extern struct eventbuf_counters __eventbuf_counters;
__hidden void __eventbuf_stats_add_buffer(struct eventbuf *buf);
__hidden void __eventbuf_stats_del_buffer(struct eventbuf *buf);

static inline void counter_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static inline void counter_sub(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}

#endif /* _EVENTBUF_INTERNAL_H */

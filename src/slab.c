// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - where items live
 *
 * Items are reclaimed a grace period after the writer has moved on, and
 * liburcu runs call_rcu() callbacks about every 10 ms, so a fast writer has a
 * few hundred thousand items in flight: by the time an item's memory is
 * reused it has long left the cache. malloc() then costs a dependent cache
 * miss per append (it reads the free chunk's list pointer before returning
 * it), about ten times what a hot chunk costs (docs/measurements.md). So each
 * buffer carves its items out of 64 KiB *slabs* with a bump pointer: the
 * writer only writes fresh memory, in address order, which the hardware
 * prefetches, and the reclamation walk - which frees items in chain order -
 * reads them in address order too.
 *
 * Ownership. A slab belongs to its buffer's *pool*. Only the buffer's
 * single writer carves (pool->cur, ->bump, ->end, ->used: writer-owned,
 * no atomics). A slab's ->remaining starts at SLAB_BIAS; when the writer
 * moves to another slab it *seals* this one by subtracting
 * SLAB_BIAS - used, and every reclamation walk subtracts the number of
 * items it freed there (once per run of consecutive items, not per item).
 * Whoever brings ->remaining to zero - the sealing writer or a walk - is
 * the last user: it recycles the slab onto the pool's free list (FIFO, not
 * bounded: the working set is what a callback period of appends needs),
 * or, once the buffer is gone, lets the pool go. Memory goes back to the
 * system a whole arena at a time, when the writer is idle (see struct
 * eventbuf_arena) or the pool ends. The bias keeps the
 * count from reaching zero before the writer has said how many items the
 * slab holds.
 *
 * The pool outlives its buffer while any of its slabs holds live items:
 * ->refs counts the buffer plus every slab not yet recycled, and the last
 * unref frees the arenas and the pool.
 *
 * The writer's fields and the fast path - bump the pointer while the
 * current slab has room - live in internal.h, so that an append carves
 * inline (buffer.c says why); __eventbuf_slab_alloc() here takes the rest:
 * the warm-up, sealing a full slab, taking the next one.
 *
 * Items that do not fit a slab comfortably (large batches, long error
 * messages) and items made outside the writer (sentinels, followers) come
 * from malloc() and carry ITEM_MALLOCED.
 *
 * Warm-up. A buffer takes items from malloc() until it has appended
 * __eventbuf_slab_warmup of them within SLAB_WARMUP_NS: only a writer fast
 * enough for the cache misses above to matter pays for slabs. Most buffers
 * never need one - a snapshot holds a few items, a key that changes rarely
 * holds a few more - and a pool keeps what it touched until its buffer
 * ends: at least the writer's current slab, up to 64 KiB, and the first
 * page of each free slab (trimming below). A count over the buffer's
 * whole life made every key that ever saw 1,024 events pay that: 2,000
 * keys that had each seen 5,000 events, far slower than that rate, held
 * 71 KiB of resident memory per key once idle (docs/pollers.md). The
 * clock is read twice per window, at its first and last item.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#ifdef EVENTBUF_SANITIZE
#include <sanitizer/lsan_interface.h>
/*
 * LeakSanitizer scans the heap, stacks and globals, not anonymous
 * mappings: the items in an arena are what point at the records and
 * release arguments that wait for reclamation, so it must scan arenas.
 */
#define arena_watch(p) __lsan_register_root_region((p), ARENA_SIZE)
#define arena_unwatch(p) __lsan_unregister_root_region((p), ARENA_SIZE)
#else
#define arena_watch(p) ((void)(p))
#define arena_unwatch(p) ((void)(p))
#endif

#ifdef CONFIG_EVENTBUF_TESTING
/* Tests that exercise slabs from the first item set it to 0. */
uint32_t __eventbuf_slab_warmup = SLAB_WARMUP;
int64_t __eventbuf_slab_warmup_ns = SLAB_WARMUP_NS;

bool __eventbuf_item_in_slab(const struct eventbuf_item *item)
{
	return !(item->flags & ITEM_MALLOCED);
}
#endif

#define SLAB_BIAS	(1u << 30)
#define ARENA_SIZE	(2u << 20)
#define ARENA_SLABS	(ARENA_SIZE / SLAB_SIZE)

/*
 * Slabs are cut from 2 MiB arenas, aligned so that they can be huge pages:
 * with one 64 KiB mapping per slab, the writer's stores took a TLB miss per
 * new page as well as a cache miss per line, about twice the cost per
 * append in a model (docs/measurements.md). Advising them as transparent
 * huge pages is a build option (CONFIG_EVENTBUF_HUGEPAGES=y), off by
 * default: on the 2-core development VM, whose kernel compacts memory
 * synchronously for advised regions (defrag=madvise), a faulted huge page
 * cost more than the TLB misses it saved - the append benchmark ran at
 * 36-39 ns [29-45] per append with the advice and 30.6-31.1 ns [29.9-34.5]
 * without. A pool keeps every slab it has cut while the writer
 * runs - the working set is what a callback period of appends needs - and
 * when the writer goes idle (__eventbuf_pool_trim(), from the pin chain)
 * frees the arenas that are wholly unused and the pages of the free slabs in
 * the others; what stays is the writer's current slab. The pool frees
 * everything when it ends.
 */
struct eventbuf_arena {
	struct eventbuf_arena *next;
	char *base;
	unsigned int cut;	/* slabs handed out at least once */
	unsigned int nfree;	/* of those, in the pool's free list */
};

struct eventbuf_slab {
	struct eventbuf_pool *pool;
	struct eventbuf_arena *arena;
	_Atomic uint32_t remaining;
	struct eventbuf_slab *next_free;
	/* items follow, 8-byte aligned */
	uint64_t data[];
};

static struct eventbuf_slab *slab_of(const void *item)
{
	return (struct eventbuf_slab *)((uintptr_t)item & ~(uintptr_t)(SLAB_SIZE - 1));
}

struct eventbuf_pool *__eventbuf_pool_new(void)
{
	struct eventbuf_pool *pool = calloc(1, sizeof(*pool));

	if (!pool)
		return NULL;
	atomic_init(&pool->refs, 1);	/* the buffer */
	pthread_mutex_init(&pool->lock, NULL);
	pool->warmup = __eventbuf_slab_warmup;
	return pool;
}

static void arena_free(struct eventbuf_arena *arena)
{
	arena_unwatch(arena->base);
	munmap(arena->base, ARENA_SIZE);
	free(arena);
}

static void pool_unref(struct eventbuf_pool *pool)
{
	struct eventbuf_arena *a, *next;

	/* acq_rel: every slab's last user happens before the pool's end. */
	if (atomic_fetch_sub_explicit(&pool->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (a = pool->arenas; a; a = next) {
		next = a->next;
		arena_free(a);
	}
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

/* The last user of @slab: back to the pool's free list (FIFO). */
static void slab_recycle(struct eventbuf_slab *slab)
{
	struct eventbuf_pool *pool = slab->pool;

	pthread_mutex_lock(&pool->lock);
	slab->next_free = NULL;
	if (pool->free_tail)
		pool->free_tail->next_free = slab;
	else
		pool->free = slab;
	pool->free_tail = slab;
	slab->arena->nfree++;
	pthread_mutex_unlock(&pool->lock);
	pool_unref(pool);
}

/* Drop @n items of @slab; acq_rel pairs with the other users' drops. */
void __eventbuf_slab_put(void *item, uint32_t n)
{
	struct eventbuf_slab *slab = slab_of(item);

	if (atomic_fetch_sub_explicit(&slab->remaining, n,
				      memory_order_acq_rel) == n)
		slab_recycle(slab);
}

/* The writer is done carving pool->cur. */
static void slab_seal(struct eventbuf_pool *pool)
{
	struct eventbuf_slab *slab = pool->cur;
	uint32_t bias = SLAB_BIAS - pool->used;

	pool->cur = NULL;
	pool->bump = pool->end = NULL;
	if (atomic_fetch_sub_explicit(&slab->remaining, bias,
				      memory_order_acq_rel) == bias)
		slab_recycle(slab);
}

/* A 2 MiB mapping aligned to 2 MiB: map twice that, unmap the excess. */
static char *arena_map(void)
{
	size_t len = 2 * (size_t)ARENA_SIZE, head, tail;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	head = (ARENA_SIZE - ((uintptr_t)p & (ARENA_SIZE - 1))) & (ARENA_SIZE - 1);
	tail = len - head - ARENA_SIZE;
	if (head)
		munmap(p, head);
	if (tail)
		munmap(p + head + ARENA_SIZE, tail);
	p += head;
#ifdef CONFIG_EVENTBUF_HUGEPAGES
	/* Best effort: without transparent huge pages it is a no-op. */
	madvise(p, ARENA_SIZE, MADV_HUGEPAGE);
#endif
	arena_watch(p);
	return p;
}

static struct eventbuf_arena *arena_new(void)
{
	struct eventbuf_arena *arena = calloc(1, sizeof(*arena));

	if (!arena)
		return NULL;
	arena->base = arena_map();
	if (!arena->base) {
		free(arena);
		return NULL;
	}
	return arena;
}

/* Under pool->lock: a slab never handed out, from an arena with room. */
static struct eventbuf_slab *slab_cut_locked(struct eventbuf_pool *pool)
{
	struct eventbuf_arena *arena = pool->arenas;
	struct eventbuf_slab *slab;

	if (!arena || arena->cut == ARENA_SLABS) {
		arena = arena_new();
		if (!arena)
			return NULL;
		arena->next = pool->arenas;
		pool->arenas = arena;
	}
	slab = (struct eventbuf_slab *)(arena->base +
					(size_t)arena->cut++ * SLAB_SIZE);
	slab->pool = pool;
	slab->arena = arena;
	return slab;
}

/*
 * The oldest free slab first, so that the lines the reclamation walk read
 * when it freed the newest ones have time to leave the other core's cache.
 */
static int slab_next(struct eventbuf_pool *pool)
{
	struct eventbuf_slab *slab;

	pthread_mutex_lock(&pool->lock);
	slab = pool->free;
	if (slab) {
		pool->free = slab->next_free;
		if (!pool->free)
			pool->free_tail = NULL;
		slab->arena->nfree--;
	} else {
		slab = slab_cut_locked(pool);
	}
	pthread_mutex_unlock(&pool->lock);
	if (!slab)
		return -ENOMEM;
	atomic_init(&slab->remaining, SLAB_BIAS);
	atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
	pool->cur = slab;
	pool->bump = (char *)slab->data;
	pool->end = (char *)slab + SLAB_SIZE;
	pool->used = 0;
	return 0;
}

/*
 * One more item from malloc(): a window of SLAB_WARMUP of them that took
 * longer than SLAB_WARMUP_NS starts another (see the top of this file).
 */
static void warm_up(struct eventbuf_pool *pool)
{
	/* A window's first item starts its clock (a pool whose count a test
	 * changed after it was made has 0: its first window is slow). */
	if (pool->warmup == __eventbuf_slab_warmup)
		pool->warm_start = __eventbuf_now_ns();
	if (--pool->warmup == 0 &&
	    __eventbuf_now_ns() - pool->warm_start > __eventbuf_slab_warmup_ns)
		pool->warmup = __eventbuf_slab_warmup;
}

/*
 * Memory for an item of @size bytes, or NULL when it does not belong in a
 * slab (too big) or no slab can be had (the caller then uses malloc()).
 * The append path carves inline while the current slab has room
 * (__eventbuf_item_carve() in internal.h) and calls this for the rest.
 * Context: the pool's buffer's writer.
 */
void *__eventbuf_slab_alloc(struct eventbuf_pool *pool, size_t size)
{
	size = (size + 7) & ~(size_t)7;
	if (size > SLAB_MAX_ITEM)
		return NULL;
	/*
	 * No slab yet (bump and end are NULL, and NULL + size is undefined),
	 * which is also the case all through the warm-up: the fast path
	 * tests nothing more.
	 */
	if (!pool->cur || size > (size_t)(pool->end - pool->bump)) {
		if (pool->warmup) {
			warm_up(pool);
			return NULL;
		}
		if (pool->cur)
			slab_seal(pool);
		if (slab_next(pool))
			return NULL;
	}
	return __eventbuf_slab_bump(pool, size);
}

/*
 * A free slab in an arena that stays (it holds the writer's current slab):
 * give its pages back but the first, which holds the header the free list
 * runs through. With a huge page this splits it; the writer's next use of
 * the slab faults in zeroed pages. The caller holds pool->lock, which the
 * writer takes to reuse a free slab or cut a new one.
 */
static void slab_release_pages(struct eventbuf_slab *slab)
{
	long page = sysconf(_SC_PAGESIZE);

	if (page <= 0 || (size_t)page >= SLAB_SIZE)
		return;
	madvise((char *)slab + page, SLAB_SIZE - (size_t)page, MADV_DONTNEED);
}

/*
 * The writer went idle (called from the pin chain): give back the arenas
 * none of whose slabs are in use. Their slabs leave the free list first.
 * The writer's current slab, if any, is never on the free list (it was
 * taken off, or cut, under the lock), so its arena always has
 * nfree < cut and stays, even if the writer is carving right now. The
 * madvise() calls run under pool->lock: a writer that needs a new slab
 * meanwhile waits for them (eventbuf.h's "never blocks" says so).
 */
void __eventbuf_pool_trim(struct eventbuf_pool *pool)
{
	struct eventbuf_arena *idle = NULL, **ap, *a, *next;
	struct eventbuf_slab *s, *keep = NULL, *keep_tail = NULL;

	pthread_mutex_lock(&pool->lock);
	for (ap = &pool->arenas; (a = *ap);) {
		if (a->nfree == a->cut) {
			*ap = a->next;
			a->next = idle;
			idle = a;
			a->cut = 0;	/* marks it for the list rebuild */
		} else {
			/* A huge page faulted in slabs not cut yet: drop them. */
			madvise(a->base + (size_t)a->cut * SLAB_SIZE,
				(size_t)(ARENA_SLABS - a->cut) * SLAB_SIZE,
				MADV_DONTNEED);
			ap = &a->next;
		}
	}
	for (s = pool->free; s; s = s->next_free) {
		if (s->arena->cut == 0)
			continue;
		slab_release_pages(s);
		if (keep_tail)
			keep_tail->next_free = s;
		else
			keep = s;
		keep_tail = s;
	}
	if (keep_tail)
		keep_tail->next_free = NULL;
	pool->free = keep;
	pool->free_tail = keep_tail;
	pthread_mutex_unlock(&pool->lock);
	for (a = idle; a; a = next) {
		next = a->next;
		arena_free(a);
	}
}

/* The buffer is dropped: no more carving; the last slab ends the pool. */
void __eventbuf_pool_drop(struct eventbuf_pool *pool)
{
	if (pool->cur)
		slab_seal(pool);
	pool_unref(pool);
}

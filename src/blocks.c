// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - small blocks that die on another thread
 *
 * The items a buffer does not carve from slabs (slab.c: a writer slower
 * than 100,000 appends a second, sentinels, followers) and the records of
 * pubsub (one per publish) are small, made by the writer's thread and
 * freed by whoever drops the last reference: nearly always liburcu's
 * call_rcu thread, in a reclamation walk. With malloc() and free() that is
 * glibc's worst pattern: the writer's tcache is always empty (the frees
 * fill the other thread's), so both threads take the writer's arena lock
 * for every block, and a walk freeing thousands of blocks in a row meets a
 * writer allocating one per publish. On the 2-core development VM, with
 * 1,000 subscriptions over 1,000 keys, a quarter of the process's context
 * switches were the call_rcu thread sleeping on that lock in free(), and
 * the writer woke it again from malloc() (docs/pollers.md, "Blocks").
 *
 * So the library keeps idle blocks of a few sizes itself:
 *
 * - A thread frees onto its own *out* list; when that holds BLOCK_BATCH
 *   blocks it moves them, as one batch, to the class's *depot* under the
 *   depot's mutex - one lock per BLOCK_BATCH frees.
 * - A thread allocates from its out list first (its own frees, still in
 *   its cache), then from its *in* list, and when both are empty takes one
 *   batch from the depot into *in* - one lock per BLOCK_BATCH allocations -
 *   or, with the depot empty too, calls malloc().
 *
 * Ownership. A block in use belongs to its user (an item, a record). An
 * idle block belongs to exactly one list: a thread's in or out list
 * (thread-local, no atomics) or the depot (under ->lock). The mutex
 * orders a batch's last frees before its next allocations on another
 * thread; what orders the freeing thread's accesses after the readers'
 * is the grace period that preceded the walk, as it was for free().
 *
 * Bounds. The depot holds at most DEPOT_MAX blocks per class; a batch that
 * would pass that is given to free(). A thread holds at most
 * 2 * BLOCK_BATCH - 1 per class (a full in list and an out list one short
 * of a batch). So a writer that runs for months with no reader keeps its
 * memory flat: what the depots hold is bounded, and what is in use is what
 * reclamation has not caught up with, as before. A thread that exits
 * gives its lists to the depot (a key destructor); eventbuf_barrier()
 * frees the depots and the calling thread's lists.
 *
 * A block is freed with the size it was asked for, which names its class
 * (a size past the largest class goes to malloc() and back to free()).
 * There is no header: a block is a plain malloc() chunk of its class's
 * size, and every list points at a chunk's start, so leak checkers see
 * idle blocks as reachable, and objects in use exactly as before.
 *
 * Fork. The depots' mutexes, and threads_lock over the registry of the
 * threads that hold lists, are among the process-wide locks fork.c takes
 * around fork(). The child keeps the forking thread's lists and the
 * depots, and gives the other threads' lists - still in its copy of the
 * parent's memory - to the depots, so that nothing idle is lost with
 * them. A list moves to or from the depot under the depot's lock, so the
 * child never finds a chain in both (and hands its blocks out twice).
 *
 * AddressSanitizer builds poison an idle block's payload past the list
 * links, so that a use after free of a recycled block is still reported,
 * and a block in use past the size it was asked for.
 */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

/* EVENTBUF_SANITIZE: the AddressSanitizer builds (CONFIG_ASAN, CONFIG_FUZZ). */
#ifdef EVENTBUF_SANITIZE
#include <sanitizer/asan_interface.h>
#endif

#define BLOCK_BATCH	32
#define DEPOT_MAX	4096

#ifdef CONFIG_EVENTBUF_TESTING
const uint32_t __eventbuf_block_batch = BLOCK_BATCH;
const uint32_t __eventbuf_block_depot_max = DEPOT_MAX;
#endif

/*
 * Sizes: a sentinel or follower item (40), an item of one event (72), a
 * one-event record (128): exactly what they asked malloc() for before, so
 * none takes a bigger chunk than it did. Other sizes round up to the next
 * class (a two-event item, 104 bytes, takes 128).
 */
static const uint32_t class_size[] = { 40, 72, 128, 256 };
#define NCLASSES	(sizeof(class_size) / sizeof(class_size[0]))
#define NO_CLASS	UINT32_MAX

/* What an idle block's payload holds. */
struct block {
	struct block *next;		/* in its list or batch */
	struct block *next_batch;	/* depot: the batch under this one */
	uint32_t n;			/* depot: blocks in this batch */
};

struct depot {
	pthread_mutex_t lock;
	struct block *batches;
	uint32_t n;			/* blocks in all batches */
};

static struct depot depots[NCLASSES] = {
	[0 ... NCLASSES - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER },
};

struct tlists {
	struct block *in, *out;
	uint32_t nout;
};

/*
 * A thread's lists, and its place among the threads that hold lists
 * (under threads_lock), where a fork child finds the threads it lost.
 * Allocated, not thread-local: a thread whose last use of blocks comes
 * after its exit destructor ran leaves a set that stays valid, reachable
 * and adoptable by a fork child, not a registry entry in freed TLS.
 */
struct tset {
	struct tlists l[NCLASSES];
	struct tset *prev, *next;
};

static __thread struct tset *mine;
static __thread bool exited;	/* past the exit destructor: malloc() */

static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tset threads = { .prev = &threads, .next = &threads };

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool have_exit_key;

static void idle_poison(struct block *b, uint32_t cls)
{
#ifdef EVENTBUF_SANITIZE
	ASAN_POISON_MEMORY_REGION(b + 1, class_size[cls] - sizeof(*b));
#else
	(void)b;
	(void)cls;
#endif
}

/* In use: the @size bytes asked for, not the rest of the class. */
static void in_use_poison(struct block *b, uint32_t cls, size_t size)
{
#ifdef EVENTBUF_SANITIZE
	ASAN_UNPOISON_MEMORY_REGION(b, size);
	ASAN_POISON_MEMORY_REGION((char *)b + size, class_size[cls] - size);
#else
	(void)b;
	(void)cls;
	(void)size;
#endif
}

static void free_chain(struct block *b)
{
	while (b) {
		struct block *next = b->next;

		free(b);
		b = next;
	}
}

/* With @d's lock held: keep the chain @first (@n blocks) if it fits. */
static bool depot_add(struct depot *d, struct block *first, uint32_t n)
{
	if (d->n + n > DEPOT_MAX)
		return false;
	first->next_batch = d->batches;
	first->n = n;
	d->batches = first;
	d->n += n;
	return true;
}

/*
 * Move the chain at *@from (@n blocks) to the depot, or to free() if it
 * does not fit. *@from is cleared under the depot's lock, which fork()
 * holds: a child sees the chain in the list or in the depot, never in
 * both (then its adoption would hand the blocks out twice).
 */
static void depot_put(uint32_t cls, struct block **from, uint32_t n,
		      bool locked)
{
	struct depot *d = &depots[cls];
	struct block *first;
	bool kept;

	if (!locked)
		pthread_mutex_lock(&d->lock);
	first = *from;
	kept = depot_add(d, first, n);
	*from = NULL;
	if (!locked)
		pthread_mutex_unlock(&d->lock);
	if (!kept)
		free_chain(first);
}

/* Take a batch into the empty list *@into, under the lock, as above. */
static void depot_take(uint32_t cls, struct block **into)
{
	struct depot *d = &depots[cls];
	struct block *b;

	pthread_mutex_lock(&d->lock);
	b = d->batches;
	if (b) {
		d->batches = b->next_batch;
		d->n -= b->n;
	}
	*into = b;
	pthread_mutex_unlock(&d->lock);
}

static uint32_t chain_length(const struct block *b)
{
	uint32_t n = 0;

	for (; b; b = b->next)
		n++;
	return n;
}

/* Hand @ts's lists to the depots (whose locks the caller may hold). */
static void lists_flush(struct tset *ts, bool locked)
{
	for (uint32_t c = 0; c < NCLASSES; c++) {
		struct tlists *t = &ts->l[c];

		if (t->out)
			depot_put(c, &t->out, chain_length(t->out), locked);
		if (t->in)
			depot_put(c, &t->in, chain_length(t->in), locked);
		t->nout = 0;
	}
}

static void unregister(struct tset *ts)
{
	ts->prev->next = ts->next;
	ts->next->prev = ts->prev;
}

/*
 * The thread exits. A destructor of another key may still free a block
 * after this one ran: that goes to free(), and an allocation to malloc().
 */
static void lists_exit(void *arg)
{
	struct tset *ts = arg;

	exited = true;
	mine = NULL;
	lists_flush(ts, false);
	pthread_mutex_lock(&threads_lock);
	unregister(ts);
	pthread_mutex_unlock(&threads_lock);
	free(ts);
}

static void exit_key_init(void)
{
	have_exit_key = !pthread_key_create(&exit_key, lists_exit);
}

/*
 * The calling thread's lists, made on its first use of blocks; NULL: it
 * may not hold idle blocks (its exit could not give them back), so it
 * uses malloc() and free() directly. The fork handlers are registered
 * first: the depots' locks are process-wide locks a child must not
 * inherit held, even in a process that never made a buffer.
 */
static struct tset *lists_of_caller(void)
{
	struct tset *ts = mine;

	if (__builtin_expect(ts != NULL, 1))
		return ts;
	if (exited || __eventbuf_fork_init())
		return NULL;
	pthread_once(&exit_once, exit_key_init);
	if (!have_exit_key || !(ts = calloc(1, sizeof(*ts))))
		return NULL;
	if (pthread_setspecific(exit_key, ts)) {
		free(ts);
		return NULL;
	}
	pthread_mutex_lock(&threads_lock);
	ts->prev = &threads;
	ts->next = threads.next;
	threads.next->prev = ts;
	threads.next = ts;
	pthread_mutex_unlock(&threads_lock);
	mine = ts;
	return ts;
}

static uint32_t class_of(size_t size)
{
	for (uint32_t c = 0; c < NCLASSES; c++)
		if (size <= class_size[c])
			return c;
	return NO_CLASS;
}

#ifdef CONFIG_EVENTBUF_TESTING
/* Idle blocks in the depot of @size's class. */
uint32_t __eventbuf_blocks_idle(size_t size)
{
	struct depot *d;
	uint32_t n;

	if (class_of(size) == NO_CLASS)
		return 0;
	d = &depots[class_of(size)];
	pthread_mutex_lock(&d->lock);
	n = d->n;
	pthread_mutex_unlock(&d->lock);
	return n;
}
#endif

static struct block *pop(struct block **list)
{
	struct block *b = *list;

	if (b) {
		*list = b->next;
		/* The next allocation's block: its header line is cold. */
		__builtin_prefetch(b->next);
	}
	return b;
}

static struct block *take_idle(uint32_t cls)
{
	struct tset *ts = lists_of_caller();
	struct tlists *t;
	struct block *b;

	if (!ts)
		return NULL;
	t = &ts->l[cls];
	if (t->out) {
		b = pop(&t->out);
		t->nout--;
		return b;
	}
	if (!t->in)
		depot_take(cls, &t->in);
	return pop(&t->in);
}

void *__eventbuf_block_alloc(size_t size)
{
	uint32_t cls = class_of(size);
	struct block *b;

	if (cls == NO_CLASS)
		return malloc(size);
	b = take_idle(cls);
	if (!b)
		b = malloc(class_size[cls]);
	if (b)
		in_use_poison(b, cls, size);
	return b;
}

void __eventbuf_block_free(void *p, size_t size)
{
	uint32_t cls = class_of(size);
	struct block *b = p;
	struct tlists *t;
	struct tset *ts;

	if (!p)
		return;
	if (cls == NO_CLASS || !(ts = lists_of_caller())) {
		free(p);
		return;
	}
	t = &ts->l[cls];
	idle_poison(b, cls);
	b->next = t->out;
	t->out = b;
	if (++t->nout == BLOCK_BATCH) {
		depot_put(cls, &t->out, BLOCK_BATCH, false);
		t->nout = 0;
	}
}

/* eventbuf_barrier(): free every idle block the caller can reach. */
void __eventbuf_blocks_trim(void)
{
	if (mine)
		lists_flush(mine, false);
	for (uint32_t c = 0; c < NCLASSES; c++) {
		struct depot *d = &depots[c];
		struct block *batches;

		pthread_mutex_lock(&d->lock);
		batches = d->batches;
		d->batches = NULL;
		d->n = 0;
		pthread_mutex_unlock(&d->lock);
		while (batches) {
			struct block *next = batches->next_batch;

			free_chain(batches);
			batches = next;
		}
	}
}

void __eventbuf_blocks_fork_lock(bool lock)
{
	if (lock) {
		pthread_mutex_lock(&threads_lock);
		for (uint32_t c = 0; c < NCLASSES; c++)
			pthread_mutex_lock(&depots[c].lock);
		return;
	}
	for (uint32_t c = NCLASSES; c-- > 0;)
		pthread_mutex_unlock(&depots[c].lock);
	pthread_mutex_unlock(&threads_lock);
}

/*
 * In the child, with the locks held: only the forking thread lives on.
 * Give the others' lists to the depots and free their sets. A list moves
 * to or from the depot under the depot's lock, so nothing is in both; a
 * thread the fork caught between linking a freed block and storing its
 * list's head loses that one block, which then sits in no list.
 */
void __eventbuf_blocks_fork_child(void)
{
	struct tset *ts = threads.next;

	while (ts != &threads) {
		struct tset *next = ts->next;

		if (ts != mine) {
			lists_flush(ts, true);
			unregister(ts);
			free(ts);
		}
		ts = next;
	}
}

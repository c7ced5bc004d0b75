// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - who holds what, and when an item is freed
 *
 * Holders. An item is kept alive by
 *  (a) counted references in its ->state: readers, caches, ->next edges
 *      made by eventbuf_append_item() and follower targets
 *      (ITEM_NEXT_COUNTED, KIND_FOLLOWER);
 *  (b) ST_PINNED: its buffer's *pin* (below);
 *  (c) its *owner predecessor*: the item that was head when eventbuf_append()
 *      linked it. This edge is not counted, so an append touches no count.
 * Holding an item therefore keeps every later item of its chain alive: the
 * chain can only be freed from its oldest end.
 *
 * ST_ROOT marks an item with no live owner predecessor: a sentinel, a
 * follower, or the item a reclamation walk stopped at. The one who makes
 * "no references, ROOT, not PINNED" true - by dropping the last reference
 * (unref()), making the item ROOT (inherit_root()) or clearing the pin
 * (__eventbuf_unpin()) - owns the item from then on and reclaims it; each
 * transition is one atomic operation on ->state, so exactly one party sees
 * it.
 *
 * The walk. The owner frees the item and follows its ->next: an owned edge
 * passes ROOT on (inherit_root()), a counted edge or a follower's target is
 * dropped (unref()). It goes on while it owns the next item, so a run of N
 * unreferenced items is freed by one loop in one callback, with a constant
 * stack, and stops at the first referenced item, which it leaves ROOT for
 * the holder's last put to resume.
 *
 * The pin and the head. Readers may load buf->head under rcu_read_lock()
 * and then take a reference (eventbuf_head()): a count of zero does not mean
 * "unreachable" for a head. So the buffer keeps a *pin* with ST_PINNED, an
 * item at or before the head, and moves it only in the pin chain, a
 * call_rcu() callback that re-queues itself while the head moves
 * (pin_step() in buffer.c). Each step pins the current head and unpins the
 * pin set by the step before: that pin became the new pin a grace period
 * ago, and every item before it had stopped being the head before that, so
 * any reader that loaded one of them as head has finished taking its
 * reference. Walks stop at pinned items, so they never reach an item that
 * is, or was within the last grace period, a head. With no readers at all
 * the writer makes no atomic read-modify-write and no call_rcu() per
 * append: one step per callback period frees everything behind the head,
 * and two steps after the writer stops, only the head is left.
 *
 * Grace periods. Every walk runs in a call_rcu() callback:
 *  - pin moves and buffer drops queue their callback (buffer.c);
 *  - a put that takes ownership of a ROOT item (a reader letting go) queues
 *    the item on a pending list; the list is handed to call_rcu() as a
 *    whole, and items that arrive while a callback is queued wait for the
 *    next one, so each of them gets a full grace period after its put
 *    (drain_*() below). put() itself never frees, never runs a release
 *    callback, never blocks on more than this list's short mutex.
 * Nothing in a walk calls call_rcu() or synchronize_rcu(); only the drain
 * callback re-posts itself when more items arrived meanwhile, which is why
 * eventbuf_barrier() loops until the drain is idle.
 *
 * Eventfds. A link's eventfd lives as long as references on the link's
 * item (the pin is not a reference: it never waits): once the writer has
 * signalled it (ST_SIGNALED) nobody needs it except holders still
 * registered on it, so the put that drops the last reference of a
 * signalled link releases it (setting ST_CLOSED in the same
 * compare-and-swap, so that nobody touches the item after its last put),
 * as does the last put of a link the writer is done with (->signal_done)
 * but never signalled, and a walk releases whatever is still open. A
 * released eventfd is closed, or reset and kept for another link
 * (fdpool.c). Open eventfds are thus bounded by the links that are
 * referenced, never by items retained.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

/* Close the eventfd of an item we now own, unless already closed. */
static void close_owned(uint64_t w)
{
	if (st_fd(w) >= 0 && !(w & ST_CLOSED))
		__eventbuf_fd_release(w);
}

/*
 * Drop one reference. Return @item when the caller now owns it, NULL
 * otherwise. When this was the last reference, the link's eventfd is closed
 * if nobody can wait on it any more - the writer signalled it, or is done
 * with the link (->signal_done, see wait.c), or we own the item - deciding
 * it in the same compare-and-swap, so that nobody touches the item after
 * the step that released it.
 *
 * A reader that may keep the link's eventfd passes @keptp (else NULL):
 * when this put releases it and the link is still ST_PRIVATE and
 * signalled, *@keptp gets it, reset (fdpool.c, "Kept descriptors").
 */
static struct eventbuf_item *unref_keep(struct eventbuf_item *item,
					int *keptp)
{
	uint64_t old = READ_ONCE(item->state);	/* the CAS below checks it */
	/* Acquire: pairs with W5's smp_store_release() in __eventbuf_signal(). */
	bool done = smp_load_acquire(&item->signal_done);
	uint64_t new;

	do {
		new = old - ST_REF;
		if (st_refs(new) == 0 && st_fd(new) >= 0 &&
		    !(new & ST_CLOSED) &&
		    ((new & ST_SIGNALED) || done || st_owned(new)))
			new |= ST_CLOSED;
		/* Release: our accesses to the chain happen before whoever
		 * frees it; acquire: theirs before ours if we free it. */
	} while (!atomic_compare_exchange_weak_explicit(&item->state, &old,
			new, memory_order_acq_rel, memory_order_relaxed));
	if ((new & ST_CLOSED) && !(old & ST_CLOSED)) {
		if (keptp && (new & (ST_PRIVATE | ST_SIGNALED)) ==
			     (ST_PRIVATE | ST_SIGNALED))
			*keptp = __eventbuf_fd_keep(new);
		else
			__eventbuf_fd_release(new);
	}
	return st_owned(new) ? item : NULL;
}

static struct eventbuf_item *unref(struct eventbuf_item *item)
{
	return unref_keep(item, NULL);
}

/*
 * The owner predecessor of @item is gone. Return @item if that makes us its
 * owner, NULL otherwise (its last put or unpin will).
 *
 * Fast path, no read-modify-write: @item is before a pinned item (walks
 * stop at pins), so it is no head and the pin chain will not pin it, and
 * everything before it is gone, so nobody can take a new reference. If a
 * plain load shows no reference and no pin, nobody else can change that:
 * it is ours. Otherwise the fetch_or() decides, against the holders'
 * unref() (acq_rel on both sides).
 */
static struct eventbuf_item *inherit_root(struct eventbuf_item *item)
{
	/* Acquire: pairs with the holders' acq_rel unref() (see above). */
	uint64_t old = smp_load_acquire(&item->state);

	if (st_refs(old) || (old & ST_PINNED))
		old = atomic_fetch_or_explicit(&item->state, ST_ROOT,
					       memory_order_acq_rel);
	if (!st_owned(old | ST_ROOT))
		return NULL;
	close_owned(old);
	return item;
}

/*
 * Freed slab items are counted per run of consecutive items of one slab,
 * so that a walk touches a slab's counter once per run, not per item.
 */
struct slab_run {
	void *item;	/* any item of the slab, NULL: no run */
	uint32_t n;
};

static void run_flush(struct slab_run *run)
{
	if (run->item)
		__eventbuf_slab_put(run->item, run->n);
	run->item = NULL;
	run->n = 0;
}

static bool same_slab(const void *a, const void *b)
{
	return ((uintptr_t)a ^ (uintptr_t)b) < SLAB_SIZE;
}

static void free_item(struct eventbuf_item *item, struct slab_run *run)
{
	if (item->kind == KIND_BATCH && item->u.batch.release)
		__eventbuf_release_call(item->u.batch.release, item->events,
					item->nevents, item->u.batch.arg);
	__eventbuf_item_mark(item, ITEM_DEBUG_FREED);
	if (item->flags & ITEM_MALLOCED) {
		__eventbuf_item_free(item);
		return;
	}
	if (run->item && !same_slab(run->item, item))
		run_flush(run);
	run->item = item;
	run->n++;
}

/* Free @item, which the caller owns, and every item it then owns. */
static void walk(struct eventbuf_item *item)
{
	struct slab_run run = { NULL, 0 };
	uint64_t items = 0, bytes = 0;

	while (item) {
		/* Stable: the writer set it before the pin passed @item.
		 * Acquire: pairs with its rcu_assign_pointer() (W1). */
		struct eventbuf_item *next = smp_load_acquire(&item->next);
		struct eventbuf_item *owned = NULL;

		if (item->kind == KIND_FOLLOWER)
			owned = unref(item->u.target);
		else if (next && (item->flags & ITEM_NEXT_COUNTED))
			owned = unref(next);
		else if (next)
			owned = inherit_root(next);
		items++;
		bytes += __eventbuf_item_size(item);
		free_item(item, &run);
		item = owned;
	}
	run_flush(&run);
	counter_add(&__eventbuf_counters.freed_items, items);
	counter_add(&__eventbuf_counters.freed_bytes, bytes);
	counter_add(&__eventbuf_counters.reclaim_passes, 1);
}

/* The pin chain (buffer.c) keeps @item, at or after the current pin. */
void __eventbuf_pin(struct eventbuf_item *item)
{
	atomic_fetch_or_explicit(&item->state, ST_PINNED, memory_order_relaxed);
}

/*
 * The pin chain lets go of a pin, a grace period after the next pin was
 * set: free what only this pin kept alive.
 */
void __eventbuf_unpin(struct eventbuf_item *item)
{
	uint64_t old = atomic_fetch_and_explicit(&item->state, ~ST_PINNED,
						 memory_order_acq_rel);

	if (!st_owned(old & ~ST_PINNED))
		return;
	close_owned(old);
	walk(item);
}

/*
 * The pending list. Items owned by a put() wait here for a grace period:
 * @pending collects them; @queued is the batch the posted callback will
 * walk, moved there *before* call_rcu() is called, so every item in it was
 * put before the grace period began.
 */
static pthread_mutex_t drain_lock = PTHREAD_MUTEX_INITIALIZER;
static struct eventbuf_item *pending;
static struct eventbuf_item *queued;
static bool drain_posted;
static unsigned int drain_running;	/* walks in progress */
static struct rcu_head drain_head;

/* fork.c: held across fork() so that the child inherits it unlocked. */
void __eventbuf_drain_fork_lock(bool lock)
{
	if (lock)
		pthread_mutex_lock(&drain_lock);
	else
		pthread_mutex_unlock(&drain_lock);
}

static void drain_run(struct rcu_head *head);

/* Called with drain_lock held; returns true if the caller must post. */
static bool drain_arm_locked(void)
{
	if (drain_posted || !pending)
		return false;
	queued = pending;
	pending = NULL;
	drain_posted = true;
	return true;
}

static void drain_run(struct rcu_head *head)
{
	struct eventbuf_item *list, *next;
	bool repost;

	rcu_callback_enter(head);
	pthread_mutex_lock(&drain_lock);
	list = queued;
	queued = NULL;
	drain_posted = false;
	drain_running++;
	repost = drain_arm_locked();
	pthread_mutex_unlock(&drain_lock);
	if (repost)
		call_rcu(&drain_head, drain_run);
	for (; list; list = next) {
		next = list->reclaim_next;
		walk(list);
	}
	pthread_mutex_lock(&drain_lock);
	drain_running--;
	pthread_mutex_unlock(&drain_lock);
	rcu_callback_exit();
}

/* @item is ours (st_owned()): reclaim it after a grace period. */
static void queue_owned(struct eventbuf_item *item)
{
	bool post;

	/* We own @item: its state word is ours to reuse as a list link. */
	__eventbuf_item_mark(item, ITEM_DEBUG_QUEUED);
	pthread_mutex_lock(&drain_lock);
	item->reclaim_next = pending;
	pending = item;
	post = drain_arm_locked();
	pthread_mutex_unlock(&drain_lock);
	if (post)
		call_rcu(&drain_head, drain_run);
}

void __eventbuf_put_deferred(struct eventbuf_item *item)
{
	if (unref(item))
		queue_owned(item);
}

/*
 * The last put of a private link whose writer has written its eventfd but
 * not yet set ST_SIGNALED: a reader woken on the writer's CPU runs before
 * the writer's compare-and-swap (it preempts the writer inside write()),
 * so on ST_SIGNALED alone it would almost never keep its descriptor.
 * Reading the descriptor shows whether the write (the writer's only one)
 * is done, and resets it. Then the put closes the link's eventfd for us
 * only from the very state @w we decided on - ours the only reference,
 * still private, unsignalled: anyone who took a reference or the
 * descriptor since may be waiting on it, so on any change we write back
 * what we read and put as usual. The writer's compare-and-swap finds
 * ST_CLOSED and releases nothing (wait.c). True if *@keptp got it.
 */
static bool keep_written(struct eventbuf_item *item, uint64_t w, int *keptp)
{
	uint64_t new = (w - ST_REF) | ST_CLOSED;
	int fd = st_fd(w);

	if (!__eventbuf_fd_consume(fd))
		return false;		/* not written yet */
	/* acq_rel, as unref()'s. */
	if (!atomic_compare_exchange_strong_explicit(&item->state, &w, new,
			memory_order_acq_rel, memory_order_relaxed)) {
		__eventbuf_fd_restore(fd);
		return false;
	}
	*keptp = fd;
	if (st_owned(new))
		queue_owned(item);
	return true;
}

/*
 * __eventbuf_put_deferred() of a link whose eventfd the caller handed out
 * and may keep: *@keptp (-1 on entry) gets it when this put releases it
 * and nobody else ever took it (fdpool.c, "Kept descriptors").
 */
void __eventbuf_put_keep_fd(struct eventbuf_item *item, int *keptp)
{
	uint64_t w = READ_ONCE(item->state);	/* keep_written() checks it */

	if ((w & (ST_PRIVATE | ST_SIGNALED | ST_CLOSED)) == ST_PRIVATE &&
	    st_refs(w) == 1 && st_fd(w) >= 0 && keep_written(item, w, keptp))
		return;
	if (unref_keep(item, keptp))
		queue_owned(item);
}

static bool drain_idle(void)
{
	bool idle;

	pthread_mutex_lock(&drain_lock);
	idle = !drain_posted && !pending && !drain_running;
	pthread_mutex_unlock(&drain_lock);
	return idle;
}

/*
 * Each rcu_barrier() lets every pin chain take at least one step (a step
 * queued before the barrier runs before it returns). PIN_STEPS_PAST_HEAD
 * steps take a live buffer's chain past the head it had at the call: pin it,
 * then free what is behind it. Dropped buffers' chains end by themselves, and
 * a release callback may put items and so re-arm the drain: loop on those.
 */
#define PIN_STEPS_PAST_HEAD 3

void eventbuf_barrier(void)
{
	if (rcu_read_ongoing())
		__eventbuf_misuse(__func__, "called inside an RCU read-side critical section");
	if (__eventbuf_callback & EVENTBUF_IN_RELEASE)
		__eventbuf_misuse(__func__, "called from a release callback");
	for (int i = 0; i < PIN_STEPS_PAST_HEAD; i++)
		rcu_barrier();
	while (!drain_idle() ||
	       /* Acquire: pairs with the chain's last step, whose
		* counter_sub() rcu_barrier() has waited for. */
	       smp_load_acquire(&__eventbuf_counters.dropping) != 0)
		rcu_barrier();
	__eventbuf_fd_pool_drain();
	__eventbuf_blocks_trim();
}

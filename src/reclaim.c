// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - who holds what, and when an item is freed
 *
 * Holders. An item is kept alive by
 *  (a) counted references in its ->state: readers, caches, the buffer's
 *      *pin* (below), and ->next edges made by eventbuf_append_item() and
 *      follower targets (ITEM_NEXT_COUNTED, KIND_FOLLOWER);
 *  (b) its *owner predecessor*: the item that was head when eventbuf_append()
 *      linked it. This edge is not counted, so an append touches no count.
 * Holding an item therefore keeps every later item of its chain alive: the
 * chain can only be freed from its oldest end.
 *
 * ST_ROOT marks an item with no live owner predecessor: a sentinel, a
 * follower, or the item a reclamation walk stopped at. The one who makes
 * "count == 0 && ST_ROOT" true - by dropping the last reference of a ROOT
 * item (unref()), or by making an unreferenced item ROOT (inherit_root()) -
 * owns the item from then on and reclaims it; both transitions are single
 * atomic operations on ->state, so exactly one party sees them.
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
 * "unreachable" for a head. So the buffer holds a counted reference on its
 * *pin*, an item at or before the head, and only moves it in buffer.c:
 * the new pin gets its reference at initialisation (a plain store before
 * publication), and the old pin's reference is dropped by a call_rcu()
 * callback (pin_release() there), i.e. after a grace period that began
 * after every item before the new pin stopped being the head. Any reader
 * that loaded one of those items as head has finished taking its reference
 * by then; walks stop at the pin, so they never reach an item that is, or
 * was within the current grace period, a head. With no readers at all the
 * writer therefore makes no atomic read-modify-write and no call_rcu() per
 * append: one pin move per grace period frees everything behind it.
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
 * item: once the writer has signalled it (ST_SIGNALED) nobody needs it
 * except holders still registered on it, so the put that drops the last
 * reference of a signalled link closes it (setting ST_CLOSED in the same
 * compare-and-swap, so that nobody touches the item after its last put),
 * and a walk closes whatever is still open. Open eventfds are thus bounded
 * by the links that are referenced, never by items retained.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

/*
 * Drop one reference. Return @item when the caller now owns it (count zero
 * and ROOT), NULL otherwise. Closes a signalled link's eventfd when this
 * was the last reference, deciding it in the same atomic step, so nobody
 * touches the item after the step that released it.
 */
static struct eventbuf_item *unref(struct eventbuf_item *item)
{
	uint64_t old = atomic_load_explicit(&item->state, memory_order_relaxed);
	uint64_t new;

	do {
		new = old - ST_REF;
		if (st_refs(new) == 0 && st_fd(new) >= 0 &&
		    !(new & ST_CLOSED) && (new & (ST_SIGNALED | ST_ROOT)))
			new |= ST_CLOSED;
		/* Release: our accesses to the chain happen before whoever
		 * frees it; acquire: theirs before ours if we free it. */
	} while (!atomic_compare_exchange_weak_explicit(&item->state, &old,
			new, memory_order_acq_rel, memory_order_relaxed));
	if ((new & ST_CLOSED) && !(old & ST_CLOSED)) {
		close(st_fd(new));
		counter_sub(&__eventbuf_counters.eventfds, 1);
	}
	if (st_refs(new) == 0 && (new & ST_ROOT))
		return item;
	return NULL;
}

/*
 * The owner predecessor of @item is gone. Return @item if nobody holds it
 * (the caller now owns it), NULL otherwise (its last put will). Pairs with
 * the acq_rel CAS in unref() of the holder.
 */
static struct eventbuf_item *inherit_root(struct eventbuf_item *item)
{
	uint64_t old = atomic_fetch_or_explicit(&item->state, ST_ROOT,
						memory_order_acq_rel);

	if (st_refs(old))
		return NULL;
	if (st_fd(old) >= 0 && !(old & ST_CLOSED)) {
		close(st_fd(old));
		counter_sub(&__eventbuf_counters.eventfds, 1);
	}
	return item;
}

static void free_item(struct eventbuf_item *item)
{
	if (item->kind == KIND_BATCH && item->u.batch.release)
		item->u.batch.release(item->events, item->nevents,
				      item->u.batch.arg);
	free(item);
}

/* Free @item, which the caller owns, and every item it then owns. */
static void walk(struct eventbuf_item *item)
{
	uint64_t items = 0, bytes = 0;

	while (item) {
		/* Stable: the writer set it before the pin passed @item. */
		struct eventbuf_item *next = __atomic_load_n(&item->next,
							     __ATOMIC_ACQUIRE);
		struct eventbuf_item *owned = NULL;

		if (item->kind == KIND_FOLLOWER)
			owned = unref(item->u.target);
		else if (next && (item->flags & ITEM_NEXT_COUNTED))
			owned = unref(next);
		else if (next)
			owned = inherit_root(next);
		items++;
		bytes += __eventbuf_item_size(item);
		free_item(item);
		item = owned;
	}
	counter_add(&__eventbuf_counters.freed_items, items);
	counter_add(&__eventbuf_counters.freed_bytes, bytes);
	counter_add(&__eventbuf_counters.reclaim_passes, 1);
}

void __eventbuf_put_in_callback(struct eventbuf_item *item)
{
	if (unref(item))
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
static struct rcu_head drain_head;

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
	repost = drain_arm_locked();
	pthread_mutex_unlock(&drain_lock);
	if (repost)
		call_rcu(&drain_head, drain_run);
	for (; list; list = next) {
		next = list->reclaim_next;
		walk(list);
	}
}

void __eventbuf_put_deferred(struct eventbuf_item *item)
{
	bool post;

	if (!unref(item))
		return;
	/* We own @item: its state word is ours to reuse as a list link. */
	pthread_mutex_lock(&drain_lock);
	item->reclaim_next = pending;
	pending = item;
	post = drain_arm_locked();
	pthread_mutex_unlock(&drain_lock);
	if (post)
		call_rcu(&drain_head, drain_run);
}

static bool drain_idle(void)
{
	bool idle;

	pthread_mutex_lock(&drain_lock);
	idle = !drain_posted && !pending;
	pthread_mutex_unlock(&drain_lock);
	return idle;
}

void eventbuf_barrier(void)
{
	/* A release callback may put items and so re-arm the drain: loop. */
	do {
		rcu_barrier();
	} while (!drain_idle());
}

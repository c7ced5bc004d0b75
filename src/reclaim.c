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
 * "unreachable" for a head. So the buffer keeps its *pin*, an item at or
 * before the head, with ST_PINNED, and only moves it in buffer.c: the new
 * pin gets the bit at initialisation (a plain store before publication),
 * and the old pin loses it in a call_rcu() callback (pin_release() there),
 * i.e. after a grace period that began after every item before the new pin
 * stopped being the head. Any reader
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
 * item (the pin is not a reference: it never waits): once the writer has
 * signalled it (ST_SIGNALED) nobody needs it except holders still
 * registered on it, so the put that drops the last
 * reference of a signalled link closes it (setting ST_CLOSED in the same
 * compare-and-swap, so that nobody touches the item after its last put),
 * as does the last put of a link the writer is done with (->signal_done)
 * but never signalled, and a walk closes whatever is still open. Open eventfds are thus bounded
 * by the links that are referenced, never by items retained.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

/* Close the eventfd of an item we now own, unless already closed. */
static void close_owned(uint64_t w)
{
	if (st_fd(w) >= 0 && !(w & ST_CLOSED)) {
		close(st_fd(w));
		counter_sub(&__eventbuf_counters.eventfds, 1);
	}
}

/*
 * Drop one reference. Return @item when the caller now owns it, NULL
 * otherwise. When this was the last reference, the link's eventfd is closed
 * if nobody can wait on it any more - the writer signalled it, or is done
 * with the link (->signal_done, see wait.c), or we own the item - deciding
 * it in the same compare-and-swap, so that nobody touches the item after
 * the step that released it.
 */
static struct eventbuf_item *unref(struct eventbuf_item *item)
{
	uint64_t old = atomic_load_explicit(&item->state, memory_order_relaxed);
	bool done = __atomic_load_n(&item->signal_done, __ATOMIC_ACQUIRE);
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
		close(st_fd(new));
		counter_sub(&__eventbuf_counters.eventfds, 1);
	}
	return st_owned(new) ? item : NULL;
}

/*
 * The owner predecessor of @item is gone. Return @item if that makes us its
 * owner, NULL otherwise (its last put or unpin will). Pairs with the
 * acq_rel compare-and-swap in unref() of the holders.
 */
static struct eventbuf_item *inherit_root(struct eventbuf_item *item)
{
	uint64_t old = atomic_fetch_or_explicit(&item->state, ST_ROOT,
						memory_order_acq_rel);

	if (!st_owned(old | ST_ROOT))
		return NULL;
	close_owned(old);
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

/*
 * A buffer lets go of its pin (buffer.c, after a grace period): free what
 * only the pin kept alive.
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
	rcu_callback_exit();
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

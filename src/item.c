// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - items and the item-level reads
 *
 * An item is published once, fully initialised, by the writer's
 * rcu_assign_pointer() of the previous item's ->next (buffer.c); from then
 * on only its ->state word changes. Readers here follow ->next with
 * rcu_dereference() inside rcu_read_lock(), which pairs with that
 * rcu_assign_pointer(): every field of an item they reach is initialised.
 *
 * Lifetime: a caller holds a reference on @item (or on an item before it in
 * its chain). Reclamation (reclaim.c) frees a chain strictly in order and
 * never passes an item that is referenced, so every item reachable from a
 * held one is alive. A reference on a *found* item is taken with
 * __eventbuf_item_ref() before rcu_read_unlock(), while the caller's hold
 * still covers it; the caller's own hold is never dropped here.
 *
 * Waiting (eventbuf_item_next()): the call takes its own reference on the
 * newest item it reached (the *tip*) before arming that item's link, because
 * a link's eventfd lives exactly as long as references on the link's item
 * (wait.c). It moves that reference forward if it wakes to find only items
 * without events, and drops it before returning.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wake.h"

/*
 * An item from outside the slabs: sentinels, followers, big items, and
 * every item of a buffer whose writer is slow (slab.c). Those without
 * extra bytes are blocks (blocks.c): ->nevents gives their size back.
 */
struct eventbuf_item *__eventbuf_item_alloc(uint8_t kind, size_t n,
					    size_t extra)
{
	struct eventbuf_item *item;

	if (extra) {
		item = malloc(__eventbuf_item_bytes(n, extra));
		return item ? __eventbuf_item_init(item, kind, n,
						   ITEM_MALLOCED) : NULL;
	}
	item = __eventbuf_block_alloc(__eventbuf_item_bytes(n, 0));
	return item ? __eventbuf_item_init(item, kind, n,
					   ITEM_MALLOCED | ITEM_BLOCK) : NULL;
}

/* Free an item of __eventbuf_item_alloc(). */
void __eventbuf_item_free(struct eventbuf_item *item)
{
	if (item->flags & ITEM_BLOCK)
		__eventbuf_block_free(item,
				      __eventbuf_item_bytes(item->nevents, 0));
	else
		free(item);
}

/*
 * __eventbuf_item_carve()'s way when the current slab has no room: a new
 * slab, or malloc() if the item does not belong in one.
 */
struct eventbuf_item *__eventbuf_item_carve_slow(struct eventbuf_pool *pool,
						 uint8_t kind, size_t n,
						 size_t extra)
{
	struct eventbuf_item *item;

	item = __eventbuf_slab_alloc(pool, __eventbuf_item_bytes(n, extra));
	if (!item)
		return __eventbuf_item_alloc(kind, n, extra);
	return __eventbuf_item_init(item, kind, n, 0);
}

#ifdef CONFIG_EVENTBUF_TESTING
/* Out of line only here: tests -Wl,--wrap it to make a reference fail. */
int __eventbuf_item_ref(struct eventbuf_item *item)
{
	return item_ref(item);
}
#endif

/*
 * __eventbuf_find_next() - the first item after @from that has events or ends
 * the chain with an error; NULL when none is published, with *@tipp set to
 * the newest item reached (whose link has no next yet). An error @from is
 * returned itself: the error is sticky.
 *
 * Context: under rcu_read_lock(), @from held (directly or through an
 * earlier item). Writes nothing to the items it passes.
 */
struct eventbuf_item *__eventbuf_find_next(const struct eventbuf_item *from,
				      struct eventbuf_item **tipp)
{
	struct eventbuf_item *it = (struct eventbuf_item *)from;

	if (item_is_error(it))
		return it;
	for (;;) {
		/* Pairs with rcu_assign_pointer(old->next) in publish(). */
		struct eventbuf_item *next = rcu_dereference(link_of(it)->next);

		if (!next) {
			*tipp = it;
			return NULL;
		}
		if (item_is_error(next) || next->nevents)
			return next;
		it = next;
	}
}

int eventbuf_item_get(struct eventbuf_item *item)
{
	if (!item)
		return -EINVAL;
	__eventbuf_item_check(item, __func__, false);
	return __eventbuf_item_ref(item);
}

void eventbuf_item_put(struct eventbuf_item *item)
{
	if (!item)
		return;
	__eventbuf_item_check(item, __func__, true);
	__eventbuf_put_deferred(item);
}

size_t eventbuf_item_count(const struct eventbuf_item *item)
{
	return item ? item->nevents : 0;
}

const struct eventbuf_event *
eventbuf_item_events(const struct eventbuf_item *item)
{
	return item && item->nevents ? item->events : NULL;
}

int eventbuf_item_error(const struct eventbuf_item *item, const char **msg)
{
	struct eventbuf_item *found = NULL, *tip;

	if (msg)
		*msg = NULL;
	if (!item)
		return 0;
	rcu_read_lock();
	found = __eventbuf_find_next(item, &tip);
	rcu_read_unlock();
	if (!found || !item_is_error(found))
		return 0;
	if (msg)
		*msg = found->u.err.msg;
	return found->u.err.code;
}

/*
 * Find the next batch after @from and take a reference on it (*@nextp), or
 * on the tip when nothing is published (*@tipp). Return 0, a terminal code,
 * or -EOVERFLOW.
 */
static int find_and_ref(struct eventbuf_item *from,
			struct eventbuf_item **nextp,
			struct eventbuf_item **tipp)
{
	struct eventbuf_item *found, *tip = NULL;
	int ret;

	*nextp = NULL;
	*tipp = NULL;
	rcu_read_lock();
	found = __eventbuf_find_next(from, &tip);
	if (found && item_is_error(found))
		ret = found->u.err.code;
	else
		ret = __eventbuf_item_ref(found ? found : tip);
	rcu_read_unlock();
	if (ret)
		return ret;
	if (found)
		*nextp = found;
	else
		*tipp = tip;
	return 0;
}

int eventbuf_item_next_nonblock(struct eventbuf_item *item,
				struct eventbuf_item **nextp)
{
	struct eventbuf_item *tip;
	int ret;

	if (!item || !nextp)
		return -EINVAL;
	__eventbuf_item_check(item, __func__, false);
	ret = find_and_ref(item, nextp, &tip);
	if (ret)
		return ret;
	if (*nextp)
		return 0;
	__eventbuf_put_deferred(tip);
	return -EAGAIN;
}

int eventbuf_item_next(struct eventbuf_item *item, int timeout_ms,
		       int cancel_fd, struct eventbuf_item **nextp)
{
	int64_t deadline = __eventbuf_deadline(timeout_ms);
	struct eventbuf_item *parked = NULL, *tip;
	int ret, fd;

	if (!item || !nextp)
		return -EINVAL;
	__eventbuf_item_check(item, __func__, false);
	for (;;) {
		ret = find_and_ref(parked ? parked : item, nextp, &tip);
		if (ret || *nextp)
			break;
		if (parked)
			__eventbuf_put_deferred(parked);
		parked = tip;
		if (timeout_ms == 0) {
			ret = __eventbuf_no_wait(cancel_fd);
			break;
		}
		ret = __eventbuf_prepare_wait(link_of(parked), &fd, 0, NULL);
		if (ret == -EALREADY)
			continue;
		if (ret)
			break;
		ret = __eventbuf_wait(fd, cancel_fd, deadline);
		if (ret)
			break;
	}
	if (parked)
		__eventbuf_put_deferred(parked);
	return ret;
}

/*
 * The follower shares @tip's link: its ->next is read through link_of(), and
 * it holds a counted reference on the link's item (u.target) so that the
 * link outlives it. Nothing is before it in any chain, hence ST_ROOT.
 * Consumes the caller's reference on @tip.
 */
static int make_follower(struct eventbuf_item *tip, struct eventbuf_item **outp)
{
	struct eventbuf_item *f;

	/* Only a batch with events gets here, and a batch is its own link:
	 * the caller's reference on @tip becomes the follower's on its
	 * target. */
	if (link_of(tip) != tip)
		abort();
	f = __eventbuf_item_alloc(KIND_FOLLOWER, 0, 0);
	if (!f) {
		__eventbuf_put_deferred(tip);
		return -ENOMEM;
	}
	f->u.target = tip;
	atomic_init(&f->state, ST_ROOT | ST_REF);	/* the caller's */
	counter_add(&__eventbuf_counters.items, 1);
	counter_add(&__eventbuf_counters.bytes, sizeof(*f));
	*outp = f;
	return 0;
}

int eventbuf_item_follow_after(struct eventbuf_item *item,
			       struct eventbuf_item **outp)
{
	struct eventbuf_item *next, *tip;
	int ret;

	if (!item || !outp)
		return -EINVAL;
	__eventbuf_item_check(item, __func__, false);
	ret = find_and_ref(item, &next, &tip);
	if (ret)
		return ret;
	if (next) {
		*outp = next;
		return 0;
	}
	/*
	 * An item without events at or past @item already yields exactly
	 * what is published after it: hand it out rather than allocate.
	 */
	if (tip != item || tip->nevents == 0) {
		*outp = tip;
		return 0;
	}
	return make_follower(tip, outp);
}

int eventbuf_item_wait_fd(struct eventbuf_item *item, int *fdp)
{
	if (!item || !fdp)
		return -EINVAL;
	*fdp = -1;
	if (item_is_error(item))
		return -EALREADY;
	return __eventbuf_prepare_wait(link_of(item), fdp, WAIT_EXPORTED,
				       NULL);
}

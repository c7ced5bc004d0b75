// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - the writer's side
 *
 * One writer per buffer (the caller serialises appends; RCU's checklist
 * case "restricting updates to a single task"). It owns buf->head, buf->pin
 * and the ->next field of its head, so it reads them with plain loads.
 *
 * Publication (publish()): the new item is fully initialised, then
 *   1. rcu_assign_pointer(old->next, item)  - pairs with rcu_dereference()
 *      in __eventbuf_scan() (item.c): a reader that sees the pointer sees
 *      the item's fields;
 *   2. rcu_assign_pointer(buf->head, item)  - pairs with rcu_dereference()
 *      in eventbuf_head();
 *   3. __eventbuf_signal(old)               - after 1, so that a woken
 *      reader finds ->next set (wait.c argues that no wake-up is lost).
 * With nobody waiting, step 3 is a compiler barrier and one load.
 *
 * Reclamation (reclaim.c has the full argument): the buffer keeps its *pin*
 * alive. When no pin release is in flight, the next appended item becomes
 * the pin - ST_PINNED in its initial state, a plain store before
 * publication - and the old pin is released by pin_release() after a grace
 * period, which frees everything before the new pin that nobody holds. So an append makes no atomic read-modify-write
 * and no call_rcu() of its own: one call_rcu() per grace period (liburcu
 * runs callbacks about every 10 ms) and per buffer, however fast the writer.
 * pin_busy's release store in pin_release() pairs with the writer's acquire
 * load in link_new(): once the writer sees it clear, the callback is done
 * with ->pin_old and the rcu_head may be posted again.
 *
 * eventbuf_drop() hands the pin to drop_release(), also after a grace
 * period, so heads loaded just before the drop stay valid for their
 * readers. The struct itself is freed by the last of the owner and the
 * queued callbacks (->users).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

static void buffer_unuse(struct eventbuf *buf)
{
	/* Pairs with itself: the last user sees every other's writes. */
	if (atomic_fetch_sub_explicit(&buf->users, 1, memory_order_acq_rel) == 1)
		free(buf);
}

/* The writer is the only one writing these: a load and a store, no RMW. */
static void count_appended(struct eventbuf *buf, size_t bytes)
{
	atomic_store_explicit(&buf->appended_items,
		atomic_load_explicit(&buf->appended_items,
				     memory_order_relaxed) + 1,
		memory_order_relaxed);
	atomic_store_explicit(&buf->appended_bytes,
		atomic_load_explicit(&buf->appended_bytes,
				     memory_order_relaxed) + bytes,
		memory_order_relaxed);
}

int eventbuf_new(struct eventbuf **bufp)
{
	struct eventbuf *buf;
	struct eventbuf_item *sentinel;

	if (!bufp)
		return -EINVAL;
	buf = calloc(1, sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	sentinel = __eventbuf_item_alloc(KIND_BATCH, 0, 0);
	if (!sentinel) {
		free(buf);
		return -ENOMEM;
	}
	/* Nothing before it; the buffer's pin. */
	atomic_init(&sentinel->state, ST_ROOT | ST_PINNED);
	buf->head = sentinel;
	buf->pin = sentinel;
	atomic_init(&buf->users, 1);
	count_appended(buf, __eventbuf_item_size(sentinel));
	__eventbuf_stats_add_buffer(buf);
	*bufp = buf;
	return 0;
}

static void pin_release(struct rcu_head *head)
{
	struct eventbuf *buf = container_of(head, struct eventbuf, pin_rcu);
	struct eventbuf_item *old;

	rcu_callback_enter(head);
	old = buf->pin_old;
	/* Pairs with the acquire load in link_new(). */
	atomic_store_explicit(&buf->pin_busy, false, memory_order_release);
	__eventbuf_unpin(old);
	buffer_unuse(buf);
	rcu_callback_exit();
}

static void drop_release(struct rcu_head *head)
{
	struct eventbuf *buf = container_of(head, struct eventbuf, drop_rcu);

	rcu_callback_enter(head);
	__eventbuf_unpin(buf->pin);
	buffer_unuse(buf);
	rcu_callback_exit();
}

void eventbuf_drop(struct eventbuf *buf)
{
	if (!buf)
		return;
	__eventbuf_stats_del_buffer(buf);
	/* The owner's use of @buf passes to drop_release(). */
	call_rcu(&buf->drop_rcu, drop_release);
}

static void publish(struct eventbuf *buf, struct eventbuf_item *item)
{
	struct eventbuf_item *old = buf->head;

	rcu_assign_pointer(old->next, item);
	rcu_assign_pointer(buf->head, item);
	__eventbuf_signal(old);
}

/* Link a new item of this buffer's own after the head. */
static void link_new(struct eventbuf *buf, struct eventbuf_item *item)
{
	bool move_pin = !atomic_load_explicit(&buf->pin_busy,
					      memory_order_acquire);

	atomic_init(&item->state, move_pin ? ST_PINNED : 0);
	count_appended(buf, __eventbuf_item_size(item));
	publish(buf, item);
	if (!move_pin)
		return;
	buf->pin_old = buf->pin;
	buf->pin = item;
	atomic_store_explicit(&buf->pin_busy, true, memory_order_relaxed);
	atomic_fetch_add_explicit(&buf->users, 1, memory_order_relaxed);
	call_rcu(&buf->pin_rcu, pin_release);
}

int eventbuf_append(struct eventbuf *buf, const struct eventbuf_event *events,
		    size_t n, eventbuf_release_fn release, void *arg)
{
	struct eventbuf_item *item;
	int ret;

	if (!buf || (n && !events) || n > EVENTBUF_MAX_EVENTS)
		return -EINVAL;
	__eventbuf_writer_enter(buf, __func__);
	ret = buf->ended;
	if (ret)
		goto out;
	item = __eventbuf_item_alloc(KIND_BATCH, n, 0);
	if (!item) {
		ret = -ENOMEM;
		goto out;
	}
	if (n)
		memcpy(item->events, events, n * sizeof(*events));
	item->u.batch.release = release;
	item->u.batch.arg = arg;
	link_new(buf, item);
out:
	__eventbuf_writer_exit(buf);
	return ret;
}

int eventbuf_append_error(struct eventbuf *buf, int code, const char *msg)
{
	struct eventbuf_item *item;
	size_t len;
	int ret;

	if (!buf || code >= 0 || code_is_reserved(code))
		return -EINVAL;
	__eventbuf_writer_enter(buf, __func__);
	ret = buf->ended;
	if (ret)
		goto out;
	len = msg ? strlen(msg) : 0;
	item = __eventbuf_item_alloc(KIND_ERROR, 0, len + 1);
	if (!item) {
		ret = -ENOMEM;
		goto out;
	}
	item->u.err.code = code;
	item->u.err.msg = memcpy((char *)item->events, msg ? msg : "", len + 1);
	link_new(buf, item);
	buf->ended = -EPIPE;
out:
	__eventbuf_writer_exit(buf);
	return ret;
}

/* Would head->next = @item close a cycle? Walks @item's chain once. */
static bool leads_to(const struct eventbuf_item *item,
		     const struct eventbuf_item *head)
{
	const struct eventbuf_item *it = item;
	bool found = false;

	rcu_read_lock();
	while (it && !found) {
		found = link_of(it) == head;
		it = rcu_dereference(link_of(it)->next);
	}
	rcu_read_unlock();
	return found;
}

int eventbuf_append_item(struct eventbuf *buf, struct eventbuf_item *item)
{
	int ret;

	if (!buf || !item)
		return -EINVAL;
	__eventbuf_writer_enter(buf, __func__);
	ret = buf->ended;
	if (ret)
		goto out;
	if (leads_to(item, buf->head)) {
		ret = -ELOOP;
		goto out;
	}
	/* The edge holds its own reference; reclaim.c drops it with the
	 * item that carries the edge. */
	ret = __eventbuf_item_ref(item);
	if (ret)
		goto out;
	buf->head->flags |= ITEM_NEXT_COUNTED;
	publish(buf, item);
	buf->ended = -EISCONN;
out:
	__eventbuf_writer_exit(buf);
	return ret;
}

int eventbuf_head(struct eventbuf *buf, struct eventbuf_item **itemp)
{
	struct eventbuf_item *head;
	int ret;

	if (!buf || !itemp)
		return -EINVAL;
	rcu_read_lock();
	/* Pairs with rcu_assign_pointer(buf->head) in publish(); the
	 * reference is taken before the grace period that could free it. */
	head = rcu_dereference(buf->head);
	ret = __eventbuf_item_ref(head);
	rcu_read_unlock();
	if (ret)
		return ret;
	*itemp = head;
	return 0;
}

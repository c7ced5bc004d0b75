// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - the writer's side
 *
 * One writer per buffer (the caller serialises appends; RCU's checklist
 * case "restricting updates to a single task"). It owns buf->head, ->last_own
 * and the ->next field of its head, so it reads them with plain loads.
 *
 * Publication (publish()): the new item is fully initialised, then
 *   1. rcu_assign_pointer(old->next, item)  - pairs with rcu_dereference()
 *      in __eventbuf_find_next() (item.c): a reader that sees the pointer sees
 *      the item's fields;
 *   2. rcu_assign_pointer(buf->head, item)  - pairs with rcu_dereference()
 *      in eventbuf_head();
 *   3. __eventbuf_signal(old)               - after 1, so that a woken
 *      reader finds ->next set (wait.c argues that no wake-up is lost).
 * With nobody waiting, step 3 is a full barrier, one load and one store.
 * The three steps run inside rcu_read_lock(): the writer holds no reference
 * on @old, and the grace period is what keeps it until step 3 is done.
 *
 * The cost of an append is its instructions. Carving (slab.c, inline in
 * internal.h), initialising and publishing an item are one function, with
 * no call on the way unless a slab runs out: through three calls an append
 * ran about 200 instructions, inline about 120. Where the stores land
 * matters less than it seemed: neither prefetching further ahead nor
 * leaving the fence out (an experiment, not a correct program) changed the
 * time per append on the development VM, though the memory the writer
 * carves was last touched a callback period earlier (docs/measurements.md).
 *
 * Reclamation (reclaim.c has the full argument) is driven by the *pin
 * chain*: a call_rcu() callback, pin_step(), that runs once per callback
 * period while the head moves. Each step unpins the pin set by the step
 * before, pins the current head, and re-queues itself; when a step finds
 * the head already pinned it stops. ("The head" is ->last_own, the newest
 * item of the buffer's own: after eventbuf_append_item() the head proper
 * belongs to another chain, and is kept by the counted edge from
 * ->last_own.) The writer's only part is to start the
 * chain when it is idle: after publishing, it loads ->pin_busy, and only
 * if the chain has stopped does it restart it (a compare-and-swap and one
 * call_rcu()). A writer faster than the callback period therefore makes no
 * atomic read-modify-write and no call_rcu() at all; a slower one at most
 * one per callback period.
 *
 * No lost restart: the chain stops with a store of pin_busy = false
 * followed by smp_mb() and loads of ->last_own and ->dropped; the
 * writer stores ->last_own, then executes the wake-up barrier
 * (__eventbuf_signal(), W2), then loads pin_busy; eventbuf_drop() stores
 * ->dropped, then smp_mb(), then loads pin_busy. In each pair one of the
 * two sees the other's store, so either the
 * chain sees the new head and restarts itself, or the writer sees the chain
 * stopped and restarts it; the compare-and-swap on pin_busy makes sure only
 * one of them posts the callback.
 *
 * eventbuf_drop() sets ->dropped and makes sure the chain runs; the chain
 * then takes one more step, queued after the drop, to unpin the last head:
 * readers that loaded it just before the drop have taken their references
 * by then. The struct is freed by the last of the owner and the chain
 * (->users).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wake.h"

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

static void buffer_drop_user(struct eventbuf *buf)
{
	/* Pairs with itself: the last user sees every other's writes. */
	if (atomic_fetch_sub_explicit(&buf->users, 1, memory_order_acq_rel) == 1)
		free(buf);
}

/*
 * The writer is the only one writing these: a load and a store, no RMW.
 * Untorn for stats.c's READ_ONCE(); a sum of counters orders nothing.
 */
static inline __attribute__((always_inline))
void count_appended(struct eventbuf *buf, size_t bytes)
{
	WRITE_ONCE(buf->appended_items, READ_ONCE(buf->appended_items) + 1);
	WRITE_ONCE(buf->appended_bytes, READ_ONCE(buf->appended_bytes) + bytes);
}

int eventbuf_new(struct eventbuf **bufp)
{
	struct eventbuf *buf;
	struct eventbuf_item *sentinel;

	if (!bufp)
		return -EINVAL;
	if (__eventbuf_fork_init())
		return -ENOMEM;
	buf = calloc(1, sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	buf->pool = __eventbuf_pool_new();
	sentinel = __eventbuf_item_alloc(KIND_BATCH, 0, 0);
	if (!buf->pool || !sentinel) {
		if (buf->pool)
			__eventbuf_pool_drop(buf->pool);
		if (sentinel)
			__eventbuf_item_free(sentinel);
		free(buf);
		return -ENOMEM;
	}
	/* Nothing before it; the buffer's pin. */
	atomic_init(&sentinel->state, ST_ROOT | ST_PINNED);
	buf->head = sentinel;
	buf->last_own = sentinel;
	buf->pin = sentinel;
	atomic_init(&buf->users, 1);
	count_appended(buf, __eventbuf_item_size(sentinel));
	__eventbuf_stats_add_buffer(buf);
	*bufp = buf;
	return 0;
}

static void pin_step(struct rcu_head *head);

/* Post the chain's next step; the chain keeps its use of @buf. */
static void pin_requeue(struct eventbuf *buf)
{
	call_rcu(&buf->pin_rcu, pin_step);
}

/* Start the chain if it is stopped. */
static void pin_kick(struct eventbuf *buf)
{
	bool stopped = false;

	/* Acquire: pairs with smp_store_release() in pin_stop(), so this
	 * chain sees the ->pin the stopped one left. */
	if (!atomic_compare_exchange_strong_explicit(&buf->pin_busy, &stopped,
			true, memory_order_seq_cst, memory_order_seq_cst))
		return;
	atomic_fetch_add_explicit(&buf->users, 1, memory_order_relaxed);
	pin_requeue(buf);
}

static struct eventbuf_item *load_last_own(struct eventbuf *buf)
{
	struct eventbuf_item *last;

	rcu_read_lock();
	last = rcu_dereference(buf->last_own);
	rcu_read_unlock();
	return last;	/* at or after the pin, hence alive */
}

/*
 * Returns true if the chain stopped (and gave up its use of @buf). Once
 * pin_busy is false another chain may start at any time, so the state this
 * one owned (->pin) is read before.
 */
static bool pin_stop(struct eventbuf *buf)
{
	struct eventbuf_item *pin = buf->pin;
	bool stopped = false;

	/* Release: pairs with the CAS in pin_kick(), which a new chain
	 * starts with: it sees the ->pin read above. */
	smp_store_release(&buf->pin_busy, false);
	/* Store, barrier, loads: pairs with W2's smp_mb() in
	 * __eventbuf_signal() (->last_own, see top) and with the smp_mb()
	 * in eventbuf_drop() (->dropped). */
	smp_mb();
	if ((load_last_own(buf) != pin || smp_load_acquire(&buf->dropped)) &&
	    atomic_compare_exchange_strong_explicit(&buf->pin_busy, &stopped,
			true, memory_order_seq_cst, memory_order_seq_cst))
		return false;
	buffer_drop_user(buf);
	return true;
}

static void pin_step(struct rcu_head *rcu)
{
	struct eventbuf *buf = container_of(rcu, struct eventbuf, pin_rcu);
	struct eventbuf_item *last;

	rcu_callback_enter(rcu);
	if (buf->pin_prev) {
		__eventbuf_unpin(buf->pin_prev);
		buf->pin_prev = NULL;
	}
	/* Acquire: pairs with smp_store_release() in eventbuf_drop(): the
	 * writer's last appends happen before the pool is dropped below. */
	if (smp_load_acquire(&buf->dropped)) {
		if (!buf->pin_final) {
			buf->pin_final = true;	/* one more grace period */
			pin_requeue(buf);
		} else {
			__eventbuf_unpin(buf->pin);
			/* The writer is gone: the chain owns the pool now. */
			__eventbuf_pool_drop(buf->pool);
			counter_sub(&__eventbuf_counters.dropping, 1);
			buffer_drop_user(buf);
		}
		goto out;
	}
	last = load_last_own(buf);
	if (last != buf->pin) {
		__eventbuf_pin(last);
		buf->pin_prev = buf->pin;
		buf->pin = last;
		pin_requeue(buf);
		goto out;
	}
	/* The writer is idle: its cached slabs can go back to the system. */
	__eventbuf_pool_trim(buf->pool);
	if (!pin_stop(buf))
		pin_requeue(buf);
out:
	rcu_callback_exit();
}

void eventbuf_drop(struct eventbuf *buf)
{
	if (!buf)
		return;
	__eventbuf_stats_del_buffer(buf);
	counter_add(&__eventbuf_counters.dropping, 1);
	/* Release: pairs with smp_load_acquire() in pin_step(). */
	smp_store_release(&buf->dropped, true);
	/* Store, barrier, then pin_kick()'s load of pin_busy: pairs with the
	 * smp_mb() in pin_stop(), so one of the two restarts the chain. */
	smp_mb();
	pin_kick(buf);
	buffer_drop_user(buf);
}

/*
 * The read-side section covers the writer's use of @old after ->last_own
 * moves on: a pin-chain step may see the new ->last_own and pin it at once,
 * and the next step, which unpins what kept @old, runs a grace period
 * later, after this section - so @old is not freed under the signal.
 */
static inline __attribute__((always_inline))
void publish(struct eventbuf *buf, struct eventbuf_item *item, bool own)
{
	struct eventbuf_item *old = buf->head;

	rcu_read_lock();
	rcu_assign_pointer(old->next, item);
	rcu_assign_pointer(buf->head, item);
	if (own)	/* pairs with rcu_dereference() in load_last_own() */
		rcu_assign_pointer(buf->last_own, item);
	__eventbuf_signal(old);	/* W2 orders ->last_own before pin_busy */
	rcu_read_unlock();
	/* After W2's smp_mb() in __eventbuf_signal(): pairs with the
	 * smp_mb() in pin_stop() (see top). */
	if (!READ_ONCE(buf->pin_busy))
		pin_kick(buf);
}

/* Link a new item of this buffer's own after the head. */
static inline __attribute__((always_inline))
void link_new(struct eventbuf *buf, struct eventbuf_item *item)
{
	count_appended(buf, __eventbuf_item_size(item));
	publish(buf, item, true);
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
	item = __eventbuf_item_carve(buf->pool, KIND_BATCH, n, 0);
	if (!item) {
		ret = -ENOMEM;
		goto out;
	}
	if (n == 1)
		item->events[0] = events[0];	/* the common case, inline */
	else if (n)
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
	item = __eventbuf_item_carve(buf->pool, KIND_ERROR, 0, len + 1);
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

/*
 * Only joins make an item reachable from two places, so only two joins of
 * different buffers into each other, each checked before the other links,
 * could close a cycle: joins are serialised, process-wide. They are rare
 * (one per subscription at most) and never on the append path.
 */
static pthread_mutex_t join_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork.c: held across fork() so that the child inherits it unlocked. */
void __eventbuf_join_fork_lock(bool lock)
{
	if (lock)
		pthread_mutex_lock(&join_lock);
	else
		pthread_mutex_unlock(&join_lock);
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
	pthread_mutex_lock(&join_lock);
	if (leads_to(item, buf->head)) {
		ret = -ELOOP;
		goto out_unlock;
	}
	/* The edge holds its own reference; reclaim.c drops it with the
	 * item that carries the edge. */
	ret = __eventbuf_item_ref(item);
	if (ret)
		goto out_unlock;
	buf->head->flags |= ITEM_NEXT_COUNTED;
	publish(buf, item, false);
	buf->ended = -EISCONN;
out_unlock:
	pthread_mutex_unlock(&join_lock);
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
